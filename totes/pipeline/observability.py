"""Structured logs and metrics for the Lambda handlers, configured once (Powertools).

Logs are JSON lines with level, stage, batch ids and row counts; metrics go out as
CloudWatch Embedded Metric Format (names in ``totes.contract``): rows per table per stage
and each stage's duration. Locally, POWERTOOLS_METRICS_DISABLED and LOG_LEVEL quieten them.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from totes.contract import DURATION_METRIC, METRICS_NAMESPACE, ROW_METRICS
from totes.pipeline.redact import redact

SERVICE = "totes"
# stderr: on Lambda it reaches CloudWatch the same; locally it keeps stdout for results.
logger = Logger(service=SERVICE, logger_handler=logging.StreamHandler(sys.stderr))
# Powertools logs through the standard logger named after the service, "totes", so the
# stage modules' logging.getLogger(__name__) loggers ("totes.pipeline.extract", ...)
# propagate to it and come out as the same JSON lines.


def _table_rows(result: dict) -> dict[str, int]:
    rows = result.get("tables") if "tables" in result else result.get("rows")
    return rows if isinstance(rows, dict) else {}


def _publish(stage: str, result: dict, seconds: float) -> None:
    if os.environ.get("POWERTOOLS_METRICS_DISABLED", "").lower() == "true":
        return
    for table, rows in _table_rows(result).items():
        with single_metric(
            name=ROW_METRICS[stage], unit=MetricUnit.Count, value=rows, namespace=METRICS_NAMESPACE
        ) as metric:
            metric.add_dimension(name="table", value=table)
    with single_metric(
        name=DURATION_METRIC, unit=MetricUnit.Seconds, value=seconds, namespace=METRICS_NAMESPACE
    ) as metric:
        metric.add_dimension(name="stage", value=stage)


def stage_handler(stage: str) -> Callable[[Callable[[dict], dict]], Callable[[dict, Any], dict]]:
    """Wrap a stage function ``fn(event) -> result`` as a Lambda handler.

    Logs the start and the outcome, publishes metrics, and re-raises every failure so that
    the orchestrator sees it: an error is never returned as a successful payload.
    """

    def wrap(fn: Callable[[dict], dict]) -> Callable[[dict, Any], dict]:
        @functools.wraps(fn)
        def handler(event: dict, context: Any = None) -> dict:
            # Per thread: on a laptop a Map's calls run side by side in one process.
            logger.thread_safe_append_keys(
                stage=stage, request_id=getattr(context, "aws_request_id", None)
            )
            logger.info("stage started", extra={"input": event})
            started = time.monotonic()
            try:
                result = fn(event)
            except Exception as exc:
                # Redacted: whatever the error, a password it echoes never reaches the logs.
                logger.error(
                    "stage failed",
                    extra={"error_type": type(exc).__name__, "error": redact(str(exc))},
                )
                raise
            seconds = time.monotonic() - started
            logger.info("stage finished", extra={"result": result, "seconds": round(seconds, 3)})
            _publish(stage, result, seconds)
            return result

        return handler

    return wrap
