"""How a batch's staged rows join the warehouse: dimensions upserted (a batch never
overwrites a newer batch's values), fact rows appended as new versions when they differ
from their id's current version, and fact rows whose dimension row has not arrived
set to wait in ``etl_waiting_row`` until it does."""

from __future__ import annotations

from collections.abc import Callable

from psycopg2 import sql
from psycopg2.extensions import cursor as Cursor

from totes.pipeline.lake import Lake, TableOutput
from totes.pipeline.load_parts import copy_parts
from totes.pipeline.load_stage import take_staged
from totes.pipeline.registers import WAITING_TABLE
from totes.pipeline.warehouse_ddl import version_hash_of
from totes.schema.warehouse import Column, WarehouseTable, warehouse_table


def stage(
    cur: Cursor, lake: Lake, output: TableOutput, table: WarehouseTable, batch_id: str
) -> sql.Identifier:
    """Every part of the table's rows in a temporary staging table: taken from what a
    fan-out staged (load_stage), or COPYed from each Parquet part in turn (memory holds
    one part)."""
    staging = sql.Identifier(f"stage_{table.name}")
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in table.column_names)
    cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(staging))
    cur.execute(
        sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA").format(
            staging, columns, sql.Identifier(table.name)
        )
    )
    if not take_staged(cur, batch_id, table, output, staging):
        copy_parts(cur, lake, output, table, staging)
    # A temporary table is never analysed by autovacuum: without its statistics the
    # planner took 1.4 M staged ids for 200 and probed an index 1.4 M times.
    cur.execute(sql.SQL("ANALYZE {}").format(staging))
    return staging


def merge_dimension(
    cur: Cursor, table: WarehouseTable, staging: sql.Identifier, batch_id: str
) -> int:
    target = sql.Identifier(table.name)
    key = sql.Identifier(table.key)
    names = [sql.Identifier(c) for c in table.column_names]
    values = [n for n in names if n != key]
    if table.name == "dim_date":
        conflict = sql.SQL("DO NOTHING")  # a calendar day never changes
    else:
        conflict = sql.SQL(
            "DO UPDATE SET {sets}, batch_id = EXCLUDED.batch_id"
            " WHERE {target}.batch_id <= EXCLUDED.batch_id"
            " AND ({old}) IS DISTINCT FROM ({new})"
        ).format(
            sets=sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(n) for n in values),
            target=target,
            old=sql.SQL(", ").join(sql.SQL("{}.{}").format(target, n) for n in values),
            new=sql.SQL(", ").join(sql.SQL("EXCLUDED.{}").format(n) for n in values),
        )
    cur.execute(
        sql.SQL(
            "INSERT INTO {target} ({cols}, batch_id) SELECT {cols}, %s FROM {staging}"
            " ON CONFLICT ({key}) {conflict}"
        ).format(
            target=target,
            cols=sql.SQL(", ").join(names),
            staging=staging,
            key=key,
            conflict=conflict,
        ),
        (batch_id,),
    )
    return cur.rowcount


def missing_dimensions(
    table: WarehouseTable, value_of: Callable[[Column], sql.Composable]
) -> sql.Composable:
    """SQL naming the dimension rows a fact row lacks (``value_of(col)``: its value of a
    foreign key column), or NULL when every one is there."""
    cases = [
        sql.SQL(
            "CASE WHEN NOT EXISTS (SELECT 1 FROM {dim} d WHERE d.{key} = {value})"
            " THEN {label} || {value}::text END"
        ).format(
            dim=sql.Identifier(col.references),
            key=sql.Identifier(warehouse_table(col.references).key),
            value=value_of(col),
            label=sql.Literal(f"{col.references} "),
        )
        for col in table.foreign_keys
    ]
    return sql.SQL("NULLIF(concat_ws(', ', {}), '')").format(sql.SQL(", ").join(cases))


def _staged_value(col: Column) -> sql.Composable:
    return sql.SQL("s.{}").format(sql.Identifier(col.name))


def _waiting_value(col: Column) -> sql.Composable:
    # The column's type comes from the schema (an allow-list), never from input.
    return sql.SQL("(w.row ->> {})::{}").format(sql.Literal(col.name), sql.SQL(col.pg_type))


def divert_waiting(
    cur: Cursor, table: WarehouseTable, staging: sql.Identifier, batch_id: str
) -> int:
    """Move staged fact rows whose dimension rows are missing to the waiting register."""
    missing = missing_dimensions(table, _staged_value)
    cur.execute(
        sql.SQL(
            "WITH gone AS (DELETE FROM {staging} s WHERE {missing} IS NOT NULL"
            " RETURNING s.*, {missing} AS missing)"
            " INSERT INTO {waiting} (table_name, id, batch_id, row, missing)"
            " SELECT %s, gone.{key}, %s, to_jsonb(gone) - 'missing', gone.missing FROM gone"
        ).format(
            staging=staging,
            missing=missing,
            waiting=sql.Identifier(WAITING_TABLE),
            key=sql.Identifier(table.key),
        ),
        (table.name, batch_id),
    )
    return cur.rowcount


