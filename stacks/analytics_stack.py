"""The processed lake, queryable in place with Athena: a Glue database with one table per
warehouse table over the Parquet files, an Athena workgroup with its results bucket, and a
managed policy that lets analysts query (attach it to their role or group).

- Columns and types come from the one schema (``totes.schema.warehouse``); times of day
  are text in the Parquet ('HH:MM:SS.fff'), since Athena cannot read Parquet TIME.
- Partitions are projected from the key layout (``totes.pipeline.lake.parquet_key``:
  ``<table>/<yyyy>/<mm>/<dd>/<batch_id>.parquet``), so there is no crawler and no partition
  to add: a batch written today is queryable at once. ``batch_date`` ('2024/11/15') is the
  batch's UTC day; filtering on it reads only those days' files.
- The workgroup enforces its settings: results go to its own bucket, encrypted (SSE-S3),
  and expire after a month; a query that would scan more than the cutoff is cancelled.
- The lake keeps every version of every row, one file per batch; the warehouse's
  ``*_current`` views pick the current one (README, "Querying the lake with Athena").
"""

from __future__ import annotations

from aws_cdk import Aws, Duration, RemovalPolicy, Stack
from aws_cdk import aws_athena as athena
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from stacks.config import DeployConfig
from stacks.nag_acknowledgments import Reason, acknowledge, acknowledge_wildcards
from totes.schema.warehouse import WAREHOUSE_TABLES, Column, WarehouseTable

RESULT_DAYS = 30
BYTES_SCANNED_CUTOFF = 10 * 1024**3  # 10 GiB a query: the whole lake is far smaller
PARTITION_KEY = "batch_date"
# The first day a batch can carry; projection stops at today (UTC).
FIRST_BATCH_DAY = "2022/01/01"

# Warehouse column types (totes.schema.warehouse pg_type) -> Athena (Hive DDL) types.
ATHENA_TYPES = {
    "integer": "int",
    "date": "date",
    "time(3)": "string",  # 'HH:MM:SS.fff' in the Parquet
    "numeric(10,2)": "decimal(10,2)",
    "boolean": "boolean",
    "text": "string",
}
PARQUET_SERDE = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
PARQUET_INPUT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
PARQUET_OUTPUT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"


def athena_type(column: Column) -> str:
    return ATHENA_TYPES[column.pg_type]


def table_location(bucket: str, table: WarehouseTable) -> str:
    return f"s3://{bucket}/{table.name}/"


def location_template(bucket: str, table: WarehouseTable) -> str:
    """Where a ``batch_date``'s files are: the folder ``parquet_key`` puts them in."""
    return f"{table_location(bucket, table)}${{{PARTITION_KEY}}}/"


def glue_table_input(bucket: str, table: WarehouseTable) -> glue.CfnTable.TableInputProperty:
    return glue.CfnTable.TableInputProperty(
        name=table.name,
        description=(
            f"Terrific Totes {table.kind} {table.name}, as the processed lake holds it: "
            + (
                "every version of every row, one file per batch"
                if table.kind == "fact"
                else "the rows each batch wrote (the latest batch's row is current)"
            )
        ),
        table_type="EXTERNAL_TABLE",
        parameters={
            "classification": "parquet",
            "projection.enabled": "true",
            f"projection.{PARTITION_KEY}.type": "date",
            f"projection.{PARTITION_KEY}.format": "yyyy/MM/dd",
            f"projection.{PARTITION_KEY}.range": f"{FIRST_BATCH_DAY},NOW",
            f"projection.{PARTITION_KEY}.interval": "1",
            f"projection.{PARTITION_KEY}.interval.unit": "DAYS",
            "storage.location.template": location_template(bucket, table),
        },
        partition_keys=[
            glue.CfnTable.ColumnProperty(
                name=PARTITION_KEY,
                type="string",
                comment="The batch's UTC day, yyyy/MM/dd, as in the object key",
            )
        ],
        storage_descriptor=glue.CfnTable.StorageDescriptorProperty(
            location=table_location(bucket, table),
            input_format=PARQUET_INPUT,
            output_format=PARQUET_OUTPUT,
            serde_info=glue.CfnTable.SerdeInfoProperty(serialization_library=PARQUET_SERDE),
            columns=[
                glue.CfnTable.ColumnProperty(
                    name=c.name,
                    type=athena_type(c),
                    comment="nullable" if c.nullable else None,
                )
                for c in table.columns
            ],
        ),
    )


