"""`make bench`: the pipeline's speed and memory at a given scale, side by side with
PostgreSQL's own COPY floor, measured in the same run on the same server.

- The keyed floor is what any warehouse load must at least do: COPY every ToteSys table out
  to files, then COPY the files into logged tables that have their primary keys.
- The unconstrained floor: COPY out into memory and into temporary tables without keys.
- Each floor is the faster of two tries, one just before the pipeline's initial run and
  one just after it: a laptop's or a cloud VM's speed drifts from one minute to the next,
  and both tries are printed, so the drift shows. Every step (each half of the keyed
  floor, each stage) starts after a CHECKPOINT and a sync: no step pays for an earlier
  one's writes (on a laptop they all share one disk), and the ratio never flatters the
  pipeline.
- Each stage of the initial run executes in its own Python process through its real Lambda
  handler, as in a Lambda, so its peak memory (VmHWM) is its own.
- Then an incremental run after a 10-minute burst of business, and a run with nothing new:
  the three handlers in one process whose imports are done before the clock starts, as a
  warm Lambda runs them every 10 minutes.

Figures are printed (``--json`` for machines), never asserted: benchmarks are not tests.
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
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path

from psycopg2 import sql

from totes.local.embedded_postgres import EmbeddedPostgres
from totes.pipeline.db import connect
from totes.schema.source import SOURCE_TABLES
from totes.totesys.seed import seed_totesys
from totes.totesys.simulate import simulate

STAGES = ("extract", "transform", "load")

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

# One warm run: the handlers imported first (a warm Lambda has them), then timed in turn,
# each stage's peak memory its own (VmHWM reset before it: writing 5 to clear_refs).
_RUN_CODE = """
import importlib, json, sys, time
stages = ("extract", "transform", "load")
extract_event = json.loads(sys.argv[1])
handlers = {s: importlib.import_module(f"lambdas.{s}").handler for s in stages}
timings, results, peaks = {}, {}, {}
for stage, handler in handlers.items():
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")
    started = time.perf_counter()
    results[stage] = handler(extract_event if stage == "extract" else {}, None)
    timings[stage] = time.perf_counter() - started
    peaks[stage] = next(int(line.split()[1]) for line in open("/proc/self/status")
                        if line.startswith("VmHWM:"))
print(json.dumps({"timings": timings, "results": results, "peaks_kib": peaks}))
"""


@dataclass
class Measurement:
    name: str
    seconds: float
    rows: int
    peak_mib: float | None = None
    note: str = ""

    def line(self) -> str:
        rate = f"{self.rows / self.seconds:>10,.0f} rows/s" if self.seconds else " " * 17
        peak = f"{self.peak_mib:>7,.0f} MiB peak" if self.peak_mib is not None else " " * 16
        return (
            f"  {self.name:<34}{self.seconds:>8.2f} s {self.rows:>11,} rows {rate} {peak}"
            f"  {self.note}"
        ).rstrip()


# The most disk the bench holds at once (ToteSys, the lake, the warehouse and the floor's
# copy), per unit of scale: 3.9 GB at scale 100.
DISK_PER_SCALE = 40 * 1024**2


class StageFailed(RuntimeError):
    """A stage's process failed: its last line is the message, its whole stderr kept."""

    def __init__(self, stage: str, stderr: str) -> None:
        lines = [line for line in stderr.splitlines() if line.strip()]
        super().__init__(f"{stage} failed: {lines[-1] if lines else 'no output'}")
        self.stderr = stderr


def _child(code: str, args: list[str], environment: dict[str, str]) -> dict:
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(  # noqa: S603 (our interpreter, our code, our batch ids)
            [sys.executable, "-c", code, *args],
            env=os.environ | environment,
            stdout=subprocess.PIPE,
            stderr=errors,
        )
        stdout, _ = process.communicate()
        if process.returncode:
            errors.seek(0)
            raise StageFailed(args[0], errors.read().decode(errors="replace"))
    return json.loads(stdout.decode().strip().splitlines()[-1])


