"""The state machine (from the one ASL file, substitutions complete) and its schedule."""

from __future__ import annotations

import json
import re

import pytest
from aws_cdk.assertions import Template

from tests.cdk.cfn import grants, one, render
from totes.contract import placeholders_in, read_definition

ARN = "arn:${AWS::Partition}"
IN_ACCOUNT = "${AWS::Region}:${AWS::AccountId}"


@pytest.fixture(scope="module")
def orchestration(assembly) -> dict:
    return assembly.template("Orchestration")


@pytest.fixture(scope="module")
def state_machine(orchestration) -> dict:
    return one(orchestration, "AWS::StepFunctions::StateMachine")[1]["Properties"]


def test_definition_is_the_asl_file_itself(state_machine, assembly):
    key = render(state_machine["DefinitionS3Location"]["Key"])
    assert (assembly.outdir / f"asset.{key}").read_text() == read_definition()
    assert "Definition" not in state_machine
    assert "DefinitionString" not in state_machine


def test_every_placeholder_is_substituted_and_nothing_else(state_machine):
    substitutions = render(state_machine["DefinitionSubstitutions"])
    assert set(substitutions) == placeholders_in(read_definition())
    expected = {
        "ExtractFunctionArn": f"{ARN}:lambda:{IN_ACCOUNT}:function:terrific-totes-dev-extract",
        "TransformFunctionArn": f"{ARN}:lambda:{IN_ACCOUNT}:function:terrific-totes-dev-transform",
        "LoadFunctionArn": f"{ARN}:lambda:{IN_ACCOUNT}:function:terrific-totes-dev-load",
        "AlertTopicArn": f"{ARN}:sns:{IN_ACCOUNT}:terrific-totes-dev-alerts",
        "RetryIntervalSeconds": "5",
        "ExecutionTimeoutSeconds": "1200",
        "Region": "${AWS::Region}",
    }
    assert {k: substitutions[k] for k in expected} == expected


def test_substituted_definition_is_valid_json_with_no_placeholder_left(state_machine):
    # What CloudFormation does at deploy time, with deploy-time values made concrete.
    concrete = {
        key: re.sub(r"\$\{[^}]+\}", "x", value)
        for key, value in render(state_machine["DefinitionSubstitutions"]).items()
    }
    text = re.sub(r"\$\{(\w+)\}", lambda m: concrete[m.group(1)], read_definition())
    assert "${" not in text
    definition = json.loads(text)
    assert definition["TimeoutSeconds"] == 1200
    tasks = [s for s in definition["States"].values() if s["Type"] == "Task"]
    retries = [r["IntervalSeconds"] for task in tasks for r in task.get("Retry", [])]
    assert retries
    assert set(retries) == {5}


def test_standard_type_logs_all_with_data_and_traces(state_machine, orchestration):
    assert state_machine["StateMachineType"] == "STANDARD"
    assert state_machine["StateMachineName"] == "terrific-totes-dev-pipeline"
    assert state_machine["TracingConfiguration"] == {"Enabled": True}
    logging = state_machine["LoggingConfiguration"]
    assert logging["Level"] == "ALL"
    assert logging["IncludeExecutionData"] is True
    [destination] = logging["Destinations"]
    log_group_id = destination["CloudWatchLogsLogGroup"]["LogGroupArn"]["Fn::GetAtt"][0]
    log_group = orchestration["Resources"][log_group_id]["Properties"]
    assert log_group["LogGroupName"].startswith("/aws/vendedlogs/states/")
    assert log_group["RetentionInDays"] == 90


def test_role_invokes_exactly_the_three_functions_and_publishes_to_the_topic(orchestration):
    allowed = grants(orchestration, "PipelineRole")
    invoke = {resource for action, resource in allowed if action == "lambda:InvokeFunction"}
    assert invoke == {
        f"{ARN}:lambda:{IN_ACCOUNT}:function:terrific-totes-dev-{stage}"
        for stage in ("extract", "transform", "load")
    }
    publish = {resource for action, resource in allowed if action == "sns:Publish"}
    assert publish == {f"{ARN}:sns:{IN_ACCOUNT}:terrific-totes-dev-alerts"}
    # '*' only for the log-delivery and X-Ray actions that have no resource-level form.
    star = {action for action, resource in allowed if resource == "*"}
    assert star
    assert all(action.startswith(("logs:", "xray:")) for action in star)


def test_schedule_starts_the_pipeline_every_ten_minutes_with_empty_input(orchestration):
    schedule = one(orchestration, "AWS::Scheduler::Schedule")[1]["Properties"]
    state_machine_id = one(orchestration, "AWS::StepFunctions::StateMachine")[0]
    assert schedule["ScheduleExpression"] == "rate(10 minutes)"
    assert schedule["State"] == "ENABLED"
    assert schedule["FlexibleTimeWindow"] == {"Mode": "OFF"}
    target = schedule["Target"]
    assert target["Arn"] == {"Ref": state_machine_id}
    assert json.loads(target["Input"]) == {}
    role_id = target["RoleArn"]["Fn::GetAtt"][0]
    assert grants(orchestration, role_id) == {
        ("states:StartExecution", "${" + state_machine_id + "}")
    }


def test_schedule_can_be_deployed_disabled(synths):
    template = Template.from_json(synths.vpc.template("Orchestration"))
    template.has_resource_properties("AWS::Scheduler::Schedule", {"State": "DISABLED"})
