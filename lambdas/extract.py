"""Extract Lambda: ToteSys -> ingestion lake. Input ignored; output: batch id, counts, pending."""

from totes.pipeline.config import lake_from_env, source_dsn_from_env
from totes.pipeline.extract import run_extract
from totes.pipeline.observability import stage_handler


@stage_handler("extract")
def handler(event: dict) -> dict:
    return run_extract(lake_from_env(), source_dsn_from_env())
