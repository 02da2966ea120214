"""The three pipeline Lambdas (extract, transform, load) with least-privilege roles.

Each function ships a prebuilt folder (``scripts/build_lambdas.py``): our ``totes`` and
``lambdas`` packages plus only the wheels that stage needs. The stack takes the folders as
a parameter, so tests can synthesise it with tiny stand-ins and no download.

Roles are written out by hand rather than with ``bucket.grant_*`` helpers, whose action
lists include wildcards (``s3:GetObject*``, ``s3:List*``, ``s3:DeleteObject*``...): every
action here is one the handler calls, on the narrowest resource it works on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from stacks.config import DeployConfig
from stacks.lambda_packaging import ARCHITECTURE, PYTHON_VERSION
from stacks.nag_acknowledgments import Reason, acknowledge, acknowledge_wildcards
from totes.contract import FUNCTION_LIMITS, METRICS_NAMESPACE
from totes.pipeline.lake import SKIPPED  # operators' skip records: _skipped/

RUNTIME = getattr(lambda_.Runtime, "PYTHON_" + PYTHON_VERSION.replace(".", "_"))
# cdk-nag's AwsSolutions-L1 wants the newest runtime of the family (it reads Runtime.ALL).
NEWEST_PYTHON = max(
    (r.name for r in lambda_.Runtime.ALL if r.name.startswith("python3.")),
    key=lambda name: int(name.split(".")[1]),
)
LAMBDA_ARCHITECTURE = {"arm64": lambda_.Architecture.ARM_64, "x86_64": lambda_.Architecture.X86_64}[
    ARCHITECTURE
]

POWERTOOLS_ENVIRONMENT = {
    "POWERTOOLS_SERVICE_NAME": "totes",
    "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
    "LOG_LEVEL": "INFO",
}

_RETENTION = {
    1: logs.RetentionDays.ONE_DAY,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS,
    90: logs.RetentionDays.THREE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
    731: logs.RetentionDays.TWO_YEARS,
    1827: logs.RetentionDays.FIVE_YEARS,
    3653: logs.RetentionDays.TEN_YEARS,
}


def retention(days: int) -> logs.RetentionDays:
    """The CloudWatch Logs retention for ``days``, which must be one CloudWatch offers."""
    if days not in _RETENTION:
        raise ValueError(f"totes:logRetentionDays: {days} is not one of {sorted(_RETENTION)}")
    return _RETENTION[days]


@dataclass(frozen=True)
class FunctionSpec:
    """Size and time limits of one stage (starting points; see docs/deploy.md)."""

    memory_mb: int
    timeout: Duration
    description: str


_DESCRIPTIONS = {
    "extract": "ToteSys -> ingestion lake: one CSV per changed table",
    "transform": "Ingestion lake -> processed lake: star schema as Parquet",
    "load": "Processed lake -> warehouse: one transaction per batch",
}
FUNCTIONS: dict[str, FunctionSpec] = {
    stage: FunctionSpec(
        FUNCTION_LIMITS[stage].memory_mb,
        Duration.seconds(FUNCTION_LIMITS[stage].timeout_seconds),
        description,
    )
    for stage, description in _DESCRIPTIONS.items()
}


class FunctionsStack(Stack):
    """extract, transform and load; ``self.functions`` maps each stage to its Function."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeployConfig,
        code_dirs: Mapping[str, Path],
        **kwargs,
    ):
        super().__init__(scope, construct_id, **kwargs)
        missing = set(FUNCTIONS) - set(code_dirs)
        if missing:
            raise ValueError(f"no code folder for: {', '.join(sorted(missing))}")
        self.source_secret = import_secret(self, "SourceDbSecret", config.source_db_secret)
        self.warehouse_secret = import_secret(self, "WarehouseDbSecret", config.warehouse_db_secret)
        network = network_placement(self, config)

        # The storage stack's buckets, by name (see stacks/names.py).
        ingestion = s3.Bucket.from_bucket_name(
            self, "IngestionBucket", config.names.ingestion_bucket
        )
        processed = s3.Bucket.from_bucket_name(
            self, "ProcessedBucket", config.names.processed_bucket
        )
        environment = {
            "extract": {
                "INGESTION_BUCKET": ingestion.bucket_name,
                "PROCESSED_BUCKET": processed.bucket_name,
                "SOURCE_DB_SECRET_ARN": self.source_secret.secret_arn,
            },
            "transform": {
                "INGESTION_BUCKET": ingestion.bucket_name,
                "PROCESSED_BUCKET": processed.bucket_name,
            },
            "load": {
                "INGESTION_BUCKET": ingestion.bucket_name,
                "PROCESSED_BUCKET": processed.bucket_name,
                "WAREHOUSE_DB_SECRET_ARN": self.warehouse_secret.secret_arn,
            },
        }
        # (statement, why its wildcard is acceptable): every action the stage calls, on the
        # narrowest resource it works on. Object ARNs need a trailing '*'.
        statements: dict[str, list[tuple[iam.PolicyStatement, Reason | None]]] = {
            "extract": [
                # PutObject also covers a streamed CSV's multipart upload (create, upload
                # parts, complete); AbortMultipartUpload cleans up one that failed.
                (
                    _objects(
                        ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"], ingestion
                    ),
                    Reason.OBJECT_WILDCARD,
                ),
                (_list(ingestion), None),
                (read_secret(self.source_secret), None),
            ],
            "transform": [
                (_objects(["s3:GetObject"], ingestion), Reason.OBJECT_WILDCARD),
                (_list(ingestion), None),
                (_objects(["s3:GetObject", "s3:PutObject"], processed), Reason.OBJECT_WILDCARD),
                (_list(processed), None),
            ],
            "load": [
                (_objects(["s3:GetObject"], processed), Reason.OBJECT_WILDCARD),
                (_list(processed), None),
                # Only the operators' skip records, to record skipped batches as skipped.
                (_objects(["s3:GetObject"], ingestion, prefix=SKIPPED), Reason.OBJECT_WILDCARD),
                (_list(ingestion, prefix=SKIPPED), None),
                (read_secret(self.warehouse_secret), None),
            ],
        }

        self.functions: dict[str, lambda_.Function] = {}
        self.log_groups: dict[str, logs.LogGroup] = {}
        for name, spec in FUNCTIONS.items():
            function, log_group = handler_function(
                self,
                config,
                name,
                function_name=config.names.function(name),
                description=spec.description,
                role_description=f"Terrific Totes {name} Lambda: only what the {name} stage calls",
                statements=statements[name],
                code_dir=code_dirs[name],
                memory_mb=spec.memory_mb,
                timeout=spec.timeout,
                environment=environment[name],
                network=network,
            )
            self.functions[name] = function
            self.log_groups[name] = log_group


