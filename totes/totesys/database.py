"""Our own ToteSys database: creating it, a read-only login for the pipeline, row counts,
and bulk loading (COPY) and silent edits for the seeder and the simulator."""

from __future__ import annotations

import io
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

import polars as pl
from psycopg2 import sql
from psycopg2.extensions import cursor as Cursor
from psycopg2.extras import execute_values

from totes.pipeline.db import connect
from totes.schema.source import SOURCE_TABLE_NAMES, foreign_keys, source_table
from totes.totesys.clock import CLOCK_DDL
from totes.totesys.errors import ToteSysStateError
from totes.totesys.schema_ddl import foreign_key_ddl, foreign_key_name, totesys_ddl

COPY_CHUNK_ROWS = 100_000
_TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S%.3f"


def _existing_tables(cur: Cursor) -> set[str]:
    names = [*SOURCE_TABLE_NAMES, "_prisma_migrations"]
    cur.execute(
        "SELECT table_name FROM information_schema.tables"
        " WHERE table_schema = current_schema() AND table_name = ANY(%s)",
        (names,),
    )
    return {row[0] for row in cur.fetchall()}


def read_only_dsn(dsn: str, role: str) -> str:
    """Make ``role`` a login that can only SELECT on the 11 tables; return ``dsn`` as it.

    The pipeline needs no more on ToteSys, so that is what it is given to run under.
    """
    from psycopg2.extensions import make_dsn

    with connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
        if cur.fetchone() is None:
            cur.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        cur.execute(
            sql.SQL("GRANT SELECT ON {} TO {}").format(
                sql.SQL(", ").join(sql.Identifier(t) for t in SOURCE_TABLE_NAMES),
                sql.Identifier(role),
            )
        )
        conn.commit()
    return make_dsn(dsn, user=role)


def create_totesys(dsn: str) -> bool:
    """Create the ToteSys schema (from source_schema.totesys_ddl()) and the simulator's clock
    if missing; True if it created it. Idempotent."""
    with connect(dsn) as conn, conn.cursor() as cur:
        existing = _existing_tables(cur)
        expected = len(SOURCE_TABLE_NAMES) + 1
        if existing and len(existing) != expected:
            raise ToteSysStateError(
                f"ToteSys is half-built: only {sorted(existing)} exist; drop them and retry"
            )
        created = not existing
        if created:
            for statement in totesys_ddl():
                cur.execute(statement)
        for statement in CLOCK_DDL:
            cur.execute(statement)
        conn.commit()
    return created


def count_rows(cur: Cursor) -> dict[str, int]:
    counts = {}
    for name in SOURCE_TABLE_NAMES:
        cur.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(name)))
        counts[name] = cur.fetchone()[0]
    return counts


def table_counts(dsn: str) -> dict[str, int]:
    """Rows per ToteSys table, in source_schema.SOURCE_TABLE_NAMES order."""
    with connect(dsn) as conn, conn.cursor() as cur:
        return count_rows(cur)


# --- bulk loading ----------------------------------------------------------------------------


def _csv_ready(frame: pl.DataFrame) -> pl.DataFrame:
    """Money travels as integer cents (exact); render those columns as numeric text."""
    cents = [c for c in frame.columns if c.endswith("__cents")]
    return frame.with_columns(
        (
            pl.col(c).abs().floordiv(100).cast(pl.String)
            + "."
            + pl.col(c).abs().mod(100).cast(pl.String).str.zfill(2)
        ).alias(c.removesuffix("__cents"))
        for c in cents
    ).drop(cents)


def copy_frame(cur: Cursor, table: str, frame: pl.DataFrame) -> None:
    """COPY ``frame`` into ``table`` in bounded chunks (columns by name, never by position)."""
    if frame.is_empty():
        return
    frame = _csv_ready(frame)
    allowed = source_table(table).column_names
    unknown = [c for c in frame.columns if c not in allowed]
    if unknown:
        raise KeyError(f"{table} has no columns {unknown}")
    statement = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv)").format(
        sql.Identifier(table), sql.SQL(", ").join(sql.Identifier(c) for c in frame.columns)
    )
    for offset in range(0, frame.height, COPY_CHUNK_ROWS):
        buffer = io.BytesIO()
        frame.slice(offset, COPY_CHUNK_ROWS).write_csv(
            buffer, include_header=False, datetime_format=_TIMESTAMP_FORMAT
        )
        buffer.seek(0)
        cur.copy_expert(statement.as_string(cur), buffer)


def reset_sequences(cur: Cursor, tables: Iterable[str] = SOURCE_TABLE_NAMES) -> None:
    """After loading explicit ids, make each serial continue after the largest id."""
    for name in tables:
        table = source_table(name)
        cur.execute(
            sql.SQL(
                "SELECT setval(pg_get_serial_sequence(%s, %s), coalesce(max({pk}), 1),"
                " max({pk}) IS NOT NULL) FROM {t}"
            ).format(pk=sql.Identifier(table.primary_key), t=sql.Identifier(name)),
            (name, table.primary_key),
        )


@contextmanager
def foreign_keys_deferred_to_the_end(cur: Cursor) -> Iterator[None]:
    """Drop ToteSys's foreign keys for a bulk load and re-add (re-validate) them after.

    Per-row FK triggers make COPY of millions of rows slow; checking each key once in bulk
    at the end is much faster. Use inside one transaction, so nobody sees ToteSys without
    its keys. The keys are rebuilt from source_schema, as totesys_ddl() creates them.
    """
    keys = foreign_keys()
    for table, column in keys:
        cur.execute(
            sql.SQL("ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}").format(
                sql.Identifier(table.name), foreign_key_name(table, column)
            )
        )
    yield
    for table, column in keys:
        cur.execute(foreign_key_ddl(table, column))


def max_ids(cur: Cursor, tables: Sequence[str]) -> dict[str, int]:
    ids = {}
    for name in tables:
        pk = source_table(name).primary_key
        cur.execute(
            sql.SQL("SELECT coalesce(max({}), 0) FROM {}").format(
                sql.Identifier(pk), sql.Identifier(name)
            )
        )
        ids[name] = cur.fetchone()[0]
    return ids


def apply_updates(cur: Cursor, updates: Iterable[tuple[str, int, str, object]]) -> None:
    """Apply (table, id, column, value) edits in order; a later edit of a cell wins.

    Deliberately leaves ``last_updated`` alone: these are ToteSys's silent edits.
    """
    grouped: dict[tuple[str, str], dict[int, object]] = defaultdict(dict)
    for table, row_id, column, value in updates:
        source_table(table).column(column)  # allow-list check
        grouped[(table, column)][row_id] = value
    for (table, column), values in grouped.items():
        pk = source_table(table).primary_key
        execute_values(
            cur,
            sql.SQL("UPDATE {t} SET {c} = v.value FROM (VALUES %s) AS v(id, value)"
                    " WHERE {t}.{pk} = v.id").format(
                t=sql.Identifier(table), c=sql.Identifier(column), pk=sql.Identifier(pk)
            ).as_string(cur),
            list(values.items()),
        )  # fmt: skip
