"""The app as a whole: synthesis needs nothing but Python and Node, cdk-nag guards it, and
its settings are documented where they are read."""

from __future__ import annotations

import json

import pytest
from aws_cdk import App, Stack, Validations
from aws_cdk import aws_s3 as s3
from cdk_nag import AwsSolutionsChecks

from stacks.config import DEFAULTS, PREFIX, ConfigError, DeployConfig
from stacks.nag_acknowledgments import Reason
from stacks.pipeline_app import cdk_json_context
from totes.schema.warehouse import WAREHOUSE_TABLE_NAMES

STACKS = (
    "Storage",
    "Alerts",
    "Functions",
    "Orchestration",
    "Monitoring",
    "Audit",
    "Analytics",
)


def test_synthesised_without_aws_credentials_or_docker(synths):
    # The session fixture ran both synths with no AWS_* variables, no ~/.aws and CDK_DOCKER
    # pointing nowhere; getting here means they succeeded, cdk-nag included.
    for assembly in (synths.default, synths.vpc):
        manifest = json.loads((assembly.outdir / "manifest.json").read_text())
        for stack in STACKS:
            artifact = manifest["artifacts"][f"TerrificTotes-dev-{stack}"]
            assert artifact["environment"] == "aws://unknown-account/unknown-region"


def test_unacknowledged_finding_fails_the_synth(tmp_path):
    app = App(outdir=str(tmp_path))
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    s3.Bucket(Stack(app, "Careless"), "Bucket")  # no TLS policy, no access log
    with pytest.raises(RuntimeError, match="AwsSolutions-S10"):
        app.synth()


def acknowledgments(assembly) -> list[dict]:
    """Every cdk-nag acknowledgment written into the templates' Metadata."""
    return [
        rule
        for stack in STACKS
        for resource in assembly.template(stack)["Resources"].values()
        for rule in resource.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", [])
    ]


def test_every_acknowledgment_is_one_of_the_reviewed_reasons(assembly):
    acknowledged = acknowledgments(assembly)
    assert {rule["reason"] for rule in acknowledged} <= {reason.value for reason in Reason}
    assert sorted({rule["id"] for rule in acknowledged}) == sorted(
        [
            "AwsSolutions-L1",
            "AwsSolutions-S1",
            "AwsSolutions-SNS2",
            "AwsSolutions-IAM5[Resource::*]",
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::terrific-totes-dev-ingestion-"
            "<AWS::AccountId>-<AWS::Region>/*]",
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::terrific-totes-dev-processed-"
            "<AWS::AccountId>-<AWS::Region>/*]",
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::terrific-totes-dev-ingestion-"
            "<AWS::AccountId>-<AWS::Region>/_skipped/*]",
            # The analysts' policy: each warehouse table's prefix, and the query results.
            *(
                "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::terrific-totes-dev-"
                f"processed-<AWS::AccountId>-<AWS::Region>/{table}/*]"
                for table in WAREHOUSE_TABLE_NAMES
            ),
            "AwsSolutions-IAM5[Resource::<AthenaResultsBucket879938FA.Arn>/results/*]",
        ]
    )


def test_every_reviewed_reason_is_in_use(synths):
    used = {rule["reason"] for rule in acknowledgments(synths.default)}
    used |= {rule["reason"] for rule in acknowledgments(synths.vpc)}
    assert used == {reason.value for reason in Reason}


def test_no_resource_is_exported_across_stacks(assembly):
    # The stacks find each other by name (stacks/names.py), never by Fn::ImportValue.
    for stack in STACKS:
        template = assembly.template(stack)
        assert "Fn::ImportValue" not in json.dumps(template)
        assert not [o for o in template.get("Outputs", {}).values() if "Export" in o]


def test_deploy_order_is_declared(assembly):
    manifest = json.loads((assembly.outdir / "manifest.json").read_text())

    def depends(stack: str) -> set[str]:
        return {
            d.removeprefix("TerrificTotes-dev-")
            for d in manifest["artifacts"][f"TerrificTotes-dev-{stack}"].get("dependencies", [])
            if not d.endswith(".assets")
        }

    assert depends("Functions") == {"Storage"}
    assert depends("Orchestration") == {"Functions", "Alerts"}
    assert depends("Monitoring") == {"Orchestration"}
    assert depends("Audit") == {"Alerts"}
    assert depends("Analytics") == {"Storage"}


def test_cdk_json_documents_every_setting_with_its_default():
    context = cdk_json_context()
    settings = {k.removeprefix(PREFIX): v for k, v in context.items() if k.startswith(PREFIX)}
    assert settings == DEFAULTS


def test_alert_email_is_optional_at_synth():
    # CI and a first `make synth` have none; the app then warns instead of subscribing.
    assert DeployConfig.from_mapping({}).alert_email == ""


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"alertEmail": "not-an-address"}, "alertEmail"),
        ({"schedule": "every 10 minutes"}, "schedule"),
        ({"auditSchedule": "hourly"}, "auditSchedule"),
        ({"vpcId": "vpc-1"}, "subnetIds"),
        ({"subnetIds": "subnet-1"}, "vpcId"),
        ({"removalPolicy": "snapshot"}, "removalPolicy"),
        ({"executionTimeoutSeconds": 3600}, "30-minute"),
        ({"retryIntervalSeconds": "soon"}, "retryIntervalSeconds"),
        ({"scheduleEnabled": "maybe"}, "scheduleEnabled"),
        ({"sourceDbSecret": " "}, "sourceDbSecret"),
    ],
)
def test_bad_settings_are_refused_with_the_key_named(values, message):
    with pytest.raises(ConfigError, match=message):
        DeployConfig.from_mapping(values)


def test_settings_from_strings_as_given_on_the_command_line():
    config = DeployConfig.from_mapping(
        {
            "vpcId": "vpc-1",
            "subnetIds": "subnet-a, subnet-b",
            "scheduleEnabled": "false",
            "removalPolicy": "DESTROY",
            "logRetentionDays": "30",
        }
    )
    assert config.in_vpc
    assert config.subnet_ids == ("subnet-a", "subnet-b")
    assert config.schedule_enabled is False
    assert config.retain_data is False
    assert config.log_retention_days == 30
