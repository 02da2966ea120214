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

import contextlib
import logging
import re
import secrets
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from threading import Lock
from typing import TypeVar

import psycopg2
from psycopg2 import sql
from psycopg2.extensions import connection as Connection

from totes.pipeline.checksums import BucketChecksums
from totes.pipeline.db import bucket_of, connect, take_lock
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
from totes.schema.source import FULL_COPY_TABLES, SOURCE_TABLES, SourceTable, catalog_type

logger = logging.getLogger(__name__)

# Long enough for any ToteSys write transaction to commit; a row committed later than this
# with an older last_updated is found by the next reconciliation instead.
OVERLAP = timedelta(minutes=15)
# Ids per reconciliation bucket: a changed bucket is extracted whole, so smaller buckets
# mean fewer unchanged rows re-read; larger ones a smaller checksum file.
BUCKET_WIDTH = 100
# A change ToteSys makes silently must reach the warehouse within 30 minutes: a large table
# is reconciled at least every 20 minutes, which with a run every 10 leaves room for one
# failed run. A small table (most of ToteSys, and all of it at its real size) every run.
RECONCILE_INTERVAL = timedelta(minutes=20)
RECONCILE_EVERY_RUN_ROWS = 100_000
# Memory for a survey's buckets (about 250 bytes each) in one of our sessions, for the rest
# of the extract's transaction: 64 MB holds a 25-million-row table's without spilling to
# disk (PostgreSQL's default, 4 MB, about 3 million rows').
SURVEY_WORK_MEM = "64MB"
CLOCK_BEHIND = "the source database's clock reads earlier than the previous batch"
# Serialises extracts against the same source (any 64-bit number unique to this purpose).
EXTRACT_LOCK_ID = 7_146_203_951
_TS_FORMAT = 'YYYY-MM-DD"T"HH24:MI:SS.MS'
MAX_WARNINGS = 20
# Rows per CSV part: bounds the memory of the transform and the load (which handle one part
# at a time) and the work of one call when they fan out (config: PART_ROWS). Small enough
# that a scale-10 ToteSys already has two full parts in flight in the transform, so that
# its peak memory is the same from there up (with 100,000: +20% from scale 10 to 100).
DEFAULT_PART_ROWS = 50_000


class SchemaDriftError(Exception):
    """ToteSys no longer has the tables, columns or types we extract."""


@dataclass(frozen=True)
class ExtractSettings:
    """How often the extract reconciles: a table of at most ``every_run_rows`` rows on every
    run (it costs little), a larger one at most every ``reconcile_interval``."""

    reconcile_interval: timedelta = RECONCILE_INTERVAL
    every_run_rows: int = RECONCILE_EVERY_RUN_ROWS
    force_reconcile: bool = False  # `totes run --reconcile`, input {"reconcile": true}
    part_rows: int = DEFAULT_PART_ROWS


def _compatible_retype(declared: str, found: str, *, key: bool = False) -> bool:
    """A type change every value we expect still fits in (values that do not are set aside
    row by row by the transform, which checks each value against the declared type). A
    key only to bigint: its buckets and id ranges are integer arithmetic."""
    if key:
        return declared == "integer" and found == "bigint"
    if declared == "integer":
        # numeric with a scale writes every integer as '5.00', which is no integer: every row
        # would be set aside, so that is an incompatible change, which stops the extract.
        return found in ("bigint", "numeric") or bool(re.fullmatch(r"numeric\(\d+,0\)", found))
    if declared.startswith("character varying") and found.startswith(("character varying", "text")):
        return True
    if declared == "text" and found.startswith("character varying"):
        return True
    return declared.startswith("numeric") and found.startswith("numeric")


