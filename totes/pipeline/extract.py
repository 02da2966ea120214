"""Extract: copy what changed in the 11 ToteSys tables into one immutable CSV per table.

How nothing is lost or duplicated:
- The watermark per table is the largest ``last_updated`` the extract has SEEN (from the
  data, never from a clock), and it is stored in the batch manifest, which is written only
  after every CSV of the batch: a crash before that leaves the old watermark in force.
- Each run re-reads an overlap window below the watermark, so a row committed late with
  an earlier ``last_updated`` is still found. Rows in that window that the previous batch
  already delivered are recognised by a content hash the database computes
  (``md5(row::text)``) and dropped, so a re-read row never becomes a duplicate.
- Every query of a run reads one snapshot (REPEATABLE READ), and runs are serialised by an
  advisory lock on the source, so overlapping executions cannot interleave their batches.
"""

from __future__ import annotations

import io
import logging
from datetime import datetime, timedelta

from psycopg2 import sql
from psycopg2.extensions import connection as Connection

from totes.pipeline.db import connect
from totes.pipeline.events import MAX_BATCHES_PER_RUN
from totes.pipeline.lake import (
    IngestionManifest,
    Lake,
    TableExtract,
    batch_id_at,
    csv_key,
    manifest_key,
)
from totes.schema.source import SOURCE_TABLES, SourceTable

logger = logging.getLogger(__name__)

# Long enough for any ToteSys write transaction to commit; rows committed later than this
# with an older last_updated are the reconciliation pass's job.
OVERLAP = timedelta(minutes=15)
# Serialises extracts against the same source (any 64-bit number unique to this purpose).
EXTRACT_LOCK_ID = 7_146_203_951
_TS_FORMAT = 'YYYY-MM-DD"T"HH24:MI:SS.MS'


class SchemaDriftError(Exception):
    """ToteSys no longer has the columns or types we extract."""


def check_source_schema(conn: Connection) -> list[str]:
    """Raise on missing or retyped columns; return warnings for columns we do not know."""
    with conn.cursor() as cur:
        cur.execute(
            """SELECT table_name, column_name,
                      CASE WHEN data_type = 'USER-DEFINED' THEN udt_name ELSE data_type END
                 FROM information_schema.columns
                WHERE table_schema = current_schema() AND table_name = ANY(%s)""",
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
            if col.name not in columns:
                problems.append(f"table {table.name!r} lost column {col.name!r}")
        for name, data_type in columns.items():
            if name not in table.column_names:
                warnings.append(
                    f"table {table.name!r} gained column {name!r} ({data_type}); not extracted"
                )
    if problems:
        raise SchemaDriftError("; ".join(problems))
    return warnings


def _previous_state(previous: IngestionManifest | None, table: str) -> tuple[str | None, dict]:
    if previous is None or table not in previous.tables:
        return None, {}
    return previous.tables[table].watermark, previous.recent.get(table, {})


def _copy_csv(conn: Connection, table: SourceTable, ids: list[int] | None) -> bytes:
    """The table's rows (all, or those with the given ids) as CSV, by COPY."""
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in table.column_names)
    pk = sql.Identifier(table.primary_key)
    where = sql.SQL("")
    if ids is not None:
        where = sql.SQL(" WHERE {} = ANY({}::integer[])").format(pk, sql.Literal(ids))
    query = sql.SQL(
        "COPY (SELECT {columns} FROM {table}{where} ORDER BY {pk}) TO STDOUT"
        " WITH (FORMAT csv, HEADER true)"
    ).format(columns=columns, table=sql.Identifier(table.name), where=where, pk=pk)
    buffer = io.BytesIO()
    with conn.cursor() as cur:
        cur.copy_expert(query, buffer)
    return buffer.getvalue()


def _window_hashes(
    conn: Connection, table: SourceTable, since: str | None
) -> list[tuple[str, str, str]]:
    """(id, content hash, last_updated) of rows with last_updated >= since - OVERLAP."""
    query = sql.SQL(
        "SELECT {pk}::text, md5({t}::text), to_char(last_updated, {fmt}) FROM {t}"
        " WHERE last_updated >= %s::timestamp - %s"
    ).format(
        pk=sql.Identifier(table.primary_key),
        t=sql.Identifier(table.name),
        fmt=sql.Literal(_TS_FORMAT),
    )
    with conn.cursor() as cur:
        cur.execute(query, (since, OVERLAP))
        return cur.fetchall()