def _run_stage(stage: str, batch_ids: list[str], environment: dict[str, str]) -> tuple[dict, float]:
    """(result, peak MiB) of one stage run in a child process."""
    event = {"batch_ids": batch_ids} if batch_ids else {}
    report = _child(_STAGE_CODE, [stage, json.dumps(event)], environment)
    return report["result"], report["peak_kib"] / 1024


def _rows(result: dict) -> int:
    rows = result.get("rows", 0)
    return rows if isinstance(rows, int) else sum(rows.values())


def copy_floor(source_dsn: str) -> Measurement:
    """COPY every table out into memory, then into an unconstrained temporary copy of it."""
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
    return Measurement(
        "floor, unconstrained",
        time.perf_counter() - started,
        rows,
        note="COPY out to memory + into temp tables (unlogged), no keys, not committed",
    )


def keyed_floor(
    source_dsn: str, floor_dsn: str, workdir: Path, settle: Callable[[], None] = lambda: None
) -> Measurement:
    """COPY every table out to a file, then into a logged table WITH its primary key (in
    another database of the same server): what any warehouse load must at least do. The
    two halves are timed apart, with ``settle`` between them (as between stages)."""
    files = workdir / "floor"
    files.mkdir(exist_ok=True)
    rows = 0
    started = time.perf_counter()
    with connect(source_dsn) as source, source.cursor() as cur:
        for table in SOURCE_TABLES:
            with (files / f"{table.name}.csv").open("wb") as out:
                cur.copy_expert(
                    sql.SQL("COPY {} TO STDOUT WITH (FORMAT csv)").format(
                        sql.Identifier(table.name)
                    ),
                    out,
                )
        source.rollback()
    copied_out = time.perf_counter() - started
    settle()
    started = time.perf_counter()
    with connect(floor_dsn) as floor, floor.cursor() as cur:
        for table in SOURCE_TABLES:
            columns = sql.SQL(", ").join(
                sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(_floor_type(c.pg_type)))
                for c in table.columns
            )
            cur.execute(
                sql.SQL("CREATE TABLE {} ({}, PRIMARY KEY ({}))").format(
                    sql.Identifier(table.name), columns, sql.Identifier(table.primary_key)
                )
            )
            with (files / f"{table.name}.csv").open("rb") as data:
                cur.copy_expert(
                    sql.SQL("COPY {} FROM STDIN WITH (FORMAT csv)").format(
                        sql.Identifier(table.name)
                    ),
                    data,
                )
            rows += cur.rowcount
        floor.commit()
    seconds = copied_out + time.perf_counter() - started
    shutil.rmtree(files, ignore_errors=True)
    return Measurement("floor, keyed", seconds, rows, note="COPY out to files + into PK'd")


def _floor_type(pg_type: str) -> str:
    # The floor database has no ToteSys enum types: their labels are text there.
    if pg_type.startswith('"'):
        return "text"
    return "integer" if pg_type == "serial" else pg_type


def _settle(dsn: str) -> None:
    """Write every dirty page and file out now (a CHECKPOINT, then sync), so that no step
    pays for an earlier one's writes: on one laptop disk they would otherwise be flushed
    during whatever runs next."""
    _outside_a_transaction(dsn, "CHECKPOINT")
    os.sync()


def _outside_a_transaction(dsn: str, statement: str) -> None:
    with connect(dsn) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(statement)


_VACUUM_NOTE = "the seeded tables settled, as a working ToteSys's are"


def _vacuum(dsn: str) -> None:
    """VACUUM (ANALYZE) the freshly seeded ToteSys. Its rows were all just inserted: the
    first step to read them would stamp each as committed (writing every page), and
    autovacuum would soon do the same, during whichever step ran then (a floor try took
    24.1 s against 16.8 s for the other in one run). A working ToteSys's tables are
    vacuumed; so the floors and the pipeline all read settled tables."""
    _outside_a_transaction(dsn, "VACUUM (ANALYZE)")


