"""``totes status [--aws] [--json]``: where its inputs come from, locally and on AWS.

Locally: the reports of local runs (``<state>/runs/``), the lake ``--lake`` / ``$LAKE`` /
the state folder's, and the databases ``--source-dsn`` / ``$SOURCE_DSN`` (else the embedded
ToteSys) and ``--warehouse-dsn`` / ``$WAREHOUSE_DSN`` (else the embedded warehouse).

``--aws``, with the usual AWS credentials and region: the state machine
``terrific-totes-<env>-pipeline`` and its alarms, the lake ``--lake`` / ``$LAKE`` /
``$INGESTION_BUCKET`` and ``$PROCESSED_BUCKET`` (else the deployment's own buckets), and the
databases by option, DSN or secret (``$SOURCE_DB_SECRET_ARN``, ``$WAREHOUSE_DB_SECRET_ARN``),
as the Lambdas find them. A database out of reach (in a VPC) becomes a note.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from totes.contract import Names
from totes.local import environment
from totes.local.embedded_postgres import state_dir
from totes.local.status import (
    DEFAULT_LIMIT,
    Status,
    alarms_firing,
    aws_executions,
    collect,
    find_state_machine,
    local_executions,
)
from totes.local.status_view import format_status
from totes.pipeline import config
from totes.pipeline.lake import Lake

ENVIRONMENT_VARIABLE = "TOTES_ENVIRONMENT"
# totes status's exit status when something could not be read (0: everything was).
UNREAD_EXIT = 2


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "status",
        help="for the person on call: recent runs, lag, freshness, pending batches, alerts",
    )
    parser.add_argument(
        "--aws", action="store_true", help="the deployed pipeline (usual AWS credentials)"
    )
    parser.add_argument(
        "--environment",
        help=f"the deployment's environment with --aws (default: ${ENVIRONMENT_VARIABLE}, .env"
        " included, or dev)",
    )
    parser.add_argument("--source-dsn", help="ToteSys (default: $SOURCE_DSN, ...)")
    parser.add_argument("--warehouse-dsn", help="the warehouse (default: $WAREHOUSE_DSN, ...)")
    parser.add_argument("--lake", help="a folder or s3://bucket[/prefix] (default: $LAKE, ...)")
    parser.add_argument(
        "--limit", type=int, default=DEFAULT_LIMIT, help="how many executions (default 10)"
    )
    parser.add_argument("--json", action="store_true", help="print the status as JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    status = aws_status(args) if args.aws else local_status(args)
    print(status.to_json() if args.json else format_status(status))
    # Not a clean bill of health when part of it could not be read (the notes say what).
    return 0 if not status.notes else UNREAD_EXIT


def local_status(args: argparse.Namespace) -> Status:
    lake = environment.chosen_lake(args.lake)
    return collect(
        mode="local",
        read_executions=lambda: local_executions(state_dir() / "runs", args.limit),
        lake=Lake.from_uri(lake),
        source_dsn=environment.chosen_source_dsn(args.source_dsn, read_only=False),
        warehouse_dsn=environment.chosen_warehouse_dsn(args.warehouse_dsn),
    )


def _configured_dsn(given: str | None, read: Any) -> str | None:
    if given:
        return given
    try:
        return read()
    except config.ConfigurationError:
        return None


def environment_of(args: argparse.Namespace) -> str:
    """--environment, else $TOTES_ENVIRONMENT (read now: after .env is loaded), else dev."""
    return args.environment or os.environ.get(ENVIRONMENT_VARIABLE, "dev")


def deployed_lake(lake_uri: str | None, names: Names) -> Lake:
    """The deployed pipeline's lake: ``lake_uri``, else $LAKE or $INGESTION_BUCKET and
    $PROCESSED_BUCKET, else the deployment's own two buckets (the Lambdas' layout)."""
    if lake_uri:
        return Lake.from_uri(lake_uri)
    try:
        return config.lake_from_env()
    except config.ConfigurationError:
        pass
    import boto3

    # The deployment's own buckets (stacks/names.py): account and region of the credentials.
    account = boto3.client("sts").get_caller_identity()["Account"]
    region = boto3.session.Session().region_name
    return Lake.from_buckets(
        names.bucket_name("ingestion", account, region),
        names.bucket_name("processed", account, region),
    )


def aws_status(args: argparse.Namespace) -> Status:
    import boto3

    names = Names(environment_of(args))
    sfn = boto3.client("stepfunctions")

    def executions() -> Any:
        return aws_executions(sfn, find_state_machine(sfn, names.state_machine), args.limit)

    notes: list[str] = []
    try:
        lake: Lake | None = deployed_lake(args.lake, names)
    except Exception as exc:
        notes.append(f"lake: {type(exc).__name__}: {exc}")
        lake = None
    status = collect(
        mode=f"aws, {names.prefix}",
        read_executions=executions,
        lake=lake,
        source_dsn=_configured_dsn(args.source_dsn, config.source_dsn_from_env),
        warehouse_dsn=_configured_dsn(args.warehouse_dsn, config.warehouse_dsn_from_env),
        read_alarms=lambda: alarms_firing(boto3.client("cloudwatch"), names),
    )
    status.notes[:0] = notes
    return status
