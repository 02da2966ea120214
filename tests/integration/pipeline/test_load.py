"""The load on its own: all or nothing per batch, foreign keys checked row by row or in bulk."""

from __future__ import annotations

import io
from collections.abc import Callable
from functools import partial

import polars as pl
import psycopg2
import pytest
from psycopg2 import sql

import totes.pipeline.load
from tests.support.oracle import differences, rows
from tests.support.sql import execute, one, query
from totes.pipeline.db import connect
from totes.pipeline.extract import run_extract
from totes.pipeline.lake import Lake, ProcessedManifest, Snapshot, TableOutput, manifest_key
from totes.pipeline.load import (
    BrokenChainError,
    ensure_warehouse,
    load_batches,
    replay,
)
from totes.pipeline.load_parts import LoadError, ProcessedFileError
from totes.pipeline.registers import BATCH_TABLE, DELETION_TABLE, WAITING_TABLE
from totes.pipeline.transform import run_transform, to_parquet
from totes.pipeline.warehouse_ddl import RECORD_ID_CACHE, version_index_ddl
from totes.pipeline.warehouse_views import VIEW_NAMES, current_view_name
from totes.schema.warehouse import WAREHOUSE_TABLE_NAMES, WAREHOUSE_TABLES


@pytest.fixture
def transformed(tmp_path, totesys_dsn) -> tuple[Lake, str]:
    lake = Lake.from_uri(str(tmp_path / "lake"))
    run_extract(lake, totesys_dsn)
    (batch_id,) = run_transform(lake)["batch_ids"]
    return lake, batch_id


@pytest.fixture(params=["row by row", "in bulk"])
def key_checks(request, monkeypatch) -> str:
    if request.param == "in bulk":
        monkeypatch.setattr(totes.pipeline.load, "BULK_CHECK_ROWS", 0)
    return request.param


def test_both_ways_of_checking_keys_load_the_same_warehouse(
    key_checks, transformed, totesys_dsn, warehouse_dsn
):
    lake, batch_id = transformed
    with connect(warehouse_dsn) as conn:
        load_batches(conn, lake, [batch_id])
    assert differences(totesys_dsn, warehouse_dsn) == {}
    # The keys are still there afterwards, with their published names.
    constraints = rows(
        warehouse_dsn,
        "SELECT conname FROM pg_constraint WHERE contype = 'f'"
        " AND conrelid = 'fact_payment'::regclass",
    )
    assert ("fact_payment_transaction_id_fkey",) in constraints
    assert len(constraints) == 7
    primary_keys = rows(
        warehouse_dsn, "SELECT conrelid::regclass::text FROM pg_constraint WHERE contype = 'p'"
    )
    assert {(table.name,) for table in WAREHOUSE_TABLES} <= primary_keys


def test_a_dimension_row_twice_in_an_initial_load_fails_the_batch_by_name(
    key_checks, transformed, warehouse_dsn, tmp_path
):
    """Into an empty dimension, in bulk, its primary key is built after the rows are in:
    a key twice fails the batch there, as it does row by row."""
    lake, batch_id = transformed
    twice = Lake.from_uri(str(tmp_path / "twice"))
    manifest = lake.processed_manifest(batch_id)
    tables = dict(manifest.tables)
    for name, output in manifest.tables.items():
        if not output.key:
            continue
        data = lake.processed.get(output.key)
        if name == "dim_design":
            frame = pl.read_parquet(data)
            doubled = pl.concat([frame, frame.head(1)])
            doubled.write_parquet(path := tmp_path / "doubled.parquet")
            data = path.read_bytes()
            tables[name] = TableOutput(doubled.height, output.key)
        twice.processed.put_new(output.key, data)
    twice.processed.put_new(manifest_key(batch_id), ProcessedManifest(batch_id, tables).to_json())
    with connect(warehouse_dsn) as conn, pytest.raises(LoadError) as caught:
        load_batches(conn, twice)
    assert f"batch {batch_id}, table dim_design" in str(caught.value)
    # In bulk, building the key finds it; row by row, the merge (an upsert) does.
    expected = {
        "in bulk": "Key (design_id)=(1) is duplicated",
        "row by row": "cannot affect row a second time",
    }
    assert expected[key_checks] in str(caught.value)
    assert rows(warehouse_dsn, "SELECT count(*) FROM dim_design") == {(0,)}  # nothing partial
    primary_keys = rows(
        warehouse_dsn, "SELECT conrelid::regclass::text FROM pg_constraint WHERE contype = 'p'"
    )
    assert ("dim_design",) in primary_keys  # the key is back: the transaction rolled back


