"""Load: put transformed batches into the warehouse, each in one transaction, exactly once.

- Which batches are pending is the warehouse's own register (``etl_loaded_batch``) against
  the processed lake, so an empty warehouse is filled from the lake by the next run.
- Batches load in their chain's order: a batch loads only after the one it follows is
  loaded or skipped, so a gap in the lake is an error, never a silent hole.
- Every count is checked: a Parquet file holding other rows than its manifest says stops
  the batch (``UndeliverableBatchError``).
- Each Parquet file is COPYed into a temporary staging table, then merged: dimensions are
  upserted (latest values win; a batch never overwrites a newer batch's values), fact rows
  are appended as new versions: a row whose business columns (hashed in the warehouse)
  differ from its id's current version, the one of its latest batch. So re-reading a
  version adds nothing, and content that comes back (A -> B -> A) is a version again; a
  batch holds one version of an id (a unique index), so loading one again adds nothing.
- A fact row whose dimension row has not arrived yet waits in ``etl_waiting_row`` and is
  delivered by the first load after its dimension row arrives, never lost or fatal.
- Ids a batch holds completely (its snapshot) but without a row are marked deleted in
  ``etl_deleted_row``; an id that comes back is unmarked.
- A large batch (an initial load, a replay) checks a fact table's foreign keys once, in
  bulk, by dropping and re-adding them in its transaction, and into an empty table builds
  its indexes once instead of row by row (``load_bulk``). That locks the table until the
  batch commits, so readers of that table wait for it; small batches never do this.
- A new warehouse's first batch (no table exists yet) is built by two sessions at once in
  a schema of its own and moved in by the batch's transaction (``load_build``).
- Memory holds a Parquet part or two at a time: each part is COPYed in turn through a
  temporary file (PostgreSQL's binary format for the large tables, CSV for the small named
  dimensions: ``copy_payload``), its row count checked against the manifest.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg2
import psycopg2.errors
from psycopg2 import sql
from psycopg2.extensions import connection as Connection
from psycopg2.extensions import cursor as Cursor
from psycopg2.extras import Json

from totes.pipeline.db import bucket_of, connect, take_lock
from totes.pipeline.errors import UndeliverableBatchError
from totes.pipeline.events import MAX_BATCHES_PER_RUN, REPLAY_ALL, InvalidInputError
from totes.pipeline.lake import Lake, ProcessedManifest, SkipRecord, TableOutput
from totes.pipeline.load_build import (
    DROP_STALE_BUILD,
    BuildRefused,
    build_tables,
    is_new_warehouse,
    move_in,
)
from totes.pipeline.load_bulk import (
    append_facts_unordered,
    foreign_keys_checked_in_bulk,
    indexes_built_in_bulk,
    insert_all,
    is_empty,
    is_small_beside,
    primary_key_built_in_bulk,
)
from totes.pipeline.load_parts import LoadError, copy_parts
from totes.pipeline.load_stage import (
    clear_staged,
    fully_staged,
    stage_part,
    staged_parts,
    take_staged,
)
from totes.pipeline.registers import BATCH_TABLE, DELETION_TABLE, WAITING_TABLE
from totes.pipeline.warehouse_ddl import (
    version_hash_migration,
    version_hash_of,
    warehouse_ddl,
)
from totes.pipeline.warehouse_views import VIEW_NAMES
from totes.schema.warehouse import (
    WAREHOUSE_TABLE_NAMES,
    WAREHOUSE_TABLES,
    Column,
    WarehouseTable,
    warehouse_table,
)

logger = logging.getLogger(__name__)

LOAD_LOCK_ID = 7_146_203_952
# A batch of at least this many rows for a table, and at least 1/BULK_SHARE of the rows
# the table holds, is written in bulk (load_bulk): its foreign keys checked once, by a join,
# instead of row by row (a lookup and a lock on the dimension row: ~50-80 us a row here, so
# 47,000 purchase orders took 3-4 s row by row against 0.3 s in bulk). Re-checking costs a
# scan of the whole table, so a small batch into a big table stays row by row.
BULK_CHECK_ROWS = 10_000
BULK_SHARE = 20
MAX_LISTED = 50
# A snapshot of up to this many buckets finds its ids by a range scan of the key's index
# per bucket; of more (a pass that found most buckets changed), by one scan of the table
# with a hashed bucket lookup: the planner guesses a range's rows from the whole table
# (175,000 a bucket for 100), and past a few hundred buckets its plans took minutes.
RANGE_SCANNED_BUCKETS = 200


class BrokenChainError(UndeliverableBatchError):
    """A batch follows one that is neither in the warehouse nor in the lake."""


@dataclass
class LoadSummary:
    loaded_batch_ids: list[str] = field(default_factory=list)
    skipped_batch_ids: list[str] = field(default_factory=list)  # recorded as skipped
    rows: dict[str, int] = field(default_factory=dict)
    waiting: dict[str, int] = field(default_factory=dict)  # fact rows waiting, after the run
    deleted: dict[str, int] = field(default_factory=dict)  # ids newly marked deleted
    warnings: list[str] = field(default_factory=list)

    def add(self, counts: dict[str, int], into: dict[str, int]) -> None:
        for table, count in counts.items():
            if count:
                into[table] = into.get(table, 0) + count


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


def _stage(
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


def _merge_dimension(
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


def _missing_dimensions(
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


def _divert_waiting(
    cur: Cursor, table: WarehouseTable, staging: sql.Identifier, batch_id: str
) -> int:
    """Move staged fact rows whose dimension rows are missing to the waiting register."""
    missing = _missing_dimensions(table, _staged_value)
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


def _append_facts(
    cur: Cursor, table: WarehouseTable, staging: sql.Identifier, batch_id: str
) -> int:
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


def _deliver_waiting(cur: Cursor, table: WarehouseTable) -> int:
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
            missing=_missing_dimensions(table, _waiting_value),
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


def _mark_deletions(
    cur: Cursor,
    table: WarehouseTable,
    output: TableOutput,
    staging: sql.Identifier | None,
    batch_id: str,
) -> int:
    """Ids the batch holds completely (its snapshot) but without a row are marked deleted;
    ids it has rows for are unmarked. Rows it set aside (quarantined) or that wait for
    their dimension rows exist: never deleted."""
    if table.source is None:  # dim_date: generated, not a copy of source rows
        return 0
    key, register = sql.Identifier(table.key), sql.Identifier(DELETION_TABLE)
    absent = sql.SQL("true")
    if staging is not None:
        # Ids the batch has a row for are back, whether the row went in or waits for its
        # dimension row (it left the staging table for the waiting register).
        # Two statements: under one OR, PostgreSQL scanned the staging table once for each
        # id in the register (20 s for 100 ids beside 1.4 M staged rows).
        cur.execute(
            sql.SQL(
                "DELETE FROM {register} r WHERE r.table_name = %s"
                " AND EXISTS (SELECT 1 FROM {staging} s WHERE s.{key} = r.id)"
            ).format(register=register, staging=staging, key=key),
            (table.name,),
        )
        cur.execute(
            sql.SQL(
                "DELETE FROM {register} r WHERE r.table_name = %s"
                " AND EXISTS (SELECT 1 FROM {waiting} w WHERE w.table_name = r.table_name"
                " AND w.id = r.id AND w.batch_id = %s)"
            ).format(register=register, waiting=sql.Identifier(WAITING_TABLE)),
            (table.name, batch_id),
        )
        absent = sql.SQL("NOT EXISTS (SELECT 1 FROM {} s WHERE s.{} = t.{})").format(
            staging, key, key
        )
    # A row of this batch waiting for its dimension row exists too. Not an earlier batch's:
    # an id the source has is in this batch's snapshot, so one with only an older version
    # waiting is gone from the source.
    absent = sql.SQL(
        "{} AND NOT EXISTS (SELECT 1 FROM {} w WHERE w.table_name = {} AND w.id = t.{}"
        " AND w.batch_id = %s)"
    ).format(absent, sql.Identifier(WAITING_TABLE), sql.Literal(table.name), key)
    snapshot = output.snapshot
    if snapshot is None:
        return 0
    in_snapshot, in_buckets = sql.SQL("{} t").format(sql.Identifier(table.name)), sql.SQL("")
    params: list = [table.name, batch_id]
    bucket_params: list = []
    if not snapshot.full and len(snapshot.buckets) <= RANGE_SCANNED_BUCKETS:
        # Driven by the buckets: a range scan of the key's index per bucket, not a scan of
        # the whole table (a reconciled bucket or two in a table of millions of rows).
        in_snapshot = sql.SQL(
            "unnest(%s::bigint[]) AS b(bucket) JOIN {} t"
            " ON t.{key} >= b.bucket * %s AND t.{key} < (b.bucket + 1) * %s"
        ).format(sql.Identifier(table.name), key=key)
        params += [list(snapshot.buckets), snapshot.width, snapshot.width]
    elif not snapshot.full:
        # bigint on both sides, so the array is hashed.
        in_buckets = sql.SQL(" AND {} = ANY(%s::bigint[])").format(
            bucket_of(sql.SQL("t.{}").format(key), sql.Literal(snapshot.width))
        )
        bucket_params = [list(snapshot.buckets)]
    params += [batch_id, *bucket_params, output.quarantined_ids, table.name]
    cur.execute(
        sql.SQL(
            "INSERT INTO {register} (table_name, id, batch_id)"
            " SELECT DISTINCT %s, t.{key}, %s FROM {in_snapshot}"
            " WHERE {absent}{in_buckets}"
            # bigint: a set-aside id may have outgrown integer (a retyped ToteSys key). Not
            # <> ALL: integer against bigint[] walks the array for every row.
            " AND NOT EXISTS (SELECT 1 FROM unnest(%s::bigint[]) AS q(id) WHERE q.id = t.{key})"
            " AND NOT EXISTS (SELECT 1 FROM {register} r"
            " WHERE r.table_name = %s AND r.id = t.{key})"
        ).format(
            register=register,
            key=key,
            in_snapshot=in_snapshot,
            in_buckets=in_buckets,
            absent=absent,
        ),
        params,
    )
    return cur.rowcount


@dataclass
class _BatchLoad:
    """What loading one batch did, per table."""

    written: dict[str, int] = field(default_factory=dict)
    waiting: dict[str, int] = field(default_factory=dict)  # newly waiting
    delivered: dict[str, int] = field(default_factory=dict)  # waiting rows delivered
    deleted: dict[str, int] = field(default_factory=dict)

    @property
    def rows(self) -> dict[str, int]:
        """Rows written per table: new fact versions and changed dimension rows."""
        names = self.written.keys() | self.delivered.keys()
        counts = {n: self.written.get(n, 0) + self.delivered.get(n, 0) for n in names}
        return {n: c for n, c in counts.items() if c}


def _load_table(
    cur: Cursor, lake: Lake, manifest: ProcessedManifest, table: WarehouseTable, done: _BatchLoad
) -> None:
    output = manifest.tables.get(table.name)
    if output is None:
        return
    batch_id = manifest.batch_id
    staging = None
    was_empty = False
    if output.key is not None:
        try:
            big = output.rows >= BULK_CHECK_ROWS and is_small_beside(
                cur, table, output.rows * BULK_SHARE
            )
            was_empty = big and is_empty(cur, table)
            # Into an empty table the rows go in as they are, no merge: unless the batch
            # may hold a row twice, as dim_date may (lakes from before it was one file per
            # batch hold a part per unit, each repeating its days).
            as_they_are = was_empty and table.name != "dim_date"
            if as_they_are and not fully_staged(cur, batch_id, table, output):
                _write_into_empty(cur, lake, output, table, batch_id, done)
            else:
                staging = _stage(cur, lake, output, table, batch_id)
                if table.kind == "dimension":
                    if as_they_are:
                        with primary_key_built_in_bulk(cur, table):
                            done.written[table.name] = insert_all(cur, table, staging, batch_id)
                    else:
                        done.written[table.name] = _merge_dimension(cur, table, staging, batch_id)
                elif big:
                    append = append_facts_unordered if was_empty else _append_facts
                    _append_facts_in_bulk(
                        cur, table, batch_id, done,
                        write=lambda: append(cur, table, staging, batch_id),
                        staged=lambda: staging,
                        empty=was_empty,
                    )  # fmt: skip
                else:
                    done.waiting[table.name] = _divert_waiting(cur, table, staging, batch_id)
                    done.written[table.name] = _append_facts(cur, table, staging, batch_id)
        except psycopg2.OperationalError:
            raise  # the server went away: retried as DatabaseUnavailableError (see db.connect)
        except psycopg2.Error as exc:
            raise LoadError(
                f"batch {batch_id}, table {table.name} ({lake.processed.location(output.key)}): "
                f"{_describe(exc)}"
            ) from None
    if was_empty:  # every row of the table is from this batch: none can be absent from it
        done.deleted[table.name] = 0
    else:
        done.deleted[table.name] = _mark_deletions(cur, table, output, staging, batch_id)


def _write_into_empty(
    cur: Cursor,
    lake: Lake,
    output: TableOutput,
    table: WarehouseTable,
    batch_id: str,
    done: _BatchLoad,
) -> None:
    """A big batch into an empty table (an initial load, a replay): its Parquet COPYed
    straight into the table, with no staging table between (the version hash is computed
    as each row is written). Its keys are built once the rows are in, and a fact table's
    foreign keys are checked in bulk."""
    target = sql.Identifier(table.name)
    if table.kind == "dimension":
        with primary_key_built_in_bulk(cur, table):
            done.written[table.name] = copy_parts(cur, lake, output, table, target, batch_id)
        return
    _append_facts_in_bulk(
        cur, table, batch_id, done,
        write=lambda: copy_parts(cur, lake, output, table, target, batch_id),
        staged=lambda: _stage(cur, lake, output, table, batch_id),
        empty=True,
    )  # fmt: skip


def _append_facts_in_bulk(
    cur: Cursor,
    table: WarehouseTable,
    batch_id: str,
    done: _BatchLoad,
    *,
    write: Callable[[], int],
    staged: Callable[[], sql.Identifier],
    empty: bool,
) -> None:
    """A big batch's facts with their foreign keys checked once, in bulk (and, into an empty
    table, its indexes built once). First optimistically, as if every dimension row were
    there (``write`` writes every row; the bulk check proves it); if one is missing, again
    from a savepoint, from the ``staged`` rows, with those that lack one moved to the
    waiting register first."""
    cur.execute("SAVEPOINT bulk_facts")
    try:
        with foreign_keys_checked_in_bulk(cur, table), indexes_built_in_bulk(cur, table, empty):
            done.written[table.name] = write()
        done.waiting[table.name] = 0
    except psycopg2.errors.ForeignKeyViolation:
        cur.execute("ROLLBACK TO SAVEPOINT bulk_facts")
        staging = staged()
        done.waiting[table.name] = _divert_waiting(cur, table, staging, batch_id)
        with foreign_keys_checked_in_bulk(cur, table):
            done.written[table.name] = _append_facts(cur, table, staging, batch_id)
    cur.execute("RELEASE SAVEPOINT bulk_facts")


def _describe(exc: psycopg2.Error) -> str:
    detail = (exc.diag.message_primary or str(exc)).strip()
    if exc.diag.message_detail:
        detail += f" ({exc.diag.message_detail.strip()})"
    return detail


def _register(cur: Cursor) -> dict[str, str]:
    """batch id -> status, for every batch in the warehouse's register."""
    cur.execute(sql.SQL("SELECT batch_id, status FROM {}").format(sql.Identifier(BATCH_TABLE)))
    return dict(cur.fetchall())


