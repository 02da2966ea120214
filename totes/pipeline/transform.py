"""The transform stage: one ingestion batch -> one Parquet per warehouse table + a manifest.

Idempotent and write-once: a batch with a processed manifest is done; a batch interrupted
after some Parquet files were written is redone, and a file already in the lake must hold
exactly what this run would write (the lake is never overwritten).

Bad input is handled at the smallest scope that keeps everything else true: a source row
with a bad value is set aside (written to the quarantine prefix with every bad value, its
row, column and reason) and the rest of the batch is delivered; a file that cannot be read
at all, or holds other rows than its manifest says, stops the batch
(``UndeliverableBatchError``) until an operator fixes it or skips the batch.
"""

from __future__ import annotations

import io
import logging
from collections import defaultdict
from dataclasses import dataclass, field

import polars as pl

from totes.pipeline.errors import UndeliverableBatchError
from totes.pipeline.events import MAX_BATCHES_PER_RUN
from totes.pipeline.ingestion_csv import (
    CsvRows,
    IngestionFormatError,
    Rejection,
    read_ingestion_csv,
)
from totes.pipeline.lake import (
    IngestionManifest,
    Lake,
    LakeError,
    ProcessedManifest,
    QuarantineFile,
    Snapshot,
    TableOutput,
    check_batch_id,
    manifest_key,
    parquet_key,
    quarantine_key,
)
from totes.pipeline.remodel import (
    STATE_TABLES,
    RemodelError,
    empty_source,
    needs_state,
    remodel_batch,
)
from totes.schema.source import source_table
from totes.schema.warehouse import warehouse_table

logger = logging.getLogger(__name__)
# How many set-aside values a run's warning lists; the quarantine files hold all of them.
MAX_LISTED_REJECTIONS = 100


class TransformError(Exception):
    """The transform cannot complete a batch without breaking the lake's guarantees."""


class ChainBrokenError(UndeliverableBatchError):
    """A batch the transform needs (a full copy of a table) is missing from the lake."""


@dataclass
class _Batch:
    """One batch's source rows as read, by table."""

    manifest: IngestionManifest
    reads: dict[str, CsvRows] = field(default_factory=dict)

    @property
    def frames(self) -> dict[str, pl.DataFrame]:
        return {table: read.frame for table, read in self.reads.items()}


def _read_csv(lake: Lake, table: str, key: str) -> CsvRows:
    try:
        data = lake.ingestion.get(key)
    except FileNotFoundError:
        raise IngestionFormatError(
            f"{table} ({lake.ingestion.location(key)}): the file is missing from the lake"
        ) from None
    return read_ingestion_csv(data, table, lake.ingestion.location(key))


def read_batch(lake: Lake, batch_id: str) -> _Batch:
    """The batch's rows by table (tables without rows are absent), counts checked."""
    manifest = lake.ingestion_manifest(batch_id)
    batch = _Batch(manifest)
    for table, extract in manifest.tables.items():
        source_table(table)  # the allow-list: a KeyError names a table we do not extract
        if extract.key is None:
            continue
        read = _read_csv(lake, table, extract.key)
        found = read.frame.height + read.rejected_text.height
        if found != extract.rows:
            raise IngestionFormatError(
                f"{table} ({lake.ingestion.location(extract.key)}): {found} rows, but the batch "
                f"manifest says {extract.rows}"
            )
        batch.reads[table] = read
    return batch


def read_state(lake: Lake, batch: _Batch, tables: list[str]) -> dict[str, pl.DataFrame]:
    """The full state of ``tables`` as of the batch: each table's latest full copy, which
    the manifest points to (the extract writes these tables whole whenever they change)."""
    state: dict[str, pl.DataFrame] = {}
    for table in tables:
        extract = batch.manifest.tables.get(table)
        if extract is None or extract.watermark is None:  # never had a row
            state[table] = empty_source(table)
        elif extract.full_copy == batch.manifest.batch_id:
            state[table] = batch.reads[table].frame
        elif extract.full_copy is None:
            raise ChainBrokenError(
                f"batch {batch.manifest.batch_id}: no full copy of {table} is recorded; "
                "the lake's chain of batches is broken"
            )
        else:
            state[table] = _full_copy(lake, table, extract.full_copy, batch.manifest.batch_id)
    return state


