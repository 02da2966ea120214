"""Alarms (every one notifies the alert topic, only for what a run cannot report itself)
and the dashboard."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from stacks.alarms import runbook_anchor
from tests.cdk.cfn import render, resources

RUNBOOKS = Path(__file__).resolve().parents[2] / "docs" / "runbooks.md"

TOPIC = "arn:${AWS::Partition}:sns:${AWS::Region}:${AWS::AccountId}:terrific-totes-dev-alerts"
STATE_MACHINE = (
    "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}"
    ":stateMachine:terrific-totes-dev-pipeline"
)


@pytest.fixture(scope="module")
def monitoring(assembly) -> dict:
    return assembly.template("Monitoring")


@pytest.fixture(scope="module")
def alarms(monitoring) -> dict[tuple[str, str], dict]:
    """(metric name, dimension value) -> alarm properties, rendered."""
    found = {}
    for alarm in resources(monitoring, "AWS::CloudWatch::Alarm").values():
        properties = render(alarm["Properties"])
        [dimension] = properties["Dimensions"]
        found[(properties["MetricName"], dimension["Value"])] = properties
    return found


@pytest.mark.parametrize("metric", ["ExecutionsTimedOut", "ExecutionsAborted"])
def test_state_machine_alarms(alarms, metric):
    alarm = alarms[(metric, STATE_MACHINE)]
    assert alarm["Namespace"] == "AWS/States"
    assert alarm["Statistic"] == "Sum"
    assert alarm["Threshold"] == 1
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert alarm["TreatMissingData"] == "notBreaching"


@pytest.mark.parametrize("stage", ["extract", "transform", "load"])
def test_function_throttle_alarms(alarms, stage):
    alarm = alarms[("Throttles", f"terrific-totes-dev-{stage}")]
    assert alarm["Namespace"] == "AWS/Lambda"
    assert alarm["Threshold"] == 1


def test_one_failure_one_email(alarms):
    # A failed run sends the state machine's own alert; an alarm on failed executions or on
    # Lambda errors would be a second and a third email about the same failure.
    metrics = {metric for metric, _ in alarms}
    assert not metrics & {"ExecutionsFailed", "Errors"}
    assert metrics == {
        "ExecutionsTimedOut",
        "ExecutionsAborted",
        "ExecutionsSucceeded",
        "Throttles",
    }


def test_freshness_alarm_breaches_when_nothing_succeeds_for_30_minutes(alarms):
    alarm = alarms[("ExecutionsSucceeded", STATE_MACHINE)]
    assert alarm["Period"] == 1800
    assert alarm["ComparisonOperator"] == "LessThanThreshold"
    assert alarm["TreatMissingData"] == "breaching"


def test_every_alarm_notifies_the_alert_topic(alarms):
    assert len(alarms) == 2 + 3 + 1
    for alarm in alarms.values():
        assert alarm["AlarmActions"] == [TOPIC]
        assert alarm["AlarmName"].startswith("terrific-totes-dev.")
        assert alarm["AlarmDescription"]


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives a file's headings."""
    headings = re.findall(r"^#+\s+(.+?)\s*$", markdown, re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def assert_each_links_its_runbook_section(alarms: dict) -> None:
    """Each alarm's description ends with the address of its docs/runbooks.md section."""
    anchors = github_anchors(RUNBOOKS.read_text())
    for alarm in alarms.values():
        name = alarm["AlarmName"].removeprefix("terrific-totes-dev.")
        link = f"Runbook: docs/runbooks.md#{runbook_anchor(name)}"
        assert alarm["AlarmDescription"].endswith(link)
        assert runbook_anchor(name) in anchors, f"docs/runbooks.md has no section for {name}"


def test_every_alarm_links_its_runbook_section(alarms):
    assert_each_links_its_runbook_section(alarms)


def test_a_run_that_failed_without_its_own_alert_is_emailed_as_it_ends(monitoring):
    [rule] = [render(r["Properties"]) for r in resources(monitoring, "AWS::Events::Rule").values()]
    assert rule["Name"] == "terrific-totes-dev.UnreportedFailure"  # the topic policy's pattern
    assert rule["EventPattern"] == {
        "source": ["aws.states"],
        "detail-type": ["Step Functions Execution Status Change"],
        "detail": {
            "stateMachineArn": [STATE_MACHINE],
            "status": ["FAILED"],
            "error": [{"anything-but": "PipelineFailed"}],  # the failure branch's own end
        },
    }
    [target] = rule["Targets"]
    assert target["Arn"] == TOPIC
    transformer = target["InputTransformer"]
    assert set(transformer["InputPathsMap"].values()) >= {
        "$.detail.name",
        "$.detail.error",
        "$.detail.cause",
        "$.detail.executionArn",
    }
    anchor = "alert-a-run-failed-without-its-own-alert"
    assert f"docs/runbooks.md#{anchor}" in transformer["InputTemplate"]
    assert anchor in github_anchors(RUNBOOKS.read_text())


def test_the_failure_branch_ends_in_the_error_the_rule_leaves_out():
    definition = (
        Path(__file__).resolve().parents[2] / "statemachine" / "pipeline.asl.json"
    ).read_text()
    assert '"Error": "PipelineFailed"' in definition


def test_no_freshness_alarm_while_the_schedule_is_off(synths):
    template = synths.vpc.template("Monitoring")
    names = {
        a["Properties"]["MetricName"]
        for a in resources(template, "AWS::CloudWatch::Alarm").values()
    }
    assert "ExecutionsSucceeded" not in names


def test_dashboard_shows_runs_functions_and_pipeline_metrics(monitoring):
    [dashboard] = resources(monitoring, "AWS::CloudWatch::Dashboard").values()
    assert dashboard["Properties"]["DashboardName"] == "TerrificTotes-dev-Pipeline"
    body = json.loads(render(dashboard["Properties"]["DashboardBody"]))
    text = json.dumps(body)
    for needle in (
        "ExecutionsStarted",
        "ExecutionsFailed",  # on the dashboard, not an alarm
        "ExecutionTime",
        '"Errors"',
        '"Throttles"',
        '"Duration"',
    ):
        assert needle in text, needle
    searches = [
        metric[0]["expression"]
        for widget in body["widgets"]
        for metric in widget.get("properties", {}).get("metrics", [])
        if isinstance(metric[0], dict) and "expression" in metric[0]
    ]
    for name in ("RowsExtracted", "RowsTransformed", "RowsLoaded", "RunDurationSeconds"):
        assert any(
            f'MetricName=\\"{name}\\"' in s or f'MetricName="{name}"' in s for s in searches
        ), name
    assert all('Namespace="TerrificTotes"' in s for s in searches)