def _record(
    cur: Cursor, batch_id: str, rows: dict[str, int], status: str, reason: str | None
) -> None:
    cur.execute(
        sql.SQL(
            "INSERT INTO {} (batch_id, rows_written, status, reason) VALUES (%s, %s, %s, %s)"
        ).format(sql.Identifier(BATCH_TABLE)),
        (batch_id, Json(rows), status, reason),
    )


def _record_skip(cur: Cursor, skip: SkipRecord) -> None:
    _record(cur, skip.batch_id, {}, "skipped", f"{skip.reason} ({skip.by}, {skip.skipped_at})")


def _check_chain(manifest: ProcessedManifest, register: dict[str, str], lake: Lake) -> None:
    previous = manifest.previous_batch_id
    if previous is None or previous in register:
        return
    raise BrokenChainError(
        f"batch {manifest.batch_id} follows batch {previous}, which is neither in the "
        f"warehouse nor transformed nor skipped in the lake ({lake.processed.location()}): "
        "the chain of batches is broken"
    )


def _load_manifest(cur: Cursor, lake: Lake, manifest: ProcessedManifest) -> _BatchLoad:
    """Every table of one batch, waiting rows delivered, the batch registered; inside the
    caller's transaction."""
    _check_chain(manifest, _register(cur), lake)
    done = _BatchLoad()
    for table in WAREHOUSE_TABLES:
        _load_table(cur, lake, manifest, table, done)
    for table in WAREHOUSE_TABLES:
        if table.kind == "fact":
            done.delivered[table.name] = _deliver_waiting(cur, table)
    _record(cur, manifest.batch_id, done.rows, "loaded", None)
    clear_staged(cur, manifest.batch_id, list(WAREHOUSE_TABLES))
    return done