def handler_function(
    scope: Construct,
    config: DeployConfig,
    name: str,
    *,
    function_name: str,
    description: str,
    role_description: str,
    statements: list[tuple[iam.PolicyStatement, str | None]],
    code_dir: Path,
    memory_mb: int,
    timeout: Duration,
    environment: Mapping[str, str],
    network: dict,
    **options,
) -> tuple[lambda_.Function, logs.LogGroup]:
    """The function running ``lambdas/<name>.py``, its log group, and a role that may write
    that log group and do what ``statements`` allow (each with the reason for its
    wildcard, if it has one), nothing else."""
    removal = RemovalPolicy.RETAIN if config.retain_data else RemovalPolicy.DESTROY
    log_group = logs.LogGroup(
        scope,
        f"{name.title()}LogGroup",
        # Lambda's conventional name, so the console's "View logs" finds it.
        log_group_name=f"/aws/lambda/{function_name}",
        retention=retention(config.log_retention_days),
        removal_policy=removal,
    )
    role = iam.Role(
        scope,
        f"{name.title()}Role",
        assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
        description=role_description,
    )
    # Instead of AWSLambdaBasicExecutionRole (any log group in the account).
    role.add_to_policy(
        iam.PolicyStatement(
            actions=["logs:CreateLogStream", "logs:PutLogEvents"],
            resources=[log_group.log_group_arn],
        )
    )
    if config.in_vpc:
        allow_vpc_access(role)
    for statement, reason in statements:
        role.add_to_policy(statement)
        if reason is not None:
            acknowledge_wildcards(role, statement.resources, reason)
    function = lambda_.Function(
        scope,
        f"{name.title()}Function",
        function_name=function_name,
        description=description,
        runtime=RUNTIME,
        architecture=LAMBDA_ARCHITECTURE,
        handler=f"lambdas.{name}.handler",
        code=lambda_.Code.from_asset(str(code_dir)),
        memory_size=memory_mb,
        timeout=timeout,
        role=role,
        log_group=log_group,
        logging_format=lambda_.LoggingFormat.JSON,
        environment={**POWERTOOLS_ENVIRONMENT, **environment},
        **network,
        **options,
    )
    acknowledge_runtime(function)
    return function, log_group