def _max_last_updated(conn: Connection, table: SourceTable) -> str | None:
    with conn.cursor() as cur:
        cur.execute(
            sql.SQL("SELECT to_char(max(last_updated), {}) FROM {}").format(
                sql.Literal(_TS_FORMAT), sql.Identifier(table.name)
            )
        )
        return cur.fetchone()[0]


def _extract_table(
    conn: Connection, table: SourceTable, watermark: str | None, recent: dict[str, str]
) -> tuple[bytes | None, int, str | None, dict[str, str]]:
    """(csv or None, rows, new watermark, new recent hashes) for one table."""
    if watermark is None:
        new_watermark = _max_last_updated(conn, table)
        if new_watermark is None:
            return None, 0, None, {}
        data = _copy_csv(conn, table, None)
        rows = _count_rows(conn, table)
        window = _window_hashes(conn, table, new_watermark)
        return data, rows, new_watermark, {pk: h for pk, h, _ in window}
    window = _window_hashes(conn, table, watermark)
    new_ids = sorted(int(pk) for pk, h, _ in window if recent.get(pk) != h)
    new_watermark = max([watermark, *(lu for _, _, lu in window)])
    floor = _iso_minus(new_watermark, OVERLAP)
    new_recent = {pk: h for pk, h, lu in window if lu >= floor}
    if not new_ids:
        return None, 0, new_watermark, new_recent
    return _copy_csv(conn, table, new_ids), len(new_ids), new_watermark, new_recent


def _count_rows(conn: Connection, table: SourceTable) -> int:
    # Counted in the same snapshot as the COPY (quoted newlines make line counts wrong).
    with conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table.name)))
        return cur.fetchone()[0]


def _iso_minus(iso: str, delta: timedelta) -> str:
    return (datetime.fromisoformat(iso) - delta).isoformat(timespec="milliseconds")


def extract_batch(conn: Connection, lake: Lake) -> IngestionManifest | None:
    """Run one extract; write the batch's CSVs and then its manifest, if anything changed.

    Returns the new batch's manifest, or None when nothing had changed.
    """
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_lock(%s)", (EXTRACT_LOCK_ID,))
    try:
        return _extract_locked(conn, lake)
    finally:
        conn.rollback()
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_unlock(%s)", (EXTRACT_LOCK_ID,))


def _extract_locked(conn: Connection, lake: Lake) -> IngestionManifest | None:
    # Read after taking the lock, so an extract that just finished is seen.
    previous = lake.latest_ingestion_manifest()
    conn.autocommit = False
    conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
    for warning in check_source_schema(conn):
        logger.warning(warning)
    with conn.cursor() as cur:
        cur.execute("SELECT clock_timestamp() AT TIME ZONE 'UTC'")
        batch_id = batch_id_at(cur.fetchone()[0])
    files: dict[str, bytes] = {}
    tables: dict[str, TableExtract] = {}
    recent: dict[str, dict[str, str]] = {}
    for table in SOURCE_TABLES:
        watermark, seen = _previous_state(previous, table.name)
        data, rows, new_watermark, new_recent = _extract_table(conn, table, watermark, seen)
        key = csv_key(table.name, batch_id) if data is not None else None
        if data is not None:
            files[key] = data
        tables[table.name] = TableExtract(rows=rows, key=key, watermark=new_watermark)
        recent[table.name] = new_recent
    conn.commit()
    if not files:
        return None
    for key, data in files.items():
        lake.ingestion.put_new(key, data)
    manifest = IngestionManifest(
        batch_id=batch_id,
        previous_batch_id=previous.batch_id if previous else None,
        tables=tables,
        recent=recent,
    )
    # Last: the manifest is what makes the batch, and its new watermarks, visible.
    lake.ingestion.put_new(manifest_key(batch_id), manifest.to_json())
    return manifest


def run_extract(lake: Lake, source_dsn: str) -> dict:
    """The extract stage: what its handler returns to the state machine (ids and counts)."""
    with connect(source_dsn, application_name="totes-extract") as conn:
        manifest = extract_batch(conn, lake)
    return {
        "batch_id": manifest.batch_id if manifest else None,
        "rows": manifest.rows if manifest else 0,
        "tables": {t: e.rows for t, e in manifest.tables.items() if e.rows} if manifest else {},
        "pending_batch_ids": lake.pending_batches()[:MAX_BATCHES_PER_RUN],
    }
