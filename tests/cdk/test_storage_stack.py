"""The data lake buckets: private, TLS-only, encrypted, versioned, logged, retained."""

from __future__ import annotations

import pytest
from aws_cdk.assertions import Match, Template

from tests.cdk.cfn import render, resources

LAKES = ("ingestion", "processed")


@pytest.fixture(scope="module")
def storage(assembly) -> dict:
    return assembly.template("Storage")


def buckets_by_name(template: dict) -> dict[str, tuple[str, dict]]:
    named = {}
    for logical_id, bucket in resources(template, "AWS::S3::Bucket").items():
        name = render(bucket["Properties"]["BucketName"])
        short = name.removeprefix("terrific-totes-dev-").split("-${AWS::AccountId}")[0]
        named[short] = (logical_id, bucket)
    return named


def test_three_buckets_named_per_account_and_region(storage):
    names = {
        render(b["Properties"]["BucketName"])
        for b in resources(storage, "AWS::S3::Bucket").values()
    }
    assert names == {
        f"terrific-totes-dev-{kind}-${{AWS::AccountId}}-${{AWS::Region}}"
        for kind in ("ingestion", "processed", "access-logs")
    }


def test_every_bucket_is_private_encrypted_and_owner_enforced(storage):
    template = Template.from_json(storage)
    template.resource_count_is("AWS::S3::Bucket", 3)
    template.all_resources_properties(
        "AWS::S3::Bucket",
        {
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            },
            "BucketEncryption": {
                "ServerSideEncryptionConfiguration": [
                    {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
                ]
            },
            "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
        },
    )


def test_every_bucket_denies_requests_without_tls(storage):
    policies = resources(storage, "AWS::S3::BucketPolicy")
    assert len(policies) == 3
    for policy in policies.values():
        denies = [
            s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"
        ]
        assert {"Bool": {"aws:SecureTransport": "false"}} in [s["Condition"] for s in denies]
        assert any(s["Condition"] == {"NumericLessThan": {"s3:TlsVersion": 1.2}} for s in denies)


@pytest.mark.parametrize("lake", LAKES)
def test_lakes_are_versioned_expire_old_versions_and_log_access(storage, lake):
    _, bucket = buckets_by_name(storage)[lake]
    logs_id, _ = buckets_by_name(storage)["access-logs"]
    properties = bucket["Properties"]
    assert properties["VersioningConfiguration"] == {"Status": "Enabled"}
    rules = {rule["Id"]: rule for rule in properties["LifecycleConfiguration"]["Rules"]}
    assert rules["expire-noncurrent-versions"]["NoncurrentVersionExpiration"] == {
        "NoncurrentDays": 90
    }
    assert rules["expire-noncurrent-versions"]["Status"] == "Enabled"
    # Current objects never expire: the lake is the pipeline's history.
    assert all("ExpirationInDays" not in rule for rule in rules.values())
    assert properties["LoggingConfiguration"] == {
        "DestinationBucketName": {"Ref": logs_id},
        "LogFilePrefix": f"{lake}/",
    }


def test_buckets_are_retained_by_default(storage):
    Template.from_json(storage).all_resources(
        "AWS::S3::Bucket", {"DeletionPolicy": "Retain", "UpdateReplacePolicy": "Retain"}
    )


def test_destroy_removal_policy_is_honoured(synths):
    Template.from_json(synths.vpc.template("Storage")).all_resources(
        "AWS::S3::Bucket", {"DeletionPolicy": "Delete"}
    )


def test_access_log_bucket_s1_acknowledgment_travels_with_the_template(storage):
    _, logs_bucket = buckets_by_name(storage)["access-logs"]
    rules = logs_bucket["Metadata"]["cdk_nag"]["rules_to_suppress"]
    assert [rule["id"] for rule in rules] == ["AwsSolutions-S1"]
    assert "access log target" in rules[0]["reason"]
    Template.from_json(storage).has_resource(
        "AWS::S3::Bucket",
        {
            "Properties": {
                "LifecycleConfiguration": {"Rules": [Match.object_like({"ExpirationInDays": 365})]}
            }
        },
    )