def test_a_fact_without_its_dimension_row_waits_for_it_and_loads_when_it_comes(
    key_checks, transformed, totesys_dsn, warehouse_dsn, tmp_path
):
    lake, batch_id = transformed
    # The same batch, but without dim_transaction: every payment points at nothing yet.
    late = Lake.from_uri(str(tmp_path / "late"))
    manifest = lake.processed_manifest(batch_id)
    for name, output in manifest.tables.items():
        if output.key and name != "dim_transaction":
            late.processed.put_new(output.key, lake.processed.get(output.key))
    tables = {n: o for n, o in manifest.tables.items() if n != "dim_transaction"}
    late.processed.put_new(manifest_key(batch_id), ProcessedManifest(batch_id, tables).to_json())

    with connect(warehouse_dsn) as conn:
        summary = load_batches(conn, late, [batch_id])
    payments = manifest.tables["fact_payment"].rows
    assert summary.waiting == {"fact_payment": payments}
    assert (
        f"fact_payment: {payments} rows of batch {batch_id} wait for their dimension rows"
        in summary.warnings[0]
    )
    assert rows(warehouse_dsn, "SELECT count(*) FROM fact_payment") == {(0,)}
    assert rows(warehouse_dsn, "SELECT count(*) FROM fact_sales_order") == {
        (manifest.tables["fact_sales_order"].rows,)
    }  # the rest of the batch is in
    assert rows(
        warehouse_dsn, "SELECT DISTINCT split_part(missing, ' ', 1) FROM etl_waiting_row"
    ) == {("dim_transaction",)}

    # The dimension rows arrive in a later batch: the waiting payments are delivered then.
    later = "20991231T000000000000Z"
    output = manifest.tables["dim_transaction"]
    late.processed.put_new(output.key.replace(batch_id, later), lake.processed.get(output.key))
    arriving = {"dim_transaction": TableOutput(output.rows, output.key.replace(batch_id, later))}
    late.processed.put_new(
        manifest_key(later),
        ProcessedManifest(later, arriving, previous_batch_id=batch_id).to_json(),
    )
    with connect(warehouse_dsn) as conn:
        summary = load_batches(conn, late)
    assert summary.loaded_batch_ids == [later] and summary.waiting == {}
    assert summary.rows["fact_payment"] == payments
    assert differences(totesys_dsn, warehouse_dsn) == {}


def _frame(lake: Lake, manifest: ProcessedManifest, name: str) -> pl.DataFrame:
    """A warehouse table of a transformed (single-part) batch, as its Parquet holds it."""
    return pl.read_parquet(io.BytesIO(lake.processed.get(manifest.tables[name].key)))


def _put(
    lake: Lake,
    batch: str,
    frames: dict[str, pl.DataFrame],
    previous: str | None,
    **snapshots: Snapshot,
) -> None:
    """A transformed batch of these tables, written as the transform writes one."""
    tables = {}
    for name, table_rows in frames.items():
        key = f"{name}/{batch}.parquet"
        lake.processed.put_new(key, to_parquet(table_rows))
        tables[name] = TableOutput(table_rows.height, key, snapshot=snapshots.get(name))
    doc = ProcessedManifest(batch, tables, previous_batch_id=previous)
    lake.processed.put_new(manifest_key(batch), doc.to_json())


@pytest.fixture
def rewritten(transformed, tmp_path) -> tuple[Lake, str, Callable, Callable]:
    """The transformed batch copied into a lake of its own, where a test writes the later
    batches by hand: (that lake, the batch id, the batch's table frames, a batch writer)."""
    lake, batch_id = transformed
    manifest = lake.processed_manifest(batch_id)
    late = Lake.from_uri(str(tmp_path / "late"))
    frame, put = partial(_frame, lake, manifest), partial(_put, late)
    put(batch_id, {n: frame(n) for n, o in manifest.tables.items() if o.key}, None)
    return late, batch_id, frame, put


