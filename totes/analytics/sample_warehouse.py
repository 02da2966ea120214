"""A warehouse with some history, generated: the README's pictures and the notebook's test
are drawn from it. A seeded ToteSys is loaded, then the business moves on a day at a time
with a pipeline run after each day (orders arrive, payments turn paid: new fact versions).
"""

from __future__ import annotations

from totes.pipeline.extract import run_extract
from totes.pipeline.lake import Lake
from totes.pipeline.load import run_load
from totes.pipeline.transform import run_transform
from totes.totesys.simulate import simulate

MINUTES_PER_DAY = 24 * 60


def run_pipeline(lake: Lake, source_dsn: str, warehouse_dsn: str) -> None:
    """Extract, transform and load once, as the state machine would (each stage takes
    whatever is pending)."""
    run_extract(lake, source_dsn)
    run_transform(lake)
    run_load(lake, warehouse_dsn)


def fill(source_dsn: str, warehouse_dsn: str, lake: Lake, *, days: int, seed: int = 1) -> None:
    """Load the seeded ToteSys at ``source_dsn``, then ``days`` simulated days, one run each."""
    run_pipeline(lake, source_dsn, warehouse_dsn)
    for day in range(days):
        simulate(source_dsn, minutes=MINUTES_PER_DAY, seed=seed + day)
        run_pipeline(lake, source_dsn, warehouse_dsn)
