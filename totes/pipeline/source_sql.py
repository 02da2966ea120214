"""The extract's queries of ToteSys: which rows, in what order, in which bucket, and
the COPY that streams them out. Values go in as literals where COPY takes no parameters,
identifiers only from the source schema."""

from __future__ import annotations

from collections.abc import Iterable

from psycopg2 import sql
from psycopg2.extensions import connection as Connection

from totes.pipeline.db import bucket_of
from totes.pipeline.extract_settings import BUCKET_WIDTH, OVERLAP
from totes.schema.source import SourceTable

_TS_FORMAT = 'YYYY-MM-DD"T"HH24:MI:SS.MS'


def smallest_first(conn: Connection, tables: Iterable[SourceTable]) -> list[SourceTable]:
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


def row_hash(table: SourceTable) -> sql.Composable:
    """md5 of the columns we extract, in the database: new source columns change nothing."""
    return sql.SQL("md5(ROW({})::text)").format(
        sql.SQL(", ").join(sql.Identifier(c) for c in table.column_names)
    )


def bucket(table: SourceTable) -> sql.Composable:
    """A row's bucket, as the load and ``Snapshot`` count them."""
    return bucket_of(sql.Identifier(table.primary_key), sql.Literal(BUCKET_WIDTH))


def selection(
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
    ).format(pk=pk, ids=ids_array, bucket=bucket(table), b=sql.Literal(buckets))


def in_range(table: SourceTable, where: sql.Composable, low: int, high: int) -> sql.Composable:
    """``where`` (a WHERE clause or nothing) narrowed to ids low..high (literals: COPY
    takes no parameters)."""
    narrowed = sql.SQL("{} BETWEEN {} AND {}").format(
        sql.Identifier(table.primary_key), sql.Literal(low), sql.Literal(high)
    )
    if where == sql.SQL(""):
        return sql.SQL(" WHERE {}").format(narrowed)
    return sql.SQL("{} AND {}").format(where, narrowed)


def part_ranges(
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


def copy_to(conn: Connection, table: SourceTable, where: sql.Composable, stream) -> None:
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


def count_rows(
    conn: Connection, table: SourceTable, ids: list[int] | None, buckets: list[int] | None
) -> int:
    # Counted in the same snapshot as the COPY (quoted newlines make line counts wrong).
    query = sql.SQL("SELECT count(*) FROM {}{}").format(
        sql.Identifier(table.name), selection(table, ids, buckets)
    )
    with conn.cursor() as cur:
        cur.execute(query)
        return cur.fetchone()[0]


def as_text(timestamp: sql.Composable) -> sql.Composable:
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


def window_hashes(conn: Connection, table: SourceTable, since: str) -> list[tuple[str, str, str]]:
    """(id, content hash, last_updated) of rows with last_updated >= since - OVERLAP."""
    query = sql.SQL(
        "SELECT {pk}::text, {hash}, {last_updated} FROM {t}"
        " WHERE last_updated >= %s::timestamp - %s"
    ).format(
        pk=sql.Identifier(table.primary_key),
        hash=row_hash(table),
        t=sql.Identifier(table.name),
        last_updated=as_text(sql.SQL("last_updated")),
    )
    with conn.cursor() as cur:
        cur.execute(query, (since, OVERLAP))
        return cur.fetchall()
