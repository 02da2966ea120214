"""Load Lambda: processed Parquet -> warehouse. Input: {"batch_ids": [...]}."""

from totes.config import lake_from_env, warehouse_dsn_from_env
from totes.observability import stage_handler
from totes.stages import batch_ids_from, run_load


@stage_handler("load")
def handler(event: dict) -> dict:
    return run_load(lake_from_env(), warehouse_dsn_from_env(), batch_ids_from(event))
