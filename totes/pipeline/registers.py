"""The pipeline's own tables in the warehouse, beside the published eleven (no polars here:
the audit Lambda reads them too).

- ``etl_loaded_batch``: every batch in the warehouse (``loaded``), or skipped by an
  operator (``skipped``, with the reason), written in the batch's transaction;
- ``etl_deleted_row``: warehouse ids whose ToteSys row no longer exists (the warehouse keeps
  its rows: facts keep history, and a referenced dimension row can never be deleted);
- ``etl_waiting_row``: fact rows whose dimension row has not arrived yet; each load
  delivers those whose dimensions have come since;
- ``etl_warehouse_layout``: one row, the layout of tables, keys and registers the load
  last set up (``warehouse_setup``), so that a rolled-back load refuses a newer warehouse.
"""

from __future__ import annotations

from datetime import datetime

from psycopg2 import sql
from psycopg2.extensions import cursor as Cursor

from totes.pipeline.guarded_ddl import only_when

BATCH_TABLE = "etl_loaded_batch"
DELETION_TABLE = "etl_deleted_row"
WAITING_TABLE = "etl_waiting_row"
LAYOUT_TABLE = "etl_warehouse_layout"

DELETION_REGISTER_DDL = sql.SQL(
    "CREATE TABLE IF NOT EXISTS {} (table_name text NOT NULL, id integer NOT NULL,"
    " batch_id text NOT NULL, detected_at timestamptz NOT NULL DEFAULT now(),"
    " PRIMARY KEY (table_name, id))"
).format(sql.Identifier(DELETION_TABLE))

REGISTERS_DDL: tuple[sql.Composable, ...] = (
    sql.SQL(
        "CREATE TABLE IF NOT EXISTS {} (batch_id text PRIMARY KEY,"
        " loaded_at timestamptz NOT NULL DEFAULT now(), rows_written jsonb NOT NULL)"
    ).format(sql.Identifier(BATCH_TABLE)),
    only_when(
        sql.SQL(
            "(SELECT count(*) FROM pg_attribute WHERE attrelid = {}::regclass"
            " AND attname IN ('status', 'reason') AND NOT attisdropped) < 2"
        ).format(sql.Literal(BATCH_TABLE)),
        sql.SQL(
            "ALTER TABLE {} ADD COLUMN IF NOT EXISTS status text NOT NULL DEFAULT 'loaded'"
            " CHECK (status IN ('loaded', 'skipped')), ADD COLUMN IF NOT EXISTS reason text"
        ).format(sql.Identifier(BATCH_TABLE)),
    ),
    DELETION_REGISTER_DDL,
    sql.SQL(
        "CREATE TABLE IF NOT EXISTS {} (only_row boolean PRIMARY KEY DEFAULT true"
        " CHECK (only_row), layout integer NOT NULL, set_at timestamptz NOT NULL DEFAULT now())"
    ).format(sql.Identifier(LAYOUT_TABLE)),
    sql.SQL(
        "CREATE TABLE IF NOT EXISTS {} (table_name text NOT NULL, id integer NOT NULL,"
        " batch_id text NOT NULL, row jsonb NOT NULL, missing text NOT NULL,"
        " waiting_since timestamptz NOT NULL DEFAULT now())"
    ).format(sql.Identifier(WAITING_TABLE)),
    # The load looks waiting rows up by id, from every staged row of a batch.
    only_when(
        sql.SQL("to_regclass({}) IS NULL").format(sql.Literal(f"{WAITING_TABLE}_id")),
        sql.SQL("CREATE INDEX {} ON {} (table_name, id)").format(
            sql.Identifier(f"{WAITING_TABLE}_id"), sql.Identifier(WAITING_TABLE)
        ),
    ),
)


def table_exists(cur: Cursor, name: str) -> bool:
    """Whether the warehouse has one of these tables (an older warehouse may not)."""
    cur.execute("SELECT to_regclass(%s) IS NOT NULL", (name,))
    return bool(cur.fetchone()[0])


def batch_statuses(cur: Cursor) -> dict[str, str]:
    """batch id -> ``loaded`` or ``skipped``, for every batch in the register (none before
    the first load creates it)."""
    if not table_exists(cur, BATCH_TABLE):
        return {}
    cur.execute(sql.SQL("SELECT batch_id, status FROM {}").format(sql.Identifier(BATCH_TABLE)))
    return dict(cur.fetchall())


def waiting_by_table(cur: Cursor) -> list[tuple[str, int, datetime]]:
    """(fact table, rows waiting for a dimension row, since when the oldest waits), by table."""
    if not table_exists(cur, WAITING_TABLE):
        return []
    cur.execute(
        sql.SQL(
            "SELECT table_name, count(*), min(waiting_since) FROM {}"
            " GROUP BY table_name ORDER BY table_name"
        ).format(sql.Identifier(WAITING_TABLE))
    )
    return cur.fetchall()


def batch_state(cur: Cursor, batch_id: str) -> str | None:
    """``loaded`` or ``skipped`` as the warehouse's register has the batch; None if not there."""
    if not table_exists(cur, BATCH_TABLE):
        return None
    cur.execute(
        sql.SQL("SELECT status FROM {} WHERE batch_id = %s").format(sql.Identifier(BATCH_TABLE)),
        (batch_id,),
    )
    row = cur.fetchone()
    return row[0] if row else None


def deletion_register_exists(cur: Cursor) -> bool:
    """Whether the warehouse has the register; a warehouse without one has no deletions."""
    return table_exists(cur, DELETION_TABLE)


def waiting_ids(cur: Cursor) -> dict[str, set[int]]:
    """The ids of the fact rows waiting for a dimension row, by table."""
    if not table_exists(cur, WAITING_TABLE):
        return {}
    cur.execute(sql.SQL("SELECT table_name, id FROM {}").format(sql.Identifier(WAITING_TABLE)))
    waiting: dict[str, set[int]] = {}
    for table, row_id in cur.fetchall():
        waiting.setdefault(table, set()).add(row_id)
    return waiting
