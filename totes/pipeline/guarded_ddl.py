"""DDL that runs only when there is something to do, and so takes no lock otherwise."""

from __future__ import annotations

from psycopg2 import sql


def only_when(condition: sql.Composable, statement: sql.Composable) -> sql.Composable:
    """``statement`` run only when ``condition`` (SQL) holds. For DDL that locks a table
    before it finds there is nothing to do: CREATE INDEX IF NOT EXISTS takes a SHARE lock,
    ALTER TABLE an exclusive one. Autovacuum, which runs after every big load, holds a lock
    those wait for; every load would wait a second (deadlock_timeout) and cancel it, so
    that a busy table's vacuum might never finish."""
    return sql.SQL("DO $totes_ddl$ BEGIN IF {} THEN {}; END IF; END $totes_ddl$").format(
        condition, statement
    )
