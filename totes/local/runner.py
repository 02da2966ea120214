"""Execute the REAL state machine definition on a laptop: moto's Step Functions engine,
our real Lambda handlers called in-process (``totes.local.invoke``), and the alert email
captured instead of sent.

The definition file is the one CDK deploys (``totes.contract``); here its placeholders are
filled with moto's ARNs and a short retry interval, and moto's interpreter (ported from
LocalStack) runs it: the Choice, every Retry (real sleeps), every Catch and the SNS alert.

Step Functions, Lambda and SNS here are moto's, in memory, for the life of one call. The
lake is a folder, or, for an ``s3://`` lake, real S3 buckets: moto passes S3 requests
through to AWS with the caller's credentials.
"""

from __future__ import annotations

import io
import json
import logging
import os
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import urlparse

import boto3
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.awslambda_simple.models import LambdaSimpleBackend
from moto.core.config import default_user_config
from moto.sns.models import sns_backends

from totes.contract import (
    DEFAULT_RUNBOOK_URL,
    PYTHON_VERSION,
    STAGES,
    Names,
    read_definition,
    substitute,
)
from totes.local.invoke import environment, make_invoke
from totes.local.report import RunReport
from totes.pipeline.observability import SERVICE

REGION = "eu-west-2"
# The local deployment's names: terrific-totes-local-extract, ...
LOCAL_NAMES = Names("local")
ALERT_EMAIL = "data-team@terrifictotes.example"
# Locally the whole execution may take this long (the first run extracts two years).
EXECUTION_TIMEOUT_SECONDS = 3600
POLL_SECONDS = 0.05
_MOTO_CONFIG: Any = {
    "stepfunctions": {"execute_state_machine": True},
    "lambda": {"use_docker": False},
}


class LocalExecutionError(RuntimeError):
    """The local engine itself failed (not a pipeline stage): the definition or moto."""


@dataclass(frozen=True)
class RunSettings:
    """One local execution: where the data is, and how to run it."""

    source_dsn: str
    warehouse_dsn: str
    lake: str  # a folder, or s3://bucket[/prefix] (real S3: the caller's credentials)
    fail_at: str | None = None  # a stage whose invocation fails (shows the alert path)
    log_level: str = "WARNING"  # the handlers' log level (their JSON logs go to stderr)
    retry_interval_seconds: int = 1
    execution_input: dict = field(default_factory=dict)
    definition: str | None = None  # default: the packaged definition file
    # An s3:// lake is the real S3 (moto passes S3 through, with the caller's credentials);
    # otherwise it is moto's S3, and must exist (tests create it inside their own mock).
    aws_s3: bool = False
    # Where the run's report is kept for `totes status` (<runs_dir>/<execution>.json): moto's
    # executions vanish with the process. None: not kept (tests).
    runs_dir: Path | None = None
    # More settings for the handlers (e.g. PART_ROWS), as their environment variables.
    stage_settings: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.fail_at is not None and self.fail_at not in STAGES:
            raise ValueError(f"fail_at must be one of {STAGES}, got {self.fail_at!r}")

    def environment(self) -> dict[str, str]:
        """What the Lambda handlers read (see totes.pipeline.config)."""
        return {
            "SOURCE_DSN": self.source_dsn,
            "WAREHOUSE_DSN": self.warehouse_dsn,
            "LAKE": self.lake,
        }

    def handler_environment(self) -> dict[str, str]:
        """The environment plus what quietens the handlers locally (no metrics)."""
        return (
            self.environment()
            | self.stage_settings
            | {
                "POWERTOOLS_METRICS_DISABLED": "true",
                "LOG_LEVEL": self.log_level,
                "POWERTOOLS_LOG_LEVEL": self.log_level,
            }
        )


@contextmanager
def _quiet_stage_logs(level: str) -> Iterator[None]:
    """Powertools reads its level once, at import: set it for the run (logs go to stderr)."""
    service_logger = logging.getLogger(SERVICE)
    old_level = service_logger.level
    service_logger.setLevel(level.upper())
    try:
        yield
    finally:
        service_logger.setLevel(old_level)


@contextmanager
def _quiet_moto() -> Iterator[None]:
    """moto's interpreter logs every failed state with a repr of the whole definition;
    a failure that matters reaches the caller as a LocalExecutionError instead."""
    moto_logger = logging.getLogger("moto")
    old_level = moto_logger.level
    moto_logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        moto_logger.setLevel(old_level)


