"""The load on its own: all or nothing per batch, foreign keys checked row by row or in bulk."""

from __future__ import annotations

import pytest

import totes.pipeline.load
from tests.support.oracle import differences, rows
from totes.pipeline.db import connect
from totes.pipeline.extract import run_extract
from totes.pipeline.lake import Lake, ProcessedManifest, manifest_key
from totes.pipeline.load import LoadError, load_batches
from totes.pipeline.transform import run_transform


@pytest.fixture
def transformed(tmp_path, totesys_dsn) -> tuple[Lake, str]:
    lake = Lake.from_uri(str(tmp_path / "lake"))
    batch_ids = run_transform(lake, run_extract(lake, totesys_dsn)["pending_batch_ids"])[
        "batch_ids"
    ]
    return lake, batch_ids[0]


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


def test_a_fact_without_its_dimension_row_fails_the_whole_batch(
    key_checks, transformed, warehouse_dsn, tmp_path
):
    lake, batch_id = transformed
    # The same batch, but without dim_transaction: every payment points at nothing.
    broken = Lake.from_uri(str(tmp_path / "broken"))
    manifest = lake.processed_manifest(batch_id)
    for name, output in manifest.tables.items():
        if output.key and name != "dim_transaction":
            broken.processed.put_new(output.key, lake.processed.get(output.key))
    tables = {n: o for n, o in manifest.tables.items() if n != "dim_transaction"}
    broken.processed.put_new(manifest_key(batch_id), ProcessedManifest(batch_id, tables).to_json())

    with connect(warehouse_dsn) as conn, pytest.raises(LoadError) as caught:
        load_batches(conn, broken, [batch_id])

    message = str(caught.value)
    assert f"batch {batch_id}, table fact_payment" in message
    assert "fact_payment_transaction_id_fkey" in message and "dim_transaction" in message
    assert rows(warehouse_dsn, "SELECT count(*) FROM dim_staff") == {(0,)}  # nothing partial
    assert rows(warehouse_dsn, "SELECT count(*) FROM etl_loaded_batch") == {(0,)}
    assert broken.loaded_batches() == []


def test_a_lake_written_before_times_became_text_still_loads(
    transformed, totesys_dsn, warehouse_dsn, tmp_path
):
    """Parquet files of older lakes hold times of day as Parquet TIME: the same values."""
    import io

    import polars as pl

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
