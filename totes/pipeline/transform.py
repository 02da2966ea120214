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
import json
import logging
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from itertools import accumulate

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
    Part,
    ProcessedManifest,
    QuarantineFile,
    Snapshot,
    TableOutput,
    check_batch_id,
    manifest_key,
    parquet_key,
    quarantine_key,
    unit_result_key,
)
from totes.pipeline.remodel import (
    STATE_TABLES,
    RemodelError,
    calendar,
    empty_source,
    needs_state,
    remodel_batch,
)
from totes.schema.source import SOURCE_TABLES, source_table
from totes.schema.warehouse import WAREHOUSE_TABLE_NAMES, warehouse_table

logger = logging.getLogger(__name__)
# How many set-aside values a run's warning lists; the quarantine files hold all of them.
MAX_LISTED_REJECTIONS = 100
# Characters of a bad value a warning shows: a run's warnings go into the state machine's
# state (at most 256 KiB) and the email.
MAX_SHOWN_VALUE = 60
# Units of a batch transformed at once in one call (memory: this many parts).
UNITS_AT_ONCE = 2
# What a kept unit result holds; one kept by an earlier format (a deploy between a Map's
# units and the call that finishes the batch) is done again, not trusted. 2: the ids held
# back from an earlier full copy, and row numbers counted across a table's parts.
UNIT_RESULT_FORMAT = 2


class TransformError(Exception):
    """The transform cannot complete a batch without breaking the lake's guarantees."""


class ChainBrokenError(UndeliverableBatchError):
    """A batch the transform needs (a full copy of a table) is missing from the lake. (The
    load's ``BrokenChainError`` is another: a processed batch's predecessor is missing.)"""


@dataclass
class _Batch:
    """One unit of a batch's source rows as read, by table, and the files they came from."""

    manifest: IngestionManifest
    reads: dict[str, CsvRows] = field(default_factory=dict)
    # table -> each file read and the rows before it (a table read whole from several
    # files numbers its rows across them): to name a row's file and its row there.
    files: dict[str, list[tuple[str, int]]] = field(default_factory=dict)

    def add(self, table: str, read: CsvRows, parts: list[Part]) -> None:
        """``read``: the rows of ``parts``, numbered across them (``_read_whole``)."""
        self.reads[table] = read
        self.files[table] = list(zip((p.key for p in parts), _rows_before(parts), strict=True))

    def where(self, table: str, row: int | None) -> tuple[str | None, int | None]:
        """The file a row of the batch is in (None: the table has no file here), and its
        row in that file."""
        files = self.files.get(table)
        if not files:
            return None, row
        if row is None:
            return files[0][0], None
        key, before = next((k, b) for k, b in reversed(files) if b < row)
        return key, row - before

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


def _read_part(lake: Lake, table: str, part: Part) -> CsvRows:
    """One CSV, its row count checked against the manifest's count for it."""
    read = _read_csv(lake, table, part.key)
    found = read.frame.height + read.rejected_text.height
    if found != part.rows:
        raise IngestionFormatError(
            f"{table} ({lake.ingestion.location(part.key)}): {found} rows, but the batch "
            f"manifest says {part.rows}"
        )
    return read


def _counted_on(read: CsvRows, before: int) -> CsvRows:
    """``read``'s rows numbered on from ``before`` (a later file of the same table)."""
    if not before:
        return read
    return CsvRows(
        read.frame,
        read.rows + before,
        [replace(r, row=r.row + before if r.row is not None else None) for r in read.rejections],
        read.rejected_text.with_columns(pl.col("_row") + before),
    )


def _rows_before(parts: list[Part]) -> list[int]:
    return list(accumulate((part.rows for part in parts[:-1]), initial=0))


