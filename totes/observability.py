"""Structured logs and metrics for the Lambda handlers, configured once (Powertools).

Logs are JSON lines with level, stage, batch ids and row counts; metrics go out as
CloudWatch Embedded Metric Format (namespace TerrificTotes): rows per table per stage
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

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric

NAMESPACE = "TerrificTotes"
# stderr: on Lambda it reaches CloudWatch the same; locally it keeps stdout for results.
logger = Logger(service="totes", logger_handler=logging.StreamHandler(sys.stderr))
# Powertools logs through the standard logger named after the service, "totes", so the
# stage modules' logging.getLogger(__name__) loggers ("totes.extract", ...) propagate to it
# and come out as the same JSON lines.
metrics = Metrics(namespace=NAMESPACE, service="totes")

ROW_METRICS = {"extract": "RowsExtracted", "transform": "RowsTransformed", "load": "RowsLoaded"}
FAIL_AT_ENV = "TOTES_FAIL_AT"


class InjectedFailure(Exception):
    """A failure asked for with TOTES_FAIL_AT, to show the failure path and its alert."""


def _table_rows(result: dict) -> dict[str, int]:
    rows = result.get("tables") if "tables" in result else result.get("rows")
    return rows if isinstance(rows, dict) else {}


def _publish(stage: str, result: dict, seconds: float) -> None:
    if os.environ.get("POWERTOOLS_METRICS_DISABLED", "").lower() == "true":
        return
    for table, rows in _table_rows(result).items():
        with single_metric(
            name=ROW_METRICS[stage], unit=MetricUnit.Count, value=rows, namespace=NAMESPACE
        ) as metric:
            metric.add_dimension(name="table", value=table)
    with single_metric(
        name="RunDurationSeconds", unit=MetricUnit.Seconds, value=seconds, namespace=NAMESPACE
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
            logger.append_keys(stage=stage, request_id=getattr(context, "aws_request_id", None))
            logger.info("stage started", extra={"input": event})
            started = time.monotonic()
            try:
                if os.environ.get(FAIL_AT_ENV) == stage:
                    raise InjectedFailure(
                        f"failure injected into the {stage} stage ({FAIL_AT_ENV})"
                    )
                result = fn(event)
            except Exception as exc:
                logger.error(
                    "stage failed", extra={"error_type": type(exc).__name__, "error": str(exc)}
                )
                raise
            seconds = time.monotonic() - started
            logger.info("stage finished", extra={"result": result, "seconds": round(seconds, 3)})
            _publish(stage, result, seconds)
            return result

        return handler

    return wrap
