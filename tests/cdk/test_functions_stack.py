"""The three Lambdas: runtime, sizing, environment, logs, and least-privilege roles."""

from __future__ import annotations

import sys

import pytest
from aws_cdk import aws_lambda as lambda_
from aws_cdk.assertions import Template

from stacks.lambda_packaging import PYTHON_VERSION
from stacks.nag_acknowledgments import Reason
from tests.cdk.cfn import grants, one, render, resources, statements

ACCOUNT_REGION = "${AWS::AccountId}-${AWS::Region}"
INGESTION = f"arn:${{AWS::Partition}}:s3:::terrific-totes-dev-ingestion-{ACCOUNT_REGION}"
PROCESSED = f"arn:${{AWS::Partition}}:s3:::terrific-totes-dev-processed-{ACCOUNT_REGION}"
SECRET_ARN = "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:"
POWERTOOLS = {
    "POWERTOOLS_SERVICE_NAME": "totes",
    "POWERTOOLS_METRICS_NAMESPACE": "TerrificTotes",
    "LOG_LEVEL": "INFO",
}


@pytest.fixture(scope="module")
def functions(assembly) -> dict:
    return assembly.template("Functions")


def function(template: dict, stage: str) -> dict:
    return one(template, "AWS::Lambda::Function", stage.title())[1]["Properties"]


def test_runtime_is_the_python_the_tests_run_on_on_arm64(functions):
    tested = f"python{sys.version_info.major}.{sys.version_info.minor}"
    assert f"python{PYTHON_VERSION}" == tested
    Template.from_json(functions).all_resources_properties(
        "AWS::Lambda::Function",
        {"Runtime": tested, "Architectures": ["arm64"]},
    )


def test_an_older_runtime_than_the_newest_is_acknowledged_with_its_reason(functions):
    # cdk-nag's AwsSolutions-L1 compares against the same list (Runtime.ALL).
    pythons = [r.name for r in lambda_.Runtime.ALL if r.name.startswith("python3.")]
    newest = max(pythons, key=lambda name: int(name.split(".")[1]))
    for stage in ("extract", "transform", "load"):
        _, resource = one(functions, "AWS::Lambda::Function", stage.title())
        rules = resource.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", [])
        acknowledged = {rule["id"]: rule["reason"] for rule in rules}
        if f"python{PYTHON_VERSION}" == newest:
            assert "AwsSolutions-L1" not in acknowledged
        else:
            assert acknowledged["AwsSolutions-L1"] == Reason.RUNTIME_AS_TESTED.value


@pytest.mark.parametrize(
    ("stage", "memory", "timeout"),
    [("extract", 512, 300), ("transform", 2048, 600), ("load", 1024, 600)],
)
def test_handler_name_memory_and_timeout(functions, stage, memory, timeout):
    properties = function(functions, stage)
    assert properties["Handler"] == f"lambdas.{stage}.handler"
    assert properties["FunctionName"] == f"terrific-totes-dev-{stage}"
    assert properties["MemorySize"] == memory
    assert properties["Timeout"] == timeout
    assert "ReservedConcurrentExecutions" not in properties


def test_code_is_a_prebuilt_asset_per_function(functions, assembly):
    assets = set()
    for stage in ("extract", "transform", "load"):
        code = function(functions, stage)["Code"]
        assert set(code) == {"S3Bucket", "S3Key"}
        assets.add(code["S3Key"])
        folder = assembly.outdir / f"asset.{code['S3Key'].removesuffix('.zip')}"
        assert (folder / "lambdas" / f"{stage}.py").is_file()
    assert len(assets) == 3


@pytest.mark.parametrize(
    ("stage", "expected"),
    [
        (
            "extract",
            {
                "INGESTION_BUCKET": f"terrific-totes-dev-ingestion-{ACCOUNT_REGION}",
                "PROCESSED_BUCKET": f"terrific-totes-dev-processed-{ACCOUNT_REGION}",
                "SOURCE_DB_SECRET_ARN": SECRET_ARN + "totes/source-db",
            },
        ),
        (
            "transform",
            {
                "INGESTION_BUCKET": f"terrific-totes-dev-ingestion-{ACCOUNT_REGION}",
                "PROCESSED_BUCKET": f"terrific-totes-dev-processed-{ACCOUNT_REGION}",
            },
        ),
        (
            "load",
            {
                "INGESTION_BUCKET": f"terrific-totes-dev-ingestion-{ACCOUNT_REGION}",
                "PROCESSED_BUCKET": f"terrific-totes-dev-processed-{ACCOUNT_REGION}",
                "WAREHOUSE_DB_SECRET_ARN": SECRET_ARN + "totes/warehouse-db",
            },
        ),
    ],
)
def test_environment_is_exactly_what_the_handler_reads(functions, stage, expected):
    variables = render(function(functions, stage)["Environment"]["Variables"])
    assert variables == {**POWERTOOLS, **expected}


