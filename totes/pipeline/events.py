"""What the state machine passes to a stage: small JSON (ids and counts), validated here."""

from __future__ import annotations

from totes.pipeline.lake import LakeError, check_batch_id

# Bounds the work of one execution (and its state size); the rest waits for the next run.
MAX_BATCHES_PER_RUN = 24


class InvalidInputError(ValueError):
    """A stage was called with input it cannot use."""


def batch_ids_from(event: dict) -> list[str]:
    """The ``batch_ids`` of a stage's input, validated."""
    batch_ids = event.get("batch_ids") if isinstance(event, dict) else None
    if not isinstance(batch_ids, list) or not batch_ids:
        raise InvalidInputError(f"expected a non-empty list 'batch_ids', got {event!r:.200}")
    try:
        return [check_batch_id(b) for b in batch_ids]
    except LakeError as exc:
        raise InvalidInputError(str(exc)) from None
