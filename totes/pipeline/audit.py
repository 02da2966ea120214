"""Audit: compare the warehouse with ToteSys, table by table, and name every difference.

For each warehouse table, ToteSys states what it should hold (``audit_model``: current
source rows, remodelled in SQL) and the warehouse shows what it holds (dimensions as they
are; facts: the current version of each id; ids in ``etl_deleted_row`` left out). They are
compared the data-diff way, cheaply and in bounded memory:

1. per id bucket (``id >> bucket_bits``), each database counts its rows and sums 60 bits of
   each row's md5 (the same canonical text on both sides); equal buckets are done;
2. for buckets that differ, each side returns (id, md5) for the bucket's ids only;
3. for ids whose md5 differs, both sides return the row, and the columns are compared.

With few differences, this costs about one scan of each table per side. On top: fact ids
holding one version twice, and dim_date (``audit_dates``).

A row that changed in ToteSys after what the warehouse has loaded is *pending*, not a
difference: the warehouse's newest fact change (less the extract's overlap) marks how far
it has got, and a row whose last_updated is beyond that is still on its way. Silent edits
and deletions leave last_updated alone, so they are always differences.

Both databases are only read: read-only REPEATABLE READ transactions, the warehouse's
snapshot taken first (a source change after it then looks newer, hence pending).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg2
from psycopg2 import sql
from psycopg2.extensions import ISOLATION_LEVEL_REPEATABLE_READ
from psycopg2.extensions import cursor as Cursor

from totes.pipeline import audit_sql
from totes.pipeline.audit_dates import audit_dates
from totes.pipeline.audit_model import (
    AUDITED_TABLE_NAMES,
    DATE_TABLE,
    FACTS,
    SOURCE_PARAMS,
    AuditTable,
    audit_table,
    check_table_names,
)
from totes.pipeline.audit_report import PENDING, AuditReport, Example, TableAudit
from totes.pipeline.db import connect
from totes.pipeline.events import InvalidInputError
from totes.pipeline.extract_settings import OVERLAP
from totes.pipeline.lake import batch_time
from totes.pipeline.registers import deletion_register_exists, waiting_ids

logger = logging.getLogger(__name__)

BUCKET_BITS = 10  # buckets of 1,024 ids
# Adjacent mismatching buckets are fetched together, up to this many (16,384 ids per side).
MAX_BUCKETS_PER_FETCH = 16
PROGRESS_EVERY_SECONDS = 5.0
WORK_MEM = "64MB"  # per sort or hash, in this session only (the default is 4MB)

Progress = Callable[[str], None]


class AuditError(Exception):
    """The audit could not compare; the message names the database side and the table."""


def run_audit(
    source_dsn: str,
    warehouse_dsn: str,
    *,
    tables: list[str] | tuple[str, ...] | None = None,
    max_examples: int = 5,
    bucket_bits: int = BUCKET_BITS,
    progress: Progress | None = None,
) -> AuditReport:
    """Compare the warehouse with ToteSys (``tables``: all by default)."""
    names = check_table_names(tables or AUDITED_TABLE_NAMES)
    say = progress or (lambda message: None)
    started = time.monotonic()
    with (
        _read_only(warehouse_dsn, "warehouse") as warehouse,
        _read_only(source_dsn, "ToteSys") as source,
    ):
        with _side("warehouse", "-"):
            _check_warehouse(warehouse, names)
            register = deletion_register_exists(warehouse)
            waiting = waiting_ids(warehouse)
            loaded_until = _loaded_until(warehouse)
        found: list[TableAudit] = []
        for name in names:
            say(f"{name}: comparing")
            table = TableAudit(name, max_examples=max_examples)
            table_started = time.monotonic()
            if name == DATE_TABLE:
                with _side("ToteSys or warehouse", name):
                    audit_dates(source, warehouse, table, loaded_until)
            else:
                comparison = _TableComparison(
                    audit_table(name), source, warehouse, table, loaded_until,
                    register=register, bits=bucket_bits, say=say,
                    waiting=waiting.get(name, set()),
                )  # fmt: skip
                comparison.run()
            table.seconds = time.monotonic() - table_started
            say(
                f"{name}: {table.source_rows:,} rows in ToteSys, {table.warehouse_rows:,} in the"
                f" warehouse, {table.differences:,} differences ({table.seconds:.1f} s)"
            )
            found.append(table)
    report = AuditReport(
        found, loaded_until.isoformat(sep=" ", timespec="milliseconds") if loaded_until else None,
        seconds=time.monotonic() - started,
    )  # fmt: skip
    logger.info(
        "audit finished",
        extra={"differences": report.differences, "seconds": round(report.seconds, 3)},
    )
    return report


def tables_from(event: dict) -> list[str] | None:
    """The optional ``tables`` of the audit Lambda's input: a list of table names."""
    tables = event.get("tables") if isinstance(event, dict) else None
    if tables is None:
        return None
    if not isinstance(tables, list) or not tables or not all(isinstance(t, str) for t in tables):
        raise InvalidInputError(
            f"expected 'tables' to be a non-empty list of names, got {tables!r:.200}"
        )
    return tables