def warm_run(
    name: str, environment: dict[str, str], extract_event: dict | None = None
) -> list[Measurement]:
    """One pipeline execution's three stages, timed in one warm process."""
    report = _child(_RUN_CODE, [json.dumps(extract_event or {})], environment)
    peaks = {stage: kib / 1024 for stage, kib in report["peaks_kib"].items()}
    lines = [
        Measurement(
            f"{name}: {stage}",
            report["timings"][stage],
            _rows(report["results"][stage]),
            peaks[stage],
        )
        for stage in STAGES
    ]
    total = sum(report["timings"].values())
    lines.append(Measurement(f"{name}: run", total, lines[0].rows, max(peaks.values())))
    return lines


def bench(
    server: EmbeddedPostgres,
    scale: float,
    workdir: Path,
    *,
    settings: dict[str, str] | None = None,
    incremental: bool = True,
    burst_minutes: int = 10,
    progress: Callable[[Measurement], None] = lambda measurement: None,
) -> list[Measurement]:
    """Seed at ``scale``; try both floors; run the three stages once (the initial load); try
    both floors again; then a run after a burst of business (10 minutes) and a run with
    nothing new. ``progress`` is told each measurement as it is taken (a big scale takes a
    while)."""
    results = _Results(progress)
    label = f"bench_{str(scale).replace('.', '_')}"
    names = {"src": f"{label}_src", "wh": f"{label}_wh", "floor": f"{label}_floor"}
    for database in names.values():
        server.drop_database(database)
    source = server.ensure_database(names["src"])
    environment = {
        "SOURCE_DSN": source,
        "WAREHOUSE_DSN": server.ensure_database(names["wh"]),
        "LAKE": str(workdir / "lake"),
        "POWERTOOLS_METRICS_DISABLED": "true",
        "LOG_LEVEL": "WARNING",
        **(settings or {}),
    }
    started = time.perf_counter()
    counts = seed_totesys(source, scale=scale)
    seeded = sum(counts.values())
    results.append(Measurement("seed", time.perf_counter() - started, seeded))
    started = time.perf_counter()
    _vacuum(source)
    results.append(Measurement("vacuum", time.perf_counter() - started, seeded, note=_VACUUM_NOTE))
    floor_tries = partial(_floor_tries, server, source, names["floor"], workdir)
    results.extend(floor_tries("before"))
    _settle(source)
    batch_ids: list[str] = []
    total = 0.0
    peaks = []
    for stage in STAGES:
        _settle(source)
        started = time.perf_counter()
        result, peak = _run_stage(stage, batch_ids, environment)
        seconds = time.perf_counter() - started
        total += seconds
        peaks.append(peak)
        batch_ids = result.get("pending_batch_ids") or result.get("batch_ids") or batch_ids
        results.append(Measurement(f"initial: {stage}", seconds, _rows(result), peak))
    results.extend(floor_tries("after"))
    keyed, unconstrained = _fastest_floors(results)
    results.extend((keyed, unconstrained))
    results.append(
        Measurement(
            "initial: pipeline (3 stages)",
            total,
            keyed.rows,
            max(peaks),
            note=f"{total / keyed.seconds:.2f}x the keyed floor",
        )
    )
    if incremental:
        simulate(source, minutes=burst_minutes)
        results.extend(warm_run(f"after a {burst_minutes}-minute burst", environment))
        results.extend(warm_run("nothing new", environment))
        # A table over RECONCILE_EVERY_RUN_ROWS is reconciled every 20 minutes, not every
        # run: the runs above, seconds after the initial one, leave that pass out.
        results.extend(warm_run("reconciled, nothing new", environment, {"reconcile": True}))
    return list(results)


def _floor_tries(
    server: EmbeddedPostgres, source: str, floor_db: str, workdir: Path, when: str
) -> list[Measurement]:
    """One try of each floor, named for ``when`` it was taken (before or after the run)."""
    server.drop_database(floor_db)
    floor = server.ensure_database(floor_db)
    _settle(source)
    keyed = keyed_floor(source, floor, workdir, settle=lambda: _settle(source))
    server.drop_database(floor_db)
    _settle(source)
    unconstrained = copy_floor(source)
    return [replace(m, name=f"{m.name}, {when}") for m in (keyed, unconstrained)]