def _full_copy(lake: Lake, table: str, copy_batch: str, batch_id: str) -> pl.DataFrame:
    try:
        holder = lake.ingestion_manifest(copy_batch).tables[table]
    except (LakeError, KeyError):
        raise ChainBrokenError(
            f"batch {batch_id}: the latest full copy of {table} is in batch {copy_batch}, whose "
            "manifest is missing from the lake (the chain of batches is broken)"
        ) from None
    if holder.key is None or holder.snapshot is None or not holder.snapshot.full:
        raise ChainBrokenError(
            f"batch {batch_id}: batch {copy_batch} holds no full copy of {table}, "
            "although later manifests say it does"
        )
    # Rows it set aside were reported with that batch; they are not part of the state.
    return _read_csv(lake, table, holder.key).frame


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


def _with_rows(batch: _Batch, rejections: list[Rejection]) -> list[Rejection]:
    """Remodel rejections name the row's id; find its row in the batch's CSV."""
    rows: dict[str, dict[int, int]] = {}
    for table, read in batch.reads.items():
        pk = source_table(table).primary_key
        rows[table] = dict(zip(read.frame[pk].to_list(), read.rows, strict=True))
    return [
        r if r.row is not None else Rejection(r.table, rows.get(r.table, {}).get(r.id), r.id,
                                              r.column, r.value, r.reason)
        for r in rejections
    ]  # fmt: skip


def _quarantine_frame(batch: _Batch, table: str, rejections: list[Rejection]) -> pl.DataFrame:
    """One line per bad value (row, id, column, value, reason), then the row as read."""
    reasons = pl.DataFrame(
        [(r.row, r.id, r.column, r.value, r.reason) for r in rejections],
        schema={"row": pl.Int64, "id": pl.Int64, "column": pl.String, "value": pl.String,
                "reason": pl.String},
        orient="row",
    )  # fmt: skip
    read = batch.reads.get(table)
    if read is None:  # rejected while building a dimension from the state
        return reasons
    as_text = [pl.col(c).cast(pl.String) for c in source_table(table).column_names]
    row_number = pl.col("_row").cast(pl.Int64)
    good = read.frame.with_columns(pl.Series("_row", read.rows)).select(row_number, *as_text)
    bad = read.rejected_text.select(row_number, *as_text)
    rows = pl.concat([good, bad])
    return reasons.join(rows, left_on="row", right_on="_row", how="left")


def _describe(rejection: Rejection, where: str) -> str:
    row = f"row {rejection.row}" if rejection.row is not None else "current state"
    return (
        f"{rejection.table} ({where}) {row}, id {rejection.id}: column {rejection.column} = "
        f"{rejection.value!r}: {rejection.reason}"
    )


def _set_aside(
    lake: Lake, batch: _Batch, rejections: list[Rejection]
) -> tuple[dict[str, QuarantineFile], list[str]]:
    """Write each source table's set-aside rows to the quarantine prefix; the warnings."""
    by_table: dict[str, list[Rejection]] = defaultdict(list)
    for rejection in rejections:
        by_table[rejection.table].append(rejection)
    files: dict[str, QuarantineFile] = {}
    lines: list[str] = []
    batch_id = batch.manifest.batch_id
    for table, found in by_table.items():
        key = quarantine_key(table, batch_id)
        buffer = io.BytesIO()
        _quarantine_frame(batch, table, found).write_csv(buffer)
        lake.processed.put_new(key, buffer.getvalue())
        rows = len({r.row if r.row is not None else ("id", r.id) for r in found})
        files[table] = QuarantineFile(key=key, rows=rows)
        source = batch.manifest.tables[table].key if table in batch.reads else None
        where = lake.ingestion.location(source) if source else "state"
        lines.append(
            f"{table}: {rows} rows set aside in batch {batch_id}, listed in "
            f"{lake.processed.location(key)}"
        )
        lines += [f"  {_describe(r, where)}" for r in found]
    if len(lines) > MAX_LISTED_REJECTIONS:
        lines = [
            *lines[:MAX_LISTED_REJECTIONS],
            f"  ... and {len(lines) - MAX_LISTED_REJECTIONS} more",
        ]
    return files, lines


