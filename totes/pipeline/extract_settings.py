"""The extract's settings: how far back each run reads again, how wide a reconciliation
bucket is, how often tables are reconciled and how many rows a CSV part holds. The
handlers and the audit read them too, without the extract."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

# Long enough for any ToteSys write transaction to commit; a row committed later than this
# with an older last_updated is found by the next reconciliation instead.
OVERLAP = timedelta(minutes=15)
# Ids per reconciliation bucket: a changed bucket is extracted whole, so smaller buckets
# mean fewer unchanged rows re-read; larger ones a smaller checksum file.
BUCKET_WIDTH = 100
# A change ToteSys makes silently must reach the warehouse within 30 minutes: a large table
# is reconciled at least every 20 minutes, which with a run every 10 leaves room for one
# failed run. A small table (most of ToteSys, and all of it at its real size) every run.
RECONCILE_INTERVAL = timedelta(minutes=20)
RECONCILE_EVERY_RUN_ROWS = 100_000
# Rows per CSV part: bounds the memory of the transform and the load (which handle one part
# at a time) and the work of one call when they fan out (config: PART_ROWS). Small enough
# that a scale-10 ToteSys already has two full parts in flight in the transform, so that
# its peak memory is the same from there up (with 100,000: +20% from scale 10 to 100).
DEFAULT_PART_ROWS = 50_000


@dataclass(frozen=True)
class ExtractSettings:
    """How often the extract reconciles: a table of at most ``every_run_rows`` rows on every
    run (it costs little), a larger one at most every ``reconcile_interval``."""

    reconcile_interval: timedelta = RECONCILE_INTERVAL
    every_run_rows: int = RECONCILE_EVERY_RUN_ROWS
    force_reconcile: bool = False  # `totes run --reconcile`, input {"reconcile": true}
    part_rows: int = DEFAULT_PART_ROWS
