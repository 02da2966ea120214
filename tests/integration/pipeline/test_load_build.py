"""A new warehouse's first batch, built by parallel sessions and moved in whole
(totes.pipeline.load_build): the same warehouse as batch by batch, nothing visible before
its one commit, and the usual load whenever the build cannot be used."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from psycopg2 import sql

import totes.pipeline.load
from tests.support.oracle import differences
from tests.support.sql import execute, one, query
from totes.pipeline.db import connect
from totes.pipeline.extract import run_extract
from totes.pipeline.extract_settings import ExtractSettings
from totes.pipeline.lake import Lake, ProcessedManifest, manifest_key
from totes.pipeline.load import load_batches
from totes.pipeline.load_build import BUILD_SCHEMA
from totes.pipeline.load_parts import ProcessedFileError
from totes.pipeline.transform import run_transform
from totes.schema.warehouse import WAREHOUSE_TABLE_NAMES, WAREHOUSE_TABLES

PART_ROWS = 40  # every fact and dim_transaction in several parts


@pytest.fixture
def lake(tmp_path, totesys_dsn) -> Lake:
    lake = Lake.from_uri(str(tmp_path / "lake"))
    run_extract(lake, totesys_dsn, ExtractSettings(part_rows=PART_ROWS))
    run_transform(lake)
    return lake


@pytest.fixture
def builds(monkeypatch) -> list[str]:
    """The batch ids the parallel build was used for (the real build, only watched)."""
    built: list[str] = []
    real = totes.pipeline.load.build_tables

    def watched(dsn, lake, manifest):
        written = real(dsn, lake, manifest)
        built.append(manifest.batch_id)
        return written

    monkeypatch.setattr(totes.pipeline.load, "build_tables", watched)
    return built


def catalog(dsn: str) -> dict[str, list[tuple]]:
    """What defines each warehouse table: columns (types, defaults, generated expressions),
    constraints, indexes, its record-id sequence's cache, and its schema."""
    found: dict[str, list[tuple]] = {}
    for name in WAREHOUSE_TABLE_NAMES:
        found[name] = [
            *query(
                dsn,
                "SELECT attname, format_type(atttypid, atttypmod), attnotnull,"
                " pg_get_expr(adbin, adrelid), attgenerated FROM pg_attribute"
                " LEFT JOIN pg_attrdef ON adrelid = attrelid AND adnum = attnum"
                " WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped"
                " ORDER BY attnum",
                (name,),
            ),
            *query(
                dsn,
                "SELECT conname, pg_get_constraintdef(oid), convalidated FROM pg_constraint"
                " WHERE conrelid = %s::regclass ORDER BY conname",
                (name,),
            ),
            *query(
                dsn,
                "SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index"
                " WHERE indrelid = %s::regclass ORDER BY 1",
                (name,),
            ),
            *query(
                dsn,
                "SELECT seqrelid::regclass::text, seqcache FROM pg_sequence"
                " JOIN pg_depend ON objid = seqrelid AND refobjid = %s::regclass",
                (name,),
            ),
            *query(
                dsn,
                "SELECT relnamespace::regnamespace::text, reloptions FROM pg_class"
                " WHERE oid = %s::regclass",
                (name,),
            ),
        ]
    return found


def every_row(dsn: str) -> dict[str, list[tuple]]:
    """Every row of every table, record ids and version hashes included, in key order."""
    return {
        table.name: query(
            dsn, sql.SQL("SELECT * FROM {} ORDER BY 1").format(sql.Identifier(table.name))
        )
        for table in WAREHOUSE_TABLES
    }


def tables_present(dsn: str) -> int:
    """How many of the warehouse's tables its schema has."""
    return one(
        dsn,
        "SELECT count(to_regclass(n)) FROM unnest(%s::text[]) AS n",
        (list(WAREHOUSE_TABLE_NAMES),),
    )


def has_build_schema(dsn: str) -> bool:
    return one(dsn, "SELECT count(*) FROM pg_namespace WHERE nspname = %s", (BUILD_SCHEMA,)) == 1