def _snapshot(name: str, batch: _Batch, frame: pl.DataFrame) -> Snapshot | None:
    """Which of the warehouse table's ids this batch holds completely (see Snapshot)."""
    table = warehouse_table(name)
    if name in STATE_TABLES and not frame.is_empty():
        return Snapshot(1, None)  # rebuilt from the full current state
    if table.source is None:
        return None
    extract = batch.manifest.tables.get(table.source)
    return extract.snapshot if extract else None


def transform_batch(lake: Lake, batch_id: str) -> ProcessedManifest:
    """Idempotent: if the processed manifest exists, return it.

    Else build the 11 warehouse frames for the batch, write one Parquet per warehouse table
    that has rows and the rows set aside, then the ProcessedManifest LAST.
    """
    check_batch_id(batch_id)
    if lake.processed.exists(manifest_key(batch_id)):
        return lake.processed_manifest(batch_id)
    batch = read_batch(lake, batch_id)
    state = read_state(lake, batch, needs_state(batch.frames))
    try:
        remodelled = remodel_batch(batch.frames, state)
    except RemodelError as exc:
        raise RemodelError(f"batch {batch_id}: {exc}") from exc
    rejections = [r for read in batch.reads.values() for r in read.rejections]
    rejections += _with_rows(batch, remodelled.rejections)
    quarantine, warnings = _set_aside(lake, batch, rejections)
    quarantined: dict[str, list[int]] = defaultdict(list)
    for rejection in rejections:
        if rejection.id is not None:
            quarantined[rejection.table].append(rejection.id)
    outputs: dict[str, TableOutput] = {}
    for name, frame in remodelled.frames.items():
        key = parquet_key(name, batch_id) if frame.height else None
        if key:
            _put_parquet(lake, key, frame)
        source = warehouse_table(name).source
        outputs[name] = TableOutput(
            rows=frame.height,
            key=key,
            snapshot=_snapshot(name, batch, frame),
            quarantined_ids=sorted(set(quarantined.get(source, []))) if source else [],
        )
    manifest = ProcessedManifest(
        batch_id=batch_id,
        tables=outputs,
        previous_batch_id=batch.manifest.previous_batch_id,
        quarantine=quarantine,
        warnings=warnings,
    )
    if not lake.processed.put_new(manifest_key(batch_id), manifest.to_json()):
        return lake.processed_manifest(batch_id)  # a concurrent run finished first
    logger.info(
        "transformed batch %s: %s",
        batch_id,
        {name: out.rows for name, out in outputs.items() if out.rows},
    )
    for line in warnings:
        logger.warning(line)
    return manifest


def transform_batches(lake: Lake, batch_ids: list[str] | None = None) -> list[ProcessedManifest]:
    """Each batch in batch (time) order, by default every one not yet transformed (at most
    MAX_BATCHES_PER_RUN); skipped batches never. Stops at the first failure, which raises."""
    skipped = lake.skipped()
    if batch_ids is None:
        batch_ids = lake.untransformed_batches()[:MAX_BATCHES_PER_RUN]
    return [transform_batch(lake, b) for b in sorted(set(batch_ids)) if b not in skipped]


def run_transform(lake: Lake, batch_ids: list[str] | None = None) -> dict:
    """The transform stage: what its handler returns to the state machine."""
    manifests = transform_batches(lake, batch_ids)
    rows: dict[str, int] = {}
    quarantined: dict[str, int] = {}
    for manifest in manifests:
        for table, output in manifest.tables.items():
            rows[table] = rows.get(table, 0) + output.rows
        for table, file in manifest.quarantine.items():
            quarantined[table] = quarantined.get(table, 0) + file.rows
    return {
        "batch_ids": [m.batch_id for m in manifests],
        "rows": rows,
        "quarantined": quarantined,
        "warnings": "\n".join(line for m in manifests for line in m.warnings),
    }