def _fake_credentials() -> dict[str, str]:
    """What boto3 needs to talk to moto; only where the caller has not set them."""
    values = {"AWS_DEFAULT_REGION": REGION}
    if not os.environ.get("AWS_ACCESS_KEY_ID"):
        values |= {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    return {k: v for k, v in values.items() if not os.environ.get(k)}


def _execution_name() -> str:
    return f"local-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def _moto_config(aws_s3: bool) -> Any:
    if not aws_s3:
        return _MOTO_CONFIG
    # S3 requests pass through to the real S3 (the user's credentials and endpoint);
    # Step Functions, Lambda and SNS stay in moto.
    core = dict(default_user_config.get("core", {}))
    core |= {"passthrough": {"urls": [], "services": ["s3"]}, "mock_credentials": False}
    return _MOTO_CONFIG | {"core": core}


def execute_pipeline(
    settings: RunSettings, *, progress: Callable[[str], None] = lambda message: None
) -> RunReport:
    """Run the pipeline once on moto's Step Functions engine; return what happened.

    ``progress`` is told when each stage starts and ends (retries show as a new start).
    """
    handler_environment = settings.handler_environment()
    invoke = make_invoke(
        LOCAL_NAMES, handler_environment, fail_at=settings.fail_at, progress=progress
    )
    with (
        environment({} if settings.aws_s3 else _fake_credentials()),
        # For every call of the execution at once: a Map's iterations run side by side.
        environment(handler_environment),
        mock_aws(config=_moto_config(settings.aws_s3)),
        mock.patch.object(LambdaSimpleBackend, "invoke", invoke),
        _quiet_stage_logs(settings.log_level),
        _quiet_moto(),
    ):
        report = _run_once(settings, LOCAL_NAMES)
    if settings.runs_dir is not None:
        save_report(report, settings.runs_dir)
    return report


def save_report(report: RunReport, runs_dir: Path) -> Path:
    """Keep one run's report as ``<runs_dir>/<execution>.json`` (read by ``totes status``)."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    path = runs_dir / f"{report.execution_name}.json"
    path.write_text(json.dumps(asdict(report), indent=1, sort_keys=True, default=str))
    return path


def _lake_buckets(environment: Mapping[str, str]) -> list[str]:
    lake = environment.get("LAKE", "")
    if lake:
        parsed = urlparse(lake)
        return [parsed.netloc] if parsed.scheme == "s3" else []
    return [
        b for b in (environment.get("INGESTION_BUCKET"), environment.get("PROCESSED_BUCKET")) if b
    ]


def _check_lake_buckets(environment: Mapping[str, str]) -> None:
    """An s3:// lake in a local run is moto's S3: refuse it unless the bucket is there.

    A fresh moto has no buckets, and a lake that vanished with the last run would make the
    next run extract everything again and load duplicate fact versions. Inside a caller's
    own ``mock_aws`` (tests) the bucket the caller created is used.
    """
    s3 = boto3.client("s3", region_name=REGION)
    for bucket in _lake_buckets(environment):
        try:
            s3.head_bucket(Bucket=bucket)
        except ClientError:
            raise LocalExecutionError(
                f"the lake bucket {bucket!r} does not exist here: a local run executes on "
                "moto, so s3:// means moto's in-memory S3, not AWS. Use a folder for the "
                "lake (the default), or deploy the stack to run against real buckets."
            ) from None


def _run_once(settings: RunSettings, names: Names) -> RunReport:
    if not settings.aws_s3:
        _check_lake_buckets(settings.environment())
    sfn = boto3.client("stepfunctions", region_name=REGION)
    machine_arn, topic_arn = _deploy(settings, names)
    already_sent = len(_sent_alerts(topic_arn))
    name = _execution_name()
    execution_arn = sfn.start_execution(
        stateMachineArn=machine_arn, name=name, input=json.dumps(settings.execution_input)
    )["executionArn"]
    described = _finished(sfn, execution_arn, name)
    outputs = stage_outputs(sfn, execution_arn, described)
    alerts = _sent_alerts(topic_arn)[already_sent:]
    if described["status"] != "SUCCEEDED" and not alerts:
        # Only the alert path ends in a failure by design: anything else is a fault of the
        # definition (e.g. a States.Runtime error) or of the engine, and must not pass quietly.
        raise LocalExecutionError(
            f"execution {name} ended {described['status']} without an alert: "
            f"{described.get('error', '?')}: {described.get('cause', '')}"
        )
    return RunReport(
        status=described["status"],
        execution_name=name,
        extract=outputs.get("extract"),
        transform=outputs.get("transform"),
        load=outputs.get("load"),
        alerts=alerts,
        started_at=_iso(described.get("startDate")),
        stopped_at=_iso(described.get("stopDate")),
    )


def _deploy(settings: RunSettings, names: Names) -> tuple[str, str]:
    """On moto, what the CDK app deploys: the three functions (their code runs in this
    process, see ``invoke``), the alert topic with an email subscription and the state
    machine from the definition file. (state machine ARN, topic ARN)."""
    iam = boto3.client("iam", region_name=REGION)
    lam = boto3.client("lambda", region_name=REGION)
    sns = boto3.client("sns", region_name=REGION)
    sfn = boto3.client("stepfunctions", region_name=REGION)
    # Unique per run: inside a caller's own mock_aws nothing is reset between runs.
    run_id = uuid.uuid4().hex[:8]
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": ["lambda.amazonaws.com", "states.amazonaws.com"]},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    role = iam.create_role(
        RoleName=f"totes-local-{run_id}", AssumeRolePolicyDocument=json.dumps(trust)
    )
    role_arn = role["Role"]["Arn"]
    arns = {}
    for stage, name in names.functions.items():
        try:
            arns[stage] = lam.get_function(FunctionName=name)["Configuration"]["FunctionArn"]
        except lam.exceptions.ResourceNotFoundException:
            arns[stage] = lam.create_function(
                FunctionName=name,
                Runtime=f"python{PYTHON_VERSION}",
                Role=role_arn,
                Handler=f"lambdas.{stage}.handler",
                Code={"ZipFile": _dummy_zip()},
                Timeout=900,
            )["FunctionArn"]
    topic_arn = sns.create_topic(Name=names.alert_topic)["TopicArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="email", Endpoint=ALERT_EMAIL)
    definition = substitute(
        settings.definition or read_definition(),
        {
            "ExtractFunctionArn": arns["extract"],
            "TransformFunctionArn": arns["transform"],
            "LoadFunctionArn": arns["load"],
            "AlertTopicArn": topic_arn,
            "RetryIntervalSeconds": settings.retry_interval_seconds,
            "ExecutionTimeoutSeconds": EXECUTION_TIMEOUT_SECONDS,
            "Region": REGION,
            "RunbookUrl": DEFAULT_RUNBOOK_URL,
        },
    )
    machine_arn = sfn.create_state_machine(
        name=f"{names.state_machine}-{run_id}", definition=definition, roleArn=role_arn
    )["stateMachineArn"]
    return machine_arn, topic_arn


def _finished(sfn, execution_arn: str, name: str) -> dict:
    """The execution's description once it has ended (at most the execution timeout)."""
    deadline = time.monotonic() + EXECUTION_TIMEOUT_SECONDS + 60
    while True:
        described = sfn.describe_execution(executionArn=execution_arn)
        if described["status"] != "RUNNING":
            return described
        if time.monotonic() > deadline:
            raise LocalExecutionError(f"execution {name} did not finish in time")
        time.sleep(POLL_SECONDS)


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds") if moment else None


def history(sfn: Any, execution_arn: str) -> list[dict]:
    """Every event of one execution (paginated)."""
    events: list[dict] = []
    kwargs: dict[str, Any] = {"executionArn": execution_arn, "maxResults": 1000}
    while True:
        page = sfn.get_execution_history(**kwargs)
        events += page["events"]
        if not page.get("nextToken"):
            return events
        kwargs["nextToken"] = page["nextToken"]


def stage_outputs(sfn: Any, execution_arn: str, described: dict) -> dict[str, dict]:
    """Each stage's result, as the state machine recorded it ($.extract, $.transform, ...)."""
    outputs: dict[str, dict] = {}
    for event in history(sfn, execution_arn):
        details = event.get("stateExitedEventDetails")
        if not details:
            continue
        data = json.loads(details.get("output") or "{}")
        for stage in STAGES:
            if isinstance(data, dict) and isinstance(data.get(stage), dict):
                outputs[stage] = data[stage]
    if described.get("output"):
        final = json.loads(described["output"])
        if isinstance(final, dict):
            for stage in STAGES:
                if isinstance(final.get(stage), dict):
                    outputs[stage] = final[stage]
    return outputs


def _sent_alerts(topic_arn: str) -> list[dict]:
    """What the topic would have emailed: moto records every publish."""
    account, region = topic_arn.split(":")[4], topic_arn.split(":")[3]
    topic = sns_backends[account][region].topics[topic_arn]
    return [
        {"subject": subject or "", "message": message}
        for (_id, message, subject, _attributes, _group) in topic.sent_notifications
    ]


def _dummy_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("README.txt", "Runs in-process locally: see totes/local/invoke.py")
    return buffer.getvalue()
