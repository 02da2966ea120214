"""The warehouse's register of deleted source rows: ``etl_deleted_row``.

A ToteSys row that no longer exists is marked here by its warehouse table and natural id
(the warehouse keeps its rows: facts keep history, and a referenced dimension row can never
be deleted). The audit reads the register; it never writes it.
"""

from __future__ import annotations

from psycopg2 import sql
from psycopg2.extensions import cursor as Cursor

DELETION_TABLE = "etl_deleted_row"

DELETION_REGISTER_DDL = sql.SQL(
    "CREATE TABLE IF NOT EXISTS {} (table_name text NOT NULL, id integer NOT NULL,"
    " batch_id text NOT NULL, detected_at timestamptz NOT NULL DEFAULT now(),"
    " PRIMARY KEY (table_name, id))"
).format(sql.Identifier(DELETION_TABLE))


def ensure_deletion_register(cur: Cursor) -> None:
    """Create the register when missing (for those who write it)."""
    cur.execute(DELETION_REGISTER_DDL)


def deletion_register_exists(cur: Cursor) -> bool:
    """Whether the warehouse has the register; a warehouse without one has no deletions."""
    cur.execute("SELECT to_regclass(%s) IS NOT NULL", (DELETION_TABLE,))
    return bool(cur.fetchone()[0])