def test_a_new_warehouse_built_in_parallel_is_the_one_loaded_batch_by_batch(
    lake, builds, totesys_dsn, new_database, monkeypatch
):
    built, by_batch = new_database("built"), new_database("by_batch")
    (batch_id,) = lake.transformed_batches()
    assert len(lake.processed_manifest(batch_id).tables["fact_payment"].files) > 1

    # Readers see nothing of the batch until its transaction moves the tables in.
    real_move_in = totes.pipeline.load.move_in
    seen_before: list[tuple] = []

    def move_in_watched(cur) -> None:
        seen_before.append((tables_present(built),))
        payments_built = sql.SQL("SELECT count(*) FROM {}.fact_payment")
        seen_before.append((one(built, payments_built.format(sql.Identifier(BUILD_SCHEMA))),))
        real_move_in(cur)

    monkeypatch.setattr(totes.pipeline.load, "move_in", move_in_watched)
    with connect(built) as conn:
        summary = load_batches(conn, lake, dsn=built)
    with connect(by_batch) as conn:
        load_batches(conn, lake)  # no dsn: no other session to build with

    assert builds == [batch_id]
    payments = lake.processed_manifest(batch_id).tables["fact_payment"].rows
    assert seen_before == [(0,), (payments,)]  # no table yet; the build's rows all in
    assert summary.loaded_batch_ids == [batch_id]
    assert summary.rows["fact_payment"] == payments
    assert differences(totesys_dsn, built) == {}
    assert catalog(built) == catalog(by_batch)
    assert every_row(built) == every_row(by_batch)
    register = "SELECT batch_id, rows_written, status FROM etl_loaded_batch"
    assert query(built, register) == query(by_batch, register)
    assert not has_build_schema(built)


def test_a_warehouse_with_its_tables_loads_batch_by_batch(lake, builds, totesys_dsn, warehouse_dsn):
    with connect(warehouse_dsn) as conn:
        totes.pipeline.load.ensure_warehouse(conn)
        load_batches(conn, lake, dsn=warehouse_dsn)
    assert builds == []
    assert differences(totesys_dsn, warehouse_dsn) == {}


def test_a_fact_without_its_dimension_row_leaves_the_build_for_the_batch_by_batch_load(
    lake, builds, warehouse_dsn, tmp_path
):
    """The batch-by-batch load sets such rows aside to wait; the build cannot, so it
    steps aside."""
    (batch_id,) = lake.transformed_batches()
    late = Lake.from_uri(str(tmp_path / "late"))
    manifest = lake.processed_manifest(batch_id)
    for name, output in manifest.tables.items():
        if name != "dim_transaction":
            for part in output.files:
                late.processed.put_new(part.key, lake.processed.get(part.key))
    tables = {n: o for n, o in manifest.tables.items() if n != "dim_transaction"}
    late.processed.put_new(manifest_key(batch_id), ProcessedManifest(batch_id, tables).to_json())

    with connect(warehouse_dsn) as conn:
        summary = load_batches(conn, late, dsn=warehouse_dsn)

    assert builds == []  # refused: a payment's transaction is not there
    assert summary.loaded_batch_ids == [batch_id]
    assert summary.waiting == {"fact_payment": manifest.tables["fact_payment"].rows}
    assert one(warehouse_dsn, "SELECT count(*) FROM fact_sales_order") == (
        manifest.tables["fact_sales_order"].rows
    )
    assert not has_build_schema(warehouse_dsn)


def test_a_build_that_fails_leaves_no_table_and_the_next_load_builds_it(
    lake, builds, totesys_dsn, warehouse_dsn, tmp_path
):
    (batch_id,) = lake.transformed_batches()
    manifest = lake.processed_manifest(batch_id)
    lost = manifest.tables["fact_sales_order"].files[-1]
    path = tmp_path / "lake" / "processed" / lost.key
    kept = path.read_bytes()
    path.unlink()

    with connect(warehouse_dsn) as conn, pytest.raises(ProcessedFileError) as caught:
        load_batches(conn, lake, dsn=warehouse_dsn)
    assert "fact_sales_order" in str(caught.value) and "missing" in str(caught.value)
    assert tables_present(warehouse_dsn) == 0  # the failed build published nothing

    path.write_bytes(kept)
    with connect(warehouse_dsn) as conn:
        summary = load_batches(conn, lake, dsn=warehouse_dsn)
    assert builds == [batch_id]
    assert summary.loaded_batch_ids == [batch_id]
    assert differences(totesys_dsn, warehouse_dsn) == {}
    assert not has_build_schema(warehouse_dsn)


def test_a_first_batch_an_operator_skipped_is_never_built(
    lake, builds, totesys_dsn, warehouse_dsn, tmp_path
):
    """The runbook's recovery from a damaged batch: skip it; the next extract delivers its
    rows again. A new warehouse must then start from that batch, not build the skipped one."""
    (skipped,) = lake.transformed_batches()
    lost = lake.processed_manifest(skipped).tables["fact_sales_order"].files[-1]
    (tmp_path / "lake" / "processed" / lost.key).unlink()
    with connect(warehouse_dsn) as conn, pytest.raises(ProcessedFileError):
        load_batches(conn, lake, dsn=warehouse_dsn)

    lake.record_skip(skipped, "a Parquet part is missing", by="test", at="2022-11-04T00:00:00")
    run_extract(lake, totesys_dsn, ExtractSettings(part_rows=PART_ROWS))
    (again,) = run_transform(lake)["batch_ids"]
    with connect(warehouse_dsn) as conn:
        summary = load_batches(conn, lake, dsn=warehouse_dsn)

    assert builds == []
    assert summary.skipped_batch_ids == [skipped] and summary.loaded_batch_ids == [again]
    assert differences(totesys_dsn, warehouse_dsn) == {}