def test_an_id_gone_from_the_source_is_marked_deleted_though_an_old_version_waits(
    key_checks, rewritten, warehouse_dsn
):
    late, batch_id, frame, put = rewritten

    payments = frame("fact_payment")
    gone = payments["payment_id"][0]
    # Batch 1 as transformed; in batch 2 payment `gone` moves to a transaction the warehouse
    # does not have yet, so that version waits for it.
    moved = payments.head(1).with_columns(
        transaction_id=pl.col("transaction_id") + 1_000_000, last_updated_time=pl.lit("23:59:59")
    )
    second, third = "20991230T000000000000Z", "20991231T000000000000Z"
    put(second, {"fact_payment": moved}, batch_id)
    # Batch 3, a full copy of payments: `gone` is deleted in ToteSys (its transaction never
    # comes). Only the old version waits: the id must be marked deleted.
    put(third, {"fact_payment": payments.slice(1)}, second, fact_payment=Snapshot(1, None))
    with connect(warehouse_dsn) as conn:
        load_batches(conn, late, [batch_id])
        assert load_batches(conn, late, [second]).waiting == {"fact_payment": 1}
        summary = load_batches(conn, late, [third])

    assert summary.deleted == {"fact_payment": 1}
    assert query(warehouse_dsn, f"SELECT table_name, id FROM {DELETION_TABLE}") == [
        ("fact_payment", gone)
    ]


def test_an_id_that_comes_back_waiting_for_its_dimension_row_is_no_longer_deleted(
    key_checks, rewritten, warehouse_dsn
):
    late, batch_id, frame, put = rewritten

    payments = frame("fact_payment")
    back = payments["payment_id"][0]
    new_transaction = 9_000_000
    batches = [batch_id, *(f"209912{day}T000000000000Z" for day in (29, 30, 31))]
    # Gone from a full copy of payments: marked deleted.
    put(batches[1], {"fact_payment": payments.slice(1)}, batches[0], fact_payment=Snapshot(1, None))
    # Back (restored in ToteSys), on a transaction the warehouse does not have yet: it waits.
    returned = payments.head(1).with_columns(
        transaction_id=pl.lit(new_transaction, pl.Int32), last_updated_time=pl.lit("23:59:59")
    )
    put(batches[2], {"fact_payment": returned}, batches[1])
    # The transaction arrives: the waiting version goes in.
    transaction = frame("dim_transaction").head(1)
    put(
        batches[3],
        {
            "dim_transaction": transaction.with_columns(
                transaction_id=pl.lit(new_transaction, pl.Int32)
            )
        },
        batches[2],
    )
    with connect(warehouse_dsn) as conn:
        done = [load_batches(conn, late, [batch]) for batch in batches]

    assert done[1].deleted == {"fact_payment": 1}
    assert done[2].waiting == {"fact_payment": 1}
    assert query(warehouse_dsn, f"SELECT id FROM {DELETION_TABLE}") == []
    current = "SELECT transaction_id FROM fact_payment_current WHERE payment_id = %s"
    assert query(warehouse_dsn, current, (back,)) == [(new_transaction,)]


def test_a_version_read_again_while_it_waits_is_one_version_when_it_arrives(
    key_checks, rewritten, warehouse_dsn
):
    """Reconciliation may read a waiting version again (its bucket changed): each copy waits,
    and when the dimension row comes they and the batch's own copy are one version."""
    late, batch_id, frame, put = rewritten

    payments = frame("fact_payment")
    payment = payments["payment_id"][0]
    new_transaction = 9_000_000
    moved = payments.head(1).with_columns(
        transaction_id=pl.lit(new_transaction, pl.Int32), last_updated_time=pl.lit("23:59:59")
    )
    batches = [batch_id, *(f"209912{day}T000000000000Z" for day in (28, 29, 30))]
    put(batches[1], {"fact_payment": moved}, batches[0])
    put(batches[2], {"fact_payment": moved}, batches[1])
    transaction = frame("dim_transaction").head(1)
    arrived = transaction.with_columns(transaction_id=pl.lit(new_transaction, pl.Int32))
    put(batches[3], {"dim_transaction": arrived, "fact_payment": moved}, batches[2])
    with connect(warehouse_dsn) as conn:
        done = [load_batches(conn, late, [batch]) for batch in batches]

    assert [d.waiting for d in done[1:3]] == [{"fact_payment": 1}, {"fact_payment": 2}]
    assert done[3].waiting == {}
    versions = "SELECT transaction_id FROM fact_payment WHERE payment_id = %s ORDER BY batch_id"
    original = payments["transaction_id"][0]
    assert query(warehouse_dsn, versions, (payment,)) == [(original,), (new_transaction,)]