def _waiting_versions(table: WarehouseTable, alias: str) -> sql.Composable:
    """SQL: (id, batch_id, version_hash) of the table's waiting rows (``%s``: the table's
    name), typed as the table's rows through ``alias``."""
    return sql.SQL(
        "SELECT {alias}.{key} AS id, w.batch_id, {hash} AS version_hash"
        " FROM {waiting} w, jsonb_populate_record(NULL::{target}, w.row) {alias}"
        " WHERE w.table_name = %s"
    ).format(
        alias=sql.Identifier(alias),
        key=sql.Identifier(table.key),
        hash=version_hash_of(table, alias),
        waiting=sql.Identifier(WAITING_TABLE),
        target=sql.Identifier(table.name),
    )


def append_facts(cur: Cursor, table: WarehouseTable, staging: sql.Identifier, batch_id: str) -> int:
    """The staged rows that differ from their id's current version, as new versions: a
    version read again adds nothing, while content that comes back (A -> B -> A, a silent
    edit undone) is a version again. The current version is the latest batch's, among the
    table's versions (the (id, batch_id) index finds it) and the versions that wait for a
    dimension row (they take their batch's place when they are delivered)."""
    key = sql.Identifier(table.key)
    cur.execute(
        sql.SQL(
            "INSERT INTO {target} ({names}, batch_id)"
            " SELECT {cols}, s.batch_id FROM (SELECT *, %s::text AS batch_id FROM {staging}) s"
            " LEFT JOIN LATERAL (SELECT f.batch_id, f.version_hash FROM {target} f"
            " WHERE f.{key} = s.{key} AND f.batch_id < s.batch_id"
            " ORDER BY f.batch_id DESC LIMIT 1) loaded ON true"
            " LEFT JOIN (SELECT DISTINCT ON (id) id, batch_id, version_hash FROM ({waiting}) v"
            " WHERE batch_id < %s ORDER BY id, batch_id DESC) waits ON waits.id = s.{key}"
            " WHERE {hash} IS DISTINCT FROM CASE WHEN waits.batch_id > loaded.batch_id"
            " OR loaded.batch_id IS NULL THEN waits.version_hash ELSE loaded.version_hash END"
            " ORDER BY s.{key}"
        ).format(
            target=sql.Identifier(table.name),
            names=sql.SQL(", ").join(sql.Identifier(c) for c in table.column_names),
            cols=sql.SQL(", ").join(
                sql.SQL("s.{}").format(sql.Identifier(c)) for c in table.column_names
            ),
            staging=staging,
            key=key,
            waiting=_waiting_versions(table, "r"),
            hash=version_hash_of(table, "s"),
        ),
        (batch_id, table.name, batch_id),
    )
    return cur.rowcount


def deliver_waiting(cur: Cursor, table: WarehouseTable) -> int:
    """Append the waiting rows of ``table`` whose dimension rows have arrived since, each
    in its own batch's place among the id's versions, unless it repeats the version before
    it, or the loaded one after it (an id's version read again while it waited)."""
    key = sql.Identifier(table.key)
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in table.column_names)
    cur.execute(
        sql.SQL(
            "WITH ready AS (DELETE FROM {waiting} w WHERE w.table_name = %s AND {missing} IS NULL"
            " RETURNING w.row, w.batch_id),"
            " typed AS (SELECT r.*, ready.batch_id AS waited_in, {hash} AS hash"
            " FROM ready, jsonb_populate_record(NULL::{target}, ready.row) r),"
            # Every version of these ids, loaded or ready, in batch order.
            " timeline AS (SELECT {key} AS id, waited_in AS batch_id, hash, true AS ready"
            " FROM typed UNION ALL SELECT f.{key}, f.batch_id, f.version_hash, false"
            " FROM {target} f WHERE f.{key} IN (SELECT {key} FROM typed)),"
            " placed AS (SELECT id, batch_id, ready, lag(hash) OVER id_order AS before,"
            " lead(hash) OVER id_order AS after, lead(ready) OVER id_order AS after_ready"
            " FROM timeline WINDOW id_order AS (PARTITION BY id ORDER BY batch_id))"
            " INSERT INTO {target} ({cols}, batch_id)"
            " SELECT {picked}, t.waited_in FROM typed t"
            " JOIN placed p ON p.ready AND p.id = t.{key} AND p.batch_id = t.waited_in"
            " WHERE t.hash IS DISTINCT FROM p.before"
            " AND (p.after_ready OR t.hash IS DISTINCT FROM p.after)"
            " ORDER BY t.{key}, t.waited_in"
        ).format(
            waiting=sql.Identifier(WAITING_TABLE),
            missing=missing_dimensions(table, _waiting_value),
            target=sql.Identifier(table.name),
            hash=version_hash_of(table, "r"),
            key=key,
            cols=cols,
            picked=sql.SQL(", ").join(
                sql.SQL("t.{}").format(sql.Identifier(c)) for c in table.column_names
            ),
        ),
        (table.name,),
    )
    return cur.rowcount