def _read_whole(lake: Lake, table: str, parts: list[Part]) -> CsvRows:
    """Every part of a table as one (the small tables the remodel needs whole), its rows
    numbered across the parts in order, as if they were one file."""
    reads = [_read_part(lake, table, part) for part in parts]
    if len(reads) == 1:
        return reads[0]
    reads = [_counted_on(r, before) for r, before in zip(reads, _rows_before(parts), strict=True)]
    return CsvRows(
        pl.concat([r.frame for r in reads]),
        pl.concat([r.rows for r in reads]),
        [rejection for r in reads for rejection in r.rejections],
        pl.concat([r.rejected_text for r in reads]),
    )


# Source tables whose rows become warehouse rows one by one (facts and plain dimensions)
# can be taken one part at a time; the rest (the small tables the remodel needs whole,
# FULL_COPY_TABLES) are read together, in the batch's first unit.
_WHOLE_TABLES = frozenset(t for sources in STATE_TABLES.values() for t in sources)


@dataclass(frozen=True)
class Unit:
    """A share of a batch's work: some tables read whole, or one part of one table."""

    tables: tuple[str, ...] = ()
    part: tuple[str, Part] | None = None

    @property
    def sources(self) -> tuple[str, ...]:
        return self.tables if self.part is None else (self.part[0],)

    @property
    def rows(self) -> int:
        """The part's rows (a unit of whole tables: 0; its tables are the small ones)."""
        return 0 if self.part is None else self.part[1].rows


def units(manifest: IngestionManifest) -> list[Unit]:
    """The batch's units of work, in a fixed order. A batch whose every table is one file
    is one unit; otherwise the small tables together, then every part of the others."""
    with_rows = [t for t, e in manifest.tables.items() if e.key is not None]
    for table in manifest.tables:
        source_table(table)  # the allow-list: a KeyError names a table we do not extract
    if all(len(manifest.tables[t].files) == 1 for t in with_rows):
        return [Unit(tuple(with_rows))]
    found = [Unit(tuple(t for t in with_rows if t in _WHOLE_TABLES))]
    for table in with_rows:
        if table not in _WHOLE_TABLES:
            found.extend(Unit(part=(table, part)) for part in manifest.tables[table].files)
    return found


def largest_first(batch_units: list[Unit]) -> list[int]:
    """The order to start units in: largest part first (ties in batch order), so that a call
    ends on small units (no core idles behind a big one at the end) and its peak memory
    (two full parts at once) comes early."""
    return sorted(range(len(batch_units)), key=lambda index: -batch_units[index].rows)


def _read_unit(lake: Lake, manifest: IngestionManifest, unit: Unit) -> _Batch:
    batch = _Batch(manifest)
    if unit.part is not None:
        table, part = unit.part
        batch.add(table, _read_part(lake, table, part), [part])
    for table in unit.tables:
        extract = manifest.tables[table]
        batch.add(table, _read_whole(lake, table, extract.files), extract.files)
    return batch


@dataclass
class _State:
    """The full state of some source tables, and the ids each full copy read from an
    earlier batch set aside: those rows exist in ToteSys but are not in the state."""

    frames: dict[str, pl.DataFrame] = field(default_factory=dict)
    held_back: dict[str, tuple[str, list[int]]] = field(default_factory=dict)  # (batch, ids)


def read_state(lake: Lake, batch: _Batch, tables: list[str]) -> _State:
    """The full state of ``tables`` as of the batch: each table's latest full copy, which
    the manifest points to (the extract writes these tables whole whenever they change)."""
    state = _State()
    for table in tables:
        extract = batch.manifest.tables.get(table)
        if extract is None or extract.watermark is None:  # never had a row
            state.frames[table] = empty_source(table)
        elif extract.full_copy == batch.manifest.batch_id:
            state.frames[table] = batch.reads[table].frame  # its set-aside rows: this batch's
        elif extract.full_copy is None:
            raise ChainBrokenError(
                f"batch {batch.manifest.batch_id}: no full copy of {table} is recorded; "
                "the lake's chain of batches is broken"
            )
        else:
            read = _full_copy(lake, table, extract.full_copy, batch.manifest.batch_id)
            state.frames[table] = read.frame
            # Reported with that batch; still ids the batch's dimension must not lose.
            if ids := sorted({r.id for r in read.rejections if r.id is not None}):
                state.held_back[table] = (extract.full_copy, ids)
    return state


