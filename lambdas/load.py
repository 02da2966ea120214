"""Load Lambda: processed Parquet -> warehouse. Input: {} (every batch the warehouse lacks),
{"batch_ids": [...]}, or {"replay": "all" | "<table>"} (rebuild from the lake)."""

from totes.pipeline.config import lake_from_env, warehouse_dsn_from_env
from totes.pipeline.events import batch_ids_from, replay_requested
from totes.pipeline.load import run_load
from totes.pipeline.observability import stage_handler


@stage_handler("load")
def handler(event: dict) -> dict:
    return run_load(
        lake_from_env(), warehouse_dsn_from_env(), batch_ids_from(event), replay_requested(event)
    )