def load_batch(conn: Connection, lake: Lake, batch_id: str) -> _BatchLoad | None:
    """Load one transformed batch in one transaction; None if the warehouse already has it."""
    manifest = lake.processed_manifest(batch_id)
    with conn, conn.cursor() as cur:
        take_lock(cur, LOAD_LOCK_ID, "another load")
        if batch_id in _register(cur):
            return None
        return _load_manifest(cur, lake, manifest)


def _record_skips(conn: Connection, lake: Lake) -> list[str]:
    """Write every skipped batch not yet in the register into it (status skipped)."""
    recorded = []
    with conn, conn.cursor() as cur:
        take_lock(cur, LOAD_LOCK_ID, "another load")
        current = _register(cur)
        for batch_id, skip in sorted(lake.skipped().items()):
            if batch_id not in current:
                _record_skip(cur, skip)
                recorded.append(batch_id)
    return recorded


def pending_batches(conn: Connection, lake: Lake) -> list[str]:
    """Transformed batches the warehouse does not have yet, oldest first."""
    with conn, conn.cursor() as cur:
        register = _register(cur)
    return [b for b in lake.transformed_batches() if b not in register]


def _waiting_now(conn: Connection) -> dict[str, int]:
    with conn, conn.cursor() as cur:
        cur.execute(
            sql.SQL("SELECT table_name, count(*) FROM {} GROUP BY 1").format(
                sql.Identifier(WAITING_TABLE)
            )
        )
        return dict(cur.fetchall())


