"""The DDL of our own ToteSys, generated from ``totes.schema.source``: the live database's
types, keys, unique indexes and ON UPDATE / ON DELETE actions, and the ``_prisma_migrations``
table the pipeline must never ingest."""

from __future__ import annotations

from psycopg2 import sql

from totes.schema.source import ENUM_TYPES, SOURCE_TABLES, Column, SourceTable, source_table


def _column_ddl(col: Column) -> sql.Composable:
    if col.pg_type == "serial":
        return sql.SQL("{} serial PRIMARY KEY").format(sql.Identifier(col.name))
    parts = [sql.Identifier(col.name), sql.SQL(col.pg_type)]
    if not col.nullable:
        parts.append(sql.SQL("NOT NULL"))
    if col.name == "created_at":
        parts.append(sql.SQL("DEFAULT CURRENT_TIMESTAMP"))
    return sql.SQL(" ").join(parts)


def foreign_key_name(table: SourceTable, col: Column) -> sql.Identifier:
    return sql.Identifier(f"{table.name}_{col.name}_fkey")


def foreign_key_ddl(table: SourceTable, col: Column) -> sql.Composable:
    """The live database's foreign key: ON UPDATE CASCADE, ON DELETE as declared."""
    if col.on_delete not in ("RESTRICT", "SET NULL"):
        raise ValueError(f"unexpected ON DELETE action {col.on_delete!r}")
    return sql.SQL(
        "ALTER TABLE {t} ADD CONSTRAINT {c} FOREIGN KEY ({col}) REFERENCES {ref} ({pk})"
        " ON UPDATE CASCADE ON DELETE " + col.on_delete
    ).format(
        t=sql.Identifier(table.name),
        c=foreign_key_name(table, col),
        col=sql.Identifier(col.name),
        ref=sql.Identifier(col.references),
        pk=sql.Identifier(source_table(col.references).primary_key),
    )


def _table_ddl(table: SourceTable) -> list[sql.Composable]:
    name = sql.Identifier(table.name)
    statements: list[sql.Composable] = [
        sql.SQL("CREATE TABLE {} ({})").format(
            name, sql.SQL(", ").join(_column_ddl(c) for c in table.columns)
        )
    ]
    for col in table.columns:
        if col.references:
            statements.append(foreign_key_ddl(table, col))
        if col.unique:
            statements.append(
                sql.SQL("CREATE UNIQUE INDEX {} ON {} ({})").format(
                    sql.Identifier(f"{table.name}_{col.name}_key"), name, sql.Identifier(col.name)
                )
            )
    return statements


PRISMA_MIGRATIONS_DDL = sql.SQL(
    """CREATE TABLE "_prisma_migrations" (
        id varchar(36) PRIMARY KEY,
        checksum varchar(64) NOT NULL,
        finished_at timestamptz,
        migration_name varchar(255) NOT NULL,
        logs text,
        rolled_back_at timestamptz,
        started_at timestamptz NOT NULL DEFAULT now(),
        applied_steps_count integer NOT NULL DEFAULT 0
    )"""
)


def totesys_ddl() -> list[sql.Composable]:
    """Statements that create the ToteSys schema as the live database has it.

    Includes the ``_prisma_migrations`` table that the pipeline must never ingest.
    """
    statements: list[sql.Composable] = [
        sql.SQL("CREATE TYPE {} AS ENUM ({})").format(
            sql.Identifier(name), sql.SQL(", ").join(sql.Literal(v) for v in values)
        )
        for name, values in ENUM_TYPES.items()
    ]
    for table in SOURCE_TABLES:
        statements.extend(_table_ddl(table))
    statements.append(PRISMA_MIGRATIONS_DDL)
    return statements
