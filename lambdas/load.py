"""Load Lambda: processed Parquet -> warehouse. Input: {} (every batch the warehouse lacks),
{"batch_ids": [...]}, or {"replay": "all" | "<table>"} (rebuild from the lake);
{"fan_out": true}: a batch in parts is listed part by part for the Map instead;
{"batch_id": ..., "table": ..., "part": n}: stage one part (a Map iteration)."""

from totes.pipeline.config import lake_from_env, warehouse_dsn_from_env
from totes.pipeline.events import batch_ids_from, fan_out_allowed, part_from, replay_requested
from totes.pipeline.load import run_load, run_stage_part
from totes.pipeline.observability import stage_handler


@stage_handler("load")
def handler(event: dict) -> dict:
    if (part := part_from(event)) is not None:
        return run_stage_part(lake_from_env(), warehouse_dsn_from_env(), *part)
    return run_load(
        lake_from_env(),
        warehouse_dsn_from_env(),
        batch_ids_from(event),
        replay_requested(event),
        fan_out=fan_out_allowed(event),
    )
