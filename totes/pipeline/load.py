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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import psycopg2
import psycopg2.errors
from psycopg2 import sql
from psycopg2.extensions import connection as Connection
from psycopg2.extensions import cursor as Cursor
from psycopg2.extras import Json

from totes.pipeline.db import LOAD_LOCK_ID, connect, take_lock
from totes.pipeline.errors import UndeliverableBatchError
from totes.pipeline.events import MAX_BATCHES_PER_RUN, REPLAY_ALL, InvalidInputError
from totes.pipeline.lake import Lake, ProcessedManifest, SkipRecord, TableOutput
from totes.pipeline.load_build import (
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
from totes.pipeline.load_deletions import mark_deletions
from totes.pipeline.load_merge import (
    append_facts,
    deliver_waiting,
    divert_waiting,
    merge_dimension,
    stage,
)
from totes.pipeline.load_parts import LoadError, copy_parts
from totes.pipeline.load_stage import (
    clear_staged,
    fully_staged,
    stage_part,
    staged_parts,
)
from totes.pipeline.registers import (
    BATCH_TABLE,
    DELETION_TABLE,
    WAITING_TABLE,
    batch_state,
    batch_statuses,
    waiting_by_table,
)
from totes.pipeline.warehouse_ddl import (
    warehouse_ddl,
)
from totes.pipeline.warehouse_setup import ensure_warehouse
from totes.schema.warehouse import (
    WAREHOUSE_TABLE_NAMES,
    WAREHOUSE_TABLES,
    WarehouseTable,
    warehouse_table,
)

logger = logging.getLogger(__name__)

# A batch of at least this many rows for a table, and at least 1/BULK_SHARE of the rows
# the table holds, is written in bulk (load_bulk): its foreign keys checked once, by a join,
# instead of row by row (a lookup and a lock on the dimension row: ~50-80 us a row here, so
# 47,000 purchase orders took 3-4 s row by row against 0.3 s in bulk). Re-checking costs a
# scan of the whole table, so a small batch into a big table stays row by row.
BULK_CHECK_ROWS = 10_000
BULK_SHARE = 20
MAX_LISTED = 50
# The batch ids a result lists, at most (the latest): a replay loads every batch of the
# lake, tens of thousands after a year, and a state's data is capped at 256 KiB.
MAX_LISTED_BATCHES = 100


class BrokenChainError(UndeliverableBatchError):
    """A batch follows one that is neither in the warehouse nor in the lake. (The
    transform's ``ChainBrokenError`` is its own: an ingestion batch it needs is missing.
    Alerts and the state machine tell them apart by name, so neither is renamed.)"""


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
    staging, was_empty = None, False
    if output.key is not None:
        with _named(manifest.batch_id, table, lake.processed.location(output.key)):
            staging, was_empty = _write_table(cur, lake, manifest.batch_id, output, table, done)
    if was_empty:  # every row of the table is from this batch: none can be absent from it
        done.deleted[table.name] = 0
    else:
        done.deleted[table.name] = mark_deletions(cur, table, output, staging, manifest.batch_id)


@contextmanager
def _named(batch_id: str, table: WarehouseTable, location: str) -> Iterator[None]:
    """A database error as a LoadError naming the batch, the table and its file; the server
    gone stays itself (retried as DatabaseUnavailableError, see db.connect)."""
    try:
        yield
    except psycopg2.OperationalError:
        raise
    except psycopg2.Error as exc:
        raise LoadError(
            f"batch {batch_id}, table {table.name} ({location}): {_describe(exc)}"
        ) from None


def _write_table(
    cur: Cursor,
    lake: Lake,
    batch_id: str,
    output: TableOutput,
    table: WarehouseTable,
    done: _BatchLoad,
) -> tuple[sql.Identifier | None, bool]:
    """The batch's rows of ``table`` into the warehouse; (its staging table, if it was
    staged; whether the table was empty before)."""
    big = output.rows >= BULK_CHECK_ROWS and is_small_beside(cur, table, output.rows * BULK_SHARE)
    was_empty = big and is_empty(cur, table)
    # Into an empty table the rows go in as they are, no merge: unless the batch may hold a
    # row twice, as dim_date may (lakes from before it was one file per batch hold a part
    # per unit, each repeating its days).
    as_they_are = was_empty and table.name != "dim_date"
    if as_they_are and not fully_staged(cur, batch_id, table, output):
        _write_into_empty(cur, lake, output, table, batch_id, done)
        return None, was_empty
    staging = stage(cur, lake, output, table, batch_id)
    if table.kind == "dimension":
        if as_they_are:
            with primary_key_built_in_bulk(cur, table):
                done.written[table.name] = insert_all(cur, table, staging, batch_id)
        else:
            done.written[table.name] = merge_dimension(cur, table, staging, batch_id)
    elif big:
        append = append_facts_unordered if was_empty else append_facts
        _append_facts_in_bulk(
            cur, table, batch_id, done,
            write=lambda: append(cur, table, staging, batch_id),
            staged=lambda: staging,
            empty=was_empty,
        )  # fmt: skip
    else:
        done.waiting[table.name] = divert_waiting(cur, table, staging, batch_id)
        done.written[table.name] = append_facts(cur, table, staging, batch_id)
    return staging, was_empty


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
        staged=lambda: stage(cur, lake, output, table, batch_id),
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
        done.waiting[table.name] = divert_waiting(cur, table, staging, batch_id)
        with foreign_keys_checked_in_bulk(cur, table):
            done.written[table.name] = append_facts(cur, table, staging, batch_id)
    cur.execute("RELEASE SAVEPOINT bulk_facts")


def _describe(exc: psycopg2.Error) -> str:
    detail = (exc.diag.message_primary or str(exc)).strip()
    if exc.diag.message_detail:
        detail += f" ({exc.diag.message_detail.strip()})"
    return detail


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


def _check_chain(manifest: ProcessedManifest, cur: Cursor, lake: Lake) -> None:
    """The batch before this one is in the warehouse's register (loaded or skipped): looked
    up by its id, since a replay checks every batch of the lake."""
    previous = manifest.previous_batch_id
    if previous is None or batch_state(cur, previous) is not None:
        return
    raise BrokenChainError(
        f"batch {manifest.batch_id} follows batch {previous}, which is neither in the "
        f"warehouse nor transformed nor skipped in the lake ({lake.processed.location()}): "
        "the chain of batches is broken"
    )


def _load_manifest(cur: Cursor, lake: Lake, manifest: ProcessedManifest) -> _BatchLoad:
    """Every table of one batch, waiting rows delivered, the batch registered; inside the
    caller's transaction."""
    _check_chain(manifest, cur, lake)
    done = _BatchLoad()
    for table in WAREHOUSE_TABLES:
        _load_table(cur, lake, manifest, table, done)
    for table in WAREHOUSE_TABLES:
        if table.kind == "fact":
            done.delivered[table.name] = deliver_waiting(cur, table)
    _record(cur, manifest.batch_id, done.rows, "loaded", None)
    clear_staged(cur, manifest.batch_id, list(WAREHOUSE_TABLES))
    return done


def load_batch(conn: Connection, lake: Lake, batch_id: str) -> _BatchLoad | None:
    """Load one transformed batch in one transaction; None if the warehouse already has it."""
    manifest = lake.processed_manifest(batch_id)
    with conn, conn.cursor() as cur:
        take_lock(cur, LOAD_LOCK_ID, "another load")
        if batch_id in batch_statuses(cur):
            return None
        return _load_manifest(cur, lake, manifest)


def _record_skips(conn: Connection, lake: Lake) -> list[str]:
    """Write every skipped batch not yet in the register into it (status skipped)."""
    recorded = []
    with conn, conn.cursor() as cur:
        take_lock(cur, LOAD_LOCK_ID, "another load")
        current = batch_statuses(cur)
        for batch_id in sorted(lake.skipped_ids() - current.keys()):
            _record_skip(cur, lake.skip_record(batch_id))  # read only when new
            recorded.append(batch_id)
    return recorded


def pending_batches(conn: Connection, lake: Lake) -> list[str]:
    """Transformed batches the warehouse does not have yet, oldest first."""
    with conn, conn.cursor() as cur:
        register = batch_statuses(cur)
    return [b for b in lake.transformed_batches() if b not in register]


def _waiting_now(conn: Connection) -> dict[str, int]:
    with conn, conn.cursor() as cur:
        return {table: rows for table, rows, _ in waiting_by_table(cur)}


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
        if candidates[0] in lake.skipped_ids():  # recorded as skipped the usual way, never built
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
        loaded = sorted(b for b, status in batch_statuses(cur).items() if status == "loaded")
        for batch_id in loaded:
            done = _BatchLoad()  # per batch: its counts are added up below
            _load_table(cur, lake, lake.processed_manifest(batch_id), spec, done)
            if spec.kind == "fact":
                done.delivered[table] = deliver_waiting(cur, spec)
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
                return _result(LoadSummary(), planned)
        if replay_what is not None:
            summary = replay(conn, lake, None if replay_what == REPLAY_ALL else replay_what)
        else:
            summary = load_batches(conn, lake, batch_ids, dsn=warehouse_dsn)
    return _result(summary)


def _result(summary: LoadSummary, parts: list[dict] | None = None) -> dict:
    """What the handler returns to the state machine: what was loaded, or (``parts``) the
    parts for its Map to stage first."""
    lines = summary.warnings[:MAX_LISTED]
    if len(summary.warnings) > MAX_LISTED:
        lines.append(f"... and {len(summary.warnings) - MAX_LISTED} more")
    return {
        "loaded_batch_ids": summary.loaded_batch_ids[-MAX_LISTED_BATCHES:],
        "loaded_batches": len(summary.loaded_batch_ids),
        "skipped_batch_ids": summary.skipped_batch_ids,
        "rows": summary.rows,
        "waiting": summary.waiting,
        "deleted": summary.deleted,
        "warnings": "\n".join(lines),
        "fan_out": bool(parts),
        "parts": parts or [],
    }