def _build_new_warehouse(
    conn: Connection, dsn: str, lake: Lake, batch_ids: list[str] | None
) -> tuple[str, _BatchLoad] | None:
    """The chain's first batch into a warehouse with no tables yet, its tables built by
    several sessions at once and moved in by the batch's transaction (``load_build``).
    None when the warehouse has tables (or the batch is not the chain's first, or was
    skipped, or a row breaks a key): the batch then loads the usual way."""
    with conn, conn.cursor() as cur:
        take_lock(cur, LOAD_LOCK_ID, "another load")
        if not is_new_warehouse(cur):  # nearly always: then the lake is not even read
            return None
        candidates = sorted(set(batch_ids)) if batch_ids is not None else lake.transformed_batches()
        if not candidates:
            return None
        if candidates[0] in lake.skipped():  # recorded as skipped the usual way, never built
            return None
        manifest = lake.processed_manifest(candidates[0])
        if manifest.previous_batch_id is not None:
            return None
        try:
            written = build_tables(dsn, lake, manifest)
        except BuildRefused as refused:
            logger.info("loading batch %s batch by batch: %s", manifest.batch_id, refused)
            return None
        move_in(cur)
        for statement in warehouse_ddl():  # the registers and views; the tables are in
            cur.execute(statement)
        # Every table was empty: no row of it can be absent from the batch.
        done = _BatchLoad(written=written, deleted=dict.fromkeys(manifest.tables, 0))
        _record(cur, manifest.batch_id, done.rows, "loaded", None)
    return manifest.batch_id, done


