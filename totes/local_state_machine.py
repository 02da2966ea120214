"""Execute the REAL state machine definition on a laptop: moto's Step Functions engine,
our real Lambda handlers called in-process, and the alert email captured instead of sent.

`statemachine/pipeline.asl.json` is the one definition: CDK deploys it with
``definition_substitutions``; here the same placeholders are filled with moto's ARNs and a
short retry interval, and moto's interpreter (ported from LocalStack) runs it: the Choice,
every Retry (real sleeps), every Catch and the SNS alert path.

moto's Lambda runs code only in Docker. With ``"lambda": {"use_docker": False}`` it uses
``LambdaSimpleBackend``, whose ``invoke`` we replace for the duration of one execution by a
function that calls ``lambdas.<stage>.handler`` with the run's environment variables. An
exception becomes what the Lambda runtime would return (the ``x-amz-function-error``
header and ``{"errorMessage", "errorType"}``), so ``ErrorEquals`` matches our exception
class names exactly as on AWS (e.g. ``DatabaseUnavailableError`` is retried).

Step Functions, Lambda and SNS here are moto's, in memory, for the life of one call. The
lake is a folder, or, with ``aws_s3=True`` (what ``totes run --lake s3://...`` asks for),
real S3 buckets: moto passes S3 requests through to AWS with the caller's credentials.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock

from totes.local import RunReport

DEFINITION_PATH = Path(__file__).resolve().parent.parent / "statemachine" / "pipeline.asl.json"
REGION = "eu-west-2"
STAGES = ("extract", "transform", "load")
# The state that runs each stage, and where its result lands in the state data.
STAGE_STATES = {"extract": "Extract", "transform": "Transform", "load": "Load"}
FUNCTION_NAMES = {stage: f"totes-{stage}" for stage in STAGES}
TOPIC_NAME = "totes-pipeline-alerts"
STATE_MACHINE_NAME = "totes-pipeline"
ALERT_EMAIL = "data-team@terrifictotes.example"
# Locally the whole execution may take this long (the first run extracts two years).
EXECUTION_TIMEOUT_SECONDS = 3600
POLL_SECONDS = 0.05
PLACEHOLDERS = frozenset(
    {
        "ExtractFunctionArn",
        "TransformFunctionArn",
        "LoadFunctionArn",
        "AlertTopicArn",
        "RetryIntervalSeconds",
        "ExecutionTimeoutSeconds",
        "Region",
    }
)
# What the handlers see besides the run's own settings: quiet logs, no metrics.
LOCAL_HANDLER_ENVIRONMENT = {
    "POWERTOOLS_METRICS_DISABLED": "true",
    "LOG_LEVEL": "WARNING",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
}
_MOTO_CONFIG: Any = {
    "stepfunctions": {"execute_state_machine": True},
    "lambda": {"use_docker": False},
}


class LocalExecutionError(RuntimeError):
    """The local engine itself failed (not a pipeline stage): the definition or moto."""


def substitute(definition: str, values: Mapping[str, object]) -> str:
    """Fill ``${Name}`` placeholders the way CDK's ``definition_substitutions`` does.

    Every placeholder in the file must be given and every value must be used, so that the
    local run and the deployed stack cannot drift apart silently.
    """
    missing = placeholders_in(definition) - set(values)
    unused = set(values) - placeholders_in(definition)
    if missing or unused:
        raise LocalExecutionError(
            f"definition placeholders do not match: missing {sorted(missing)}, "
            f"unused {sorted(unused)}"
        )
    for name, value in values.items():
        definition = definition.replace("${" + name + "}", str(value))
    return definition


def placeholders_in(definition: str) -> set[str]:
    return set(re.findall(r"\$\{([A-Za-z0-9_]+)\}", definition))


def load_definition(path: Path = DEFINITION_PATH) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LocalExecutionError(
            f"state machine definition not found at {path}: run from a checkout of the repository"
        ) from None


@dataclass(frozen=True)
class LambdaContext:
    """The parts of the Lambda context object that our handlers (and Powertools) read."""

    function_name: str
    aws_request_id: str
    invoked_function_arn: str
    memory_limit_in_mb: int = 1024
    function_version: str = "$LATEST"

    def get_remaining_time_in_millis(self) -> int:
        return 900_000


def call_handler(stage: str, event: dict, context: LambdaContext) -> Any:
    """Call the real handler of one stage (tests may wrap this to inject failures)."""
    module = importlib.import_module(f"lambdas.{stage}")
    return module.handler(event, context)


@contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


@contextmanager
def _quiet_stage_logs(level: str) -> Iterator[None]:
    """Powertools reads its level once, at import: set it for the run (logs go to stderr)."""
    from totes.observability import logger as stage_logger

    service_logger = logging.getLogger(stage_logger.service)
    old_level = service_logger.level
    service_logger.setLevel(level.upper())
    try:
        yield
    finally:
        service_logger.setLevel(old_level)


def _stage_of(function_name: str) -> str:
    name = function_name.rsplit(":function:", 1)[-1].split(":", 1)[0]
    for stage, fn_name in FUNCTION_NAMES.items():
        if name == fn_name:
            return stage
    raise LocalExecutionError(f"no local handler for Lambda function {function_name!r}")


def _describe(stage: str, result: Any) -> str:
    rows = result.get("rows") if isinstance(result, dict) else None
    if isinstance(rows, dict):
        rows = sum(rows.values())
    return f"{rows:,} rows" if isinstance(rows, int) else "done"


def _make_invoke(
    handler_environment: Mapping[str, str], progress: Callable[[str], None]
) -> Callable[..., bytes]:
    lock = threading.Lock()

    def invoke(
        backend: Any,
        function_name: str,
        qualifier: str | None,
        body: Any,
        headers: Any,
        response_headers: dict,
    ) -> bytes:
        stage = _stage_of(function_name)
        raw = body.decode("utf-8") if isinstance(body, bytes) else (body or "{}")
        event = json.loads(raw) if raw else {}
        context = LambdaContext(
            function_name=FUNCTION_NAMES[stage],
            aws_request_id=str(uuid.uuid4()),
            invoked_function_arn=function_name,
        )
        # One invocation at a time: os.environ is process-wide.
        with lock, _environment(handler_environment):
            progress(f"  {stage} ...")
            started = time.monotonic()
            try:
                result = call_handler(stage, event, context)
            except Exception as exc:
                progress(f"  {stage} failed: {type(exc).__name__}: {exc}")
                # What the Python runtime returns for an unhandled exception.
                response_headers["x-amz-function-error"] = "Unhandled"
                payload: Any = {
                    "errorMessage": str(exc),
                    "errorType": type(exc).__name__,
                    "requestId": context.aws_request_id,
                    "stackTrace": [],
                }
            else:
                payload = result
                seconds = time.monotonic() - started
                progress(f"  {stage}: {_describe(stage, result)} in {seconds:.1f} s")
        return json.dumps(payload, default=str).encode("utf-8")

    return invoke


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
    from moto.core.config import default_user_config

    # S3 requests pass through to the real S3 (the user's credentials and endpoint);
    # Step Functions, Lambda and SNS stay in moto.
    core = dict(default_user_config.get("core", {}))
    core |= {"passthrough": {"urls": [], "services": ["s3"]}, "mock_credentials": False}
    return _MOTO_CONFIG | {"core": core}


def execute_pipeline(
    environment: dict[str, str],
    *,
    fail_at: str | None = None,
    retry_interval_seconds: int = 1,
    definition_path: Path = DEFINITION_PATH,
    aws_s3: bool = False,
    progress: Callable[[str], None] = lambda message: None,
) -> RunReport:
    """Run the pipeline once on moto's Step Functions engine; return what happened.

    ``environment`` is what the Lambda handlers read (LAKE, SOURCE_DSN, WAREHOUSE_DSN);
    ``fail_at`` injects a failure into one stage (TOTES_FAIL_AT) to show the alert path.
    ``aws_s3``: an s3:// lake is the real S3 (the caller's AWS credentials), not moto's.
    ``progress`` is told when each stage starts and ends (retries show as a new start).
    """
    if fail_at is not None and fail_at not in STAGES:
        raise ValueError(f"fail_at must be one of {STAGES}, got {fail_at!r}")
    definition_template = load_definition(definition_path)
    handler_environment = dict(LOCAL_HANDLER_ENVIRONMENT)
    handler_environment |= environment
    if fail_at is not None:
        handler_environment["TOTES_FAIL_AT"] = fail_at
    log_level = handler_environment.get("LOG_LEVEL", "WARNING")

    from moto import mock_aws
    from moto.awslambda_simple.models import LambdaSimpleBackend

    with (
        _environment({} if aws_s3 else _fake_credentials()),
        mock_aws(config=_moto_config(aws_s3)),
        mock.patch.object(
            LambdaSimpleBackend, "invoke", _make_invoke(handler_environment, progress)
        ),
        _quiet_stage_logs(log_level),
        _quiet_moto(),
    ):
        return _run_once(definition_template, retry_interval_seconds, environment, aws_s3)


def _lake_buckets(environment: Mapping[str, str]) -> list[str]:
    from urllib.parse import urlparse

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
    import boto3
    from botocore.exceptions import ClientError

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


def _run_once(
    definition_template: str,
    retry_interval_seconds: int,
    environment: Mapping[str, str],
    aws_s3: bool,
) -> RunReport:
    import boto3

    if not aws_s3:
        _check_lake_buckets(environment)
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
    for stage, name in FUNCTION_NAMES.items():
        try:
            arns[stage] = lam.get_function(FunctionName=name)["Configuration"]["FunctionArn"]
        except lam.exceptions.ResourceNotFoundException:
            arns[stage] = lam.create_function(
                FunctionName=name,
                Runtime="python3.12",
                Role=role_arn,
                Handler=f"lambdas.{stage}.handler",
                Code={"ZipFile": _dummy_zip()},
                Timeout=900,
            )["FunctionArn"]
    topic_arn = sns.create_topic(Name=TOPIC_NAME)["TopicArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="email", Endpoint=ALERT_EMAIL)
    already_sent = len(_sent_alerts(topic_arn))

    definition = substitute(
        definition_template,
        {
            "ExtractFunctionArn": arns["extract"],
            "TransformFunctionArn": arns["transform"],
            "LoadFunctionArn": arns["load"],
            "AlertTopicArn": topic_arn,
            "RetryIntervalSeconds": int(retry_interval_seconds),
            "ExecutionTimeoutSeconds": EXECUTION_TIMEOUT_SECONDS,
            "Region": REGION,
        },
    )
    machine_arn = sfn.create_state_machine(
        name=f"{STATE_MACHINE_NAME}-{run_id}", definition=definition, roleArn=role_arn
    )["stateMachineArn"]
    name = _execution_name()
    execution_arn = sfn.start_execution(stateMachineArn=machine_arn, name=name, input="{}")[
        "executionArn"
    ]

    deadline = time.monotonic() + EXECUTION_TIMEOUT_SECONDS + 60
    while True:
        described = sfn.describe_execution(executionArn=execution_arn)
        if described["status"] != "RUNNING":
            break
        if time.monotonic() > deadline:
            raise LocalExecutionError(f"execution {name} did not finish in time")
        time.sleep(POLL_SECONDS)

    outputs = _stage_outputs(sfn, execution_arn, described)
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
    )


def _history(sfn: Any, execution_arn: str) -> list[dict]:
    events: list[dict] = []
    kwargs: dict[str, Any] = {"executionArn": execution_arn, "maxResults": 1000}
    while True:
        page = sfn.get_execution_history(**kwargs)
        events += page["events"]
        if not page.get("nextToken"):
            return events
        kwargs["nextToken"] = page["nextToken"]


def _stage_outputs(sfn: Any, execution_arn: str, described: dict) -> dict[str, dict]:
    """Each stage's result, as the state machine recorded it ($.extract, $.transform, ...)."""
    outputs: dict[str, dict] = {}
    for event in _history(sfn, execution_arn):
        details = event.get("stateExitedEventDetails")
        if not details:
            continue
        for stage, state in STAGE_STATES.items():
            if details.get("name") == state:
                data = json.loads(details.get("output") or "{}")
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
    from moto.sns.models import sns_backends

    account, region = topic_arn.split(":")[4], topic_arn.split(":")[3]
    topic = sns_backends[account][region].topics[topic_arn]
    return [
        {"subject": subject or "", "message": message}
        for (_id, message, subject, _attributes, _group) in topic.sent_notifications
    ]


def _dummy_zip() -> bytes:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("README.txt", "Runs in-process locally: see totes/local_state_machine.py")
    return buffer.getvalue()