@contextmanager
def _read_only(dsn: str, side: str) -> Iterator[Cursor]:
    """A cursor in one read-only REPEATABLE READ transaction, with ISO date output."""
    with connect(dsn, application_name="totes-audit") as conn:
        conn.set_session(isolation_level=ISOLATION_LEVEL_REPEATABLE_READ, readonly=True)
        with _side(side, "-"), conn.cursor() as cur:
            cur.execute("SET DateStyle = 'ISO, YMD'")
            # The fact side sorts every version by id: in memory rather than on disk.
            cur.execute("SET work_mem = %s", (WORK_MEM,))
        try:
            with conn.cursor() as cur:
                yield cur
        finally:
            conn.rollback()


@contextmanager
def _side(side: str, table: str) -> Iterator[None]:
    """Turn a database error into an AuditError naming where it happened."""
    try:
        yield
    except psycopg2.Error as exc:
        message = (exc.diag.message_primary or str(exc)).strip().splitlines()[0]
        where = f"{side}, table {table}" if table != "-" else side
        raise AuditError(f"audit failed reading the {where}: {message}") from None


def _check_warehouse(warehouse: Cursor, names: tuple[str, ...]) -> None:
    needed = sorted({*names, *(t.name for t in FACTS)})
    warehouse.execute(
        "SELECT name FROM unnest(%s::text[]) AS name WHERE to_regclass(name) IS NULL", (needed,)
    )
    missing = [row[0] for row in warehouse.fetchall()]
    if missing:
        raise AuditError(
            f"the warehouse has no table {', '.join(missing)}: has the pipeline loaded it yet?"
        )


def _loaded_until(warehouse: Cursor) -> datetime | None:
    """The newest source change the warehouse holds, less the extract's overlap (rows
    committed late within it may still be on their way); None when it holds no facts.
    Never past the newest batch's extract: a row dated in the future (which the extract
    delivers) does not make every change since that batch look missing."""
    newest = []
    for table in FACTS:
        warehouse.execute(audit_sql.newest_fact_change(table))
        if (value := warehouse.fetchone()[0]) is not None:
            newest.append(value)
    if not newest:
        return None
    warehouse.execute(audit_sql.newest_batch())
    (batch_id,) = warehouse.fetchone()
    until = max(newest)
    if batch_id is not None:
        until = min(until, batch_time(batch_id))
    return until - OVERLAP


