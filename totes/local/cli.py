"""The ``totes`` command line: seed and simulate ToteSys, run the pipeline, see the results."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import datetime

from totes.contract import STAGES
from totes.local import environment, reconcile
from totes.local.demo import demo
from totes.local.report import format_summary
from totes.local.runner import RunSettings, execute_pipeline
from totes.totesys import seed, simulate
from totes.totesys.database import read_only_dsn

EXIT_FAILURE = 1


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
    _add_source_dsn(run)
    run.add_argument("--warehouse-dsn", help="warehouse database; default: the embedded one")
    run.add_argument(
        "--lake", help="a folder, or s3://bucket[/prefix]; default: the local state folder"
    )
    run.add_argument("--json", action="store_true", help="print the summary as JSON")
    run.add_argument(
        "--fail-at",
        choices=STAGES,
        help="inject a failure into a stage to see the failure path and its alert email",
    )
    run.set_defaults(handler=_run)

    reconcile_parser = commands.add_parser(
        "reconcile", help="compare the warehouse with ToteSys; exit 1 when they differ"
    )
    _add_source_dsn(reconcile_parser)
    reconcile.add_arguments(reconcile_parser)
    reconcile_parser.set_defaults(handler=_reconcile)
    return parser


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


def _run(args: argparse.Namespace) -> int:
    """Exactly one execution; never seeds, simulates or writes to the source."""
    source = args.source_dsn or read_only_dsn(environment.source_dsn(), environment.READER_ROLE)
    settings = RunSettings(
        source_dsn=source,
        warehouse_dsn=args.warehouse_dsn or environment.warehouse_dsn(),
        lake=args.lake or str(environment.lake_path()),
        fail_at=args.fail_at,
        log_level=_log_level(args),
        # An s3:// lake given here is a real bucket: its requests go to S3, while the state
        # machine, the functions and the alert topic run locally on moto.
        aws_s3=bool(args.lake and args.lake.startswith("s3://")),
    )
    report = execute_pipeline(settings, progress=_say)
    if args.json:
        print(json.dumps(asdict(report), indent=2, sort_keys=True, default=str))
    else:
        print(format_summary(report, settings.lake, settings.warehouse_dsn))
    if not report.succeeded:
        reason = report.alerts[0]["subject"] if report.alerts else "the execution failed"
        _say(f"error: {reason}")
    return 0 if report.succeeded else EXIT_FAILURE


def _reconcile(args: argparse.Namespace) -> int:
    """Only reads both databases (ToteSys by default as the read-only role `run` uses)."""
    return reconcile.command(
        args,
        source_dsn=lambda: (
            args.source_dsn or read_only_dsn(environment.source_dsn(), environment.READER_ROLE)
        ),
        warehouse_dsn=lambda: args.warehouse_dsn or environment.warehouse_dsn(),
        say=_say,
    )


def _demo(args: argparse.Namespace) -> int:
    return demo(say=_say, log_level=_log_level(args))


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _print_counts(title: str, counts: dict[str, int]) -> None:
    width = max(len(t) for t in counts)
    print(f"{title}: rows per table")
    for table, rows in counts.items():
        print(f"  {table:<{width}}  {rows:>10,}")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        _say("interrupted")
        return 130
    except Exception as exc:
        if args.verbose:
            raise
        _say(f"error: {type(exc).__name__}: {exc}")
        _say("(run again with --verbose for the full trace)")
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