def _report(summary: LoadSummary, batch_id: str, done: _BatchLoad) -> None:
    summary.loaded_batch_ids.append(batch_id)
    summary.add(done.rows, summary.rows)
    summary.add(done.deleted, summary.deleted)
    for table, count in done.waiting.items():
        if count:
            summary.warnings.append(
                f"{table}: {count} rows of batch {batch_id} wait for their dimension rows"
                f" ({WAITING_TABLE}); they load as soon as those arrive"
            )
    for table, count in done.deleted.items():
        if count:
            summary.warnings.append(
                f"{table}: {count} ids no longer exist in ToteSys (batch {batch_id});"
                f" marked in {DELETION_TABLE}"
            )


def load_batches(
    conn: Connection, lake: Lake, batch_ids: list[str] | None = None, *, dsn: str | None = None
) -> LoadSummary:
    """Load pending batches in order (by default every transformed batch the warehouse does
    not have, at most MAX_BATCHES_PER_RUN), after recording skipped ones. With ``dsn`` (to
    open more sessions), a new warehouse's first batch is built in parallel."""
    summary = LoadSummary()
    if dsn is not None and (built := _build_new_warehouse(conn, dsn, lake, batch_ids)):
        _report(summary, *built)
    ensure_warehouse(conn)
    summary.skipped_batch_ids = _record_skips(conn, lake)
    if batch_ids is None:
        room = MAX_BATCHES_PER_RUN - len(summary.loaded_batch_ids)
        batch_ids = pending_batches(conn, lake)[:room]
    for batch_id in sorted(set(batch_ids)):
        done = load_batch(conn, lake, batch_id)
        if done is not None:
            _report(summary, batch_id, done)
    summary.waiting = _waiting_now(conn)
    return summary