@pytest.mark.parametrize(
    "versions",
    [
        "A B A",  # a silent edit undone, while B waits for its transaction
        "A B C B",  # B waits, C loads, B again (waits): B is current, after C
    ],
)
def test_versions_that_waited_take_their_batchs_place_in_the_history(
    versions, key_checks, rewritten, warehouse_dsn
):
    """Each batch holds the payment as the versions say (same last_updated: silent edits);
    B is on a transaction the warehouse gets only after the last of them. The history is
    every change, in batch order, the current version the last, as a replay builds it."""
    late, batch_id, frame, put = rewritten

    a = frame("fact_payment").head(1)
    payment, original = a["payment_id"][0], a["transaction_id"][0]
    other = frame("dim_transaction").filter(pl.col("transaction_id") != original)
    transaction = {"A": original, "B": 9_000_000, "C": other["transaction_id"][0]}
    names = versions.split()
    batches = [batch_id, *(f"2099120{n}T000000000000Z" for n in range(1, len(names) + 1))]
    for name, batch, previous in zip(names[1:], batches[1:], batches, strict=False):
        put(
            batch,
            {"fact_payment": a.with_columns(transaction_id=pl.lit(transaction[name], pl.Int32))},
            previous,
        )
    arrived = other.head(1).with_columns(transaction_id=pl.lit(transaction["B"], pl.Int32))
    put(batches[-1], {"dim_transaction": arrived}, batches[-2])
    history = "SELECT transaction_id FROM fact_payment WHERE payment_id = %s ORDER BY batch_id"
    current = "SELECT transaction_id FROM fact_payment_current WHERE payment_id = %s"
    with connect(warehouse_dsn) as conn:
        for batch in batches:
            load_batches(conn, late, [batch])
        run_by_run = query(warehouse_dsn, history, (payment,))
        replay(conn, late, "fact_payment")

    assert run_by_run == [(transaction[name],) for name in names]
    assert query(warehouse_dsn, history, (payment,)) == run_by_run
    assert query(warehouse_dsn, current, (payment,)) == [(transaction[names[-1]],)]


def test_a_parquet_file_with_fewer_rows_than_its_manifest_stops_the_batch(
    transformed, warehouse_dsn
):
    lake, batch_id = transformed
    manifest = lake.processed_manifest(batch_id)
    output = manifest.tables["fact_sales_order"]
    path = lake.processed.root / output.key
    frame = pl.read_parquet(path)
    path.chmod(0o644)
    frame.head(frame.height - 1).write_parquet(path)
    with connect(warehouse_dsn) as conn, pytest.raises(ProcessedFileError) as caught:
        load_batches(conn, lake)
    assert f"{frame.height - 1} rows, but the processed manifest says {frame.height}" in str(
        caught.value
    )
    assert rows(warehouse_dsn, "SELECT count(*) FROM etl_loaded_batch") == {(0,)}
    assert rows(warehouse_dsn, "SELECT count(*) FROM dim_staff") == {(0,)}  # nothing partial


def test_a_batch_after_a_gap_is_refused(transformed, warehouse_dsn, tmp_path):
    lake, batch_id = transformed
    manifest = lake.processed_manifest(batch_id)
    orphan = Lake.from_uri(str(tmp_path / "orphan"))
    for output in manifest.tables.values():
        if output.key:
            orphan.processed.put_new(output.key, lake.processed.get(output.key))
    manifest.previous_batch_id = "20200101T000000000000Z"  # a batch nobody has
    orphan.processed.put_new(manifest_key(batch_id), manifest.to_json())
    with connect(warehouse_dsn) as conn, pytest.raises(BrokenChainError, match="chain"):
        load_batches(conn, orphan)


