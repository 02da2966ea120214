"""The processed lake, read in place, agrees with the warehouse's current views."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from tests.support.sql import execute, one, query
from totes.analytics import lake_tables
from totes.analytics.warehouse import Warehouse
from totes.pipeline.extract import run_extract
from totes.pipeline.extract_settings import ExtractSettings
from totes.pipeline.lake import Lake
from totes.pipeline.load import run_load
from totes.pipeline.transform import run_transform
from totes.schema.warehouse import FACTS, warehouse_table


def test_revenue_by_month_from_the_parquet_equals_the_view(generated):
    from_lake = lake_tables.revenue_by_month(generated.lake)
    in_warehouse = Warehouse(generated.warehouse_dsn).view("report_revenue_by_month")
    assert from_lake.rows() == in_warehouse.sort("month", "currency_code").rows()


@pytest.mark.parametrize("fact", FACTS, ids=lambda f: f.name)
def test_current_rows_from_the_parquet_equal_the_current_views(generated, fact):
    columns = ", ".join(fact.column_names)
    in_warehouse = query(
        generated.warehouse_dsn,
        f"SELECT {columns} FROM {fact.name}_current ORDER BY {fact.key}",
    )
    # Not the batch ids: reconciliation re-reads current rows into later batches, while the
    # warehouse keeps a version once, with the first batch that brought it.
    from_lake = (
        lake_tables.current(generated.lake, fact.name)
        .sort(fact.key)
        .select(fact.column_names)
        .collect()
    )
    assert from_lake.height == len(in_warehouse) > 0
    # Times of day are text in the lake ('HH:MM:SS.fff') and time(3) in the warehouse.
    as_text = [
        tuple(
            v.isoformat(timespec="milliseconds")
            if hasattr(v, "tzinfo") and not hasattr(v, "year")
            else v
            for v in row
        )
        for row in in_warehouse
    ]
    assert from_lake.rows() == as_text


def test_there_is_history_in_the_lake(generated):
    payments = lake_tables.scan(generated.lake, "fact_payment").collect()
    # A version re-read into a later batch is the same version: distinct contents count.
    distinct = payments.unique(subset=warehouse_table("fact_payment").column_names)
    versions = distinct.group_by("payment_id").len().filter(pl.col("len") > 1).height
    assert versions == one(
        generated.warehouse_dsn,
        "SELECT count(*) FROM (SELECT payment_id FROM fact_payment GROUP BY 1"
        " HAVING count(*) > 1) AS x",
    )
    assert versions > 0


def test_an_empty_lake_reads_as_empty_tables(tmp_path):
    lake = lake_tables.Lake.from_uri(str(tmp_path / "nothing"))
    assert lake_tables.revenue_by_month(lake).height == 0


def test_a_table_in_parts_is_read_whole(totesys_dsn, tmp_path):
    lake = Lake.from_uri(str(tmp_path / "lake"))
    run_extract(lake, totesys_dsn, ExtractSettings(part_rows=7))
    (batch_id,) = run_transform(lake)["batch_ids"]
    output = lake.processed_manifest(batch_id).tables["fact_payment"]
    assert len(output.files) > 1
    read = lake_tables.scan(lake, "fact_payment").collect()
    assert read.height == output.rows == one(totesys_dsn, "SELECT count(*) FROM payment")


def test_ids_deleted_in_totesys_are_left_out_as_the_current_views_leave_them_out(
    totesys_dsn, warehouse_dsn, tmp_path
):
    lake = Lake.from_uri(str(tmp_path / "lake"))

    def run() -> None:
        run_extract(lake, totesys_dsn)
        run_transform(lake)
        run_load(lake, warehouse_dsn)

    run()
    gone = one(totesys_dsn, "SELECT max(payment_id) FROM payment")
    execute(totesys_dsn, "DELETE FROM payment WHERE payment_id = %s", (gone,))
    run()  # reconciliation finds the deletion: the warehouse marks it

    assert lake_tables.deleted_ids(lake, "fact_payment") == {gone}
    from_lake = lake_tables.current(lake, "fact_payment").collect()["payment_id"].to_list()
    in_warehouse = query(warehouse_dsn, "SELECT payment_id FROM fact_payment_current")
    assert sorted(from_lake) == sorted(i for (i,) in in_warehouse)
    assert gone not in from_lake


def test_a_skipped_batch_is_left_out_as_the_load_leaves_it_out(
    totesys_dsn, warehouse_dsn, tmp_path
):
    lake = Lake.from_uri(str(tmp_path / "lake"))
    run_extract(lake, totesys_dsn)
    (damaged,) = run_transform(lake)["batch_ids"]
    part = lake.processed_manifest(damaged).tables["fact_payment"].files[0]
    path = Path(lake.processed.location(part.key))
    path.chmod(0o644)
    path.write_bytes(path.read_bytes()[:100])  # cut: not Parquet any more
    lake.record_skip(damaged, "a cut Parquet file", by="test", at="2026-11-28T00:00:00")
    run_extract(lake, totesys_dsn)  # the repair: every row again
    run_transform(lake)
    run_load(lake, warehouse_dsn)

    from_lake = lake_tables.current(lake, "fact_payment").collect()["payment_id"].to_list()
    in_warehouse = query(warehouse_dsn, "SELECT payment_id FROM fact_payment_current")
    assert sorted(from_lake) == sorted(i for (i,) in in_warehouse) != []