def replay(conn: Connection, lake: Lake, table: str | None = None) -> LoadSummary:
    """Rebuild the warehouse, or one table, from the immutable lake alone.

    Everything: empty every table and register, then load every batch in order (skips
    recorded). One table: a fact table is emptied and every loaded batch's rows appended
    again in order; a dimension (whose rows facts reference, so it is never emptied) gets
    every batch's rows upserted again in order, latest winning. Either way in one
    transaction: readers see the old warehouse or the rebuilt one, nothing between.
    """
    ensure_warehouse(conn)
    if table is None:
        with conn, conn.cursor() as cur:
            take_lock(cur, LOAD_LOCK_ID, "another load")
            names = [*WAREHOUSE_TABLE_NAMES, BATCH_TABLE, DELETION_TABLE, WAITING_TABLE]
            cur.execute(
                sql.SQL("TRUNCATE {} RESTART IDENTITY").format(
                    sql.SQL(", ").join(sql.Identifier(n) for n in names)
                )
            )
            summary = _load_all(lake, cur)
        return summary
    spec = warehouse_table(table)  # the allow-list
    summary = LoadSummary()
    with conn, conn.cursor() as cur:
        take_lock(cur, LOAD_LOCK_ID, "another load")
        for register in (DELETION_TABLE, WAITING_TABLE):
            cur.execute(
                sql.SQL("DELETE FROM {} WHERE table_name = %s").format(sql.Identifier(register)),
                (table,),
            )
        if spec.kind == "fact":
            cur.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(table)))
        loaded = sorted(b for b, status in _register(cur).items() if status == "loaded")
        for batch_id in loaded:
            done = _BatchLoad()  # per batch: its counts are added up below
            _load_table(cur, lake, lake.processed_manifest(batch_id), spec, done)
            if spec.kind == "fact":
                done.delivered[table] = _deliver_waiting(cur, spec)
            summary.add(done.rows, summary.rows)
            summary.add(done.deleted, summary.deleted)
        summary.loaded_batch_ids = loaded
    summary.waiting = _waiting_now(conn)
    return summary


def _load_all(lake: Lake, cur: Cursor) -> LoadSummary:
    """Every batch of the lake in chain order, inside the caller's open transaction."""
    summary = LoadSummary()
    skipped = lake.skipped()
    for batch_id in sorted(set(lake.transformed_batches()) | set(skipped)):
        if batch_id in skipped:
            _record_skip(cur, skipped[batch_id])
            summary.skipped_batch_ids.append(batch_id)
            continue
        done = _load_manifest(cur, lake, lake.processed_manifest(batch_id))
        summary.loaded_batch_ids.append(batch_id)
        summary.add(done.rows, summary.rows)
        summary.add(done.deleted, summary.deleted)
    return summary


