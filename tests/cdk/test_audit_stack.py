"""The scheduled audit: its function, least-privilege roles, schedule and alarms."""

from __future__ import annotations

import json

import pytest

from stacks.config import DEFAULTS
from tests.cdk.cfn import grants, one, render, resources
from tests.cdk.test_monitoring_stack import assert_each_links_its_runbook_section
from totes.contract import AUDIT_TOTAL, DIFFERENCES_METRIC, METRICS_NAMESPACE

SECRET_ARN = "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:"
TOPIC = "arn:${AWS::Partition}:sns:${AWS::Region}:${AWS::AccountId}:terrific-totes-dev-alerts"


@pytest.fixture(scope="module")
def audit(assembly) -> dict:
    return assembly.template("Audit")


def function(template: dict) -> tuple[str, dict]:
    function_id, resource = one(template, "AWS::Lambda::Function")
    return function_id, resource["Properties"]


def test_the_function_runs_the_audit_handler_from_its_own_package(audit, assembly):
    _, properties = function(audit)
    assert properties["FunctionName"] == "terrific-totes-dev-audit"
    assert properties["Handler"] == "lambdas.audit.handler"
    assert properties["Architectures"] == ["arm64"]
    assert properties["Timeout"] == 900
    folder = assembly.outdir / f"asset.{properties['Code']['S3Key'].removesuffix('.zip')}"
    assert (folder / "lambdas" / "audit.py").is_file()


def test_environment_names_the_two_secrets_and_nothing_of_the_lake(audit):
    variables = render(function(audit)[1]["Environment"]["Variables"])
    assert variables["SOURCE_DB_SECRET_ARN"] == SECRET_ARN + "totes/source-db"
    assert variables["WAREHOUSE_DB_SECRET_ARN"] == SECRET_ARN + "totes/warehouse-db"
    assert not {"LAKE", "INGESTION_BUCKET", "PROCESSED_BUCKET"} & set(variables)


def test_the_role_reads_the_two_secrets_and_writes_its_own_logs_only(audit):
    _, properties = function(audit)
    log_group_id, log_group = one(audit, "AWS::Logs::LogGroup")
    assert log_group["Properties"]["LogGroupName"] == "/aws/lambda/terrific-totes-dev-audit"
    assert log_group["Properties"]["RetentionInDays"] == 90
    assert properties["LoggingConfig"] == {"LogFormat": "JSON", "LogGroup": {"Ref": log_group_id}}
    role_id = properties["Role"]["Fn::GetAtt"][0]
    assert grants(audit, role_id) == {
        ("logs:CreateLogStream", "${" + log_group_id + ".Arn}"),
        ("logs:PutLogEvents", "${" + log_group_id + ".Arn}"),
        ("secretsmanager:GetSecretValue", SECRET_ARN + "totes/source-db-??????"),
        ("secretsmanager:GetSecretValue", SECRET_ARN + "totes/warehouse-db-??????"),
    }
    assert "ManagedPolicyArns" not in one(audit, "AWS::IAM::Role", role_id)[1]["Properties"]


def test_the_schedule_invokes_the_function_alone_hourly_and_never_retries(audit):
    function_id, _ = function(audit)
    schedule = one(audit, "AWS::Scheduler::Schedule")[1]["Properties"]
    assert schedule["ScheduleExpression"] == DEFAULTS["auditSchedule"] == "rate(1 hour)"
    assert schedule["State"] == "ENABLED"
    target = schedule["Target"]
    assert target["Arn"] == {"Fn::GetAtt": [function_id, "Arn"]}
    assert json.loads(target["Input"]) == {}
    assert target["RetryPolicy"]["MaximumRetryAttempts"] == 0
    role_id = target["RoleArn"]["Fn::GetAtt"][0]
    # The function itself: not every version and alias of it (<arn>:*).
    assert grants(audit, role_id) == {("lambda:InvokeFunction", "${" + function_id + ".Arn}")}
    trust = one(audit, "AWS::IAM::Role", role_id)[1]["Properties"]["AssumeRolePolicyDocument"]
    [statement] = render(trust["Statement"])
    assert statement["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert statement["Condition"] == {"StringEquals": {"aws:SourceAccount": "${AWS::AccountId}"}}
    invoke_config = one(audit, "AWS::Lambda::EventInvokeConfig")[1]["Properties"]
    assert invoke_config["MaximumRetryAttempts"] == 0


def test_the_schedule_is_disabled_with_the_pipelines(synths):
    schedule = one(synths.vpc.template("Audit"), "AWS::Scheduler::Schedule")[1]
    assert schedule["Properties"]["State"] == "DISABLED"


@pytest.fixture(scope="module")
def alarms(audit) -> dict[str, dict]:
    return {
        properties["MetricName"]: properties
        for properties in (
            render(alarm["Properties"])
            for alarm in resources(audit, "AWS::CloudWatch::Alarm").values()
        )
    }


def test_any_difference_alarms_to_the_topic_until_an_audit_finds_none(alarms):
    alarm = alarms[DIFFERENCES_METRIC]
    assert alarm["Namespace"] == METRICS_NAMESPACE
    # Exactly what lambdas/audit.py publishes (Powertools adds the service).
    assert sorted((d["Name"], d["Value"]) for d in alarm["Dimensions"]) == [
        ("service", "totes"),
        ("table", AUDIT_TOTAL),
    ]
    assert (alarm["Statistic"], alarm["Threshold"]) == ("Maximum", 0)
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert alarm["TreatMissingData"] == "ignore"  # between audits: the latest result holds
    assert alarm["AlarmActions"] == [TOPIC]


def test_a_failed_audit_alarms_too(alarms):
    alarm = alarms["Errors"]
    assert alarm["Namespace"] == "AWS/Lambda"
    assert alarm["Dimensions"] == [{"Name": "FunctionName", "Value": "terrific-totes-dev-audit"}]
    assert alarm["AlarmActions"] == [TOPIC]
    assert len(alarms) == 2


def test_each_alarm_links_its_runbook_section(alarms):
    assert_each_links_its_runbook_section(alarms)


def test_no_broad_action_and_only_the_runtime_acknowledged(audit):
    for policy in resources(audit, "AWS::IAM::Policy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = statement["Action"]
            for action in actions if isinstance(actions, list) else [actions]:
                assert not action.endswith("*"), action
    acknowledged = {
        rule["id"]
        for resource in audit["Resources"].values()
        for rule in resource.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", [])
    }
    # The functions run the Python the tests run on (see stacks/functions_stack.py).
    assert acknowledged <= {"AwsSolutions-L1"}


def test_in_a_vpc_it_runs_where_the_databases_are(synths):
    template = synths.vpc.template("Audit")
    assert function(template)[1]["VpcConfig"] == {
        "SubnetIds": ["subnet-0aaa1111bbb22222a", "subnet-0ccc3333ddd44444b"],
        "SecurityGroupIds": ["sg-0eee5555fff66666c"],
    }
    role = one(template, "AWS::IAM::Role", "AuditRole")[1]
    assert render(role["Properties"]["ManagedPolicyArns"]) == [
        "arn:${AWS::Partition}:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"
    ]