def check_source_schema(conn: Connection) -> list[str]:
    """Raise on missing or incompatibly retyped columns; return warnings for new columns and
    for compatible retypes (e.g. integer -> bigint)."""
    with conn.cursor() as cur:
        cur.execute(
            """SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod)
                 FROM pg_attribute a
                 JOIN pg_class c ON c.oid = a.attrelid
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = current_schema() AND c.relname = ANY(%s)
                  AND a.attnum > 0 AND NOT a.attisdropped""",
            ([t.name for t in SOURCE_TABLES],),
        )
        found: dict[str, dict[str, str]] = {}
        for table, column, data_type in cur.fetchall():
            found.setdefault(table, {})[column] = data_type
    problems, warnings = [], []
    for table in SOURCE_TABLES:
        columns = found.get(table.name)
        if columns is None:
            problems.append(f"table {table.name!r} is missing")
            continue
        for col in table.columns:
            declared = catalog_type(col)
            actual = columns.get(col.name)
            if actual is None:
                problems.append(f"table {table.name!r} lost column {col.name!r}")
            elif actual != declared:
                change = f"table {table.name!r} column {col.name!r} is {actual}, not {declared}"
                if _compatible_retype(declared, actual, key=col.name == table.primary_key):
                    warnings.append(f"{change}; values that do not fit {declared} are set aside")
                else:
                    problems.append(change)
        for name, data_type in columns.items():
            if name not in table.column_names:
                warnings.append(
                    f"table {table.name!r} gained column {name!r} ({data_type}); not extracted"
                )
    if problems:
        raise SchemaDriftError("; ".join(problems))
    return warnings


def _smallest_first(conn: Connection, tables: Iterable[SourceTable]) -> list[SourceTable]:
    """The tables in order of their size on disk, smallest first. The second session
    surveys a table while the first copies the one before: the first then waits only for
    the smallest big table's survey to start copying, and the largest, last, is copied by
    both sessions. The order changes nothing in the batch."""
    tables = list(tables)
    with conn.cursor() as cur:
        cur.execute(
            "SELECT t.name, pg_relation_size(to_regclass(quote_ident(t.name)))"
            " FROM unnest(%s::text[]) AS t(name)",
            ([t.name for t in tables],),
        )
        size = dict(cur.fetchall())
    return sorted(tables, key=lambda t: size.get(t.name) or 0)


def _row_hash(table: SourceTable) -> sql.Composable:
    """md5 of the columns we extract, in the database: new source columns change nothing."""
    return sql.SQL("md5(ROW({})::text)").format(
        sql.SQL(", ").join(sql.Identifier(c) for c in table.column_names)
    )


def _bucket(table: SourceTable) -> sql.Composable:
    """A row's bucket, as the load and ``Snapshot`` count them."""
    return bucket_of(sql.Identifier(table.primary_key), sql.Literal(BUCKET_WIDTH))


def _selection(
    table: SourceTable, ids: list[int] | None, buckets: list[int] | None
) -> sql.Composable:
    """A WHERE clause: every row when ``ids`` is None, else those with the given ids or in
    the given buckets. Values are literals (COPY takes no parameters), never text."""
    if ids is None:
        return sql.SQL("")
    # bigint: an id retyped so in ToteSys may have outgrown integer (the transform then
    # sets its row aside); an integer[] cast would stop every extract instead.
    pk, ids_array = sql.Identifier(table.primary_key), sql.Literal(ids)
    if not buckets:  # the key's index finds them
        return sql.SQL(" WHERE {} = ANY({}::bigint[])").format(pk, ids_array)
    # A scan of the table; each side bigint, so each ANY looks its value up in a hash of
    # the array (integer = ANY(bigint[]) walks the array: 1.6 M payments against 15,800
    # buckets took 32 s, against 0.3 s).
    return sql.SQL(
        " WHERE ({pk}::bigint = ANY({ids}::bigint[]) OR {bucket} = ANY({b}::bigint[]))"
    ).format(pk=pk, ids=ids_array, bucket=_bucket(table), b=sql.Literal(buckets))


def _in_range(table: SourceTable, where: sql.Composable, low: int, high: int) -> sql.Composable:
    """``where`` (a WHERE clause or nothing) narrowed to ids low..high (literals: COPY
    takes no parameters)."""
    narrowed = sql.SQL("{} BETWEEN {} AND {}").format(
        sql.Identifier(table.primary_key), sql.Literal(low), sql.Literal(high)
    )
    if where == sql.SQL(""):
        return sql.SQL(" WHERE {}").format(narrowed)
    return sql.SQL("{} AND {}").format(where, narrowed)