def test_a_build_left_by_a_stopped_load_is_dropped_by_the_next_load(lake, warehouse_dsn, tmp_path):
    (batch_id,) = lake.transformed_batches()
    lost = lake.processed_manifest(batch_id).tables["fact_payment"].files[-1]
    (tmp_path / "lake" / "processed" / lost.key).unlink()
    with connect(warehouse_dsn) as conn, pytest.raises(ProcessedFileError):
        load_batches(conn, lake, dsn=warehouse_dsn)
    assert has_build_schema(warehouse_dsn)  # what the stopped build had made
    with connect(warehouse_dsn) as conn:
        totes.pipeline.load.ensure_warehouse(conn)  # as every load does first
    assert not has_build_schema(warehouse_dsn)


def test_a_schema_of_the_builds_name_that_is_not_ours_is_never_dropped(
    lake, builds, totesys_dsn, warehouse_dsn
):
    theirs = sql.SQL("CREATE SCHEMA {schema}; CREATE TABLE {schema}.notes (x int)")
    execute(warehouse_dsn, theirs.format(schema=sql.Identifier(BUILD_SCHEMA)))
    with connect(warehouse_dsn) as conn:
        load_batches(conn, lake, dsn=warehouse_dsn)
    assert builds == []  # the build stepped aside: the batch loaded batch by batch
    assert differences(totesys_dsn, warehouse_dsn) == {}
    notes = sql.SQL("SELECT count(*) FROM {}.notes").format(sql.Identifier(BUILD_SCHEMA))
    assert one(warehouse_dsn, notes) == 0  # still there


def test_two_loads_at_once_into_a_new_warehouse_load_the_batch_once(
    lake, builds, totesys_dsn, warehouse_dsn
):
    """Overlapping runs: the second waits for the first's lock, then finds the warehouse
    built and the batch registered."""

    def load() -> list[str]:
        with connect(warehouse_dsn) as conn:
            return load_batches(conn, lake, dsn=warehouse_dsn).loaded_batch_ids

    with ThreadPoolExecutor(2) as pool:
        loaded = [future.result() for future in [pool.submit(load), pool.submit(load)]]

    (batch_id,) = lake.transformed_batches()
    assert builds == [batch_id]  # built once
    assert sorted(loaded) == [[], [batch_id]]  # loaded by one of them, not twice
    assert query(warehouse_dsn, "SELECT batch_id FROM etl_loaded_batch") == [(batch_id,)]
    assert differences(totesys_dsn, warehouse_dsn) == {}


def test_the_build_numbers_each_facts_versions_and_the_next_batch_numbers_on(
    lake, builds, totesys_dsn, warehouse_dsn
):
    """The build sends a fact's record ids itself (1, 2, ... in the transform's order, as
    the sequence would give them), then sets the sequence past them."""
    with connect(warehouse_dsn) as conn:
        load_batches(conn, lake, dsn=warehouse_dsn)
    (first,) = builds
    for table in (t for t in WAREHOUSE_TABLES if t.kind == "fact"):
        ids = sql.SQL("SELECT min({id}), max({id}), count(*) FROM {table}").format(
            id=sql.Identifier(table.record_id), table=sql.Identifier(table.name)
        )
        rows = lake.processed_manifest(first).tables[table.name].rows
        assert query(warehouse_dsn, ids) == [(1, rows, rows)]

    payments = one(warehouse_dsn, "SELECT count(*) FROM fact_payment")
    latest = one(totesys_dsn, "SELECT max(last_updated) FROM payment")
    execute(
        totesys_dsn,
        "UPDATE payment SET paid = NOT paid, last_updated = %s"
        " WHERE payment_id = (SELECT min(payment_id) FROM payment)",
        (latest + timedelta(minutes=1),),
    )
    run_extract(lake, totesys_dsn, ExtractSettings(part_rows=PART_ROWS))
    run_transform(lake)
    with connect(warehouse_dsn) as conn:
        summary = load_batches(conn, lake, dsn=warehouse_dsn)

    assert builds == [first]  # the second batch loaded batch by batch
    assert summary.rows["fact_payment"] == 1
    new = "SELECT payment_record_id FROM fact_payment WHERE batch_id <> %s"
    (record_id,) = (row[0] for row in query(warehouse_dsn, new, (first,)))
    assert record_id > payments
    assert differences(totesys_dsn, warehouse_dsn) == {}
