"""The three pipeline stages as plain functions over small JSON-able results.

The Lambda handlers and the local runner call these; they take configuration as
arguments and return only keys, ids and counts, never data.
"""

from __future__ import annotations

from totes.db import connect
from totes.extract import extract_batch
from totes.lake import Lake, LakeError, check_batch_id

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


def run_extract(lake: Lake, source_dsn: str) -> dict:
    with connect(source_dsn, application_name="totes-extract") as conn:
        result = extract_batch(conn, lake)
    manifest = result.manifest
    return {
        "batch_id": manifest.batch_id if manifest else None,
        "rows": manifest.rows if manifest else 0,
        "tables": {t: e.rows for t, e in manifest.tables.items() if e.rows} if manifest else {},
        "pending_batch_ids": lake.pending_batches()[:MAX_BATCHES_PER_RUN],
    }


def run_transform(lake: Lake, batch_ids: list[str]) -> dict:
    from totes.transform import transform_batches

    manifests = transform_batches(lake, batch_ids)
    rows: dict[str, int] = {}
    for manifest in manifests:
        for table, output in manifest.tables.items():
            rows[table] = rows.get(table, 0) + output.rows
    return {"batch_ids": [m.batch_id for m in manifests], "rows": rows}


def run_load(lake: Lake, warehouse_dsn: str, batch_ids: list[str]) -> dict:
    from totes.load import load_batches

    with connect(warehouse_dsn, application_name="totes-load") as conn:
        summary = load_batches(conn, lake, batch_ids)
    return {
        "loaded_batch_ids": summary.loaded_batch_ids,
        "skipped_batch_ids": summary.skipped_batch_ids,
        "rows": summary.rows,
    }
