"""What the state machine passes to a stage: small JSON (ids, flags, counts), validated here.

An execution's input may ask for more than a normal run (the schedule sends ``{}``):
``{"reconcile": true}`` makes the extract reconcile every table now, and
``{"replay": "all"}`` or ``{"replay": "<warehouse table>"}`` makes the load rebuild the
warehouse, or one table, from the lake.
"""

from __future__ import annotations

from totes.pipeline.lake import LakeError, check_batch_id

# Bounds the work of one execution (and its state size); the rest waits for the next run.
MAX_BATCHES_PER_RUN = 24
REPLAY_ALL = "all"


class InvalidInputError(ValueError):
    """A stage was called with input it cannot use."""


def _dict(event: object) -> dict:
    if not isinstance(event, dict):
        raise InvalidInputError(f"expected a JSON object as input, got {event!r:.200}")
    return event


def batch_ids_from(event: dict) -> list[str] | None:
    """The ``batch_ids`` of a stage's input, validated; None when absent (all pending)."""
    batch_ids = _dict(event).get("batch_ids")
    if batch_ids is None:
        return None
    if not isinstance(batch_ids, list):
        raise InvalidInputError(f"expected a list 'batch_ids', got {event!r:.200}")
    try:
        return [check_batch_id(b) for b in batch_ids]
    except LakeError as exc:
        raise InvalidInputError(str(exc)) from None


def reconcile_requested(event: dict) -> bool:
    value = _dict(event).get("reconcile", False)
    if not isinstance(value, bool):
        raise InvalidInputError(f"'reconcile' must be true or false, got {value!r:.100}")
    return value


def replay_requested(event: dict) -> str | None:
    """None (a normal load), ``"all"``, or the name of the warehouse table to rebuild from
    the lake (the load checks it against the schema)."""
    value = _dict(event).get("replay")
    if value in (None, False):
        return None
    if value is True:
        return REPLAY_ALL
    if isinstance(value, str) and value:
        return value
    raise InvalidInputError(f"'replay' must be \"all\" or a warehouse table; got {value!r:.100}")


def fan_out_allowed(event: dict) -> bool:
    """``{"fan_out": true}``: a batch too big for one call is listed in units of work for
    the state machine's Map instead of being done in this call."""
    value = _dict(event).get("fan_out", False)
    if not isinstance(value, bool):
        raise InvalidInputError(f"'fan_out' must be true or false, got {value!r:.100}")
    return value


def unit_from(event: dict) -> tuple[str, int] | None:
    """``{"batch_id": ..., "unit": n}``: one unit of one batch (a Map iteration)."""
    raw = _dict(event)
    if "unit" not in raw:
        return None
    unit, batch_id = raw["unit"], raw.get("batch_id")
    if not isinstance(unit, int) or isinstance(unit, bool) or unit < 0:
        raise InvalidInputError(f"'unit' must be a whole number >= 0, got {unit!r:.100}")
    try:
        return check_batch_id(batch_id), unit
    except LakeError as exc:
        raise InvalidInputError(str(exc)) from None


def part_from(event: dict) -> tuple[str, str, int] | None:
    """``{"batch_id": ..., "table": ..., "part": n}``: one part of one warehouse table of
    one batch, to stage (a Map iteration); the load checks the table against the schema."""
    raw = _dict(event)
    if "part" not in raw:
        return None
    part, table, batch_id = raw["part"], raw.get("table"), raw.get("batch_id")
    if not isinstance(part, int) or isinstance(part, bool) or part < 0:
        raise InvalidInputError(f"'part' must be a whole number >= 0, got {part!r:.100}")
    if not isinstance(table, str):
        raise InvalidInputError(f"'table' must name a warehouse table, got {table!r:.100}")
    try:
        return check_batch_id(batch_id), table, part
    except LakeError as exc:
        raise InvalidInputError(str(exc)) from None
