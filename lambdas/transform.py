"""Transform Lambda: ingestion CSV -> processed Parquet. Input: {} (every batch not yet
transformed) or {"batch_ids": [...]}."""

from totes.pipeline.config import lake_from_env
from totes.pipeline.events import batch_ids_from
from totes.pipeline.observability import stage_handler
from totes.pipeline.transform import run_transform


@stage_handler("transform")
def handler(event: dict) -> dict:
    return run_transform(lake_from_env(), batch_ids_from(event))
