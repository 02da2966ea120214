"""The warehouse's tables, keys and registers created when missing, and a warehouse of an
earlier version brought up to date, under the load's lock."""

from __future__ import annotations

from psycopg2 import sql
from psycopg2.extensions import connection as Connection
from psycopg2.extensions import cursor as Cursor

from totes.pipeline.db import take_lock
from totes.pipeline.load_build import DROP_STALE_BUILD
from totes.pipeline.warehouse_ddl import version_hash_migration, warehouse_ddl
from totes.pipeline.warehouse_views import VIEW_NAMES
from totes.schema.warehouse import WAREHOUSE_TABLES

# Serialises loads against the same warehouse (any 64-bit number unique to this purpose).
LOAD_LOCK_ID = 7_146_203_952


def ensure_warehouse(conn: Connection) -> None:
    """Create the warehouse tables, keys and registers when missing (and bring a warehouse
    of an earlier version up to date)."""
    with conn, conn.cursor() as cur:
        take_lock(cur, LOAD_LOCK_ID, "another load")
        cur.execute(DROP_STALE_BUILD)
        _migrate_version_hashes(cur)
        for statement in warehouse_ddl():
            cur.execute(statement)


def _migrate_version_hashes(cur: Cursor) -> None:
    """Fact tables whose version_hash the load wrote (md5 text) get the computed one."""
    cur.execute(
        "SELECT table_name FROM information_schema.columns WHERE table_schema ="
        " current_schema() AND column_name = 'version_hash' AND is_generated = 'NEVER'"
    )
    old = {name for (name,) in cur.fetchall()}
    facts = [t for t in WAREHOUSE_TABLES if t.kind == "fact" and t.name in old]
    if not facts:
        return
    # Our views show version_hash; warehouse_ddl creates them again. Not CASCADE: a view
    # of someone else's on ours stops the migration, loudly, instead of vanishing.
    cur.execute(
        sql.SQL("DROP VIEW IF EXISTS {}").format(
            sql.SQL(", ").join(sql.Identifier(v) for v in VIEW_NAMES)
        )
    )
    for table in facts:
        for statement in version_hash_migration(table):
            cur.execute(statement)
