"""Extract Lambda: ToteSys -> ingestion lake. Input ignored; output: batch id, counts, pending."""

from totes.config import lake_from_env, source_dsn_from_env
from totes.observability import stage_handler
from totes.stages import run_extract


@stage_handler("extract")
def handler(event: dict) -> dict:
    return run_extract(lake_from_env(), source_dsn_from_env())
