"""The audit's CloudWatch metrics (Embedded Metric Format, through Powertools): the number
of differences per warehouse table, and their total, which an alarm watches."""

from __future__ import annotations

import os

from aws_lambda_powertools.metrics import MetricUnit, single_metric

from totes.contract import AUDIT_TOTAL, DIFFERENCES_METRIC, METRICS_NAMESPACE
from totes.pipeline.audit_report import AuditReport


def publish_differences(report: AuditReport) -> None:
    """One data point per audited table, and the total (also when it is zero: a zero is
    what clears the alarm)."""
    if os.environ.get("POWERTOOLS_METRICS_DISABLED", "").lower() == "true":
        return
    counts = {table.table: table.differences for table in report.tables}
    counts[AUDIT_TOTAL] = report.differences
    for table, differences in counts.items():
        with single_metric(
            name=DIFFERENCES_METRIC,
            unit=MetricUnit.Count,
            value=differences,
            namespace=METRICS_NAMESPACE,
        ) as metric:
            metric.add_dimension(name="table", value=table)
