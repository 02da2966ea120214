"""Setting the warehouse up: its layout is recorded, an older warehouse is brought up to
date, and a warehouse a newer version set up is refused (a rollback), touching nothing."""

from __future__ import annotations

import pytest

from tests.support.sql import execute, one
from totes.pipeline.db import connect
from totes.pipeline.extract import run_extract
from totes.pipeline.lake import Lake
from totes.pipeline.load import load_batches, run_load
from totes.pipeline.registers import BATCH_TABLE, LAYOUT_TABLE
from totes.pipeline.transform import run_transform
from totes.pipeline.warehouse_setup import WAREHOUSE_LAYOUT, NewerWarehouseError, ensure_warehouse


def test_a_new_warehouse_records_its_layout(warehouse_dsn):
    with connect(warehouse_dsn) as conn:
        ensure_warehouse(conn)
    assert one(warehouse_dsn, f"SELECT layout FROM {LAYOUT_TABLE}") == WAREHOUSE_LAYOUT


def test_a_warehouse_from_before_layouts_is_brought_up_to_date(warehouse_dsn):
    with connect(warehouse_dsn) as conn:
        ensure_warehouse(conn)
    execute(warehouse_dsn, f"DROP TABLE {LAYOUT_TABLE}")
    with connect(warehouse_dsn) as conn:
        ensure_warehouse(conn)
    assert one(warehouse_dsn, f"SELECT layout FROM {LAYOUT_TABLE}") == WAREHOUSE_LAYOUT


def test_a_warehouse_a_newer_version_set_up_is_refused_and_its_batches_wait(
    tmp_path, totesys_dsn, warehouse_dsn
):
    lake = Lake.from_uri(str(tmp_path / "lake"))
    run_extract(lake, totesys_dsn)
    run_transform(lake)
    with connect(warehouse_dsn) as conn:
        ensure_warehouse(conn)
    newer = WAREHOUSE_LAYOUT + 1
    execute(warehouse_dsn, f"UPDATE {LAYOUT_TABLE} SET layout = {newer}")

    with pytest.raises(NewerWarehouseError) as refused:
        run_load(lake, warehouse_dsn)

    message = str(refused.value)
    assert f"layout {newer}" in message and "deploy the newer version again" in message
    assert one(warehouse_dsn, f"SELECT count(*) FROM {BATCH_TABLE}") == 0  # nothing loaded
    assert one(warehouse_dsn, "SELECT count(*) FROM fact_sales_order") == 0
    assert one(warehouse_dsn, f"SELECT layout FROM {LAYOUT_TABLE}") == newer  # not lowered
    # Rolled forward (here: the layout this version knows), the waiting batch loads.
    execute(warehouse_dsn, f"UPDATE {LAYOUT_TABLE} SET layout = {WAREHOUSE_LAYOUT}")
    with connect(warehouse_dsn) as conn:
        summary = load_batches(conn, lake)
    assert len(summary.loaded_batch_ids) == 1
    assert one(warehouse_dsn, "SELECT count(*) FROM fact_sales_order") > 0