def test_a_lake_written_before_times_became_text_still_loads(
    transformed, totesys_dsn, warehouse_dsn, tmp_path
):
    """Parquet files of older lakes hold times of day as Parquet TIME: the same values."""
    import io

    lake, batch_id = transformed
    legacy = Lake.from_uri(str(tmp_path / "legacy"))
    manifest = lake.processed_manifest(batch_id)
    for output in manifest.tables.values():
        if output.key:
            frame = pl.read_parquet(io.BytesIO(lake.processed.get(output.key)))
            frame = frame.with_columns(pl.col("^.*_time$").str.to_time("%H:%M:%S%.3f"))
            buffer = io.BytesIO()
            frame.write_parquet(buffer)
            legacy.processed.put_new(output.key, buffer.getvalue())
    legacy.processed.put_new(manifest_key(batch_id), manifest.to_json())
    sales = pl.read_parquet(
        io.BytesIO(legacy.processed.get(manifest.tables["fact_sales_order"].key))
    )
    assert sales.schema["created_time"] == pl.Time

    with connect(warehouse_dsn) as conn:
        load_batches(conn, legacy, [batch_id])

    assert differences(totesys_dsn, warehouse_dsn) == {}


def test_a_warehouse_with_version_hashes_of_before_is_migrated(
    transformed, totesys_dsn, warehouse_dsn
):
    """Until version hashes were computed by PostgreSQL, the load wrote md5 text into them:
    the next load replaces the column (views dropped and made again), and nothing doubles."""
    lake, batch_id = transformed
    with connect(warehouse_dsn) as conn:
        load_batches(conn, lake, [batch_id])
    facts = [t for t in WAREHOUSE_TABLES if t.kind == "fact"]
    with connect(warehouse_dsn) as conn, conn, conn.cursor() as cur:
        cur.execute(
            sql.SQL("DROP VIEW {}").format(sql.SQL(", ").join(map(sql.Identifier, VIEW_NAMES)))
        )
        for fact in facts:
            columns = sql.SQL(", ").join(map(sql.Identifier, fact.column_names))
            name = sql.Identifier(fact.name)
            cur.execute(sql.SQL("ALTER TABLE {} DROP COLUMN version_hash").format(name))
            cur.execute(sql.SQL("ALTER TABLE {} ADD COLUMN version_hash text").format(name))
            cur.execute(
                sql.SQL("UPDATE {} SET version_hash = md5(ROW({})::text)").format(name, columns)
            )
            cur.execute(sql.SQL("ALTER TABLE {} ALTER version_hash SET NOT NULL").format(name))
            cur.execute(version_index_ddl(fact))
    before = {f.name: one(warehouse_dsn, f"SELECT count(*) FROM {f.name}") for f in facts}

    with connect(warehouse_dsn) as conn:
        ensure_warehouse(conn)
        replay(conn, lake, "fact_sales_order")

    generated = query(
        warehouse_dsn,
        "SELECT table_name, data_type, is_generated FROM information_schema.columns"
        " WHERE column_name = 'version_hash' ORDER BY 1",
    )
    assert set(generated) == {(f.name, "bigint", "ALWAYS") for f in facts} | {
        (current_view_name(f), "bigint", "NEVER") for f in facts
    }
    after = {f.name: one(warehouse_dsn, f"SELECT count(*) FROM {f.name}") for f in facts}
    assert after == before
    assert differences(totesys_dsn, warehouse_dsn) == {}


def test_record_ids_are_handed_out_a_thousand_at_a_time_in_new_and_old_warehouses(
    transformed, totesys_dsn, warehouse_dsn
):
    """A warehouse from before (ids one at a time) is brought up to date; ids still rise in
    the order the transform wrote the rows (id, then last_updated), gaps between batches."""
    lake, batch_id = transformed
    facts = [t for t in WAREHOUSE_TABLES if t.kind == "fact"]
    caches = (
        "SELECT c.relname, s.seqcache FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid"
        " WHERE c.relname LIKE 'fact%%' ORDER BY 1"
    )
    with connect(warehouse_dsn) as conn:
        ensure_warehouse(conn)
    expected = [(f"{f.name}_{f.record_id}_seq", RECORD_ID_CACHE) for f in facts]
    assert query(warehouse_dsn, caches) == sorted(expected)
    with connect(warehouse_dsn) as conn, conn, conn.cursor() as cur:
        for fact in facts:
            cur.execute(f"ALTER SEQUENCE {fact.name}_{fact.record_id}_seq CACHE 1")
    with connect(warehouse_dsn) as conn:
        load_batches(conn, lake, [batch_id])
    assert query(warehouse_dsn, caches) == sorted(expected)
    for fact in facts:
        order = query(
            warehouse_dsn,
            f"SELECT {fact.key} FROM {fact.name}"
            f" ORDER BY {fact.key}, last_updated_date, last_updated_time",
        )
        assert order == query(
            warehouse_dsn, f"SELECT {fact.key} FROM {fact.name} ORDER BY {fact.record_id}"
        )
    assert differences(totesys_dsn, warehouse_dsn) == {}


