"""Extract: copy what changed in the 11 ToteSys tables into one immutable CSV per table.

How nothing is lost or duplicated:
- The watermark per table is the largest ``last_updated`` the extract has SEEN (from the
  data, never from our own clock), capped at the source's clock: a row dated in the future
  is delivered and reported, but never moves the watermark past rows not yet committed.
  It is stored in the batch manifest, written only after every CSV of the batch, so a crash
  before that leaves the old watermark in force.
- Each run re-reads an overlap window below the watermark, so a row committed late with an
  earlier ``last_updated`` is still found. Rows in that window that the previous batch
  already delivered are recognised by a content hash the database computes and dropped.
- Reconciliation finds what no watermark can see (ToteSys edits some rows without touching
  ``last_updated``, and may delete rows): per table, the source's rows are grouped in id
  buckets (``id // width``) and each bucket gets a count and a sum of row hashes, computed
  in the database. Buckets whose checksum differs from the previous pass are extracted
  whole, and the manifest says so (a ``Snapshot``): the transform and load turn changed
  rows into new versions or updates, and rows missing from a snapshot into deletions.
- A skipped batch (``totes skip``) is repaired by the next extract: it reconciles every
  table against the checksums from before the skipped batch, so its rows come again.
- Every query of a run reads one snapshot (REPEATABLE READ), and runs are serialised by an
  advisory lock on the source, so overlapping executions cannot interleave their batches.
- Memory is bounded by a setting, not by the data: COPY output streams into the lake, and a
  table with more rows than ``part_rows`` is written as several CSVs (parts), each one id
  range counted in the same snapshot; the manifest records every part and its row count.
  The extract stays one call (one snapshot); the transform and load may fan out by part.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import psycopg2
from psycopg2.extensions import connection as Connection

from totes.pipeline.checksums import BucketChecksums
from totes.pipeline.db import EXTRACT_LOCK_ID, connect, take_lock
from totes.pipeline.extract_sessions import ExtractSessions
from totes.pipeline.extract_settings import BUCKET_WIDTH, OVERLAP, ExtractSettings
from totes.pipeline.extract_survey import Survey
from totes.pipeline.lake import (
    IngestionManifest,
    Lake,
    Part,
    Snapshot,
    TableExtract,
    batch_id_at,
    batch_id_of,
    batch_time,
    csv_key,
    manifest_key,
    refuse_unwritten,
)
from totes.pipeline.source_drift import check_source_schema
from totes.pipeline.source_sql import (
    copy_to,
    count_rows,
    in_range,
    part_ranges,
    selection,
    smallest_first,
    window_hashes,
)
from totes.schema.source import FULL_COPY_TABLES, SOURCE_TABLES, SourceTable

logger = logging.getLogger(__name__)

CLOCK_BEHIND = "the source database's clock reads earlier than the previous batch"
MAX_WARNINGS = 20


@dataclass(frozen=True)
class _Writer:
    """Where this batch's CSVs go, and how many rows one part holds."""

    lake: Lake
    batch_id: str
    settings: ExtractSettings

    @property
    def part_rows(self) -> int:
        return self.settings.part_rows

    def copy(
        self,
        sessions: ExtractSessions,
        table: SourceTable,
        ids: list[int] | None,
        buckets: list[int] | None,
        rows: int,
        ranges: list[tuple[int, int, int]] | None = None,
    ) -> list[Part]:
        """Stream the selected rows (``rows`` of them, counted in this snapshot) into the
        lake: one CSV, or one per part of at most ``part_rows`` rows, each part's rows
        counted in the same snapshot (``ranges``: (first id, last id, rows) of each part,
        when already counted). Parts go on both sessions when the second is free."""
        where = selection(table, ids, buckets)
        if rows <= self.part_rows:
            ranges = [(None, None, rows)]
        elif ranges is None:
            ranges = part_ranges(sessions.conn, table, where, self.part_rows)

        def copy_part(session: Connection, number: int) -> Part:
            low, high, count = ranges[number - 1]
            key = csv_key(table.name, self.batch_id, number if len(ranges) > 1 else None)
            part_where = where if low is None else in_range(table, where, low, high)
            with self.lake.ingestion.open_new(key) as stream:
                copy_to(session, table, part_where, stream)
            refuse_unwritten(stream, self.lake.ingestion.location(key))
            return Part(key, count)

        return sessions.share(range(1, len(ranges) + 1), copy_part)


