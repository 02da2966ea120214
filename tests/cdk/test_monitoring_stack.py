"""Alarms (every one notifies the alert topic) and the dashboard."""

from __future__ import annotations

import json

import pytest

from tests.cdk.cfn import render, resources

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


@pytest.mark.parametrize("metric", ["ExecutionsFailed", "ExecutionsTimedOut", "ExecutionsAborted"])
def test_state_machine_alarms(alarms, metric):
    alarm = alarms[(metric, STATE_MACHINE)]
    assert alarm["Namespace"] == "AWS/States"
    assert alarm["Statistic"] == "Sum"
    assert alarm["Threshold"] == 1
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert alarm["TreatMissingData"] == "notBreaching"


@pytest.mark.parametrize("stage", ["extract", "transform", "load"])
@pytest.mark.parametrize("metric", ["Errors", "Throttles"])
def test_function_alarms(alarms, stage, metric):
    alarm = alarms[(metric, f"terrific-totes-dev-{stage}")]
    assert alarm["Namespace"] == "AWS/Lambda"
    assert alarm["Threshold"] == 1


def test_freshness_alarm_breaches_when_nothing_succeeds_for_30_minutes(alarms):
    alarm = alarms[("ExecutionsSucceeded", STATE_MACHINE)]
    assert alarm["Period"] == 1800
    assert alarm["ComparisonOperator"] == "LessThanThreshold"
    assert alarm["TreatMissingData"] == "breaching"


def test_every_alarm_notifies_the_alert_topic(alarms):
    assert len(alarms) == 3 + 6 + 1
    for alarm in alarms.values():
        assert alarm["AlarmActions"] == [TOPIC]
        assert alarm["AlarmDescription"]


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
        "ExecutionsFailed",
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