def _part_ranges(
    conn: Connection, table: SourceTable, where: sql.Composable, part_rows: int
) -> list[tuple[int, int, int]]:
    """(first id, last id, rows) of each run of ``part_rows`` selected rows, in id order."""
    pk = sql.Identifier(table.primary_key)
    query = sql.SQL(
        "SELECT min(id), max(id), count(*) FROM (SELECT {pk} AS id,"
        " (row_number() OVER (ORDER BY {pk}) - 1) / %s AS part FROM {table}{where}) s"
        " GROUP BY part ORDER BY part"
    ).format(pk=pk, table=sql.Identifier(table.name), where=where)
    with conn.cursor() as cur:
        cur.execute(query, (part_rows,))
        return [(int(low), int(high), int(rows)) for low, high, rows in cur.fetchall()]


def _copy_to(conn: Connection, table: SourceTable, where: sql.Composable, stream) -> None:
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in table.column_names)
    query = sql.SQL(
        "COPY (SELECT {columns} FROM {table}{where} ORDER BY {pk}) TO STDOUT"
        " WITH (FORMAT csv, HEADER true)"
    ).format(
        columns=columns,
        table=sql.Identifier(table.name),
        where=where,
        pk=sql.Identifier(table.primary_key),
    )
    with conn.cursor() as cur:
        cur.copy_expert(query, stream, size=1 << 16)


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
        sessions: _Surveyor,
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
        where = _selection(table, ids, buckets)
        if rows <= self.part_rows:
            ranges = [(None, None, rows)]
        elif ranges is None:
            ranges = _part_ranges(sessions.conn, table, where, self.part_rows)

        def copy_part(session: Connection, number: int) -> Part:
            low, high, count = ranges[number - 1]
            key = csv_key(table.name, self.batch_id, number if len(ranges) > 1 else None)
            part_where = where if low is None else _in_range(table, where, low, high)
            with self.lake.ingestion.open_new(key) as stream:
                _copy_to(session, table, part_where, stream)
            refuse_unwritten(stream, self.lake.ingestion.location(key))
            return Part(key, count)

        return sessions.share(range(1, len(ranges) + 1), copy_part)


def _count_rows(
    conn: Connection, table: SourceTable, ids: list[int] | None, buckets: list[int] | None
) -> int:
    # Counted in the same snapshot as the COPY (quoted newlines make line counts wrong).
    query = sql.SQL("SELECT count(*) FROM {}{}").format(
        sql.Identifier(table.name), _selection(table, ids, buckets)
    )
    with conn.cursor() as cur:
        cur.execute(query)
        return cur.fetchone()[0]


def _as_text(timestamp: sql.Composable) -> sql.Composable:
    """A last_updated as ISO text that sorts as it does: kept within years 1 to 9999, so
    'infinity' (which to_char gives as NULL) and years past 9999 (five digits, which sort
    before four) read as the latest time there is, after the source's clock (a future
    row); '-infinity' and years BC as the earliest."""
    return sql.SQL(
        "to_char(CASE WHEN {ts} > {last} THEN {last} WHEN {ts} < {first} THEN {first}"
        " ELSE {ts} END, {fmt})"
    ).format(
        ts=timestamp,
        last=sql.SQL("'9999-12-31 23:59:59.999'::timestamp"),
        first=sql.SQL("'0001-01-01'::timestamp"),
        fmt=sql.Literal(_TS_FORMAT),
    )


def _window_hashes(conn: Connection, table: SourceTable, since: str) -> list[tuple[str, str, str]]:
    """(id, content hash, last_updated) of rows with last_updated >= since - OVERLAP."""
    query = sql.SQL(
        "SELECT {pk}::text, {hash}, {last_updated} FROM {t}"
        " WHERE last_updated >= %s::timestamp - %s"
    ).format(
        pk=sql.Identifier(table.primary_key),
        hash=_row_hash(table),
        t=sql.Identifier(table.name),
        last_updated=_as_text(sql.SQL("last_updated")),
    )
    with conn.cursor() as cur:
        cur.execute(query, (since, OVERLAP))
        return cur.fetchall()


@dataclass(frozen=True)
class Survey:
    """A whole table in one scan: each bucket's rows and checksum, the table's parts cut at
    bucket edges, its largest last_updated and how many rows are dated after the clock."""

    checksums: BucketChecksums
    parts: list[tuple[int, int, int]]  # (first id, last id, rows), in id order
    max_last_updated: str | None
    future_rows: int

    @property
    def rows(self) -> int:
        return sum(count for *_, count in self.parts)


