"""Extract Lambda: ToteSys -> ingestion lake. Input: {} or {"reconcile": true}."""

from totes.pipeline.config import (
    every_run_rows_from_env,
    lake_from_env,
    part_rows_from_env,
    reconcile_interval_from_env,
    source_dsn_from_env,
)
from totes.pipeline.events import reconcile_requested
from totes.pipeline.extract import run_extract
from totes.pipeline.extract_settings import (
    DEFAULT_PART_ROWS,
    RECONCILE_EVERY_RUN_ROWS,
    RECONCILE_INTERVAL,
    ExtractSettings,
)
from totes.pipeline.observability import stage_handler


@stage_handler("extract")
def handler(event: dict) -> dict:
    settings = ExtractSettings(
        reconcile_interval=reconcile_interval_from_env(RECONCILE_INTERVAL),
        every_run_rows=every_run_rows_from_env(RECONCILE_EVERY_RUN_ROWS),
        force_reconcile=reconcile_requested(event),
        part_rows=part_rows_from_env(DEFAULT_PART_ROWS),
    )
    return run_extract(lake_from_env(), source_dsn_from_env(), settings)
