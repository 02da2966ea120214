"""Transform Lambda: ingestion CSV -> processed Parquet. Input: {"batch_ids": [...]}."""

from totes.config import lake_from_env
from totes.observability import stage_handler
from totes.stages import batch_ids_from, run_transform


@stage_handler("transform")
def handler(event: dict) -> dict:
    return run_transform(lake_from_env(), batch_ids_from(event))