def add_bucket(
    parts: list[tuple[int, int, int]], first: int, last: int, rows: int, part_rows: int
) -> None:
    """Add the next bucket (in id order) to the last part (first id, last id, rows) if it
    still fits in ``part_rows``, else start a part with it."""
    if parts and parts[-1][2] + rows <= part_rows:
        parts[-1] = (parts[-1][0], last, parts[-1][2] + rows)
    else:
        parts.append((first, last, rows))


class _SurveyStream:
    """Takes the survey's COPY output as it arrives (tab-separated lines, in bucket order),
    so memory holds a chunk of it, never a large table's tens of thousands of buckets at
    once (a plain query's result is held whole by the client library)."""

    def __init__(self, part_rows: int) -> None:
        self.checksums = BucketChecksums()
        self.parts: list[tuple[int, int, int]] = []
        self.latest: str | None = None
        self.future = 0
        self._part_rows = part_rows
        self._tail = b""

    def write(self, chunk: bytes) -> int:
        lines = (self._tail + chunk).split(b"\n")
        self._tail = lines.pop()
        for line in lines:
            bucket, rows, total, first, last, updated, dated_later = line.split(b"\t")
            self.checksums.add(int(bucket), int(rows), int(total))
            add_bucket(self.parts, int(first), int(last), int(rows), self._part_rows)
            if updated != b"\\N" and (self.latest is None or updated.decode() > self.latest):
                self.latest = updated.decode()
            self.future += int(dated_later)
        return len(chunk)

    def survey(self) -> Survey:
        if self._tail:  # COPY ends every line: a fragment means the output was cut short
            raise psycopg2.DatabaseError(f"the survey's output ended mid-line: {self._tail!r:.80}")
        return Survey(self.checksums, self.parts, self.latest, self.future)


def survey(conn: Connection, table: SourceTable, now: str, part_rows: int) -> Survey:
    """Per bucket: rows, sum of 64-bit row hashes, first and last id; and the table's largest
    last_updated and its rows dated after ``now``; one scan, in the source database. Parts
    are runs of whole buckets of at most ``part_rows`` rows (at least one bucket each): exact,
    and no query of their own.

    ``hash_record_extended`` (PostgreSQL 14+) hashes the row's values without rendering them
    as text: three times faster than an md5 of the text. Its enum hashes depend on the
    database's own type ids, which only a dump and restore of ToteSys changes: the next pass
    then re-reads every bucket once, and nothing is duplicated. It is a weighted sum of the
    column values' hashes, so a bucket's sum of them would not change when rows of the
    bucket swap a column's values (silent edits); each row's is hashed again
    (``hashint8extended``) before it is summed, which no such exchange survives.

    The rows are hashed in a subquery that the planner may not flatten (``OFFSET 0``): it
    then hashes each row once as it scans and aggregates by hash (a bucket's count is not
    known to it), instead of sorting every row with all its columns first. A third less
    time, on one core, while the extract's other session copies on the other. The result
    streams through COPY: memory holds a chunk of it at a time.
    """
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in table.column_names)
    pk = sql.Identifier(table.primary_key)
    query = sql.SQL(
        "COPY (SELECT bucket, count(*), sum(row_hash), min(id), max(id),"
        " {latest},"
        " count(*) FILTER (WHERE last_updated > {now}::timestamp)"
        " FROM (SELECT {bucket} AS bucket,"
        " hashint8extended(hash_record_extended(ROW({columns}), 0), 0) AS row_hash,"
        " {pk} AS id, last_updated"
        " FROM {t} OFFSET 0) AS hashed"
        " GROUP BY bucket ORDER BY bucket) TO STDOUT"
    ).format(
        pk=pk,
        bucket=_bucket(table),
        columns=columns,
        latest=_as_text(sql.SQL("max(last_updated)")),
        now=sql.Literal(now),  # COPY takes no parameters; a literal, never text
        t=sql.Identifier(table.name),
    )
    stream = _SurveyStream(part_rows)
    with conn.cursor() as cur:
        cur.execute("SET LOCAL work_mem = %s", (SURVEY_WORK_MEM,))
        cur.copy_expert(query, stream, size=1 << 16)
    return stream.survey()