def _fastest_floors(results: list[Measurement]) -> tuple[Measurement, Measurement]:
    """Of each floor, the faster try (the least a load must cost), with both tries named."""
    fastest = []
    for name in ("floor, keyed", "floor, unconstrained"):
        tries = [m for m in results if m.name.startswith(f"{name}, ")]
        best = min(tries, key=lambda m: m.seconds)
        seconds = " and ".join(f"{m.seconds:.2f} s" for m in tries)
        fastest.append(replace(best, name=name, note=f"{best.note}; the faster of {seconds}"))
    keyed, unconstrained = fastest
    return keyed, unconstrained


class _Results(list):
    """The measurements so far, each told to ``progress`` as it is added."""

    def __init__(self, progress: Callable[[Measurement], None]) -> None:
        super().__init__()
        self._progress = progress

    def append(self, measurement: Measurement) -> None:
        super().append(measurement)
        self._progress(measurement)

    def extend(self, measurements) -> None:
        for measurement in measurements:
            self.append(measurement)


def report(results: list[Measurement], scale: float) -> dict:
    """The measurements as JSON, with the ratio to the keyed floor."""
    by_name = {m.name: m for m in results}
    pipeline = by_name["initial: pipeline (3 stages)"].seconds
    return {
        "scale": scale,
        "cores": os.cpu_count(),
        "load_average": os.getloadavg(),
        "ratio_to_keyed_floor": pipeline / by_name["floor, keyed"].seconds,
        "ratio_to_unconstrained_floor": pipeline / by_name["floor, unconstrained"].seconds,
        "measurements": [asdict(m) for m in results],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__)
    parser.add_argument("--scale", type=float, default=10.0, help="ToteSys scale (default 10)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument(
        "--no-incremental", action="store_true", help="only the floors and the initial load"
    )
    parser.add_argument("--verbose", action="store_true", help="a failure's full trace")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a stage setting for this run (e.g. PART_ROWS=200000)",
    )
    args = parser.parse_args(argv)
    settings = dict(item.split("=", 1) for item in args.set)
    workdir = Path(tempfile.mkdtemp(prefix="totes-bench-"))
    workdir.chmod(0o755)  # as root, PostgreSQL runs as 'pgserver' and must enter it
    server = EmbeddedPostgres(workdir / "pgdata", delete_on_exit=True)
    try:
        if not args.json:
            print(
                f"Benchmark at scale {args.scale:g} ({os.cpu_count()} cores, load average "
                f"{os.getloadavg()[0]:.2f} at the start)",
                flush=True,
            )
        if (warning := _disk_warning(workdir, args.scale)) is not None:
            print(warning, file=sys.stderr, flush=True)
        results = bench(
            server,
            args.scale,
            workdir,
            settings=settings,
            incremental=not args.no_incremental,
            progress=(lambda m: None) if args.json else (lambda m: print(m.line(), flush=True)),
        )
        if args.json:
            print(json.dumps(report(results, args.scale), indent=1))
        else:
            print(f"  (load average at the end {os.getloadavg()[0]:.2f})")
    except Exception as exc:
        if args.verbose:
            print(getattr(exc, "stderr", ""), file=sys.stderr, end="")
            raise
        print(f"bench stopped: {type(exc).__name__}: {exc}", file=sys.stderr)
        print("(run again with --verbose for the full trace)", file=sys.stderr)
        return 1
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def _disk_warning(workdir: Path, scale: float) -> str | None:
    """A line to print before the bench starts when ``workdir``'s disk looks too small."""
    free, needed = shutil.disk_usage(workdir).free, scale * DISK_PER_SCALE
    if free >= needed:
        return None
    return (
        f"warning: {free / 1024**3:.1f} GB free in {workdir.parent}; scale {scale:g} needs"
        f" about {needed / 1024**3:.1f} GB (TMPDIR chooses the folder)"
    )


if __name__ == "__main__":
    sys.exit(main())
