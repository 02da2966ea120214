"""The warehouse's DDL, generated from ``totes.schema.warehouse``: tables, keys, the fact
version index, and the pipeline's own registers. Used by the load, which creates what is
missing (and adds columns that later versions added).

Our own tables, beside the published eleven:
- ``etl_loaded_batch``: every batch in the warehouse (``loaded``), or skipped by an
  operator (``skipped``, with the reason), written in the batch's transaction;
- ``etl_deleted_row``: warehouse ids whose source row no longer exists (dimension rows are
  never deleted once referenced, and facts keep their history, so deletions are marked);
- ``etl_waiting_row``: fact rows whose dimension row has not arrived yet; each load
  delivers those whose dimensions have come since.
"""

from __future__ import annotations

from psycopg2 import sql

from totes.schema.warehouse import WAREHOUSE_TABLES, Column, WarehouseTable, warehouse_table

BATCH_TABLE = "etl_loaded_batch"
DELETED_TABLE = "etl_deleted_row"
WAITING_TABLE = "etl_waiting_row"

_REGISTERS: tuple[sql.Composable, ...] = (
    sql.SQL(
        "CREATE TABLE IF NOT EXISTS {} (batch_id text PRIMARY KEY,"
        " loaded_at timestamptz NOT NULL DEFAULT now(), rows_written jsonb NOT NULL)"
    ).format(sql.Identifier(BATCH_TABLE)),
    sql.SQL(
        "ALTER TABLE {} ADD COLUMN IF NOT EXISTS status text NOT NULL DEFAULT 'loaded'"
        " CHECK (status IN ('loaded', 'skipped')), ADD COLUMN IF NOT EXISTS reason text"
    ).format(sql.Identifier(BATCH_TABLE)),
    sql.SQL(
        "CREATE TABLE IF NOT EXISTS {} (table_name text NOT NULL, id integer NOT NULL,"
        " batch_id text NOT NULL, detected_at timestamptz NOT NULL DEFAULT now(),"
        " PRIMARY KEY (table_name, id))"
    ).format(sql.Identifier(DELETED_TABLE)),
    sql.SQL(
        "CREATE TABLE IF NOT EXISTS {} (table_name text NOT NULL, id integer NOT NULL,"
        " batch_id text NOT NULL, row jsonb NOT NULL, missing text NOT NULL,"
        " waiting_since timestamptz NOT NULL DEFAULT now())"
    ).format(sql.Identifier(WAITING_TABLE)),
)


def _column_ddl(col: Column) -> sql.Composable:
    null = sql.SQL("") if col.nullable else sql.SQL(" NOT NULL")
    return sql.SQL("{} {}{}").format(sql.Identifier(col.name), sql.SQL(col.pg_type), null)


def foreign_key_name(table: WarehouseTable, col: Column) -> sql.Identifier:
    return sql.Identifier(f"{table.name}_{col.name}_fkey")


def foreign_key_clause(table: WarehouseTable, col: Column) -> sql.Composable:
    """``CONSTRAINT <table>_<column>_fkey FOREIGN KEY (...) REFERENCES <dim> (<key>)``."""
    return sql.SQL("CONSTRAINT {} FOREIGN KEY ({}) REFERENCES {} ({})").format(
        foreign_key_name(table, col),
        sql.Identifier(col.name),
        sql.Identifier(col.references),
        sql.Identifier(warehouse_table(col.references).key),
    )


def version_index_ddl(table: WarehouseTable) -> sql.Composable:
    """The fact table's unique (id, version_hash) index: one row per version."""
    return sql.SQL("CREATE UNIQUE INDEX IF NOT EXISTS {} ON {} ({}, version_hash)").format(
        sql.Identifier(f"{table.name}_version_key"),
        sql.Identifier(table.name),
        sql.Identifier(table.key),
    )


def table_ddl(table: WarehouseTable) -> list[sql.Composable]:
    """CREATE statements (idempotent) for one warehouse table, its keys and indexes."""
    name = sql.Identifier(table.name)
    columns = [_column_ddl(c) for c in table.columns]
    if table.kind == "dimension":
        columns.append(sql.SQL("PRIMARY KEY ({})").format(sql.Identifier(table.key)))
    else:
        columns.insert(0, sql.SQL("{} serial PRIMARY KEY").format(sql.Identifier(table.record_id)))
        columns.append(sql.SQL("version_hash text NOT NULL"))
    columns.append(sql.SQL("batch_id text NOT NULL"))
    columns.extend(foreign_key_clause(table, col) for col in table.foreign_keys)
    statements: list[sql.Composable] = [
        sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(name, sql.SQL(", ").join(columns))
    ]
    if table.kind == "fact":
        # One row per version: the same version, re-read or re-loaded, is never added twice.
        statements.append(version_index_ddl(table))
    return statements


def warehouse_ddl() -> list[sql.Composable]:
    """Every statement that creates the warehouse when missing, in dependency order."""
    statements: list[sql.Composable] = []
    for table in WAREHOUSE_TABLES:
        statements.extend(table_ddl(table))
    statements.extend(_REGISTERS)
    return statements
