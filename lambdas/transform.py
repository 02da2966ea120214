"""Transform Lambda: ingestion CSV -> processed Parquet. Input: {} (every batch not yet
transformed) or {"batch_ids": [...]}; {"fan_out": true}: a batch too big for one call is
listed in units of work instead; {"batch_id": ..., "unit": n}: one unit (a Map iteration)."""

from totes.pipeline.config import lake_from_env
from totes.pipeline.events import batch_ids_from, fan_out_allowed, unit_from
from totes.pipeline.observability import stage_handler
from totes.pipeline.transform import run_transform, run_transform_unit


@stage_handler("transform")
def handler(event: dict) -> dict:
    if (unit := unit_from(event)) is not None:
        return run_transform_unit(lake_from_env(), *unit)
    return run_transform(lake_from_env(), batch_ids_from(event), fan_out=fan_out_allowed(event))