def _iso_minus(iso: str, delta: timedelta) -> str:
    return (datetime.fromisoformat(iso) - delta).isoformat(timespec="milliseconds")


@dataclass
class _TableRun:
    """What one table contributes to the batch."""

    extract: TableExtract
    parts: list[Part] | None = None  # the CSVs written to the lake (None: no file)
    recent: dict[str, str] = field(default_factory=dict)
    checksums: BucketChecksums | None = None  # to store: the reconciled state


@dataclass(frozen=True)
class _Base:
    """What the extract builds on: the previous batch's state of each table."""

    lake: Lake
    previous: IngestionManifest | None
    # Where reconciliation baselines come from: the previous batch, or, while a skipped
    # batch awaits repair, the batch before the earliest skipped one.
    baseline: IngestionManifest | None
    repairs: list[str]  # skipped batches this extract delivers again
    repaired: list[str]  # every skip repaired so far, this extract's included

    def before(self, table: str) -> TableExtract | None:
        """What the previous batch says of ``table``."""
        return self.previous.tables.get(table) if self.previous else None

    def baseline_of(self, table: str) -> TableExtract | None:
        """What the reconciliation baseline's batch says of ``table``."""
        return self.baseline.tables.get(table) if self.baseline else None

    def first_extract(self, table: str) -> bool:
        """No extract of ``table`` has a watermark yet: the next one copies all of it."""
        before = self.before(table)
        return before is None or before.watermark is None

    def checksums(self, table: str) -> BucketChecksums:
        """The reconciliation baseline of ``table`` (empty before its first pass)."""
        extract = self.baseline_of(table)
        if extract is None or extract.checksums is None:
            return BucketChecksums()
        return self.lake.checksums(extract.checksums)


def _base(lake: Lake) -> _Base:
    previous = lake.latest_ingestion_manifest()
    skipped = lake.skipped_ids()
    repaired = _repaired(lake, previous, skipped)
    pending = sorted(skipped - repaired)
    if not pending:
        return _Base(lake, previous, previous, [], sorted(repaired))
    before = lake.ingestion_manifest(pending[0]).previous_batch_id
    baseline = lake.ingestion_manifest(before) if before else None
    return _Base(lake, previous, baseline, pending, sorted(repaired | set(pending)))


def _repaired(lake: Lake, previous: IngestionManifest | None, skipped: set[str]) -> set[str]:
    """The skipped batches whose rows a later batch delivered again. A manifest lists every
    skip repaired up to it, but a repair that was skipped in its turn delivered nothing: the
    skips it repaired are pending again (and so are those its own skipped repairs listed)."""
    repaired = set(previous.repaired) if previous else set()
    unrepaired = sorted(skipped - repaired)
    while unrepaired:
        undone = set(lake.ingestion_manifest(unrepaired.pop()).repairs) & repaired
        repaired -= undone
        unrepaired.extend(undone & skipped)
    return repaired


def _reconcile_due(
    settings: ExtractSettings, base: _Base, baseline: TableExtract | None, now: datetime
) -> bool:
    if settings.force_reconcile or base.repairs or baseline is None or not baseline.checksums:
        return True
    rows = baseline.reconciled_rows
    if rows is None or rows <= settings.every_run_rows:
        return True
    last = batch_time(batch_id_of(baseline.checksums))
    return now - last >= settings.reconcile_interval


def _recent(window: list[tuple[str, str, str]], watermark: str) -> dict[str, str]:
    """Hashes of the window's rows that the next extract's window will read again."""
    floor = _iso_minus(watermark, OVERLAP)
    return {pk: h for pk, h, lu in window if lu >= floor}


def _needs_survey(
    table: SourceTable, base: _Base, now: datetime, settings: ExtractSettings
) -> bool:
    """Whether ``_extract_table`` surveys the whole table (its first extract, or a
    reconciliation is due)."""
    if base.first_extract(table.name):
        return True
    return _reconcile_due(settings, base, base.baseline_of(table.name), now)