@dataclass
class _TableComparison:
    """One table: bucket checksums, then ids of mismatching buckets, then rows."""

    table: AuditTable
    source: Cursor
    warehouse: Cursor
    found: TableAudit  # what the comparison finds, filled in as it goes
    loaded_until: datetime | None
    register: bool  # the warehouse has a deletion register
    bits: int  # a bucket is the ids with the same id >> bits
    say: Progress
    waiting: set[int]  # fact rows waiting for a dimension row: pending, not missing

    def run(self) -> None:
        source_buckets = self._buckets("ToteSys")
        warehouse_buckets = self._buckets("warehouse")
        self.found.source_rows = sum(count for count, _ in source_buckets.values())
        self.found.warehouse_rows = sum(count for count, _ in warehouse_buckets.values())
        mismatching = sorted(
            bucket
            for bucket in source_buckets.keys() | warehouse_buckets.keys()
            if source_buckets.get(bucket) != warehouse_buckets.get(bucket)
        )
        last_said = time.monotonic()
        for done, (first, last) in enumerate(_runs(mismatching, MAX_BUCKETS_PER_FETCH), 1):
            self._compare_range(first << self.bits, (last + 1) << self.bits)
            if time.monotonic() - last_said > PROGRESS_EVERY_SECONDS:
                self.say(f"{self.table.name}: {done:,} fetches of mismatching buckets done")
                last_said = time.monotonic()
        if self.table.kind == "fact":
            self._duplicates()

    def _params(self, **values: Any) -> dict[str, Any]:
        return {**SOURCE_PARAMS, "table": self.table.name, "bits": self.bits, **values}

    def _relation(self, side: str, kind: audit_sql.Filter) -> sql.Composable:
        if side == "ToteSys":
            return audit_sql.source_relation(self.table, kind)
        return audit_sql.warehouse_relation(self.table, kind, register=self.register)

    def _cursor(self, side: str) -> Cursor:
        return self.source if side == "ToteSys" else self.warehouse

    def _buckets(self, side: str) -> dict[int, tuple[int, Any]]:
        with _side(side, self.table.name):
            cur = self._cursor(side)
            cur.execute(
                audit_sql.bucket_checksums(self.table, self._relation(side, "all")),
                self._params(),
            )
            return {bucket: (count, checksum) for bucket, count, checksum in cur}

    def _hashes(self, side: str, lo: int, hi: int) -> dict[int, tuple[str, datetime | None]]:
        with _side(side, self.table.name):
            cur = self._cursor(side)
            cur.execute(
                audit_sql.hashes(self.table, self._relation(side, "range")),
                self._params(lo=lo, hi=hi),
            )
            return {key: (digest, changed) for key, digest, changed in cur}

    def _values(self, side: str, ids: list[int]) -> dict[int, tuple]:
        with _side(side, self.table.name):
            cur = self._cursor(side)
            cur.execute(
                audit_sql.values(self.table, self._relation(side, "ids")), self._params(ids=ids)
            )
            return {row[0]: row[1:] for row in cur}

    def _registered(self, lo: int, hi: int) -> dict[int, str]:
        if not self.register:
            return {}
        with _side("warehouse", self.table.name):
            self.warehouse.execute(audit_sql.registered_ids(), self._params(lo=lo, hi=hi))
            return dict(self.warehouse.fetchall())

    def _pending(self, changed_at: datetime | None, key: int | None = None) -> bool:
        if key is not None and key in self.waiting:
            return True
        return (
            self.loaded_until is not None
            and changed_at is not None
            and changed_at > self.loaded_until
        )

    def _compare_range(self, lo: int, hi: int) -> None:
        expected = self._hashes("ToteSys", lo, hi)
        actual = self._hashes("warehouse", lo, hi)
        registered = self._registered(lo, hi)
        for key in sorted(expected.keys() - actual.keys()):
            if key in registered:
                self.found.add(
                    "marked_but_present",
                    Example("marked_but_present", key, None, "present",
                            f"deleted (batch {registered[key]})"),
                )  # fmt: skip
            elif self._pending(expected[key][1], key):
                self.found.add(PENDING)
            else:
                self.found.add("missing", Example("missing", key, None, "present", "absent"))
        for key in sorted(actual.keys() - expected.keys()):
            self.found.add(
                "unmarked_deletion", Example("unmarked_deletion", key, None, "absent", "present")
            )
        differing = sorted(
            key for key in expected.keys() & actual.keys() if expected[key][0] != actual[key][0]
        )
        if differing:
            self._compare_rows(differing, expected)

    def _compare_rows(self, ids: list[int], expected: dict[int, tuple[str, Any]]) -> None:
        source, warehouse = self._values("ToteSys", ids), self._values("warehouse", ids)
        names = self.table.column_names
        for key in ids:
            if self._pending(expected[key][1], key):
                self.found.add(PENDING)
                continue
            want, have = source[key], warehouse[key]
            columns = [n for n, a, b in zip(names, want, have, strict=True) if a != b]
            self.found.add_differing_columns(columns)
            self.found.add(
                "differing",
                *(
                    Example("differing", key, n, a, b)
                    for n, a, b in zip(names, want, have, strict=True)
                    if a != b
                ),
            )

    def _duplicates(self) -> None:
        # A server-side cursor: there may be many, and only the first few are kept.
        streamed = self.warehouse.connection.cursor(name=f"audit_{self.table.name}_duplicates")
        streamed.itersize = 1000
        with _side("warehouse", self.table.name), streamed:
            streamed.execute(audit_sql.duplicate_versions(self.table))
            for key, copies, record_ids in streamed:
                self.found.add(
                    "duplicate_version",
                    Example(
                        "duplicate_version", key, None, "one version",
                        f"{copies} copies ({self.table.record_id} "
                        f"{', '.join(map(str, record_ids))})",
                    ),
                )  # fmt: skip


def _runs(buckets: list[int], longest: int) -> Iterator[tuple[int, int]]:
    """(first, last) of each run of consecutive buckets, at most ``longest`` long."""
    start = previous = None
    for bucket in buckets:
        if start is not None and bucket == previous + 1 and bucket - start < longest:
            previous = bucket
            continue
        if start is not None:
            yield start, previous
        start = previous = bucket
    if start is not None:
        yield start, previous
