"""The processed lake in Athena: Glue tables from the one schema, partitions projected from
the lake's key layout (no crawler), an enforced, encrypted workgroup, the analysts' policy."""

from __future__ import annotations

import pytest
from aws_cdk.assertions import Template

from tests.cdk.cfn import one, render, resources
from totes.pipeline.lake import parquet_key
from totes.schema.warehouse import WAREHOUSE_TABLE_NAMES, WAREHOUSE_TABLES

PROCESSED = "terrific-totes-dev-processed-${AWS::AccountId}-${AWS::Region}"
BATCH = "20261127T130501123456Z"


@pytest.fixture(scope="module")
def analytics(assembly) -> dict:
    return assembly.template("Analytics")


def glue_tables(template: dict) -> dict[str, dict]:
    return {
        t["Properties"]["TableInput"]["Name"]: render(t["Properties"])
        for t in resources(template, "AWS::Glue::Table").values()
    }


def test_one_database_and_one_table_per_warehouse_table_and_no_crawler(analytics):
    template = Template.from_json(analytics)
    template.resource_count_is("AWS::Glue::Database", 1)
    template.resource_count_is("AWS::Glue::Crawler", 0)
    _, database = one(analytics, "AWS::Glue::Database")
    assert database["Properties"]["DatabaseInput"]["Name"] == "terrific_totes_dev"
    tables = glue_tables(analytics)
    assert sorted(tables) == sorted(WAREHOUSE_TABLE_NAMES)
    assert {t["DatabaseName"] for t in tables.values()} == {"terrific_totes_dev"}


def test_columns_are_the_schemas_in_order_with_types_athena_reads(analytics):
    tables = glue_tables(analytics)
    for table in WAREHOUSE_TABLES:
        columns = tables[table.name]["TableInput"]["StorageDescriptor"]["Columns"]
        assert [c["Name"] for c in columns] == list(table.column_names)
    sales = {
        c["Name"]: c["Type"]
        for c in tables["fact_sales_order"]["TableInput"]["StorageDescriptor"]["Columns"]
    }
    assert sales["sales_order_id"] == "int"
    assert sales["created_date"] == "date"
    assert sales["created_time"] == "string"  # 'HH:MM:SS.fff': Athena has no Parquet TIME
    assert sales["unit_price"] == "decimal(10,2)"
    payment = tables["fact_payment"]["TableInput"]["StorageDescriptor"]["Columns"]
    assert {"Name": "paid", "Type": "boolean"} in payment


def test_tables_read_the_parquet_of_the_processed_bucket(analytics):
    for name, table in glue_tables(analytics).items():
        descriptor = table["TableInput"]["StorageDescriptor"]
        assert descriptor["Location"] == f"s3://{PROCESSED}/{name}/"
        assert descriptor["SerdeInfo"]["SerializationLibrary"].endswith("ParquetHiveSerDe")
        assert table["TableInput"]["TableType"] == "EXTERNAL_TABLE"
        assert table["TableInput"]["Parameters"]["classification"] == "parquet"


def test_partitions_are_projected_onto_the_lakes_own_keys(analytics):
    for name, table in glue_tables(analytics).items():
        parameters = table["TableInput"]["Parameters"]
        assert table["TableInput"]["PartitionKeys"][0]["Name"] == "batch_date"
        assert parameters["projection.enabled"] == "true"
        assert parameters["projection.batch_date.type"] == "date"
        assert parameters["projection.batch_date.format"] == "yyyy/MM/dd"
        assert parameters["projection.batch_date.range"].endswith(",NOW")
        # The folder a batch_date projects to is where the transform writes that batch.
        folder = parameters["storage.location.template"].replace("${batch_date}", "2026/11/27")
        assert f"s3://{PROCESSED}/{parquet_key(name, BATCH)}".startswith(folder)
        assert parquet_key(name, BATCH).count("/") == folder.count("/") - 3  # s3://bucket/


def test_the_workgroup_enforces_encrypted_results_in_its_own_bucket(analytics):
    _, workgroup = one(analytics, "AWS::Athena::WorkGroup")
    properties = render(workgroup["Properties"])
    assert properties["Name"] == "terrific-totes-dev-analysts"
    configuration = properties["WorkGroupConfiguration"]
    assert configuration["EnforceWorkGroupConfiguration"] is True
    assert configuration["PublishCloudWatchMetricsEnabled"] is True
    assert configuration["BytesScannedCutoffPerQuery"] > 0
    assert configuration["EngineVersion"]["SelectedEngineVersion"] == "Athena engine version 3"
    results = configuration["ResultConfiguration"]
    assert results["EncryptionConfiguration"] == {"EncryptionOption": "SSE_S3"}
    assert results["OutputLocation"] == (
        "s3://terrific-totes-dev-athena-${AWS::AccountId}-${AWS::Region}/results/"
    )


def test_the_results_bucket_is_private_encrypted_tls_only_and_expires_results(analytics):
    _, bucket = one(analytics, "AWS::S3::Bucket")
    properties = render(bucket["Properties"])
    assert properties["BucketName"] == "terrific-totes-dev-athena-${AWS::AccountId}-${AWS::Region}"
    assert properties["BucketEncryption"]["ServerSideEncryptionConfiguration"] == [
        {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
    ]
    assert all(properties["PublicAccessBlockConfiguration"].values())
    (rule,) = properties["LifecycleConfiguration"]["Rules"]
    assert rule["ExpirationInDays"] == 30
    _, policy = one(analytics, "AWS::S3::BucketPolicy")
    conditions = [s.get("Condition") for s in policy["Properties"]["PolicyDocument"]["Statement"]]
    assert {"Bool": {"aws:SecureTransport": "false"}} in conditions


def test_analysts_may_query_read_the_tables_and_write_results_only(analytics):
    _, policy = one(analytics, "AWS::IAM::ManagedPolicy")
    statements = render(policy["Properties"]["PolicyDocument"]["Statement"])
    allowed = {
        (action, resource)
        for s in statements
        for action in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
        for resource in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]])
    }
    actions = {a for a, _ in allowed}
    assert not [a for a in actions if a.endswith("*") or "Delete" in a]
    reads = {r for a, r in allowed if a == "s3:GetObject"}
    lake_reads = {r for r in reads if PROCESSED in r}
    assert lake_reads == {
        f"arn:${{AWS::Partition}}:s3:::{PROCESSED}/{t}/*" for t in WAREHOUSE_TABLE_NAMES
    }
    writes = {r for a, r in allowed if a == "s3:PutObject"}
    assert writes == {"${AthenaResultsBucket879938FA.Arn}/results/*"}
    assert (
        "athena:StartQueryExecution",
        "arn:${AWS::Partition}:athena:${AWS::Region}:${AWS::AccountId}:workgroup/"
        "terrific-totes-dev-analysts",
    ) in allowed


def test_another_environment_gets_its_own_database_workgroup_and_policy(synths):
    prod = synths.prod.template("Analytics")
    _, database = one(prod, "AWS::Glue::Database")
    assert database["Properties"]["DatabaseInput"]["Name"] == "terrific_totes_prod"
    assert {t["DatabaseName"] for t in glue_tables(prod).values()} == {"terrific_totes_prod"}
    _, workgroup = one(prod, "AWS::Athena::WorkGroup")
    assert workgroup["Properties"]["Name"] == "terrific-totes-prod-analysts"
    _, policy = one(prod, "AWS::IAM::ManagedPolicy")
    assert policy["Properties"]["ManagedPolicyName"] == "terrific-totes-prod-analyst-query"
