"""`make bench`: the pipeline's speed and memory at a given scale, beside PostgreSQL's own
COPY floor (COPY out of every ToteSys table and COPY into an unconstrained copy).

Each stage runs in its own Python process, as in a Lambda, so its peak memory is its own.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from psycopg2 import sql

from totes.local.embedded_postgres import EmbeddedPostgres
from totes.pipeline.db import connect
from totes.schema.source import SOURCE_TABLES
from totes.totesys.seed import seed_totesys

# Each stage runs through its real Lambda handler, as the state machine would call it.
_STAGE_CODE = """
import importlib, json, sys
stage, event = sys.argv[1], json.loads(sys.argv[2])
result = importlib.import_module(f"lambdas.{stage}").handler(event, None)
# VmHWM, not ru_maxrss: ru_maxrss starts from the parent's size at fork.
peak_kib = next(int(line.split()[1]) for line in open("/proc/self/status")
                if line.startswith("VmHWM:"))
print(json.dumps({"result": result, "peak_kib": peak_kib}))
"""


@dataclass
class Measurement:
    name: str
    seconds: float
    rows: int
    peak_mib: float | None = None

    def line(self) -> str:
        rate = f"{self.rows / self.seconds:>12,.0f} rows/s" if self.seconds else ""
        peak = f"{self.peak_mib:>8,.0f} MiB peak" if self.peak_mib is not None else ""
        return f"  {self.name:<22}{self.seconds:>8.1f} s {self.rows:>12,} rows {rate} {peak}"


def _run_stage(stage: str, batch_ids: list[str], environment: dict[str, str]) -> tuple[dict, float]:
    """(result, peak MiB) of one stage run in a child process."""
    event = {"batch_ids": batch_ids} if batch_ids else {}
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(  # noqa: S603 (our interpreter, our code, our batch ids)
            [sys.executable, "-c", _STAGE_CODE, stage, json.dumps(event)],
            env=os.environ | environment,
            stdout=subprocess.PIPE,
            stderr=errors,
        )
        stdout, _ = process.communicate()
        if process.returncode:
            errors.seek(0)
            raise RuntimeError(f"{stage} failed: {errors.read().decode()[-2000:]}")
    report = json.loads(stdout.decode().strip().splitlines()[-1])
    return report["result"], report["peak_kib"] / 1024


def copy_floor(source_dsn: str) -> Measurement:
    """COPY every table out, then into an unconstrained temporary copy of it."""
    rows = 0
    started = time.perf_counter()
    with connect(source_dsn) as conn, conn.cursor() as cur:
        for table in SOURCE_TABLES:
            name = sql.Identifier(table.name)
            floor = sql.Identifier(f"floor_{table.name}")
            buffer = io.BytesIO()
            cur.copy_expert(sql.SQL("COPY {} TO STDOUT").format(name), buffer)
            buffer.seek(0)
            cur.execute(sql.SQL("CREATE TEMP TABLE {} (LIKE {})").format(floor, name))
            cur.copy_expert(sql.SQL("COPY {} FROM STDIN").format(floor), buffer)
            rows += cur.rowcount
        conn.rollback()
    return Measurement("COPY out + in (floor)", time.perf_counter() - started, rows)


def bench(server: EmbeddedPostgres, scale: float, workdir: Path) -> list[Measurement]:
    """Seed at ``scale``, run the three stages once, and measure the COPY floor."""
    label = f"bench_{str(scale).replace('.', '_')}"
    for database in (f"{label}_src", f"{label}_wh"):
        server.drop_database(database)
    source = server.ensure_database(f"{label}_src")
    environment = {
        "SOURCE_DSN": source,
        "WAREHOUSE_DSN": server.ensure_database(f"{label}_wh"),
        "LAKE": str(workdir / "lake"),
        "POWERTOOLS_METRICS_DISABLED": "true",
        "LOG_LEVEL": "WARNING",
    }
    started = time.perf_counter()
    counts = seed_totesys(source, scale=scale)
    results = [Measurement("seed", time.perf_counter() - started, sum(counts.values()))]
    results.append(copy_floor(source))
    batch_ids: list[str] = []
    total = 0.0
    for stage in ("extract", "transform", "load"):
        started = time.perf_counter()
        result, peak = _run_stage(stage, batch_ids, environment)
        seconds = time.perf_counter() - started
        total += seconds
        batch_ids = result.get("pending_batch_ids") or result.get("batch_ids") or batch_ids
        rows = result["rows"] if isinstance(result["rows"], int) else sum(result["rows"].values())
        results.append(Measurement(stage, seconds, rows, peak))
    results.append(Measurement("pipeline (3 stages)", total, results[2].rows))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__)
    parser.add_argument("--scale", type=float, default=10.0, help="ToteSys scale (default 10)")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="totes-bench-"))
    workdir.chmod(0o755)  # as root, PostgreSQL runs as 'pgserver' and must enter it
    server = EmbeddedPostgres(workdir / "pgdata", delete_on_exit=True)
    try:
        print(f"Benchmark at scale {args.scale:g} ({os.cpu_count()} cores)", flush=True)
        for measurement in bench(server, args.scale, workdir):
            print(measurement.line(), flush=True)
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
