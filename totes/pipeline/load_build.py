"""A new warehouse's first batch, built by several sessions at once and moved in whole by
the batch's one transaction.

One session writes at the speed of one of the server's cores, and PostgreSQL cannot share
a transaction between sessions. So when the warehouse has none of its tables yet (a new
deployment, or one being rebuilt from the lake), they are built in a schema of their own
(``etl_build``), each table by whichever session is free, in that session's transaction:

1. the table created bare, the batch's Parquet parts COPYed in, then its primary key (and
   a fact's version index) built once over the rows. The rows are written frozen (COPY
   FREEZE, allowed into a table created in the same transaction): the key checks that
   follow then read them without first stamping each as committed, which took them twice
   as long (a scale-100 build: 4.7 s against 2.4 s). Frozen rows are visible to any
   snapshot, so a reader whose snapshot predates the move-in, and who then reads the new
   tables, sees the whole batch (not, as without it, none or part of it). A fact's rows
   come with their record ids, 1, 2, ... in the transform's order (the ids its sequence
   would give), and the sequence is then set past them: the server calls no sequence per
   row, which took 13% of its CPU in a scale-100 build (six alternating pairs: 97 against
   85 CPU seconds in all);
2. then each fact table's foreign keys checked, one fact table per session at a time.

The batch's transaction (``load``) then moves every table into the warehouse's schema
(``ALTER TABLE ... SET SCHEMA``: a catalog change, no row is copied; indexes, keys and
sequences go with their table), creates the registers and views, and registers the batch.
Until it commits the warehouse has no tables; after, it has all of them with the whole
batch: readers see none of the batch or all of it, as with every batch. Nothing can stand
on a table that does not exist yet (a grant, an analyst's view), so moving new tables in
loses nothing; a warehouse with any table loads batch by batch, as before.

If a row breaks a key (a fact whose dimension row has not arrived, which the batch-by-batch
load sets aside to wait), the build is dropped and the batch loads the usual way.

Scale 100 on the bench machine (2 cores, 4.79 M warehouse rows): the load took 15.0 s batch
by batch, 11.5-12.0 s built by two sessions (three: no faster, the server's two cores are
then busy).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from functools import partial

import psycopg2
from psycopg2 import sql
from psycopg2.extensions import cursor as Cursor

from totes.pipeline.db import connect
from totes.pipeline.guarded_ddl import only_when
from totes.pipeline.lake import Lake, ProcessedManifest
from totes.pipeline.load_bulk import add_primary_key, use_bulk_step_memory
from totes.pipeline.load_parts import LoadError, copy_parts
from totes.pipeline.registers import BATCH_TABLE, DELETION_TABLE, WAITING_TABLE
from totes.pipeline.warehouse_ddl import (
    bare_table_ddl,
    foreign_key_clause,
    foreign_key_name,
    record_id_sequence,
    version_index_ddl,
)
from totes.schema.warehouse import WAREHOUSE_TABLE_NAMES, WAREHOUSE_TABLES, WarehouseTable

BUILD_SCHEMA = "etl_build"
# Sessions building at once. The server does nearly all the work (a session's COPY keeps
# one of its cores busy), so this is the server's cores to use: two on the bench machine,
# where two sessions took the keyed floor's COPY from 12.5 s to 7.7 s.
BUILD_SESSIONS = 2

# The build schema says it is ours: a schema of that name that does not is never dropped
# (the build steps aside instead).
_MARK = "totes: a new warehouse's tables being built by its first load; a load drops it if left"
# A build left by a load that was stopped (a crash, a timeout): under the load's lock no
# build is running, so one that exists is stale. Dropped by every ``ensure_warehouse``.
DROP_STALE_BUILD = only_when(
    sql.SQL(
        "EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = {}"
        " AND obj_description(oid, 'pg_namespace') = {})"
    ).format(sql.Literal(BUILD_SCHEMA), sql.Literal(_MARK)),
    sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(BUILD_SCHEMA)),
)

# While it is built, autovacuum keeps off a table: each step that alters a table (adding
# its keys, checking them, moving it in) would otherwise wait for a vacuum of it, up to a
# second (deadlock_timeout) before PostgreSQL cancels the vacuum (the server's log showed
# it). Set back to the server's settings when the table is moved in.
_AUTOVACUUM_OPTIONS = sql.SQL("autovacuum_enabled, toast.autovacuum_enabled")
_NO_AUTOVACUUM = sql.SQL("autovacuum_enabled = false, toast.autovacuum_enabled = false")

type Task[T] = Callable[[Cursor], T]


class BuildRefused(Exception):
    """The database refused a step of the build (a row that breaks a key, no right to create
    a schema, a schema of that name that is someone else's): the batch is for the
    batch-by-batch load, which deals with it."""


def is_new_warehouse(cur: Cursor) -> bool:
    """Whether the warehouse has none of its tables and none of the load's registers."""
    names = [*WAREHOUSE_TABLE_NAMES, BATCH_TABLE, DELETION_TABLE, WAITING_TABLE]
    cur.execute(
        "SELECT bool_and(to_regclass(name) IS NULL) FROM unnest(%s::text[]) AS name", (names,)
    )
    return bool(cur.fetchone()[0])


def build_tables(dsn: str, lake: Lake, manifest: ProcessedManifest) -> dict[str, int]:
    """Every warehouse table built in BUILD_SCHEMA with the batch's rows, keys and indexes,
    and committed; the rows written per table.

    ``BuildRefused`` (the build dropped) if the database refuses a statement: a row that
    breaks a key, most likely. The batch-by-batch load then does what it does with such a
    batch, and names the row if it cannot load it. A lost connection or an unreadable part
    is raised as it is (the batch-by-batch load would meet it too); the next
    ``ensure_warehouse`` drops what was built."""

    def rows(table: WarehouseTable) -> int:
        output = manifest.tables.get(table.name)
        return output.rows if output else 0

    largest_first = sorted(WAREHOUSE_TABLES, key=rows, reverse=True)
    facts = [t for t in largest_first if t.kind == "fact" and t.foreign_keys]
    try:
        _in_sessions(dsn, [_new_schema], sessions=1)
        written = _in_sessions(dsn, [partial(_fill, lake, manifest, t) for t in largest_first])
        _in_sessions(dsn, [partial(_add_foreign_keys_unchecked, facts)], sessions=1)
        _in_sessions(dsn, [partial(_check_foreign_keys, t) for t in facts])
    except psycopg2.Error as exc:  # not OperationalError: connect() raised that as its own
        _in_sessions(dsn, [_drop_stale], sessions=1)
        raise BuildRefused(str(exc).strip().splitlines()[0]) from None
    return {table.name: count for table, count in zip(largest_first, written, strict=True)}


def move_in(cur: Cursor) -> None:
    """Every built table into the schema the warehouse's tables are created in (in the
    batch's transaction), and the emptied build schema dropped."""
    cur.execute("SELECT current_schema()")
    (schema,) = cur.fetchone()
    if schema is None:
        raise LoadError("the warehouse connection's search_path names no schema to load into")
    for table in WAREHOUSE_TABLES:
        built = sql.SQL("{}.{}").format(sql.Identifier(BUILD_SCHEMA), sql.Identifier(table.name))
        cur.execute(sql.SQL("ALTER TABLE {} RESET ({})").format(built, _AUTOVACUUM_OPTIONS))
        cur.execute(sql.SQL("ALTER TABLE {} SET SCHEMA {}").format(built, sql.Identifier(schema)))
    cur.execute(sql.SQL("DROP SCHEMA {}").format(sql.Identifier(BUILD_SCHEMA)))


def _new_schema(cur: Cursor) -> None:
    _drop_stale(cur)
    schema = sql.Identifier(BUILD_SCHEMA)
    cur.execute(sql.SQL("CREATE SCHEMA {}").format(schema))  # fails if someone else's exists
    cur.execute(sql.SQL("COMMENT ON SCHEMA {} IS {}").format(schema, sql.Literal(_MARK)))


def _drop_stale(cur: Cursor) -> None:
    cur.execute(DROP_STALE_BUILD)


def _fill(lake: Lake, manifest: ProcessedManifest, table: WarehouseTable, cur: Cursor) -> int:
    """One table created bare, the batch's rows COPYed in, then its keys built once."""
    name = sql.Identifier(table.name)
    cur.execute(bare_table_ddl(table))
    cur.execute(sql.SQL("ALTER TABLE {} SET ({})").format(name, _NO_AUTOVACUUM))
    output = manifest.tables.get(table.name)
    written = 0
    is_fact = table.kind == "fact"
    if output is not None and output.files:
        # Every row's batch id is the column's default while the COPY runs, not sent per
        # row: a sixth less to send and parse (1.58 M payments: 232 MB against 191 MB), 8%
        # less of the server's CPU in a scale-100 build (five alternating pairs).
        batch = sql.Literal(manifest.batch_id)
        cur.execute(sql.SQL("ALTER TABLE {} ALTER batch_id SET DEFAULT {}").format(name, batch))
        written = copy_parts(cur, lake, output, table, name, freeze=True, record_ids=is_fact)
        cur.execute(sql.SQL("ALTER TABLE {} ALTER batch_id DROP DEFAULT").format(name))
    add_primary_key(cur, table)
    if is_fact:
        cur.execute(version_index_ddl(table))
        if written:  # the ids the COPY sent: the sequence goes on after them
            cur.execute("SELECT setval(%s, %s)", (record_id_sequence(table), written))
    return written


def _add_foreign_keys_unchecked(facts: list[WarehouseTable], cur: Cursor) -> None:
    """Every fact's foreign keys, not yet checked (``_check_foreign_keys`` checks them):
    adding a checked key locks its dimension against the other sessions' checks, while
    checking one only shares it."""
    for table in facts:
        for col in table.foreign_keys:
            cur.execute(
                sql.SQL("ALTER TABLE {} ADD {} NOT VALID").format(
                    sql.Identifier(table.name), foreign_key_clause(table, col)
                )
            )


def _check_foreign_keys(table: WarehouseTable, cur: Cursor) -> None:
    """Every row of the fact checked against its dimensions, a key at a time (a join)."""
    use_bulk_step_memory(cur)
    for col in table.foreign_keys:
        cur.execute(
            sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {}").format(
                sql.Identifier(table.name), foreign_key_name(table, col)
            )
        )