def _full_copy(lake: Lake, table: str, copy_batch: str, batch_id: str) -> CsvRows:
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
    return _read_whole(lake, table, holder.files)


def to_parquet(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    # Snappy: half the time of zstd's fastest level to write a 50k-row fact part (13 against
    # 24 ms) and 40% less to read back in the load; the file is half as big again. Every
    # Parquet reader takes it.
    frame.write_parquet(buffer, compression="snappy")
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
    if all(r.row is not None for r in rejections):
        return rejections
    rows: dict[str, dict[int, int]] = {}
    for table, read in batch.reads.items():
        pk = source_table(table).primary_key
        rows[table] = dict(zip(read.frame[pk].to_list(), read.rows.to_list(), strict=True))
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
        return reasons.with_columns(
            pl.lit(None, pl.String).alias(c) for c in source_table(table).column_names
        )
    as_text = [pl.col(c).cast(pl.String) for c in source_table(table).column_names]
    row_number = pl.col("_row").cast(pl.Int64)
    good = read.frame.with_columns(read.rows.alias("_row")).select(row_number, *as_text)
    bad = read.rejected_text.select(row_number, *as_text)
    rows = pl.concat([good, bad])
    return reasons.join(rows, left_on="row", right_on="_row", how="left")


def _describe(lake: Lake, batch: _Batch, rejection: Rejection) -> str:
    key, row = batch.where(rejection.table, rejection.row)
    where = lake.ingestion.location(key) if key else "state"
    at = f"row {row}" if row is not None else "current state"
    value = rejection.value
    if value is not None and len(value) > MAX_SHOWN_VALUE:  # the quarantine file has it whole
        value = f"{value[:MAX_SHOWN_VALUE]}... ({len(value)} characters)"
    return (
        f"{rejection.table} ({where}) {at}, id {rejection.id}: column {rejection.column} = "
        f"{value!r}: {rejection.reason}"
    )


@dataclass
class UnitResult:
    """What one unit of a batch wrote: Parquet parts by warehouse table, and what it set
    aside (small: only the bad rows). Kept in the lake when units run in separate calls."""

    outputs: dict[str, Part] = field(default_factory=dict)
    quarantine: dict[str, str] = field(default_factory=dict)  # source table -> CSV text
    quarantined_rows: dict[str, int] = field(default_factory=dict)
    quarantined_ids: dict[str, list[int]] = field(default_factory=dict)
    lines: dict[str, list[str]] = field(default_factory=dict)  # source table -> messages
    days: list[str] = field(default_factory=list)  # yyyy-mm-dd its facts reference (dim_date)
    notes: list[str] = field(default_factory=list)  # warnings beyond the rows set aside
    format: int = UNIT_RESULT_FORMAT  # results kept before formats were numbered: 1

    def to_json(self) -> bytes:
        raw = asdict(self)
        return json.dumps(raw, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> UnitResult:
        raw = json.loads(data)
        raw["outputs"] = {t: Part(**p) for t, p in raw["outputs"].items()}
        return cls(**{"format": 1, **raw})


@dataclass(frozen=True)
class _Plan:
    """A batch's manifest, its units and how many of them write each warehouse table:
    worked out once per call, not once per unit (a scale-1000 batch has 1,000 units)."""

    batch_id: str
    manifest: IngestionManifest
    units: list[Unit]
    producers: dict[str, int]


def _plan(lake: Lake, batch_id: str) -> _Plan:
    manifest = lake.ingestion_manifest(batch_id)
    batch_units = units(manifest)
    return _Plan(batch_id, manifest, batch_units, _producers(batch_units))


def _producers(batch_units: list[Unit]) -> dict[str, int]:
    """How many units may write each warehouse table: a table written by one unit keeps
    the single-file key; otherwise each unit writes its own numbered part."""
    sources = Counter(source for unit in batch_units for source in unit.sources)
    # Not dim_date (no source): units give its days, and the call that finishes the batch
    # writes it.
    return {n: sources[warehouse_table(n).source] for n in WAREHOUSE_TABLE_NAMES}


def transform_unit(lake: Lake, batch_id: str, index: int) -> UnitResult:
    """Remodel one unit of a batch (see ``units``) and write its Parquet parts."""
    return _transform_unit(lake, _plan(lake, batch_id), index)


def _transform_unit(lake: Lake, plan: _Plan, index: int) -> UnitResult:
    batch_id, manifest = plan.batch_id, plan.manifest
    if not 0 <= index < len(plan.units):
        raise TransformError(f"batch {batch_id} has {len(plan.units)} units, not a unit {index}")
    unit = plan.units[index]
    batch = _read_unit(lake, manifest, unit)
    state = read_state(lake, batch, needs_state(batch.frames))
    try:
        remodelled = remodel_batch(batch.frames, state.frames)
    except RemodelError as exc:
        raise RemodelError(f"batch {batch_id}: {exc}") from exc
    result = UnitResult()
    for name, frame in remodelled.frames.items():
        if name == "dim_date":
            result.days = frame["date_id"].dt.to_string("%Y-%m-%d").to_list()
        elif frame.height:
            part = index + 1 if plan.producers[name] > 1 else None
            key = parquet_key(name, batch_id, part)
            _put_parquet(lake, key, frame)
            result.outputs[name] = Part(key, frame.height)
    rejections = [r for read in batch.reads.values() for r in read.rejections]
    rejections += _with_rows(batch, remodelled.rejections)
    by_table: dict[str, list[Rejection]] = defaultdict(list)
    for rejection in rejections:
        by_table[rejection.table].append(rejection)
    for table, found in by_table.items():
        buffer = io.BytesIO()
        _quarantine_frame(batch, table, found).write_csv(buffer, include_header=False)
        result.quarantine[table] = buffer.getvalue().decode()
        result.quarantined_rows[table] = len(
            {r.row if r.row is not None else ("id", r.id) for r in found}
        )
        result.quarantined_ids[table] = sorted({r.id for r in found if r.id is not None})
        result.lines[table] = [f"  {_describe(lake, batch, r)}" for r in found]
    for table, (copy_batch, ids) in state.held_back.items():
        result.quarantined_ids[table] = sorted({*result.quarantined_ids.get(table, []), *ids})
        result.notes.append(_held_back_note(table, copy_batch, ids))
    return result


def _held_back_note(table: str, copy_batch: str, ids: list[int]) -> str:
    listed = ", ".join(map(str, ids[:10])) + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")
    return (
        f"{table}: {len(ids)} rows set aside in batch {copy_batch}'s full copy (ids {listed}) "
        "are still left out of what is built from it; the warehouse keeps them as they were"
    )


def _set_aside(
    lake: Lake, batch_id: str, results: list[UnitResult]
) -> tuple[dict[str, QuarantineFile], list[str]]:
    """Write each source table's set-aside rows to the quarantine prefix; the warnings."""
    files: dict[str, QuarantineFile] = {}
    lines: list[str] = []
    tables = sorted({t for r in results for t in r.quarantine}, key=_source_order)
    for table in tables:
        key = quarantine_key(table, batch_id)
        header = ",".join(["row", "id", "column", "value", "reason",
                           *source_table(table).column_names])  # fmt: skip
        body = "".join(r.quarantine.get(table, "") for r in results)
        lake.processed.put_new(key, f"{header}\n{body}".encode())
        rows = sum(r.quarantined_rows.get(table, 0) for r in results)
        files[table] = QuarantineFile(key=key, rows=rows)
        lines.append(
            f"{table}: {rows} rows set aside in batch {batch_id}, listed in "
            f"{lake.processed.location(key)}"
        )
        lines += [line for r in results for line in r.lines.get(table, [])]
    return files, _listed(lines, indent="  ")


def _listed(lines: list[str], indent: str = "") -> list[str]:
    """At most MAX_LISTED_REJECTIONS lines, then how many more (a run's result goes into
    the state machine's state, at most 256 KiB; the quarantine files hold every one)."""
    if len(lines) <= MAX_LISTED_REJECTIONS:
        return lines
    more = len(lines) - MAX_LISTED_REJECTIONS
    return [*lines[:MAX_LISTED_REJECTIONS], f"{indent}... and {more} more"]


def _source_order(table: str) -> int:
    names = [t.name for t in SOURCE_TABLES]
    return names.index(table)


def _snapshot(name: str, manifest: IngestionManifest, rows: int) -> Snapshot | None:
    """Which of the warehouse table's ids this batch holds completely (see Snapshot)."""
    table = warehouse_table(name)
    if name in STATE_TABLES and rows:
        return Snapshot(1, None)  # rebuilt from the full current state
    if table.source is None:
        return None
    extract = manifest.tables.get(table.source)
    return extract.snapshot if extract else None


def _calendar(lake: Lake, batch_id: str, results: list[UnitResult]) -> list[Part]:
    """dim_date for the whole batch, in one file: every day any unit's facts reference.
    One file, not one per unit: the load reads and merges each file it is given, and a
    fanned-out load would stage each in a call of its own."""
    days = sorted({day for result in results for day in result.days})
    if not days:
        return []
    frame = calendar(pl.Series("date_id", days).str.to_date("%Y-%m-%d"))
    key = parquet_key("dim_date", batch_id)
    _put_parquet(lake, key, frame)
    return [Part(key, frame.height)]


def _finish_batch(lake: Lake, plan: _Plan, results: list[UnitResult]) -> ProcessedManifest:
    """Write the rows set aside, then the ProcessedManifest LAST, from every unit's result."""
    batch_id, manifest_in = plan.batch_id, plan.manifest
    quarantine, warnings = _set_aside(lake, batch_id, results)
    warnings += dict.fromkeys(note for result in results for note in result.notes)
    quarantined: dict[str, set[int]] = defaultdict(set)
    for result in results:
        for table, ids in result.quarantined_ids.items():
            quarantined[table].update(ids)
    outputs: dict[str, TableOutput] = {}
    for name in WAREHOUSE_TABLE_NAMES:
        parts = [r.outputs[name] for r in results if name in r.outputs]
        if name == "dim_date":
            parts += _calendar(lake, batch_id, results)
        rows = sum(p.rows for p in parts)
        source = warehouse_table(name).source
        outputs[name] = TableOutput(
            rows=rows,
            key=parts[0].key if parts else None,
            snapshot=_snapshot(name, manifest_in, rows),
            quarantined_ids=sorted(quarantined.get(source, set())) if source else [],
            parts=parts if len(parts) > 1 else [],
        )
    manifest = ProcessedManifest(
        batch_id=batch_id,
        tables=outputs,
        previous_batch_id=manifest_in.previous_batch_id,
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


def transform_batch(lake: Lake, batch_id: str) -> ProcessedManifest:
    """Idempotent: if the processed manifest exists, return it.

    Else remodel the batch unit by unit (the small tables together, then every part of
    the others), ``UNITS_AT_ONCE`` at a time, write one Parquet per warehouse table
    and unit that has rows (dim_date: one for the batch, from every unit's days), the
    rows set aside, then the ProcessedManifest LAST. A unit that a fanned-out call
    already did (its result is in the lake) is not done again.
    """
    check_batch_id(batch_id)
    if lake.processed.exists(manifest_key(batch_id)):
        return lake.processed_manifest(batch_id)
    plan = _plan(lake, batch_id)
    # Two units at a time: much of a unit's work is single-threaded (reading one part,
    # Python between polars calls), so a second one keeps a second core busy.
    with ThreadPoolExecutor(UNITS_AT_ONCE, thread_name_prefix="transform-unit") as pool:
        futures = {i: pool.submit(_unit_result, lake, plan, i) for i in largest_first(plan.units)}
        results = [futures[index].result() for index in range(len(plan.units))]
    return _finish_batch(lake, plan, results)


def _unit_result(lake: Lake, plan: _Plan, index: int) -> UnitResult:
    try:
        kept = UnitResult.from_json(lake.processed.get(unit_result_key(plan.batch_id, index)))
    except FileNotFoundError:
        return _transform_unit(lake, plan, index)
    if kept.format == UNIT_RESULT_FORMAT:
        return kept
    logger.info("batch %s: unit %d's kept result is of format %d: done again", plan.batch_id,
                index, kept.format)  # fmt: skip
    return _transform_unit(lake, plan, index)


def run_transform_unit(lake: Lake, batch_id: str, index: int) -> dict:
    """One unit of a big batch, in its own call (a Map iteration): its Parquet parts and
    its result, kept in the lake (write-once) for the call that finishes the batch."""
    check_batch_id(batch_id)
    key = unit_result_key(batch_id, index)
    if lake.processed.exists(manifest_key(batch_id)) or lake.processed.exists(key):
        return {"batch_id": batch_id, "unit": index, "done_before": True}
    result = transform_unit(lake, batch_id, index)
    lake.processed.put_new(key, result.to_json())
    return {
        "batch_id": batch_id,
        "unit": index,
        "wrote": {name: part.rows for name, part in result.outputs.items()},
    }


# At most this many units are listed for a fan-out (the state's size is capped at
# 256 KiB); units beyond are done by the call that finishes their batch.
MAX_PLANNED_UNITS = 1000


def plan_transform(lake: Lake, batch_ids: list[str] | None = None) -> list[dict]:
    """The units a fan-out should do: every unit not yet done of every pending batch that
    has more than one (a small batch takes the short path: one call does it whole)."""
    skipped = lake.skipped_ids()
    if batch_ids is None:
        batch_ids = lake.untransformed_batches()[:MAX_BATCHES_PER_RUN]
    planned = [
        {"batch_id": batch_id, "unit": index}
        for batch_id in sorted(set(batch_ids) - set(skipped))
        if not lake.processed.exists(manifest_key(batch_id))
        and (count := len(units(lake.ingestion_manifest(batch_id)))) > 1
        for index in range(count)
        if not lake.processed.exists(unit_result_key(batch_id, index))
    ]
    return planned[:MAX_PLANNED_UNITS]


def transform_batches(lake: Lake, batch_ids: list[str] | None = None) -> list[ProcessedManifest]:
    """Each batch in batch (time) order, by default every one not yet transformed (at most
    MAX_BATCHES_PER_RUN); skipped batches never. Stops at the first failure, which raises."""
    skipped = lake.skipped_ids()
    if batch_ids is None:
        batch_ids = lake.untransformed_batches()[:MAX_BATCHES_PER_RUN]
    return [transform_batch(lake, b) for b in sorted(set(batch_ids)) if b not in skipped]


def run_transform(lake: Lake, batch_ids: list[str] | None = None, *, fan_out: bool = False) -> dict:
    """The transform stage: what its handler returns to the state machine.

    With ``fan_out``, a pending batch too big for one call (more than one unit) is not
    done here: the result lists the units for the state machine's Map instead, and a
    later call (without ``fan_out``) finishes every batch, taking the units the Map did.
    """
    if batch_ids is None:  # listed once for both steps below: the lake's manifests grow
        batch_ids = lake.untransformed_batches()[:MAX_BATCHES_PER_RUN]
    if fan_out and (planned := plan_transform(lake, batch_ids)):
        return {
            "batch_ids": [],
            "rows": {},
            "quarantined": {},
            "warnings": "",
            "fan_out": True,
            "units": planned,
        }
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
        "warnings": "\n".join(_listed([line for m in manifests for line in m.warnings])),
        "fan_out": False,
        "units": [],
    }
