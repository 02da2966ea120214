"""Load: put transformed batches into the warehouse, each in one transaction, exactly once.

- Each Parquet file is COPYed into a temporary staging table, then merged: dimensions are
  upserted (latest values win; a batch never overwrites a newer batch's values), fact rows
  are appended as new versions. A fact version is identified by its source id and a hash
  of its business columns computed in the warehouse, so re-reading or re-loading a version
  adds nothing, whatever the order batches arrive in.
- The batch is recorded in ``etl_loaded_batch`` in the same transaction: a batch already
  there is skipped. An advisory lock serialises concurrent loads.
- A large batch (an initial load, a replay) checks a fact table's foreign keys once, in
  bulk, by dropping and re-adding them in its transaction. That locks the fact table until
  the batch commits, so readers of that table wait for it; small batches never do this.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import polars as pl
import psycopg2
from psycopg2 import sql
from psycopg2.extensions import connection as Connection
from psycopg2.extras import Json

from totes.pipeline.db import connect
from totes.pipeline.lake import Lake, loaded_key
from totes.pipeline.warehouse_ddl import (
    BATCH_TABLE,
    foreign_key_clause,
    foreign_key_name,
    warehouse_ddl,
)
from totes.schema.warehouse import TIME_FORMAT, WAREHOUSE_TABLES, WarehouseTable

LOAD_LOCK_ID = 7_146_203_952
# Above this many rows, a fact table's foreign keys are checked once, in bulk, instead of
# row by row (each row check is a lookup and a lock on the dimension row: millions of them
# make an initial load or a replay several times slower).
BULK_CHECK_ROWS = 100_000


class LoadError(Exception):
    """A batch could not be loaded; nothing of it was written."""


@dataclass
class LoadSummary:
    loaded_batch_ids: list[str] = field(default_factory=list)
    skipped_batch_ids: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)

    def add(self, rows: dict[str, int]) -> None:
        for table, count in rows.items():
            self.rows[table] = self.rows.get(table, 0) + count


def ensure_warehouse(conn: Connection) -> None:
    """Create the warehouse tables, keys and the batch register when missing."""
    with conn, conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (LOAD_LOCK_ID,))
        for statement in warehouse_ddl():
            cur.execute(statement)


def _read_parquet(lake: Lake, key: str, table: WarehouseTable) -> pl.DataFrame:
    frame = pl.read_parquet(io.BytesIO(lake.processed.get(key)))
    # Lakes written before times of day became text hold Parquet TIME columns: same values.
    frame = frame.with_columns(pl.col(pl.Time).dt.strftime(TIME_FORMAT))
    if frame.schema != table.polars_schema:
        raise LoadError(
            f"{table.name} ({lake.processed.location(key)}): columns/types "
            f"{dict(frame.schema)} do not match the warehouse {dict(table.polars_schema)}"
        )
    return frame


def _stage(cur, table: WarehouseTable, frame: pl.DataFrame) -> sql.Identifier:
    staging = sql.Identifier(f"stage_{table.name}")
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in table.column_names)
    cur.execute(
        sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA").format(
            staging, columns, sql.Identifier(table.name)
        )
    )
    buffer = io.BytesIO()
    frame.write_csv(buffer)  # null -> empty field, empty string -> "": COPY keeps them apart
    buffer.seek(0)
    cur.copy_expert(
        sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv, HEADER true)").format(staging, columns),
        buffer,
    )
    return staging


def _merge_dimension(cur, table: WarehouseTable, staging: sql.Identifier, batch_id: str) -> int:
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


@contextmanager
def _foreign_keys_checked_in_bulk(cur, table: WarehouseTable) -> Iterator[None]:
    """Drop the table's foreign keys, then add them back, which checks every row at once.

    Inside the load's transaction: nobody sees the table without its keys, and a row that
    breaks one fails the whole batch (ForeignKeyViolation) as the row check would.
    """
    target = sql.Identifier(table.name)
    for col in table.foreign_keys:
        cur.execute(
            sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                target, foreign_key_name(table, col)
            )
        )
    yield
    for col in table.foreign_keys:
        cur.execute(sql.SQL("ALTER TABLE {} ADD {}").format(target, foreign_key_clause(table, col)))


def _append_facts(cur, table: WarehouseTable, staging: sql.Identifier, batch_id: str) -> int:
    names = sql.SQL(", ").join(sql.Identifier(c) for c in table.column_names)
    cur.execute(
        sql.SQL(
            "INSERT INTO {target} ({cols}, version_hash, batch_id)"
            " SELECT {cols}, md5(ROW({cols})::text), %s FROM {staging}"
            " ORDER BY {key}, last_updated_date, last_updated_time"
            " ON CONFLICT ({key}, version_hash) DO NOTHING"
        ).format(
            target=sql.Identifier(table.name),
            cols=names,
            staging=staging,
            key=sql.Identifier(table.key),
        ),
        (batch_id,),
    )
    return cur.rowcount


def load_batch(conn: Connection, lake: Lake, batch_id: str) -> dict[str, int] | None:
    """Load one transformed batch; None if the warehouse already has it."""
    manifest = lake.processed_manifest(batch_id)
    written: dict[str, int] = {}
    with conn, conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (LOAD_LOCK_ID,))
        cur.execute(
            sql.SQL("SELECT 1 FROM {} WHERE batch_id = %s").format(sql.Identifier(BATCH_TABLE)),
            (batch_id,),
        )
        if cur.fetchone() is not None:
            return None
        for table in WAREHOUSE_TABLES:
            output = manifest.tables.get(table.name)
            if output is None or output.key is None:
                continue
            frame = _read_parquet(lake, output.key, table)
            try:
                staging = _stage(cur, table, frame)
                if table.kind == "dimension":
                    written[table.name] = _merge_dimension(cur, table, staging, batch_id)
                elif frame.height > BULK_CHECK_ROWS:
                    with _foreign_keys_checked_in_bulk(cur, table):
                        written[table.name] = _append_facts(cur, table, staging, batch_id)
                else:
                    written[table.name] = _append_facts(cur, table, staging, batch_id)
            except psycopg2.Error as exc:
                detail = (exc.diag.message_primary or str(exc)).strip()
                if exc.diag.message_detail:
                    detail += f" ({exc.diag.message_detail.strip()})"
                raise LoadError(
                    f"batch {batch_id}, table {table.name} "
                    f"({lake.processed.location(output.key)}): {detail}"
                ) from None
        cur.execute(
            sql.SQL("INSERT INTO {} (batch_id, rows_written) VALUES (%s, %s)").format(
                sql.Identifier(BATCH_TABLE)
            ),
            (batch_id, Json(written)),
        )
    return written


def load_batches(conn: Connection, lake: Lake, batch_ids: list[str]) -> LoadSummary:
    """Load each batch in order; mark it loaded in the lake once committed."""
    ensure_warehouse(conn)
    summary = LoadSummary()
    for batch_id in sorted(batch_ids):
        written = load_batch(conn, lake, batch_id)
        if written is None:
            summary.skipped_batch_ids.append(batch_id)
        else:
            summary.loaded_batch_ids.append(batch_id)
            summary.add(written)
        # A hint for the next extract; the warehouse's batch register is the truth.
        lake.processed.put_new(loaded_key(batch_id), b'{"loaded": true}\n')
    return summary


def run_load(lake: Lake, warehouse_dsn: str, batch_ids: list[str]) -> dict:
    """The load stage: what its handler returns to the state machine."""
    with connect(warehouse_dsn, application_name="totes-load") as conn:
        summary = load_batches(conn, lake, batch_ids)
    return {
        "loaded_batch_ids": summary.loaded_batch_ids,
        "skipped_batch_ids": summary.skipped_batch_ids,
        "rows": summary.rows,
    }
