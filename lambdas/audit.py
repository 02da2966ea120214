"""Audit Lambda (scheduled): compare the warehouse with ToteSys and publish the number of
differences. Input: {} or {"tables": [...]}; output: counts per table and a few example ids
and columns (never values: they stay in the databases)."""

from totes.contract import AUDIT_FUNCTION
from totes.pipeline.audit import run_audit, tables_from
from totes.pipeline.audit_metrics import publish_differences
from totes.pipeline.config import source_dsn_from_env, warehouse_dsn_from_env
from totes.pipeline.observability import stage_handler


@stage_handler(AUDIT_FUNCTION)
def handler(event: dict) -> dict:
    report = run_audit(source_dsn_from_env(), warehouse_dsn_from_env(), tables=tables_from(event))
    publish_differences(report)
    return report.to_dict(with_values=False)
