"""How the load writes a big batch (an initial load, a replay, a large catch-up) at close to
COPY speed, inside the batch's one transaction.

Row by row, every fact row costs a lookup and a lock per foreign key, an entry in each
index and a conflict check: several times the cost of writing the row. For a big batch:
- foreign keys are dropped and added back, which checks every row at once (a join);
- into an empty table, the primary key and the version index are dropped and built once
  after the rows are in (a sort), and rows are inserted without a conflict check: the
  table held nothing, and a batch holds each source row once, so no version can clash
  (if one did, building the unique index would fail the batch, loudly);
- into an empty dimension, likewise its primary key, with the facts' foreign keys that
  stand on it (PostgreSQL will not drop a key that one references).
Everything happens in the load's transaction: nobody sees a table without its keys, and a
row that breaks one fails the batch exactly as the row-by-row check would. The price: the
table is locked (ACCESS EXCLUSIVE) until the batch commits, so its readers wait for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from psycopg2 import sql
from psycopg2.extensions import cursor as Cursor

from totes.pipeline.warehouse_ddl import (
    foreign_key_clause,
    foreign_key_name,
    primary_key_column,
    primary_key_name,
    version_index_ddl,
    version_index_name,
)
from totes.schema.warehouse import WAREHOUSE_TABLES, Column, WarehouseTable

# Memory for a bulk step of the load (per transaction, for its session only): the sort that
# builds an index once, and the hash table of a foreign key's check, which PostgreSQL runs
# with maintenance_work_mem as its work_mem. Checking 1.58 M payments against as many
# transactions took 1.8-2.8 s with the default 64MB, 1.2-1.6 s with this (seven
# alternating tries): the planner then hashes the transactions in memory.
BULK_STEP_MEMORY = "256MB"


def use_bulk_step_memory(cur: Cursor) -> None:
    """BULK_STEP_MEMORY for the rest of the transaction."""
    cur.execute("SET LOCAL maintenance_work_mem = %s", (BULK_STEP_MEMORY,))


def is_empty(cur: Cursor, table: WarehouseTable) -> bool:
    cur.execute(sql.SQL("SELECT NOT EXISTS (SELECT 1 FROM {})").format(sql.Identifier(table.name)))
    return cur.fetchone()[0]


def is_small_beside(cur: Cursor, table: WarehouseTable, rows: int) -> bool:
    """Whether the table holds fewer than ``rows`` rows, by the planner's estimate (cheap;
    an estimate is enough to choose between two correct ways of writing)."""
    cur.execute("SELECT reltuples FROM pg_class WHERE oid = %s::regclass", (table.name,))
    estimate = cur.fetchone()[0]
    return estimate < rows  # -1: never analysed, i.e. new and (nearly) empty


def insert_all(cur: Cursor, table: WarehouseTable, staging: sql.Identifier, batch_id: str) -> int:
    """Every staged dimension row, into an EMPTY table (nothing to upsert against)."""
    names = sql.SQL(", ").join(sql.Identifier(c) for c in table.column_names)
    cur.execute(
        sql.SQL("INSERT INTO {} ({}, batch_id) SELECT {}, %s FROM {}").format(
            sql.Identifier(table.name), names, names, staging
        ),
        (batch_id,),
    )
    return cur.rowcount


def append_facts_unordered(
    cur: Cursor, table: WarehouseTable, staging: sql.Identifier, batch_id: str
) -> int:
    """Every staged fact row as a version, into an EMPTY table: no conflict check, and
    record ids in the staged order (the transform's: id, then last_updated)."""
    names = sql.SQL(", ").join(sql.Identifier(c) for c in table.column_names)
    cur.execute(
        sql.SQL("INSERT INTO {target} ({cols}, batch_id) SELECT {cols}, %s FROM {staging}").format(
            target=sql.Identifier(table.name), cols=names, staging=staging
        ),
        (batch_id,),
    )
    return cur.rowcount


@contextmanager
def _without_foreign_keys(cur: Cursor, keys: list[tuple[WarehouseTable, Column]]) -> Iterator[None]:
    """The foreign keys ``(table, column)`` dropped, then added back, which checks every row
    of their tables at once."""
    for table, col in keys:
        cur.execute(
            sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                sql.Identifier(table.name), foreign_key_name(table, col)
            )
        )
    yield
    for table, col in keys:
        cur.execute(
            sql.SQL("ALTER TABLE {} ADD {}").format(
                sql.Identifier(table.name), foreign_key_clause(table, col)
            )
        )


def add_primary_key(cur: Cursor, table: WarehouseTable) -> None:
    """The table's primary key, built once over the rows it holds (a sort)."""
    use_bulk_step_memory(cur)
    cur.execute(
        sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} PRIMARY KEY ({})").format(
            sql.Identifier(table.name),
            sql.Identifier(primary_key_name(table)),
            sql.Identifier(primary_key_column(table)),
        )
    )


def _drop_primary_key(cur: Cursor, table: WarehouseTable) -> None:
    cur.execute(
        sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
            sql.Identifier(table.name), sql.Identifier(primary_key_name(table))
        )
    )


@contextmanager
def foreign_keys_checked_in_bulk(cur: Cursor, table: WarehouseTable) -> Iterator[None]:
    """Drop the table's foreign keys, then add them back, which checks every row at once.

    Inside the load's transaction: nobody sees the table without its keys, and a row that
    breaks one fails the whole batch (ForeignKeyViolation) as the row check would.
    """
    with _without_foreign_keys(cur, [(table, col) for col in table.foreign_keys]):
        yield


@contextmanager
def indexes_built_in_bulk(cur: Cursor, table: WarehouseTable, empty: bool) -> Iterator[None]:
    """For an empty fact table: its primary key and version index dropped, then built once
    after the rows are in. Otherwise nothing changes."""
    if not empty:
        yield
        return
    _drop_primary_key(cur, table)
    cur.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(version_index_name(table))))
    yield
    add_primary_key(cur, table)
    cur.execute(version_index_ddl(table))


@contextmanager
def primary_key_built_in_bulk(cur: Cursor, table: WarehouseTable) -> Iterator[None]:
    """For an empty dimension: its primary key dropped, then built once after the rows are
    in (half the time of an index entry per row), with the facts' foreign keys on it (they
    check the facts' rows when added back: none, in an initial load)."""
    standing_on_it = [
        (fact, col)
        for fact in WAREHOUSE_TABLES
        for col in fact.foreign_keys
        if col.references == table.name
    ]
    with _without_foreign_keys(cur, standing_on_it):
        _drop_primary_key(cur, table)
        yield
        add_primary_key(cur, table)
