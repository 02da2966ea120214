"""Our real Lambda handlers, called in-process where moto's Lambda would start a container.

moto's Lambda runs code only in Docker. With ``"lambda": {"use_docker": False}`` it uses
``LambdaSimpleBackend``, whose ``invoke`` the runner replaces, for one execution, by the
function ``make_invoke`` returns: it calls ``lambdas.<stage>.handler`` with the run's
environment variables. An exception becomes what the Lambda runtime would return (the
``x-amz-function-error`` header and ``{"errorMessage", "errorType"}``), so ``ErrorEquals``
matches our exception class names exactly as on AWS (e.g. ``DatabaseUnavailableError`` is
retried).

Calls run as moto's engine makes them: a Map's iterations at once, up to its
MaxConcurrency, as on AWS. The run's environment variables are set once for the whole
execution (``runner.execute_pipeline``), not per call: ``os.environ`` is process-wide.

Failure injection (``totes run --fail-at STAGE``) lives here, in the local wrapper: the
handlers that ship to AWS know nothing of it.
"""

from __future__ import annotations

import importlib
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from totes.contract import FUNCTION_LIMITS, Names
from totes.pipeline.redact import password_of, redact


class InjectedFailure(Exception):
    """A failure asked for with ``--fail-at``, to show the failure path and its alert."""


@dataclass(frozen=True)
class LambdaContext:
    """The parts of the Lambda context object that our handlers (and Powertools) read."""

    function_name: str
    aws_request_id: str
    invoked_function_arn: str
    memory_limit_in_mb: int = 1024
    function_version: str = "$LATEST"

    def get_remaining_time_in_millis(self) -> int:
        return 900_000


def call_handler(stage: str, event: dict, context: LambdaContext) -> Any:
    """Call the real handler of one stage (tests may wrap this to inject failures)."""
    module = importlib.import_module(f"lambdas.{stage}")
    return module.handler(event, context)


@contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the block, then restore what was there."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def _describe(result: Any) -> str:
    rows = result.get("rows") if isinstance(result, dict) else None
    if isinstance(rows, dict):
        rows = sum(rows.values())
    return f"{rows:,} rows" if isinstance(rows, int) else "done"


def make_invoke(
    names: Names,
    handler_environment: Mapping[str, str],
    *,
    fail_at: str | None,
    progress: Callable[[str], None],
) -> Callable[..., bytes]:
    """A replacement for ``LambdaSimpleBackend.invoke`` that runs our handlers (with
    ``handler_environment`` already set: see the module's docstring)."""
    # What a stage's error may echo and nobody may see: the passwords of the run's DSNs.
    passwords = [password_of(v) for k, v in handler_environment.items() if k.endswith("_DSN")]

    def invoke(
        backend: Any,
        function_name: str,
        qualifier: str | None,
        body: Any,
        headers: Any,
        response_headers: dict,
    ) -> bytes:
        stage = names.stage_of(function_name)
        raw = body.decode("utf-8") if isinstance(body, bytes) else (body or "{}")
        event = json.loads(raw) if raw else {}
        context = LambdaContext(
            function_name=names.function(stage),
            aws_request_id=str(uuid.uuid4()),
            invoked_function_arn=function_name,
        )
        progress(f"  {stage} ...")
        started = time.monotonic()
        try:
            if stage == fail_at:
                raise InjectedFailure(f"failure injected into the {stage} stage (--fail-at)")
            result = call_handler(stage, event, context)
        except Exception as exc:
            message = redact(str(exc), *passwords)
            progress(f"  {stage} failed: {type(exc).__name__}: {message}")
            # What the Python runtime returns for an unhandled exception.
            response_headers["x-amz-function-error"] = "Unhandled"
            payload: Any = {
                "errorMessage": message,
                "errorType": type(exc).__name__,
                "requestId": context.aws_request_id,
                "stackTrace": [],
            }
        else:
            payload = result
            seconds = time.monotonic() - started
            progress(f"  {stage}: {_describe(result)} in {seconds:.1f} s")
            if seconds > (limit := FUNCTION_LIMITS[stage].timeout_seconds):
                progress(
                    f"  warning: {stage} took {seconds:.0f} s, past its deployed limit of"
                    f" {limit} s: on AWS this call would have been stopped, and the run"
                    " would have failed"
                )
        return json.dumps(payload, default=str).encode("utf-8")

    return invoke