# At most this many parts are listed for one fan-out (state data is capped at 256 KiB);
# parts beyond are read by the merge itself.
MAX_PLANNED_PARTS = 1000


def plan_load(conn: Connection, lake: Lake, batch_ids: list[str] | None = None) -> list[dict]:
    """The parts a fan-out should stage: every part not yet staged of every pending batch
    that has a table in more than one part (a small batch takes the short path)."""
    if batch_ids is None:
        batch_ids = pending_batches(conn, lake)[:MAX_BATCHES_PER_RUN]
    planned: list[dict] = []
    with conn, conn.cursor() as cur:
        for batch_id in sorted(set(batch_ids)):
            tables = lake.processed_manifest(batch_id).tables
            if all(len(output.files) <= 1 for output in tables.values()):
                continue
            staged = staged_parts(cur, batch_id)
            planned += [
                {"batch_id": batch_id, "table": name, "part": index}
                for name, output in tables.items()
                for index, part in enumerate(output.files)
                if staged.get((name, index)) != part.rows
            ]
    return planned[:MAX_PLANNED_PARTS]


def _is_new(conn: Connection) -> bool:
    with conn, conn.cursor() as cur:
        return is_new_warehouse(cur)


def run_stage_part(lake: Lake, warehouse_dsn: str, batch_id: str, table: str, part: int) -> dict:
    """One part of a big batch staged for the merge, in its own call (a Map iteration)."""
    with connect(warehouse_dsn, application_name="totes-load-stage") as conn:
        ensure_warehouse(conn)
        rows = stage_part(conn, lake, batch_id, table, part)
    return {"batch_id": batch_id, "table": table, "part": part, "staged": rows}


def run_load(
    lake: Lake,
    warehouse_dsn: str,
    batch_ids: list[str] | None = None,
    replay_what: str | None = None,
    *,
    fan_out: bool = False,
) -> dict:
    """The load stage: what its handler returns to the state machine.

    With ``fan_out``, if a pending batch is in parts, nothing is loaded: the result lists
    the parts for the state machine's Map to stage, and a later call (without
    ``fan_out``) merges every batch, each in one transaction, taking what was staged. Not
    into a new warehouse: its first batch is built in parallel here (``load_build``).
    """
    if replay_what not in (None, REPLAY_ALL, *WAREHOUSE_TABLE_NAMES):
        raise InvalidInputError(
            f"'replay' must be \"all\" or one of {', '.join(WAREHOUSE_TABLE_NAMES)};"
            f" got {replay_what!r:.100}"
        )
    with connect(warehouse_dsn, application_name="totes-load") as conn:
        # A new warehouse's first batch is built by parallel sessions in this call, faster
        # than staging it on the Map and merging it here in one transaction.
        if fan_out and replay_what is None and not _is_new(conn):
            ensure_warehouse(conn)
            if planned := plan_load(conn, lake, batch_ids):
                return {
                    "loaded_batch_ids": [],
                    "skipped_batch_ids": [],
                    "rows": {},
                    "waiting": {},
                    "deleted": {},
                    "warnings": "",
                    "fan_out": True,
                    "parts": planned,
                }
        if replay_what is not None:
            summary = replay(conn, lake, None if replay_what == REPLAY_ALL else replay_what)
        else:
            summary = load_batches(conn, lake, batch_ids, dsn=warehouse_dsn)
    lines = summary.warnings[:MAX_LISTED]
    if len(summary.warnings) > MAX_LISTED:
        lines.append(f"... and {len(summary.warnings) - MAX_LISTED} more")
    return {
        "loaded_batch_ids": summary.loaded_batch_ids,
        "skipped_batch_ids": summary.skipped_batch_ids,
        "rows": summary.rows,
        "waiting": summary.waiting,
        "deleted": summary.deleted,
        "warnings": "\n".join(lines),
        "fan_out": False,
        "parts": [],
    }
