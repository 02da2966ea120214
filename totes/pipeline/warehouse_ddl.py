"""The warehouse's DDL, generated from ``totes.schema.warehouse``: tables, keys, the fact
version index, and the pipeline's own registers (``totes.pipeline.registers``). Used by the
load, which creates what is missing (and adds columns that later versions added)."""

from __future__ import annotations

from psycopg2 import sql

from totes.pipeline.guarded_ddl import only_when
from totes.pipeline.registers import REGISTERS_DDL
from totes.pipeline.warehouse_views import view_ddl
from totes.schema.warehouse import WAREHOUSE_TABLES, Column, WarehouseTable, warehouse_table


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


def version_index_name(table: WarehouseTable) -> str:
    return f"{table.name}_id_batch_key"


def _content_index_name(table: WarehouseTable) -> str:
    """The unique (id, version_hash) index of before: it kept a row's content from coming
    back (A -> B -> A with the same last_updated kept one A); dropped where it exists."""
    return f"{table.name}_version_key"


def version_index_ddl(table: WarehouseTable) -> sql.Composable:
    """The fact table's unique (id, batch_id) index: a batch holds one version of an id
    (a retried or re-run batch adds nothing), and an id's current version is the one of
    its latest batch, found by this index."""
    return sql.SQL("CREATE UNIQUE INDEX IF NOT EXISTS {} ON {} ({}, batch_id)").format(
        sql.Identifier(version_index_name(table)),
        sql.Identifier(table.name),
        sql.Identifier(table.key),
    )


def version_hash_of(table: WarehouseTable, alias: str | None = None) -> sql.Composable:
    """A fact row's version hash, as the table's generated column computes it: over the
    business columns of ``alias`` (a staged or waiting row of the same types)."""
    columns = [sql.Identifier(*([alias] if alias else []), c) for c in table.column_names]
    return sql.SQL("hash_record_extended(ROW({}), 0)").format(sql.SQL(", ").join(columns))


def version_hash_ddl(table: WarehouseTable) -> sql.Composable:
    """A fact row's version: a 64-bit hash of its business columns, computed by PostgreSQL
    as the row is written (by COPY too), from each value's own type (no text rendering).
    Immutable, so the same content always has the same hash."""
    return sql.SQL("version_hash bigint NOT NULL GENERATED ALWAYS AS ({}) STORED").format(
        version_hash_of(table)
    )


def version_hash_migration(table: WarehouseTable) -> list[sql.Composable]:
    """A warehouse from before computed version hashes (md5 text, written by the load):
    the column replaced by the computed one, its index rebuilt (the views that show it are
    dropped first and created again after, by ``warehouse_ddl``)."""
    name = sql.Identifier(table.name)
    return [
        sql.SQL("ALTER TABLE {} DROP COLUMN version_hash").format(name),  # and its index
        sql.SQL("ALTER TABLE {} ADD COLUMN {}").format(name, version_hash_ddl(table)),
        version_index_ddl(table),
    ]


# A fact's record ids go to the load's session a thousand at a time: a row's id then costs
# no lock and no WAL record of its own (a sixth of COPY's time for a fact row, in bulk).
# Ids still rise in the order rows are written; between batches they leave gaps.
RECORD_ID_CACHE = 1000


def record_id_sequence(table: WarehouseTable) -> str:
    """The name PostgreSQL gives the sequence of the fact's ``serial`` record id."""
    return f"{table.name}_{table.record_id}_seq"


def record_id_cache_ddl(table: WarehouseTable) -> sql.Composable:
    return sql.SQL("ALTER SEQUENCE {} CACHE {}").format(
        sql.Identifier(record_id_sequence(table)), sql.Literal(RECORD_ID_CACHE)
    )


def primary_key_column(table: WarehouseTable) -> str:
    """A dimension's id; a fact's record id (a fact keeps every version of an id)."""
    return table.key if table.kind == "dimension" else table.record_id


def primary_key_name(table: WarehouseTable) -> str:
    """The name PostgreSQL gives the primary key of ``CREATE TABLE``."""
    return f"{table.name}_pkey"


def _columns_ddl(table: WarehouseTable) -> list[sql.Composable]:
    """The table's columns, without its keys."""
    columns = [_column_ddl(c) for c in table.columns]
    if table.kind == "fact":
        columns.insert(0, sql.SQL("{} serial").format(sql.Identifier(table.record_id)))
        columns.append(version_hash_ddl(table))
    columns.append(sql.SQL("batch_id text NOT NULL"))
    return columns


def bare_table_ddl(table: WarehouseTable) -> sql.Composable:
    """CREATE TABLE with the columns only: no key, index or foreign key yet (a new
    warehouse's tables are built so, and get them once their rows are in: ``load_build``)."""
    return sql.SQL("CREATE TABLE {} ({})").format(
        sql.Identifier(table.name), sql.SQL(", ").join(_columns_ddl(table))
    )


def table_ddl(table: WarehouseTable) -> list[sql.Composable]:
    """CREATE statements (idempotent) for one warehouse table, its keys and indexes."""
    name = sql.Identifier(table.name)
    columns = _columns_ddl(table)
    columns.append(sql.SQL("PRIMARY KEY ({})").format(sql.Identifier(primary_key_column(table))))
    columns.extend(foreign_key_clause(table, col) for col in table.foreign_keys)
    statements: list[sql.Composable] = [
        sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(name, sql.SQL(", ").join(columns))
    ]
    if table.kind == "fact":
        # One version of an id per batch: a batch loaded again adds nothing.
        missing = _missing(version_index_name(table))
        statements.append(only_when(missing, version_index_ddl(table)))
        content_index = sql.Identifier(_content_index_name(table))
        statements.append(
            only_when(
                sql.SQL("NOT {}").format(_missing(_content_index_name(table))),
                sql.SQL("DROP INDEX {}").format(content_index),
            )
        )
        # New, or from before record ids were cached.
        uncached = sql.SQL(
            "(SELECT seqcache FROM pg_sequence WHERE seqrelid = {}::regclass) <> {}"
        ).format(sql.Literal(record_id_sequence(table)), sql.Literal(RECORD_ID_CACHE))
        statements.append(only_when(uncached, record_id_cache_ddl(table)))
    return statements


def _missing(relation: str) -> sql.Composable:
    return sql.SQL("to_regclass({}) IS NULL").format(sql.Literal(relation))


def warehouse_ddl() -> list[sql.Composable]:
    """Every statement that creates the warehouse when missing, in dependency order."""
    statements: list[sql.Composable] = []
    for table in WAREHOUSE_TABLES:
        statements.extend(table_ddl(table))
    statements.extend(REGISTERS_DDL)
    statements.extend(view_ddl())  # the views (warehouse_views.py)
    return statements