class AnalyticsStack(Stack):
    """Glue tables over the processed lake, the Athena workgroup, the analysts' policy."""

    def __init__(self, scope: Construct, construct_id: str, *, config: DeployConfig, **kwargs):
        super().__init__(scope, construct_id, **kwargs)
        names = config.names
        removal = RemovalPolicy.RETAIN if config.retain_data else RemovalPolicy.DESTROY

        self.results_bucket = s3.Bucket(
            self,
            "AthenaResultsBucket",
            bucket_name=names.athena_results_bucket,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-query-results",
                    expiration=Duration.days(RESULT_DAYS),
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                )
            ],
            # Query results can always be made again: nothing here needs keeping.
            removal_policy=removal,
        )
        acknowledge(self.results_bucket, "AwsSolutions-S1", Reason.ATHENA_RESULTS_NOT_LOGGED)

        self.database = glue.CfnDatabase(
            self,
            "Database",
            catalog_id=Aws.ACCOUNT_ID,
            database_input=glue.CfnDatabase.DatabaseInputProperty(
                name=names.glue_database,
                description="Terrific Totes: the processed data lake (Parquet), one table per "
                "warehouse table",
            ),
        )
        self.tables: dict[str, glue.CfnTable] = {}
        for table in WAREHOUSE_TABLES:
            cfn_table = glue.CfnTable(
                self,
                f"Table{table.name.title().replace('_', '')}",
                catalog_id=Aws.ACCOUNT_ID,
                database_name=names.glue_database,
                table_input=glue_table_input(names.processed_bucket, table),
            )
            cfn_table.node.add_dependency(self.database)
            self.tables[table.name] = cfn_table

        self.workgroup = athena.CfnWorkGroup(
            self,
            "WorkGroup",
            name=names.athena_workgroup,
            description="Terrific Totes analysts: queries over the processed lake",
            state="ENABLED",
            recursive_delete_option=True,  # its saved queries and history go with it
            work_group_configuration=athena.CfnWorkGroup.WorkGroupConfigurationProperty(
                enforce_work_group_configuration=True,
                publish_cloud_watch_metrics_enabled=True,
                bytes_scanned_cutoff_per_query=BYTES_SCANNED_CUTOFF,
                engine_version=athena.CfnWorkGroup.EngineVersionProperty(
                    selected_engine_version="Athena engine version 3"
                ),
                result_configuration=athena.CfnWorkGroup.ResultConfigurationProperty(
                    output_location=f"s3://{names.athena_results_bucket}/results/",
                    expected_bucket_owner=Aws.ACCOUNT_ID,
                    encryption_configuration=athena.CfnWorkGroup.EncryptionConfigurationProperty(
                        encryption_option="SSE_S3"
                    ),
                ),
            ),
        )
        self.workgroup.node.add_dependency(self.results_bucket)

        self.analyst_policy = self._analyst_policy(names)

    def _analyst_policy(self, names) -> iam.ManagedPolicy:
        """What an analyst needs to query the lake in this workgroup, and nothing more."""
        partition = Aws.PARTITION
        region, account = Aws.REGION, Aws.ACCOUNT_ID
        glue_arn = f"arn:{partition}:glue:{region}:{account}"
        processed = f"arn:{partition}:s3:::{names.processed_bucket}"
        results = self.results_bucket.bucket_arn
        table_arns = [f"{glue_arn}:table/{names.glue_database}/{t.name}" for t in WAREHOUSE_TABLES]
        processed_objects = [f"{processed}/{t.name}/*" for t in WAREHOUSE_TABLES]
        statements = [
            iam.PolicyStatement(
                sid="QueryInTheWorkgroup",
                actions=[
                    "athena:StartQueryExecution",
                    "athena:StopQueryExecution",
                    "athena:GetQueryExecution",
                    "athena:GetQueryResults",
                    "athena:GetQueryRuntimeStatistics",
                    "athena:ListQueryExecutions",
                    "athena:BatchGetQueryExecution",
                    "athena:GetWorkGroup",
                ],
                resources=[
                    f"arn:{partition}:athena:{region}:{account}:workgroup/{names.athena_workgroup}"
                ],
            ),
            iam.PolicyStatement(
                sid="ReadTheCatalog",
                actions=[
                    "glue:GetDatabase",
                    "glue:GetTable",
                    "glue:GetTables",
                    "glue:GetPartition",
                    "glue:GetPartitions",
                ],
                resources=[
                    f"{glue_arn}:catalog",
                    f"{glue_arn}:database/{names.glue_database}",
                    *table_arns,
                ],
            ),
            iam.PolicyStatement(
                sid="ReadTheLakeTables",
                actions=["s3:GetObject"],
                resources=processed_objects,
            ),
            iam.PolicyStatement(
                sid="ListTheLakeTables",
                actions=["s3:ListBucket"],
                resources=[processed],
                conditions={"StringLike": {"s3:prefix": [f"{t.name}/*" for t in WAREHOUSE_TABLES]}},
            ),
            iam.PolicyStatement(
                sid="LocateTheLake",
                actions=["s3:GetBucketLocation"],
                resources=[processed],
            ),
            iam.PolicyStatement(
                sid="ReadAndWriteQueryResults",
                actions=[
                    "s3:GetObject",
                    "s3:PutObject",
                    "s3:AbortMultipartUpload",
                    "s3:ListMultipartUploadParts",
                ],
                resources=[f"{results}/results/*"],
            ),
            iam.PolicyStatement(
                sid="FindTheResultsBucket",
                actions=["s3:ListBucket", "s3:GetBucketLocation", "s3:ListBucketMultipartUploads"],
                resources=[results],
            ),
        ]
        policy = iam.ManagedPolicy(
            self,
            "AnalystQueryPolicy",
            managed_policy_name=names.analyst_policy,
            description="Query the Terrific Totes lake with Athena (attach to analysts)",
            statements=statements,
        )
        acknowledge_wildcards(
            policy, [*processed_objects, f"{results}/results/*"], Reason.ANALYST_OBJECT_WILDCARD
        )
        return policy