@pytest.mark.parametrize("stage", ["extract", "transform", "load"])
def test_each_function_logs_as_json_to_its_own_group_with_retention(functions, stage):
    log_group_id, log_group = one(functions, "AWS::Logs::LogGroup", stage.title())
    assert log_group["Properties"]["LogGroupName"] == f"/aws/lambda/terrific-totes-dev-{stage}"
    assert log_group["Properties"]["RetentionInDays"] == 90
    assert log_group["DeletionPolicy"] == "Retain"
    assert function(functions, stage)["LoggingConfig"] == {
        "LogFormat": "JSON",
        "LogGroup": {"Ref": log_group_id},
    }
    # Writing to its own group only: no AWSLambdaBasicExecutionRole (any log group).
    assert (
        "logs:PutLogEvents",
        "${" + log_group_id + ".Arn}",
    ) in grants(functions, f"{stage.title()}Role")


def test_roles_have_no_managed_policies_outside_a_vpc(functions):
    for role in resources(functions, "AWS::IAM::Role").values():
        assert "ManagedPolicyArns" not in role["Properties"]


def _data_grants(template: dict, stage: str) -> set[tuple[str, str]]:
    return {
        (action, resource)
        for action, resource in grants(template, f"{stage.title()}Role")
        if not action.startswith("logs:")
    }


def test_extract_grants(functions):
    assert _data_grants(functions, "extract") == {
        ("s3:GetObject", f"{INGESTION}/*"),
        ("s3:PutObject", f"{INGESTION}/*"),
        ("s3:AbortMultipartUpload", f"{INGESTION}/*"),  # a streamed CSV that failed
        ("s3:ListBucket", INGESTION),
        ("secretsmanager:GetSecretValue", SECRET_ARN + "totes/source-db-??????"),
    }  # nothing of the processed lake


def test_transform_grants(functions):
    assert _data_grants(functions, "transform") == {
        ("s3:GetObject", f"{INGESTION}/*"),
        ("s3:ListBucket", INGESTION),
        ("s3:GetObject", f"{PROCESSED}/*"),
        ("s3:PutObject", f"{PROCESSED}/*"),
        ("s3:ListBucket", PROCESSED),
    }


def test_load_grants(functions):
    assert _data_grants(functions, "load") == {
        ("s3:GetObject", f"{PROCESSED}/*"),
        ("s3:ListBucket", PROCESSED),
        ("s3:GetObject", f"{INGESTION}/_skipped/*"),
        ("s3:ListBucket", INGESTION),
        ("secretsmanager:GetSecretValue", SECRET_ARN + "totes/warehouse-db-??????"),
    }  # it writes nothing to the lake
    # The ingestion lake: only the operators' skip records.
    [listing] = [s for s in statements(functions, "LoadRole") if s["Resource"] == [INGESTION]]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["_skipped/", "_skipped/*"]}}


def test_no_broad_or_destructive_action_anywhere(assembly):
    for stack in ("Storage", "Alerts", "Functions", "Orchestration", "Monitoring"):
        template = assembly.template(stack)
        for policy in resources(template, "AWS::IAM::Policy").values():
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
                actions = statement["Action"]
                for action in actions if isinstance(actions, list) else [actions]:
                    assert action not in {"*", "s3:*", "secretsmanager:*", "lambda:*"}
                    assert "Delete" not in action or action == "logs:DeleteLogDelivery", action
                    assert not action.endswith("*"), action


def test_vpc_placement_when_configured(synths):
    template = synths.vpc.template("Functions")
    for stage in ("extract", "transform", "load"):
        assert function(template, stage)["VpcConfig"] == {
            "SubnetIds": ["subnet-0aaa1111bbb22222a", "subnet-0ccc3333ddd44444b"],
            "SecurityGroupIds": ["sg-0eee5555fff66666c"],
        }
        role = one(template, "AWS::IAM::Role", f"{stage.title()}Role")[1]
        assert render(role["Properties"]["ManagedPolicyArns"]) == [
            "arn:${AWS::Partition}:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"
        ]
    # Nothing to look up at synth: no VPC, subnet or security group is created either.
    assert not [r for r in template["Resources"].values() if r["Type"].startswith("AWS::EC2::")]