def _in_sessions[T](dsn: str, tasks: list[Task[T]], sessions: int = BUILD_SESSIONS) -> list[T]:
    """Each task run in a transaction of its own, with ``search_path`` the build schema, on
    up to ``sessions`` connections at once (each takes the next task when free); their
    results in order. After an error no session takes another task, and it is raised."""
    pending = deque(enumerate(tasks))
    results: dict[int, T] = {}
    taking = threading.Lock()
    failed = threading.Event()

    def session() -> None:
        with connect(dsn, application_name="totes-load-build") as conn:
            with conn, conn.cursor() as cur:
                cur.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(BUILD_SCHEMA)))
            while not failed.is_set():
                with taking:
                    if not pending:
                        return
                    index, task = pending.popleft()
                try:
                    with conn, conn.cursor() as cur:
                        results[index] = task(cur)
                except BaseException:
                    failed.set()
                    raise

    count = min(sessions, len(tasks))
    with ThreadPoolExecutor(count, thread_name_prefix="load-build") as pool:
        running = [pool.submit(session) for _ in range(count)]
        finished, _ = wait(running, return_when=FIRST_EXCEPTION)
    for future in (*finished, *running):  # the first to fail, if one did
        if (error := future.exception()) is not None:
            raise error
    return [results[index] for index in range(len(tasks))]
