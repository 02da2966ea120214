"""Two deployments in one account: every physical name carries its environment, and every
resource carries the cost tags (project, environment, owner)."""

from __future__ import annotations

import json

import pytest

from tests.cdk.cfn import render

STACKS = ("Storage", "Alerts", "Functions", "Orchestration", "Monitoring", "Audit", "Analytics")
# The properties that name a resource in the account (two deployments must not share one).
NAME_PROPERTIES = (
    "BucketName",
    "TopicName",
    "FunctionName",
    "LogGroupName",
    "StateMachineName",
    "AlarmName",
    "DashboardName",
    "Name",  # the schedule
)
# What a cost report can be grouped by.
TAGGABLE = (
    "AWS::S3::Bucket",
    "AWS::SNS::Topic",
    "AWS::Lambda::Function",
    "AWS::IAM::Role",
    "AWS::Logs::LogGroup",
    "AWS::StepFunctions::StateMachine",
)


def physical_names(assembly) -> dict[str, str]:
    """name -> where it is declared, for every resource the deployment names itself."""
    names = {}
    for stack in STACKS:
        for logical_id, resource in assembly.template(stack)["Resources"].items():
            properties = render(resource.get("Properties", {}))
            for key in NAME_PROPERTIES:
                value = properties.get(key)
                # A reference to another resource (${Logical}) is not a name of its own.
                if isinstance(value, str) and not value.startswith("${"):
                    names[value] = f"{stack}/{logical_id}.{key}"
    return names


def test_two_environments_share_no_physical_name(synths):
    dev, prod = physical_names(synths.default), physical_names(synths.prod)
    assert len(dev) == len(prod) >= 15
    assert not set(dev) & set(prod)
    assert all("dev" in name for name in dev) and all("prod" in name for name in prod)


def test_stack_names_carry_the_environment(synths):
    manifest = json.loads((synths.prod.outdir / "manifest.json").read_text())
    stacks = {
        name
        for name, artifact in manifest["artifacts"].items()
        if artifact["type"] == "aws:cloudformation:stack"
    }
    assert stacks == {f"TerrificTotes-prod-{stack}" for stack in STACKS}


@pytest.mark.parametrize(
    ("label", "environment", "owner"),
    [("default", "dev", "data-engineering"), ("prod", "prod", "finance-analytics")],
)
def test_every_resource_carries_the_cost_tags(synths, label, environment, owner):
    assembly = getattr(synths, label)
    expected = {"project": "terrific-totes", "environment": environment, "owner": owner}
    tagged = 0
    for stack in STACKS:
        for logical_id, resource in assembly.template(stack)["Resources"].items():
            if resource["Type"] not in TAGGABLE:
                continue
            tags = resource["Properties"].get("Tags", [])
            if isinstance(tags, dict):  # the state machine's shape
                tags = [{"Key": k, "Value": v} for k, v in tags.items()]
            found = {tag["Key"]: tag["Value"] for tag in tags}
            assert {k: found.get(k) for k in expected} == expected, f"{stack}/{logical_id}"
            tagged += 1
    assert tagged >= 15


def test_alarm_descriptions_link_the_runbook_url_of_their_environment(synths):
    descriptions = [
        alarm["Properties"]["AlarmDescription"]
        for alarm in synths.prod.template("Monitoring")["Resources"].values()
        if alarm["Type"] == "AWS::CloudWatch::Alarm"
    ]
    assert descriptions
    for description in descriptions:
        assert "Runbook: https://git.example.com/totes/blob/main/docs/runbooks.md#alarm-" in (
            description
        )
