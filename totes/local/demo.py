"""`make run`: seed ToteSys the first time, let the business move on, run the pipeline once."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from totes.local import environment
from totes.local.embedded_postgres import state_dir
from totes.local.report import format_summary
from totes.local.runner import RunSettings, execute_pipeline
from totes.totesys import seed, simulate
from totes.totesys.database import read_only_dsn

# How far the simulated business moves on: the real time since the last call, but at
# least one schedule interval and at most a week.
MIN_SIMULATED = timedelta(minutes=10)
MAX_SIMULATED = timedelta(days=7)


def demo(*, say: Callable[[str], None], log_level: str = "WARNING") -> int:
    """Prepare the local ToteSys, run the pipeline once, print the summary; the exit code."""
    say(f"Starting the embedded PostgreSQL (data in {state_dir() / 'postgres'}) ...")
    source = environment.source_dsn()
    if not seed.is_seeded(source):
        say("Seeding ToteSys with two years of history (first run only) ...")
        seed.seed_totesys(source, progress=say)
    else:
        elapsed = simulate.wallclock_since_last_simulation(source)
        minutes = int(min(max(elapsed, MIN_SIMULATED), MAX_SIMULATED).total_seconds() // 60)
        say(f"Letting the business move on by {minutes} simulated minutes ...")
        say(simulate.simulate(source, minutes=minutes).describe())
    settings = RunSettings(
        source_dsn=read_only_dsn(source, environment.READER_ROLE),
        warehouse_dsn=environment.warehouse_dsn(),
        lake=str(environment.lake_path()),
        log_level=log_level,
        runs_dir=state_dir() / "runs",  # for `totes status`
    )
    say("Running the pipeline (the real state machine definition, on moto) ...")
    report = execute_pipeline(settings, progress=say)
    print(format_summary(report, settings.lake, settings.warehouse_dsn))
    return 0 if report.succeeded else 1