_Job = TypeVar("_Job")
_Done = TypeVar("_Done")


class _Surveyor:
    """Whole-table surveys for this extract, in its snapshot, and the extract's sessions.

    With a second session, the surveys run on it, up to ``AHEAD`` tables ahead of the
    extract, while the first session copies: the source's two scans of a table (survey,
    COPY) then run on two cores instead of one after the other. Once it has no survey
    left to start, it copies parts too (``share``): the surveys end well before the
    copies, and it would otherwise idle through the last big tables. The second session
    reads the same snapshot (``pg_export_snapshot``), so both see exactly the same rows.
    """

    # Surveys held at once: enough to keep the second session busy past small tables; each
    # holds a table's bucket checksums (memory), so not every table's.
    AHEAD = 2

    def __init__(
        self,
        conn: Connection,
        helper: Connection | None,
        now: str,
        tables: list[SourceTable],
        part_rows: int,
    ) -> None:
        self._conn, self._helper, self._now, self._part_rows = conn, helper, now, part_rows
        self._waiting = list(tables)  # those to survey, in the order the extract asks
        self._ahead: list[tuple[str, Future[Survey]]] = []
        self._pool: ThreadPoolExecutor | None = None
        if helper is not None and tables:
            with conn.cursor() as cur:
                cur.execute("SELECT pg_export_snapshot()")
                (snapshot,) = cur.fetchone()
            helper.autocommit = False
            helper.set_session(isolation_level="REPEATABLE READ", readonly=True)
            with helper.cursor() as cur:
                cur.execute("SET TRANSACTION SNAPSHOT %s", (snapshot,))
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="extract-survey")
            self._submit()

    def _submit(self) -> None:
        while self._pool is not None and self._waiting and len(self._ahead) < self.AHEAD:
            table = self._waiting.pop(0)
            future = self._pool.submit(survey, self._helper, table, self._now, self._part_rows)
            self._ahead.append((table.name, future))

    @property
    def conn(self) -> Connection:
        """The extract's own session."""
        return self._conn

    def share(self, jobs: Iterable[_Job], work: Callable[[Connection, _Job], _Done]) -> list[_Done]:
        """``work(session, job)`` for every job, results in the jobs' order: on this session,
        and on the second too when it has no survey left to start (after those it has
        already started; not at all if this session is done first)."""
        queue = deque(jobs)
        order = list(queue)
        if self._pool is None or self._waiting or len(queue) < 2:
            return [work(self._conn, job) for job in order]
        lock, done = Lock(), {}

        def drain(session: Connection) -> None:
            try:
                while True:
                    with lock:
                        if not queue:
                            return
                        job = queue.popleft()
                    done[job] = work(session, job)
            except BaseException:
                with lock:  # neither session starts another job
                    queue.clear()
                raise

        helping = self._pool.submit(drain, self._helper)
        try:
            drain(self._conn)
        except BaseException:
            wait_for([helping])
            raise
        if not helping.cancel():  # started: it ends with its job in hand
            helping.result()
        return [done[job] for job in order]

    def survey(self, table: SourceTable) -> Survey:
        if self._ahead and self._ahead[0][0] == table.name:
            _, future = self._ahead.pop(0)
            found = future.result()
            self._submit()
            return found
        return survey(self._conn, table, self._now, self._part_rows)

    def close(self) -> None:
        """Stop the second session's work (on an error, mid-query) and end its snapshot."""
        if self._pool is None:
            return
        if any(not future.done() for _, future in self._ahead):
            self._helper.cancel()
        self._pool.shutdown(wait=True, cancel_futures=True)
        # If the session is gone, its snapshot went with it; the first error is what counts.
        with contextlib.suppress(psycopg2.OperationalError, psycopg2.InterfaceError):
            self._helper.rollback()


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
    already = set(previous.repaired) if previous else set()
    pending = sorted(set(lake.skipped()) - already)
    if not pending:
        return _Base(lake, previous, previous, [], sorted(already))
    before = lake.ingestion_manifest(pending[0]).previous_batch_id
    baseline = lake.ingestion_manifest(before) if before else None
    return _Base(lake, previous, baseline, pending, sorted(already | set(pending)))


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
    surveyor: _Surveyor,
) -> _TableRun:
    now_iso = now.isoformat(timespec="milliseconds")
    before, baseline = base.before(table.name), base.baseline_of(table.name)
    checksums_key = baseline.checksums if baseline else None
    # A repair writes fresh full copies: the latest one may be in the skipped batch.
    full_copy = before.full_copy if before and not base.repairs else None
    if base.first_extract(table.name):  # all of it
        whole = surveyor.survey(table)
        if whole.max_last_updated is None:
            return _TableRun(TableExtract(rows=0, key=None, watermark=None))
        watermark = min(whole.max_last_updated, now_iso)
        window = _window_hashes(conn, table, watermark)
        run = _full_copy(
            surveyor, table, watermark, whole.future_rows, _recent(window, watermark),
            checksums=whole.checksums, checksums_key=None, writer=writer, whole=whole,
        )  # fmt: skip
        run.extract.changed_rows = run.extract.rows  # all of it is new to the lake
        return run

    window = _window_hashes(conn, table, before.watermark)
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
        source = surveyor.survey(table).checksums
        changed = sorted({*source.changed_since(base.checksums(table.name)), *delivered})
        stored = source if changed or checksums_key is None else None
        delivered = set()  # every bucket delivered into is re-read now

    if table.name in FULL_COPY_TABLES and (new_ids or changed or full_copy is None):
        run = _full_copy(
            surveyor, table, watermark, future, recent,
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
        extract.rows = _count_rows(conn, table, new_ids, changed)
        run.parts = writer.copy(surveyor, table, new_ids, changed, extract.rows)
    return run


def _full_copy(
    sessions: _Surveyor,
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
    With a ``survey`` of it (from this snapshot), its rows and parts are counted already."""
    extract = TableExtract(
        rows=whole.rows if whole else _count_rows(sessions.conn, table, None, None),
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
    writer = _Writer(lake, batch_id, settings)
    tables = _smallest_first(conn, SOURCE_TABLES)
    to_survey = [t for t in tables if _needs_survey(t, base, now, settings)]
    surveyor = _Surveyor(
        conn, helper, now.isoformat(timespec="milliseconds"), to_survey, settings.part_rows
    )
    runs: dict[str, _TableRun] = {}
    try:
        for table in tables:
            run = runs[table.name] = _extract_table(conn, table, base, now, writer, surveyor)
            if run.checksums is not None:  # stored now, not held: a big table's are large
                run.extract.checksums = lake.put_checksums(
                    table.name, batch_id, BUCKET_WIDTH, run.checksums
                )
                run.extract.reconciled_rows = run.checksums.rows
                run.checksums = None
    finally:
        surveyor.close()
    conn.commit()
    runs = {table.name: runs[table.name] for table in SOURCE_TABLES}  # the manifest's order
    # Told once, when they appear (logged every run): a run every 10 minutes would
    # otherwise repeat the same email until someone fixes ToteSys.
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
    for warning in schema_warnings:
        logger.warning(warning)
    warnings = warnings[:MAX_WARNINGS]
    has_data = any(run.parts is not None for run in runs.values())
    if not has_data and not base.repairs and schema_warnings == known_schema:
        return ExtractOutcome(None, [])
    for run in runs.values():
        if run.parts is not None:  # written above, while the snapshot was open
            run.extract.key = run.parts[0].key
            run.extract.parts = run.parts if len(run.parts) > 1 else []
            if run.extract.snapshot is not None and run.extract.snapshot.full:
                run.extract.full_copy = batch_id
    manifest = IngestionManifest(
        batch_id=batch_id,
        previous_batch_id=base.previous.batch_id if base.previous else None,
        tables={name: run.extract for name, run in runs.items()},
        recent={name: run.recent for name, run in runs.items()},
        repairs=base.repairs,
        repaired=base.repaired,
        warnings=warnings,
        schema_warnings=schema_warnings,
    )
    # Last: the manifest is what makes the batch, and its new watermarks, visible.
    lake.ingestion.put_new(manifest_key(batch_id), manifest.to_json())
    return ExtractOutcome(manifest, warnings)


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