def _extract_table(
    conn: Connection,
    table: SourceTable,
    base: _Base,
    now: datetime,
    writer: _Writer,
    sessions: ExtractSessions,
) -> _TableRun:
    now_iso = now.isoformat(timespec="milliseconds")
    before, baseline = base.before(table.name), base.baseline_of(table.name)
    checksums_key = baseline.checksums if baseline else None
    # A repair writes fresh full copies: the latest one may be in the skipped batch.
    full_copy = before.full_copy if before and not base.repairs else None
    if base.first_extract(table.name):  # all of it
        whole = sessions.survey(table)
        if whole.max_last_updated is None:
            return _TableRun(TableExtract(rows=0, key=None, watermark=None))
        watermark = min(whole.max_last_updated, now_iso)
        window = window_hashes(conn, table, watermark)
        run = _full_copy(
            sessions, table, watermark, whole.future_rows, _recent(window, watermark),
            checksums=whole.checksums, checksums_key=None, writer=writer, whole=whole,
        )  # fmt: skip
        run.extract.changed_rows = run.extract.rows  # all of it is new to the lake
        return run

    window = window_hashes(conn, table, before.watermark)
    seen = base.previous.recent.get(table.name, {})
    new_ids = sorted(int(pk) for pk, h, _ in window if seen.get(pk) != h)
    future = sum(1 for _, _, lu in window if lu > now_iso)
    # From the data, but never past the source's own clock.
    watermark = min(max([before.watermark, *(lu for _, _, lu in window)]), now_iso)
    recent = _recent(window, watermark)

    changed: list[int] = []
    stored: BucketChecksums | None = None
    delivered = {*before.delivered_buckets, *(pk // BUCKET_WIDTH for pk in new_ids)}
    if base.repairs and baseline is not None:
        # Reconciled against the state before a skipped batch: what was delivered since that
        # state's pass, up to the skipped batch (whose own pass is lost with it), counts too.
        delivered |= set(baseline.delivered_buckets)
    if _reconcile_due(writer.settings, base, baseline, now):
        source = sessions.survey(table).checksums
        changed = sorted({*source.changed_since(base.checksums(table.name)), *delivered})
        stored = source if changed or checksums_key is None else None
        delivered = set()  # every bucket delivered into is re-read now

    if table.name in FULL_COPY_TABLES and (new_ids or changed or full_copy is None):
        run = _full_copy(
            sessions, table, watermark, future, recent,
            checksums=stored, checksums_key=checksums_key, writer=writer,
            reconciled_rows=baseline.reconciled_rows if baseline else None,
        )  # fmt: skip
        run.extract.changed_rows = len(new_ids)
        run.extract.delivered_buckets = sorted(delivered)
        return run
    extract = TableExtract(
        rows=0,
        key=None,
        watermark=watermark,
        changed_rows=len(new_ids),
        future_rows=future,
        snapshot=Snapshot(BUCKET_WIDTH, tuple(changed)) if changed else None,
        checksums=checksums_key,
        reconciled_rows=baseline.reconciled_rows if baseline else None,
        delivered_buckets=sorted(delivered),
        full_copy=full_copy,
    )
    run = _TableRun(extract=extract, recent=recent, checksums=stored)
    if new_ids or changed:
        extract.rows = count_rows(conn, table, new_ids, changed)
        run.parts = writer.copy(sessions, table, new_ids, changed, extract.rows)
    return run


def _full_copy(
    sessions: ExtractSessions,
    table: SourceTable,
    watermark: str,
    future: int,
    recent: dict[str, str],
    *,
    checksums: BucketChecksums | None,
    checksums_key: str | None,
    writer: _Writer,
    reconciled_rows: int | None = None,
    whole: Survey | None = None,
) -> _TableRun:
    """The whole table: its first extract, or a changed table the transform needs whole.
    With ``whole`` (its survey, from this snapshot), its rows and parts are counted already."""
    extract = TableExtract(
        rows=whole.rows if whole else count_rows(sessions.conn, table, None, None),
        key=None,
        watermark=watermark,
        future_rows=future,
        snapshot=Snapshot(BUCKET_WIDTH, None),
        checksums=checksums_key,
        reconciled_rows=reconciled_rows,
        full_copy=None,  # this batch, once written
    )
    # Parts of whole buckets, unless a part is to be smaller than a bucket.
    by_buckets = whole is not None and writer.part_rows >= BUCKET_WIDTH
    ranges = whole.parts if by_buckets else None
    parts = writer.copy(sessions, table, None, None, extract.rows, ranges)
    return _TableRun(extract=extract, parts=parts, recent=recent, checksums=checksums)


@dataclass(frozen=True)
class ExtractOutcome:
    """The new batch's manifest (None when nothing changed), and what to tell people."""

    manifest: IngestionManifest | None
    warnings: list[str]


def extract_batch(
    conn: Connection,
    lake: Lake,
    settings: ExtractSettings | None = None,
    helper: Connection | None = None,
) -> ExtractOutcome:
    """Run one extract; write the batch's CSVs and then its manifest, if anything changed.
    ``helper``: a second session to the source, which surveys tables while ``conn`` copies."""
    conn.autocommit = True
    with conn.cursor() as cur:
        take_lock(cur, EXTRACT_LOCK_ID, "another extract", for_transaction=False)
    try:
        return _extract_locked(conn, lake, settings or ExtractSettings(), helper)
    finally:
        try:
            conn.rollback()
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_unlock(%s)", (EXTRACT_LOCK_ID,))
        except (psycopg2.OperationalError, psycopg2.InterfaceError):
            pass  # the session is gone, and its lock with it; the first error is what counts


def _next_batch_id(now: datetime, previous: IngestionManifest | None) -> tuple[str, str | None]:
    """The new batch's id, and a warning if the source's clock was set back.

    Batch ids order batches: a fact's current version is the one of its latest batch, a
    dimension keeps the latest batch's values, an extract builds on the latest manifest. So
    an id is the source's clock unless that reads no later than the previous batch's (its
    clock was stepped back, e.g. by NTP after running fast): then it is a moment (up to a
    second) after the previous batch's time, and the warning says so."""
    last = batch_time(previous.batch_id) if previous else None
    if last is None or now > last:
        return batch_id_at(now), None
    # Up to a second on: an attempt that stopped before its manifest left files under the
    # id it chose, and a retry must not choose the same one (``refuse_unwritten``).
    batch_id = batch_id_at(last + timedelta(microseconds=1 + secrets.randbelow(999_999)))
    if now == last:
        return batch_id, None
    return batch_id, (
        f"{CLOCK_BEHIND} ({previous.batch_id}): it reads"
        f" {now.isoformat(timespec='seconds')}, so it was set back. Batches are named in"
        f" order regardless (this one {batch_id}), and nothing is lost; check the source"
        " server's clock (NTP): rows it stamps in the meantime look older than they are"
    )


def _said_clock_behind(warnings: list[str]) -> bool:
    return any(w.startswith(CLOCK_BEHIND) for w in warnings)


def _extract_locked(
    conn: Connection, lake: Lake, settings: ExtractSettings, helper: Connection | None
) -> ExtractOutcome:
    # Read after taking the lock, so an extract that just finished is seen.
    base = _base(lake)
    conn.autocommit = False
    conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
    schema_warnings = sorted(check_source_schema(conn))
    with conn.cursor() as cur:
        cur.execute("SELECT clock_timestamp() AT TIME ZONE 'UTC'")
        now: datetime = cur.fetchone()[0]
    batch_id, clock_warning = _next_batch_id(now, base.previous)
    runs = _extract_tables(conn, helper, lake, base, now, _Writer(lake, batch_id, settings))
    conn.commit()
    known_schema = base.previous.schema_warnings if base.previous else []
    for warning in schema_warnings:
        logger.warning(warning)
    has_data = any(run.parts is not None for run in runs.values())
    if not has_data and not base.repairs and schema_warnings == known_schema:
        return ExtractOutcome(None, [])
    warnings = _warnings(base, runs, now, schema_warnings, clock_warning)
    manifest = _manifest(batch_id, base, runs, warnings, schema_warnings)
    # Last: the manifest is what makes the batch, and its new watermarks, visible.
    lake.ingestion.put_new(manifest_key(batch_id), manifest.to_json())
    return ExtractOutcome(manifest, warnings)


def _extract_tables(
    conn: Connection,
    helper: Connection | None,
    lake: Lake,
    base: _Base,
    now: datetime,
    writer: _Writer,
) -> dict[str, _TableRun]:
    """Every table's part of the batch, in this snapshot, written to the lake; by table, in
    the manifest's order."""
    tables = smallest_first(conn, SOURCE_TABLES)
    to_survey = [t for t in tables if _needs_survey(t, base, now, writer.settings)]
    sessions = ExtractSessions(
        conn, helper, now.isoformat(timespec="milliseconds"), to_survey, writer.part_rows
    )
    runs: dict[str, _TableRun] = {}
    try:
        for table in tables:
            run = runs[table.name] = _extract_table(conn, table, base, now, writer, sessions)
            if run.checksums is not None:  # stored now, not held: a big table's are large
                run.extract.checksums = lake.put_checksums(
                    table.name, writer.batch_id, BUCKET_WIDTH, run.checksums
                )
                run.extract.reconciled_rows = run.checksums.rows
                run.checksums = None
    finally:
        sessions.close()
    return {table.name: runs[table.name] for table in SOURCE_TABLES}


def _warnings(
    base: _Base,
    runs: dict[str, _TableRun],
    now: datetime,
    schema_warnings: list[str],
    clock_warning: str | None,
) -> list[str]:
    """What the batch tells people: each told once, when it appears (it is logged every
    run), or a run every 10 minutes would repeat the same email until someone acts."""
    known_schema = base.previous.schema_warnings if base.previous else []
    warnings = [w for w in schema_warnings if w not in known_schema]
    if clock_warning and not (base.previous and _said_clock_behind(base.previous.warnings)):
        warnings.append(clock_warning)
    for name, run in runs.items():
        before = base.before(name)
        if run.extract.future_rows > (before.future_rows if before else 0):
            warnings.append(
                f"table {name!r}: {run.extract.future_rows} rows have a last_updated after "
                f"the source's clock ({now.isoformat(timespec='seconds')}); delivered, and the "
                "watermark is held at the clock"
            )
    return warnings[:MAX_WARNINGS]


def _manifest(
    batch_id: str,
    base: _Base,
    runs: dict[str, _TableRun],
    warnings: list[str],
    schema_warnings: list[str],
) -> IngestionManifest:
    for run in runs.values():
        if run.parts is not None:  # written while the snapshot was open
            run.extract.key = run.parts[0].key
            run.extract.parts = run.parts if len(run.parts) > 1 else []
            if run.extract.snapshot is not None and run.extract.snapshot.full:
                run.extract.full_copy = batch_id
    return IngestionManifest(
        batch_id=batch_id,
        previous_batch_id=base.previous.batch_id if base.previous else None,
        tables={name: run.extract for name, run in runs.items()},
        recent={name: run.recent for name, run in runs.items()},
        repairs=base.repairs,
        repaired=base.repaired,
        warnings=warnings,
        schema_warnings=schema_warnings,
    )


def run_extract(lake: Lake, source_dsn: str, settings: ExtractSettings | None = None) -> dict:
    """The extract stage: what its handler returns to the state machine (ids and counts)."""
    with (
        connect(source_dsn, application_name="totes-extract") as conn,
        connect(source_dsn, application_name="totes-extract-survey") as helper,
    ):
        outcome = extract_batch(conn, lake, settings, helper)
    manifest = outcome.manifest
    tables = manifest.tables if manifest else {}
    return {
        "batch_id": manifest.batch_id if manifest else None,
        "rows": manifest.rows if manifest else 0,
        "tables": {t: e.rows for t, e in tables.items() if e.rows},
        "changed": {t: e.changed_rows for t, e in tables.items() if e.changed_rows},
        "warnings": "\n".join(outcome.warnings),
    }
