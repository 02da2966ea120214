"""Staging a big batch's parts in parallel, before the load merges the batch in one
transaction (the state machine's "Stage parts" Map, then "Load: merge").

Each Map iteration COPYs one Parquet part into an UNLOGGED staging table of the warehouse
(``etl_stage_<table>``, rows tagged with their batch and part) and records the part's row
count, in its own short transaction. Nothing published changes: analysts' tables are
written only by the merge, in the batch's one transaction, which also registers the batch
(exactly once) and removes its staged rows. The merge uses a table's staged rows only when
every part of it is staged with the count the manifest gives; otherwise (a part missing,
a crash that emptied the unlogged tables) it reads the Parquet itself, as for a batch that
was never fanned out. So staging can only save the merge time: it cannot change what is
loaded.
"""

from __future__ import annotations

from psycopg2 import sql
from psycopg2.extensions import connection as Connection
from psycopg2.extensions import cursor as Cursor

from totes.pipeline.copy_payload import COPY_CHUNK_BYTES, copy_payload
from totes.pipeline.db import STAGING_DDL_LOCK_ID
from totes.pipeline.lake import Lake, TableOutput
from totes.pipeline.load_parts import read_parquet
from totes.schema.warehouse import WarehouseTable, warehouse_table

STAGED_PARTS = "etl_staged_part"
_BATCH, _PART = "staged_batch", "staged_part"


def _staging(table: WarehouseTable) -> sql.Identifier:
    return sql.Identifier(f"etl_stage_{table.name}")


def ensure_staging(conn: Connection, table: WarehouseTable) -> None:
    """The table's unlogged staging table and the register of staged parts, if missing,
    created and committed one session at a time."""
    with conn, conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (STAGING_DDL_LOCK_ID,))
        _create_staging(cur, table)


def _create_staging(cur: Cursor, table: WarehouseTable) -> None:
    columns = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(c.pg_type)) for c in table.columns
    )
    cur.execute(
        sql.SQL(
            "CREATE UNLOGGED TABLE IF NOT EXISTS {} ({} text NOT NULL, {} integer NOT NULL, {})"
        ).format(_staging(table), sql.Identifier(_BATCH), sql.Identifier(_PART), columns)
    )
    cur.execute(
        sql.SQL(
            "CREATE UNLOGGED TABLE IF NOT EXISTS {} (batch_id text NOT NULL, table_name text"
            " NOT NULL, part integer NOT NULL, rows integer NOT NULL,"
            " PRIMARY KEY (batch_id, table_name, part))"
        ).format(sql.Identifier(STAGED_PARTS))
    )


def stage_part(conn: Connection, lake: Lake, batch_id: str, table_name: str, part: int) -> int:
    """COPY one part of one table of a batch into its staging table, in one transaction
    (idempotent: a retried iteration replaces what it staged). Returns the rows staged."""
    table = warehouse_table(table_name)  # the allow-list
    files = lake.processed_manifest(batch_id).tables[table_name].files
    if not 0 <= part < len(files):
        raise ValueError(f"batch {batch_id} has {len(files)} parts of {table_name}, not {part}")
    frame = read_parquet(lake, files[part], table)
    payload = copy_payload(frame, table, _staging(table), {_BATCH: batch_id, _PART: part})
    ensure_staging(conn, table)
    with conn, conn.cursor() as cur:
        cur.execute(
            sql.SQL("DELETE FROM {} WHERE {} = %s AND {} = %s").format(
                _staging(table), sql.Identifier(_BATCH), sql.Identifier(_PART)
            ),
            (batch_id, part),
        )
        with payload.file:
            cur.copy_expert(payload.statement, payload.file, size=COPY_CHUNK_BYTES)
        rows = cur.rowcount
        cur.execute(
            sql.SQL(
                "INSERT INTO {} (batch_id, table_name, part, rows) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (batch_id, table_name, part) DO UPDATE SET rows = EXCLUDED.rows"
            ).format(sql.Identifier(STAGED_PARTS)),
            (batch_id, table_name, part, rows),
        )
    return rows


def _has_register(cur: Cursor) -> bool:
    cur.execute("SELECT to_regclass(%s) IS NOT NULL", (STAGED_PARTS,))
    return cur.fetchone()[0]


def fully_staged(cur: Cursor, batch_id: str, table: WarehouseTable, output: TableOutput) -> bool:
    """Whether every part of the batch's ``table`` is staged with the manifest's count."""
    if not _has_register(cur):
        return False
    cur.execute(
        sql.SQL("SELECT part, rows FROM {} WHERE batch_id = %s AND table_name = %s").format(
            sql.Identifier(STAGED_PARTS)
        ),
        (batch_id, table.name),
    )
    return dict(cur.fetchall()) == {i: part.rows for i, part in enumerate(output.files)}


def take_staged(
    cur: Cursor, batch_id: str, table: WarehouseTable, output: TableOutput, into: sql.Identifier
) -> bool:
    """Fill the (empty) temporary table ``into`` with the batch's staged rows of ``table``
    if every part is staged with the manifest's count; False (nothing done) otherwise."""
    if not fully_staged(cur, batch_id, table, output):
        return False
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in table.column_names)
    cur.execute(
        sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} WHERE {} = %s").format(
            into, columns, columns, _staging(table), sql.Identifier(_BATCH)
        ),
        (batch_id,),
    )
    if cur.rowcount != output.rows:  # the register and the rows disagree: do not trust them
        cur.execute(sql.SQL("TRUNCATE {}").format(into))
        return False
    return True


def staged_parts(cur: Cursor, batch_id: str) -> dict[tuple[str, int], int]:
    """(table, part) -> rows, of what is staged for a batch."""
    if not _has_register(cur):
        return {}
    cur.execute(
        sql.SQL("SELECT table_name, part, rows FROM {} WHERE batch_id = %s").format(
            sql.Identifier(STAGED_PARTS)
        ),
        (batch_id,),
    )
    return {(name, part): rows for name, part, rows in cur.fetchall()}


def clear_staged(cur: Cursor, batch_id: str, tables: list[WarehouseTable]) -> None:
    """Remove the batch's staged rows (in the merge's transaction)."""
    if not _has_register(cur):
        return
    cur.execute(
        sql.SQL("DELETE FROM {} WHERE batch_id = %s RETURNING table_name").format(
            sql.Identifier(STAGED_PARTS)
        ),
        (batch_id,),
    )
    names = {name for (name,) in cur.fetchall()}
    for table in tables:
        if table.name in names:
            cur.execute(
                sql.SQL("DELETE FROM {} WHERE {} = %s").format(
                    _staging(table), sql.Identifier(_BATCH)
                ),
                (batch_id,),
            )