def acknowledge_runtime(function: lambda_.Function) -> None:
    """While a newer Python runtime exists than the one the tests run on, say why."""
    if RUNTIME.name != NEWEST_PYTHON:
        acknowledge(function, "AwsSolutions-L1", Reason.RUNTIME_AS_TESTED)


def import_secret(scope: Construct, construct_id: str, name_or_arn: str) -> secretsmanager.ISecret:
    """A secret by full ARN (``arn:...``) or by name (the stack is told, never creates it)."""
    if name_or_arn.startswith("arn:"):
        return secretsmanager.Secret.from_secret_complete_arn(scope, construct_id, name_or_arn)
    return secretsmanager.Secret.from_secret_name_v2(scope, construct_id, name_or_arn)


def network_placement(scope: Construct, config: DeployConfig) -> dict:
    """VPC placement when the databases are not public; no lookup, so no AWS call at synth."""
    if not config.in_vpc:
        return {}
    vpc = ec2.Vpc.from_vpc_attributes(
        scope, "DatabaseVpc", vpc_id=config.vpc_id, availability_zones=["unused"]
    )
    subnets = [
        ec2.Subnet.from_subnet_id(scope, f"Subnet{i}", subnet_id)
        for i, subnet_id in enumerate(config.subnet_ids)
    ]
    network = {"vpc": vpc, "vpc_subnets": ec2.SubnetSelection(subnets=subnets)}
    if config.security_group_id:
        network["security_groups"] = [
            ec2.SecurityGroup.from_security_group_id(
                scope, "DatabaseClientSecurityGroup", config.security_group_id
            )
        ]
    return network


def _objects(actions: list[str], bucket: s3.IBucket, prefix: str = "") -> iam.PolicyStatement:
    return iam.PolicyStatement(actions=actions, resources=[bucket.arn_for_objects(f"{prefix}*")])


def _list(bucket: s3.IBucket, prefix: str | None = None) -> iam.PolicyStatement:
    conditions = None
    if prefix is not None:
        conditions = {"StringLike": {"s3:prefix": [prefix, f"{prefix}*"]}}
    return iam.PolicyStatement(
        actions=["s3:ListBucket"], resources=[bucket.bucket_arn], conditions=conditions
    )


def allow_vpc_access(role: iam.Role) -> None:
    """What a function in the VPC needs for its network interfaces. Lambda adds this itself
    only to roles it creates; ours are hand-made."""
    role.add_managed_policy(
        iam.ManagedPolicy.from_aws_managed_policy_name(
            "service-role/AWSLambdaVPCAccessExecutionRole"
        )
    )
    acknowledge(
        role,
        "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/"
        "service-role/AWSLambdaVPCAccessExecutionRole]",
        Reason.VPC_ACCESS_POLICY,
    )


def read_secret(secret: secretsmanager.ISecret) -> iam.PolicyStatement:
    arn = secret.secret_full_arn or f"{secret.secret_arn}-??????"
    return iam.PolicyStatement(actions=["secretsmanager:GetSecretValue"], resources=[arn])
