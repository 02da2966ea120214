"""The warehouse's tables, keys and registers created when missing, and a warehouse of an
earlier version brought up to date, under the load's lock. A warehouse a newer version set
up is refused: a rolled-back load would trip over its indexes, or write rows the newer
version reads differently, with an error that does not say why."""

from __future__ import annotations

from psycopg2 import sql
from psycopg2.extensions import connection as Connection
from psycopg2.extensions import cursor as Cursor

from totes.pipeline.db import LOAD_LOCK_ID, take_lock
from totes.pipeline.load_build import DROP_STALE_BUILD
from totes.pipeline.registers import LAYOUT_TABLE, table_exists
from totes.pipeline.warehouse_ddl import version_hash_migration, warehouse_ddl
from totes.pipeline.warehouse_views import VIEW_NAMES
from totes.schema.warehouse import WAREHOUSE_TABLES

# The layout of the warehouse's tables, keys, indexes and registers that this version sets
# up. Raise it with any change that a load of an earlier version would break on or would
# write past (a warehouse with no layout row is from before layouts: 0).
# 1: fact versions unique by (id, batch_id), so content that comes back is a version again.
WAREHOUSE_LAYOUT = 1


class NewerWarehouseError(Exception):
    """The warehouse was set up by a newer version of the pipeline than this one."""


def ensure_warehouse(conn: Connection) -> None:
    """Create the warehouse tables, keys and registers when missing (and bring a warehouse
    of an earlier version up to date); refuse one that a newer version set up."""
    with conn, conn.cursor() as cur:
        take_lock(cur, LOAD_LOCK_ID, "another load")
        found = _layout(cur)
        if found > WAREHOUSE_LAYOUT:
            raise NewerWarehouseError(
                f"the warehouse was set up by a newer version of the pipeline (layout {found};"
                f" this version knows layouts up to {WAREHOUSE_LAYOUT}), so this load leaves it"
                " untouched: deploy the newer version again (docs/deploy.md, 'Upgrading and"
                " rolling back'). Nothing is lost: batches wait in the lake until it loads them"
            )
        cur.execute(DROP_STALE_BUILD)
        _migrate_version_hashes(cur)
        for statement in warehouse_ddl():
            cur.execute(statement)
        if found < WAREHOUSE_LAYOUT:
            cur.execute(
                sql.SQL(
                    "INSERT INTO {} (layout) VALUES (%s) ON CONFLICT (only_row)"
                    " DO UPDATE SET layout = EXCLUDED.layout, set_at = now()"
                ).format(sql.Identifier(LAYOUT_TABLE)),
                (WAREHOUSE_LAYOUT,),
            )


def _layout(cur: Cursor) -> int:
    """The layout the warehouse was last set up with (0: none recorded, or no warehouse)."""
    if not table_exists(cur, LAYOUT_TABLE):
        return 0
    cur.execute(sql.SQL("SELECT layout FROM {}").format(sql.Identifier(LAYOUT_TABLE)))
    row = cur.fetchone()
    return row[0] if row else 0


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
