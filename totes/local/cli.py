"""The ``totes`` command line: seed and simulate ToteSys, run the pipeline, see the results.

Settings not given as options come from the environment, and from a ``.env`` file in the
working folder (``TOTES_ENV_FILE`` names another; empty: none), with the same names the
Lambdas read: ``SOURCE_DSN``, ``WAREHOUSE_DSN``, ``LAKE`` (see totes.pipeline.config).
A variable already set wins over the file. ``seed`` and ``simulate`` write to their
database, so they take it only from ``--source-dsn``, never from the environment.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from dotenv import load_dotenv

from totes.contract import STAGES, Names
from totes.local import environment, reconcile, status_cli
from totes.local.demo import demo
from totes.local.embedded_postgres import state_dir
from totes.local.psql import run_psql
from totes.local.report import format_summary
from totes.local.runner import RunSettings, execute_pipeline
from totes.pipeline.config import ConfigurationError, warehouse_dsn_from_env
from totes.pipeline.db import DatabaseUnavailableError, connect
from totes.pipeline.events import REPLAY_ALL
from totes.pipeline.lake import Lake, LakeError
from totes.pipeline.redact import password_of, redact, redact_dsn
from totes.pipeline.registers import batch_state
from totes.schema.warehouse import WAREHOUSE_TABLE_NAMES
from totes.totesys import seed, simulate

EXIT_FAILURE = 1
ENV_FILE_VARIABLE = "TOTES_ENV_FILE"
DSN_VARIABLES = ("SOURCE_DSN", "WAREHOUSE_DSN")


def load_env_file() -> Path | None:
    """Read ``.env`` (or ``$TOTES_ENV_FILE``) into the environment; the file read, if any."""
    path = Path(os.environ.get(ENV_FILE_VARIABLE, ".env"))
    if not str(path) or str(path) == "." or not path.is_file():
        return None
    try:
        load_dotenv(path, override=False)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"{path}: cannot be read as a UTF-8 .env file ({exc})") from None
    return path


def runs_dir() -> Path:
    """Where local runs keep their reports for ``totes status``."""
    return state_dir() / "runs"


def _timestamp(value: str) -> datetime:
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a timestamp like 2024-11-15T09:00"
        ) from None


def _add_source_dsn(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--source-dsn",
        help="ToteSys database (libpq DSN or URI); default: the embedded PostgreSQL's 'totesys'",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="totes",
        description="Terrific Totes data platform: ToteSys -> data lake -> warehouse.",
    )
    parser.add_argument(
        "--verbose", action="store_true", help="show stack traces and the stages' logs"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo_parser = commands.add_parser(
        "demo",
        help="what `make run` does: seed once, let the business move on, run the pipeline",
    )
    demo_parser.set_defaults(handler=_demo)

    seed_parser = commands.add_parser(
        "seed", help="create ToteSys and fill it with realistic history"
    )
    _add_source_dsn(seed_parser)
    seed_parser.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    seed_parser.add_argument(
        "--scale", type=float, default=1.0, help="multiply the order-driven tables (default 1)"
    )
    seed_parser.add_argument(
        "--now",
        type=_timestamp,
        help="the simulated 'now' the history runs up to (default 2024-11-15T09:00)",
    )
    seed_parser.set_defaults(handler=_seed)

    simulate_parser = commands.add_parser(
        "simulate", help="advance ToteSys's simulated clock the way the business moves"
    )
    _add_source_dsn(simulate_parser)
    when = simulate_parser.add_mutually_exclusive_group(required=True)
    when.add_argument("--minutes", type=int, help="advance the clock by this many minutes")
    when.add_argument("--until", type=_timestamp, help="advance the clock to this timestamp")
    simulate_parser.add_argument("--seed", type=int, help="random seed (default: from the clock)")
    simulate_parser.set_defaults(handler=_simulate)

    run = commands.add_parser("run", help="run the pipeline once: extract, transform, load")
    _add_run_options(run)
    run.add_argument(
        "--reconcile",
        action="store_true",
        help="reconcile every table with ToteSys now (finds silent edits and deletions)",
    )
    run.add_argument(
        "--fail-at",
        choices=STAGES,
        help="inject a failure into a stage to see the failure path and its alert email",
    )
    run.set_defaults(handler=_run)

    replay = commands.add_parser(
        "replay", help="rebuild the warehouse, or one table, from the immutable lake alone"
    )
    replay.add_argument(
        "table", nargs="?", choices=WAREHOUSE_TABLE_NAMES, help="one table (default: all)"
    )
    _add_run_options(replay)
    replay.set_defaults(handler=_replay)

    skip = commands.add_parser(
        "skip",
        help="record that a batch that cannot be delivered is skipped; its rows come again",
    )
    skip.add_argument("batch_id", help="the batch named in the alert")
    skip.add_argument("--reason", required=True, help="why (kept in the lake and warehouse)")
    skip.add_argument(
        "--aws",
        action="store_true",
        help="the deployed pipeline's lake: $INGESTION_BUCKET and $PROCESSED_BUCKET, else the"
        " deployment's own buckets (usual AWS credentials)",
    )
    skip.add_argument(
        "--environment",
        help=f"the deployment's environment with --aws (default: "
        f"${status_cli.ENVIRONMENT_VARIABLE}, .env included, or dev)",
    )
    skip.add_argument(
        "--lake", help="a folder, or s3://bucket[/prefix]; default: $LAKE, else the local one"
    )
    skip.add_argument(
        "--warehouse-dsn",
        help="checked first: a batch it holds is refused (default: $WAREHOUSE_DSN, else the"
        " embedded one; with --aws, the configured one if any)",
    )
    skip.set_defaults(handler=_skip)
    status_cli.add_parser(commands)
    reconcile_parser = commands.add_parser(
        "reconcile", help="compare the warehouse with ToteSys; exit 1 when they differ"
    )
    _add_source_dsn(reconcile_parser)
    reconcile.add_arguments(reconcile_parser)
    reconcile_parser.set_defaults(handler=_reconcile)

    psql = commands.add_parser(
        "psql",
        help="open the warehouse in psql (the embedded one runs for as long as psql does)",
    )
    psql.add_argument(
        "--warehouse-dsn", help="warehouse database; default: $WAREHOUSE_DSN, else the embedded one"
    )
    psql.add_argument("-c", "--command", help="run this SQL and exit (as psql -c)")
    psql.add_argument(
        "psql_args", nargs=argparse.REMAINDER, help="after --: more arguments for psql"
    )
    psql.set_defaults(handler=_psql)
    # After the command too (`totes reconcile --verbose`), as the error lines suggest.
    for command in commands.choices.values():
        command.add_argument(
            "--verbose",
            action="store_true",
            default=argparse.SUPPRESS,  # not given here: the one before the command holds
            help="show stack traces and the stages' logs",
        )
    return parser


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--source-dsn",
        help="ToteSys database; default: $SOURCE_DSN, else the embedded PostgreSQL's 'totesys'",
    )
    parser.add_argument(
        "--warehouse-dsn", help="warehouse database; default: $WAREHOUSE_DSN, else the embedded one"
    )
    parser.add_argument(
        "--lake",
        help="a folder, or s3://bucket[/prefix]; default: $LAKE, else the local state folder",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def _log_level(args: argparse.Namespace) -> str:
    return "INFO" if args.verbose else "WARNING"


def _seed(args: argparse.Namespace) -> int:
    dsn = args.source_dsn or environment.source_dsn()
    counts = seed.seed_totesys(dsn, seed=args.seed, scale=args.scale, now=args.now, progress=_say)
    _print_counts("ToteSys", counts)
    return 0


def _simulate(args: argparse.Namespace) -> int:
    dsn = args.source_dsn or environment.source_dsn()
    summary = simulate.simulate(dsn, minutes=args.minutes, until=args.until, seed=args.seed)
    print(summary.describe())
    return 0


def _settings(args: argparse.Namespace, execution_input: dict) -> RunSettings:
    """Where and how to run: options, else the environment (and .env), else the embedded
    databases, where ToteSys is read as the read-only role."""
    lake = environment.chosen_lake(args.lake)
    return RunSettings(
        source_dsn=environment.chosen_source_dsn(args.source_dsn),
        warehouse_dsn=environment.chosen_warehouse_dsn(args.warehouse_dsn),
        lake=lake,
        fail_at=getattr(args, "fail_at", None),
        log_level=_log_level(args),
        execution_input=execution_input,
        # An s3:// lake given here is a real bucket: its requests go to S3, while the state
        # machine, the functions and the alert topic run locally on moto.
        aws_s3=lake.startswith("s3://"),
        runs_dir=runs_dir(),
    )


def _execute(args: argparse.Namespace, execution_input: dict) -> int:
    """Exactly one execution; never seeds, simulates or writes to the source."""
    settings = _settings(args, execution_input)
    report = execute_pipeline(settings, progress=_say)
    if args.json:
        print(json.dumps(asdict(report), indent=2, sort_keys=True, default=str))
    else:
        # Shown without its password (psql asks for it).
        print(format_summary(report, settings.lake, redact_dsn(settings.warehouse_dsn)))
    if not report.succeeded:
        reason = report.alerts[0]["subject"] if report.alerts else "the execution failed"
        _say(f"error: {reason}")
    return 0 if report.succeeded else EXIT_FAILURE


def _run(args: argparse.Namespace) -> int:
    return _execute(args, {"reconcile": True} if args.reconcile else {})


def _replay(args: argparse.Namespace) -> int:
    return _execute(args, {"replay": args.table or REPLAY_ALL})


def _skip(args: argparse.Namespace) -> int:
    if args.aws:
        lake = status_cli.deployed_lake(args.lake, Names(status_cli.environment_of(args)))
    else:
        lake = Lake.from_uri(environment.chosen_lake(args.lake))
    _refuse_a_loaded_batch(args)
    at = datetime.now(UTC).isoformat(timespec="seconds")
    record = lake.record_skip(args.batch_id, args.reason, by=getpass.getuser(), at=at)
    print(
        f"Batch {record.batch_id} is skipped ({record.reason}). The next run records it in the"
        " warehouse and delivers its rows again from ToteSys."
    )
    return 0


def _refuse_a_loaded_batch(args: argparse.Namespace) -> None:
    """A skip is for a batch that cannot be delivered: one the warehouse holds was, and
    skipping it would make the next extract copy everything again for nothing."""
    if args.warehouse_dsn or not args.aws:
        dsn = environment.chosen_warehouse_dsn(args.warehouse_dsn)
    else:
        try:
            dsn = warehouse_dsn_from_env()
        except ConfigurationError:
            _say("(no warehouse configured: not checked that it does not hold the batch)")
            return
    try:
        with connect(dsn, application_name="totes-skip") as conn, conn.cursor() as cur:
            state = batch_state(cur, args.batch_id)
    except DatabaseUnavailableError as exc:
        _say(f"(the warehouse could not be read, so not checked: {exc})")
        return
    if state == "loaded":
        raise LakeError(
            f"batch {args.batch_id} is in the warehouse already (etl_loaded_batch: loaded): a"
            " skip is for a batch that cannot be delivered, and this one was"
        )


def _reconcile(args: argparse.Namespace) -> int:
    """Only reads both databases (ToteSys by default as the read-only role `run` uses)."""
    return reconcile.command(
        args,
        source_dsn=lambda: environment.chosen_source_dsn(args.source_dsn),
        warehouse_dsn=lambda: environment.chosen_warehouse_dsn(args.warehouse_dsn),
        say=_say,
    )


def _psql(args: argparse.Namespace) -> int:
    """psql's own exit code. The embedded server, started here if need be, stops when this
    process ends (unless another one, a notebook's kernel say, still uses it)."""
    dsn = environment.chosen_warehouse_dsn(args.warehouse_dsn)
    extra = args.psql_args[1:] if args.psql_args[:1] == ["--"] else args.psql_args
    if args.command:
        extra = ["-c", args.command, *extra]
    return run_psql(dsn, extra)


def _demo(args: argparse.Namespace) -> int:
    return demo(say=_say, log_level=_log_level(args))


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _print_counts(title: str, counts: dict[str, int]) -> None:
    width = max(len(t) for t in counts)
    print(f"{title}: rows per table")
    for table, rows in counts.items():
        print(f"  {table:<{width}}  {rows:>10,}")


def _passwords(args: argparse.Namespace) -> list[str | None]:
    """The passwords of every DSN this command was given: an error line never shows them."""
    given = [getattr(args, name, None) for name in ("source_dsn", "warehouse_dsn")]
    given += [os.environ.get(name) for name in DSN_VARIABLES]
    return [password_of(dsn) for dsn in given if dsn]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        load_env_file()
        return handler(args)
    except KeyboardInterrupt:
        _say("interrupted")
        return 130
    except BrokenPipeError:
        # The reader went away (`totes status --json | head`): nothing more to tell it.
        with contextlib.suppress(OSError, ValueError):  # no file behind stdout: nothing to do
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # as a shell reports a process that SIGPIPE ended
    except Exception as exc:
        if args.verbose:
            raise
        _say(f"error: {type(exc).__name__}: {redact(str(exc), *_passwords(args))}")
        _say("(run again with --verbose for the full trace)")
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
