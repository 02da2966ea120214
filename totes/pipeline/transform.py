"""The transform stage: one ingestion batch -> one Parquet per warehouse table + a manifest.

Idempotent and write-once: a batch with a processed manifest is done; a batch interrupted
after some Parquet files were written is redone, and a file already in the lake must hold
exactly what this run would write (the lake is never overwritten).
"""

from __future__ import annotations

import io
import logging

import polars as pl

from totes.pipeline.ingestion_csv import IngestionFormatError, read_ingestion_csv
from totes.pipeline.lake import (
    Lake,
    LakeError,
    ProcessedManifest,
    TableOutput,
    batch_id_of,
    check_batch_id,
    csv_key,
    manifest_key,
    parquet_key,
)
from totes.pipeline.remodel import RemodelError, latest_versions, needs_state, remodel_batch
from totes.schema.source import source_table

logger = logging.getLogger(__name__)


class TransformError(Exception):
    """The transform cannot complete a batch without breaking the lake's guarantees."""


def _read_csv(lake: Lake, table: str, key: str) -> pl.DataFrame:
    return read_ingestion_csv(lake.ingestion.get(key), table, key)


def read_batch(lake: Lake, batch_id: str) -> dict[str, pl.DataFrame]:
    """The batch's typed source frames, by table; tables without rows are absent."""
    if not lake.ingestion.exists(manifest_key(batch_id)):
        raise LakeError(f"batch {batch_id} has no ingestion manifest: it was not (fully) extracted")
    manifest = lake.ingestion_manifest(batch_id)
    frames: dict[str, pl.DataFrame] = {}
    for table, extract in manifest.tables.items():
        source_table(table)  # the allow-list: a KeyError names a table we do not extract
        if extract.key is None:
            continue
        frame = _read_csv(lake, table, extract.key)
        if frame.height != extract.rows:
            raise IngestionFormatError(
                f"{table} ({extract.key}): {frame.height} rows, but the batch manifest says "
                f"{extract.rows}"
            )
        frames[table] = frame
    return frames


def read_state(lake: Lake, batch_id: str, tables: list[str]) -> dict[str, pl.DataFrame]:
    """The full state of ``tables`` as of ``batch_id``: every extracted batch up to it.

    Only CSVs of batches with an ingestion manifest count (a failed extract's files do not).
    These tables are tiny and rarely change, so there are few files to read.
    """
    if not tables:
        return {}
    extracted = {b for b in lake.extracted_batches() if b <= batch_id}
    state: dict[str, pl.DataFrame] = {}
    for table in tables:
        keys = [
            key
            for key in lake.ingestion.list(f"{table}/")
            if key.endswith(".csv") and batch_id_of(key) in extracted
        ]
        for key in keys:
            if key != csv_key(table, batch_id_of(key)):
                raise LakeError(f"{lake.ingestion.location(key)} is not where a {table} CSV goes")
        keys.sort(key=batch_id_of)
        state[table] = latest_versions(table, [_read_csv(lake, table, k) for k in keys])
    return state


def to_parquet(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer, compression="zstd")
    return buffer.getvalue()


def _put_parquet(lake: Lake, key: str, frame: pl.DataFrame) -> None:
    if lake.processed.put_new(key, to_parquet(frame)):
        return
    # Written by an earlier, interrupted run of this batch: it must hold the same rows.
    existing = pl.read_parquet(io.BytesIO(lake.processed.get(key)))
    if not existing.equals(frame):
        raise TransformError(
            f"{lake.processed.location(key)} exists with other content than this run produces;"
            " the lake is never overwritten: move it aside only after finding out why"
        )


def transform_batch(lake: Lake, batch_id: str) -> ProcessedManifest:
    """Idempotent: if the processed manifest exists, return it.

    Else build the 11 warehouse frames for the batch, write one Parquet per warehouse table
    that has rows, then put the ProcessedManifest (rows per table, key or None) LAST.
    """
    check_batch_id(batch_id)
    if lake.processed.exists(manifest_key(batch_id)):
        return lake.processed_manifest(batch_id)
    batch = read_batch(lake, batch_id)
    state = read_state(lake, batch_id, needs_state(batch))
    try:
        frames = remodel_batch(batch, state)
    except RemodelError as exc:
        raise RemodelError(f"batch {batch_id}: {exc}") from exc
    outputs: dict[str, TableOutput] = {}
    for name, frame in frames.items():
        key = parquet_key(name, batch_id) if frame.height else None
        if key:
            _put_parquet(lake, key, frame)
        outputs[name] = TableOutput(rows=frame.height, key=key)
    manifest = ProcessedManifest(batch_id=batch_id, tables=outputs)
    if not lake.processed.put_new(manifest_key(batch_id), manifest.to_json()):
        return lake.processed_manifest(batch_id)  # a concurrent run finished first
    logger.info(
        "transformed batch %s: %s",
        batch_id,
        {name: out.rows for name, out in outputs.items() if out.rows},
    )
    return manifest


def transform_batches(lake: Lake, batch_ids: list[str]) -> list[ProcessedManifest]:
    """Each batch in batch (time) order; stops at the first failure, which propagates."""
    return [transform_batch(lake, b) for b in sorted(set(batch_ids))]


def run_transform(lake: Lake, batch_ids: list[str]) -> dict:
    """The transform stage: what its handler returns to the state machine."""
    manifests = transform_batches(lake, batch_ids)
    rows: dict[str, int] = {}
    for manifest in manifests:
        for table, output in manifest.tables.items():
            rows[table] = rows.get(table, 0) + output.rows
    return {"batch_ids": [m.batch_id for m in manifests], "rows": rows}