def test_a_load_never_waits_for_autovacuum(transformed, totesys_dsn, warehouse_dsn):
    """Autovacuum holds SHARE UPDATE EXCLUSIVE on each table it vacuums (it does, after every
    big load). A load that waited for that lock would wait a second (deadlock_timeout) and
    cancel the vacuum, every run: an existing warehouse has nothing to create, so a load
    must take no lock of the kind."""
    lake, batch_id = transformed
    with connect(warehouse_dsn) as conn:
        load_batches(conn, lake, [batch_id])
    execute(
        totesys_dsn,
        "UPDATE sales_order SET units_sold = units_sold + 1, last_updated = now()"
        " WHERE sales_order_id = 1",
    )
    run_extract(lake, totesys_dsn)
    (next_batch,) = run_transform(lake)["batch_ids"]
    vacuum = psycopg2.connect(warehouse_dsn)
    try:
        with vacuum.cursor() as cur:
            tables = [*WAREHOUSE_TABLE_NAMES, BATCH_TABLE, DELETION_TABLE, WAITING_TABLE]
            cur.execute(
                sql.SQL("LOCK TABLE {} IN SHARE UPDATE EXCLUSIVE MODE").format(
                    sql.SQL(", ").join(sql.Identifier(t) for t in tables)
                )
            )
        with connect(warehouse_dsn) as conn:
            with conn, conn.cursor() as cur:
                cur.execute("SET lock_timeout = '1s'")  # a wait fails the load
            summary = load_batches(conn, lake, None)
    finally:
        vacuum.rollback()
        vacuum.close()
    assert summary.loaded_batch_ids == [next_batch]
    assert summary.rows["fact_sales_order"] == 1  # a new version
    assert differences(totesys_dsn, warehouse_dsn) == {}


def test_a_missing_version_index_or_register_column_is_made_again(warehouse_dsn):
    """DDL guarded so that an up-to-date warehouse takes no lock still creates what is missing."""
    with connect(warehouse_dsn) as conn:
        ensure_warehouse(conn)
    execute(warehouse_dsn, "DROP INDEX fact_payment_id_batch_key")
    # The index of before, which kept content from coming back (A -> B -> A).
    execute(
        warehouse_dsn,
        "CREATE UNIQUE INDEX fact_payment_version_key ON fact_payment (payment_id, version_hash)",
    )
    execute(warehouse_dsn, f"ALTER TABLE {BATCH_TABLE} DROP COLUMN reason")
    execute(warehouse_dsn, f"DROP INDEX {WAITING_TABLE}_id")
    with connect(warehouse_dsn) as conn:
        ensure_warehouse(conn)
    waiting_index = "SELECT indexdef FROM pg_indexes WHERE indexname = %s"
    assert one(warehouse_dsn, waiting_index, (f"{WAITING_TABLE}_id",)) == (
        f"CREATE INDEX {WAITING_TABLE}_id ON public.{WAITING_TABLE} USING btree (table_name, id)"
    )
    assert query(
        warehouse_dsn,
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'fact_payment'"
        " AND indexname <> 'fact_payment_pkey'",
    ) == [
        (
            "fact_payment_id_batch_key",
            "CREATE UNIQUE INDEX fact_payment_id_batch_key ON public.fact_payment"
            " USING btree (payment_id, batch_id)",
        )
    ]
    assert (
        one(
            warehouse_dsn,
            "SELECT count(*) FROM information_schema.columns WHERE table_name = %s"
            " AND column_name IN ('status', 'reason')",
            (BATCH_TABLE,),
        )
        == 2
    )
