"""Big tables in parts: the extract splits a table into id ranges of at most PART_ROWS rows,
every part's count is checked, the transform works one part at a time, and a batch in many
parts loads exactly the warehouse a single-part batch loads."""

from __future__ import annotations

import itertools
import json
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import polars as pl
import pytest
from psycopg2 import sql

from tests.support.oracle import differences
from tests.support.sql import execute, one, query
from totes.pipeline.db import connect
from totes.pipeline.extract import run_extract
from totes.pipeline.extract_settings import BUCKET_WIDTH, ExtractSettings
from totes.pipeline.ingestion_csv import IngestionFormatError
from totes.pipeline.lake import Lake, manifest_key, parquet_key, unit_result_key
from totes.pipeline.load import ensure_warehouse, plan_load, run_load, run_stage_part
from totes.pipeline.load_stage import STAGING_DDL_LOCK_ID, _create_staging
from totes.pipeline.remodel import calendar
from totes.pipeline.transform import (
    UNIT_RESULT_FORMAT,
    UnitResult,
    plan_transform,
    run_transform,
    run_transform_unit,
    to_parquet,
    units,
)
from totes.schema.source import SOURCE_TABLES
from totes.schema.warehouse import WAREHOUSE_TABLES, warehouse_table

PART_ROWS = 7


def pipeline(lake: Lake, source: str, warehouse: str, part_rows: int | None = None) -> None:
    settings = ExtractSettings(part_rows=part_rows) if part_rows else None
    run_extract(lake, source, settings)
    run_transform(lake)
    run_load(lake, warehouse)


def test_the_extract_splits_big_tables_into_counted_id_ranges(totesys_dsn, tmp_path):
    lake = Lake.from_uri(str(tmp_path))
    run_extract(lake, totesys_dsn, ExtractSettings(part_rows=PART_ROWS))
    (batch_id,) = lake.extracted_batches()
    manifest = lake.ingestion_manifest(batch_id)
    for table in SOURCE_TABLES:
        extract = manifest.tables[table.name]
        total = one(
            totesys_dsn, sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table.name))
        )
        assert extract.rows == total == sum(part.rows for part in extract.files)
        assert len(extract.files) == -(-total // PART_ROWS)  # ceil: every part full but the last
        ids = []
        for part in extract.files:
            frame = pl.read_csv(lake.ingestion.get(part.key), infer_schema=False)
            assert frame.height == part.rows <= PART_ROWS
            ids.append([int(i) for i in frame[table.primary_key]])
        flat = [i for part_ids in ids for i in part_ids]
        assert flat == sorted(flat) and len(set(flat)) == total  # disjoint, ascending ranges


def test_parts_of_at_least_a_bucket_are_cut_from_the_survey_at_bucket_edges(totesys_dsn, tmp_path):
    lake = Lake.from_uri(str(tmp_path))
    part_rows = 150  # one and a half buckets: a part is one whole bucket here
    run_extract(lake, totesys_dsn, ExtractSettings(part_rows=part_rows))
    (batch_id,) = lake.extracted_batches()
    extract = lake.ingestion_manifest(batch_id).tables["sales_order"]
    total = one(totesys_dsn, "SELECT count(*) FROM sales_order")
    assert len(extract.files) > 1 and extract.rows == total
    flat, buckets = [], []
    for part in extract.files:
        ids = [int(i) for i in pl.read_csv(lake.ingestion.get(part.key))["sales_order_id"]]
        assert len(ids) == part.rows <= part_rows
        flat += ids
        buckets.append((ids[0] // BUCKET_WIDTH, ids[-1] // BUCKET_WIDTH))
    assert flat == sorted(flat) and len(set(flat)) == total
    # No bucket is split between two parts.
    assert all(a[1] < b[0] for a, b in itertools.pairwise(buckets))


def test_a_part_holding_other_rows_than_its_manifest_says_stops_the_transform(
    totesys_dsn, tmp_path
):
    lake = Lake.from_uri(str(tmp_path))
    run_extract(lake, totesys_dsn, ExtractSettings(part_rows=PART_ROWS))
    (batch_id,) = lake.extracted_batches()
    # Forge a manifest whose second sales_order part claims one row more than it holds.
    key = manifest_key(batch_id)
    raw = json.loads(lake.ingestion.get(key))
    part = raw["tables"]["sales_order"]["parts"][1]
    part["rows"] += 1
    raw["tables"]["sales_order"]["rows"] += 1
    path = tmp_path / "ingestion" / key
    path.chmod(0o644)
    path.write_text(json.dumps(raw))
    with pytest.raises(IngestionFormatError, match=rf"{part['key']}.*manifest says"):
        run_transform(lake)


def _warehouse(dsn: str) -> dict[str, Counter]:
    """Every table's rows, without what differs between two runs (batch ids, record ids)."""
    found = {}
    for table in WAREHOUSE_TABLES:
        columns = [*table.column_names, *(["version_hash"] if table.kind == "fact" else [])]
        found[table.name] = Counter(
            query(
                dsn,
                sql.SQL("SELECT {} FROM {}").format(
                    sql.SQL(", ").join(map(sql.Identifier, columns)), sql.Identifier(table.name)
                ),
            )
        )
    return found


def test_a_batch_in_many_parts_loads_exactly_as_a_single_part(totesys_dsn, new_database, tmp_path):
    whole, parted = new_database("whole"), new_database("parted")
    pipeline(Lake.from_uri(str(tmp_path / "whole")), totesys_dsn, whole)
    lake = Lake.from_uri(str(tmp_path / "parted"))
    pipeline(lake, totesys_dsn, parted, part_rows=PART_ROWS)

    (batch_id,) = lake.transformed_batches()
    outputs = lake.processed_manifest(batch_id).tables
    assert len(outputs["fact_sales_order"].files) > 1  # it really was in parts
    for output in outputs.values():
        assert output.rows == sum(part.rows for part in output.files)
    # One calendar for the batch, not one per unit: every day once, and every fact's day in it.
    (calendar,) = outputs["dim_date"].files
    days = pl.read_parquet(tmp_path / "parted" / "processed" / calendar.key)["date_id"]
    assert days.is_unique().all() and days.is_sorted()
    assert set(days) == set(
        itertools.chain.from_iterable(
            pl.read_parquet(tmp_path / "parted" / "processed" / part.key)
            .select(pl.col(pl.Date))
            .unpivot()["value"]
            .drop_nulls()
            for name, output in outputs.items()
            if name.startswith("fact_")
            for part in output.files
        )
    )
    assert differences(totesys_dsn, parted) == {}
    assert _warehouse(parted) == _warehouse(whole)
    fact_rows = one(parted, "SELECT count(*) FROM fact_sales_order")
    assert fact_rows == one(totesys_dsn, "SELECT count(*) FROM sales_order")


def test_a_batch_of_many_units_reads_its_manifest_once_per_call_not_once_per_unit(
    totesys_dsn, tmp_path, monkeypatch
):
    """Working out a batch's units and who writes what is done once: done per unit, it grew
    with the square of the units (a scale-1000 batch has a thousand)."""
    lake = Lake.from_uri(str(tmp_path))
    run_extract(lake, totesys_dsn, ExtractSettings(part_rows=PART_ROWS))
    (batch_id,) = lake.extracted_batches()
    unit_count = len(units(lake.ingestion_manifest(batch_id)))
    reads = Counter()
    original = Lake.ingestion_manifest

    def counted(self: Lake, batch: str):
        reads[batch] += 1
        return original(self, batch)

    monkeypatch.setattr(Lake, "ingestion_manifest", counted)
    assert run_transform(lake)["batch_ids"] == [batch_id]
    assert unit_count > 10
    assert reads[batch_id] == 1  # by the plan, which the units and the summary share


def test_units_done_in_separate_calls_are_taken_up_by_the_call_that_finishes(
    totesys_dsn, new_database, tmp_path
):
    lake = Lake.from_uri(str(tmp_path))
    run_extract(lake, totesys_dsn, ExtractSettings(part_rows=PART_ROWS))
    plan = run_transform(lake, fan_out=True)
    assert plan["fan_out"] is True and plan["batch_ids"] == []  # listed, not done
    (batch_id,) = {unit["batch_id"] for unit in plan["units"]}
    assert [u["unit"] for u in plan["units"]] == list(range(len(plan["units"])))
    for unit in plan["units"]:
        done = run_transform_unit(lake, unit["batch_id"], unit["unit"])
        assert done["unit"] == unit["unit"]
        assert run_transform_unit(lake, batch_id, unit["unit"]) == {  # a retried iteration
            "batch_id": batch_id,
            "unit": unit["unit"],
            "done_before": True,
        }
    assert lake.transformed_batches() == []  # nothing visible before the manifest
    assert plan_transform(lake) == []  # every unit is done
    assert run_transform(lake)["batch_ids"] == [batch_id]
    warehouse = new_database("warehouse")
    run_load(lake, warehouse)
    assert differences(totesys_dsn, warehouse) == {}


def test_a_unit_result_kept_in_an_earlier_format_is_done_again(totesys_dsn, new_database, tmp_path):
    """A deploy between the Map's units and the call that finishes the batch: a result of
    the format before (here: a dim_date part of its own, no days, no format number) is not
    trusted; its unit is done again, and nothing is lost."""
    lake = Lake.from_uri(str(tmp_path))
    run_extract(lake, totesys_dsn, ExtractSettings(part_rows=PART_ROWS))
    plan = run_transform(lake, fan_out=True)
    for unit in plan["units"]:
        run_transform_unit(lake, unit["batch_id"], unit["unit"])
    batch_id = plan["units"][0]["batch_id"]
    old_style = next(i for i, u in enumerate(plan["units"]) if _unit_result(lake, batch_id, i).days)
    result = _unit_result(lake, batch_id, old_style)
    assert result.format == UNIT_RESULT_FORMAT
    frame = calendar(pl.Series(result.days).str.to_date("%Y-%m-%d"))
    key = parquet_key("dim_date", batch_id, 1000 + old_style)
    lake.processed.put_new(key, to_parquet(frame))
    raw = json.loads(result.to_json())
    raw["outputs"]["dim_date"] = {"key": key, "rows": frame.height}
    for newer in ("days", "notes", "format"):
        del raw[newer]
    path = tmp_path / "processed" / unit_result_key(batch_id, old_style)
    path.write_text(json.dumps(raw))
    assert _unit_result(lake, batch_id, old_style).format == 1

    run_transform(lake)
    parts = [p.key for p in lake.processed_manifest(batch_id).tables["dim_date"].files]
    assert parts == [parquet_key("dim_date", batch_id)]  # the old result's part is not used
    warehouse = new_database("warehouse")
    run_load(lake, warehouse)
    assert differences(totesys_dsn, warehouse) == {}


def _unit_result(lake: Lake, batch_id: str, index: int) -> UnitResult:
    return UnitResult.from_json(lake.processed.get(unit_result_key(batch_id, index)))


def test_a_small_batch_takes_the_short_path(totesys_dsn, tmp_path):
    lake = Lake.from_uri(str(tmp_path))
    run_extract(lake, totesys_dsn)
    done = run_transform(lake, fan_out=True)
    assert done["fan_out"] is False and done["units"] == []
    assert done["batch_ids"] == lake.transformed_batches() != []


def test_parts_staged_in_separate_calls_change_nothing_visible_until_the_merge(
    totesys_dsn, new_database, tmp_path
):
    lake = Lake.from_uri(str(tmp_path))
    run_extract(lake, totesys_dsn, ExtractSettings(part_rows=PART_ROWS))
    run_transform(lake)
    (batch_id,) = lake.transformed_batches()
    warehouse = existing_warehouse(new_database)

    listed = run_load(lake, warehouse, fan_out=True)
    assert listed["fan_out"] is True and listed["loaded_batch_ids"] == []
    parts = listed["parts"]
    assert {p["batch_id"] for p in parts} == {batch_id}
    for part in parts:
        staged = run_stage_part(lake, warehouse, part["batch_id"], part["table"], part["part"])
        assert staged["staged"] > 0
    # A retried iteration replaces what it staged: no duplicates.
    again = run_stage_part(lake, warehouse, batch_id, parts[0]["table"], parts[0]["part"])
    assert again["staged"] == staged_rows(warehouse, batch_id, parts[0]["table"], parts[0]["part"])
    # Nothing is published, or registered, before the merge.
    assert one(warehouse, "SELECT count(*) FROM fact_sales_order") == 0
    assert one(warehouse, "SELECT count(*) FROM etl_loaded_batch") == 0
    with connect(warehouse) as conn:
        assert plan_load(conn, lake) == []  # all staged: the merge is next

    merged = run_load(lake, warehouse)
    assert merged["loaded_batch_ids"] == [batch_id]
    assert differences(totesys_dsn, warehouse) == {}
    assert one(warehouse, "SELECT count(*) FROM etl_staged_part") == 0  # cleared with it
    assert one(warehouse, "SELECT count(*) FROM etl_stage_fact_sales_order") == 0


def test_iterations_that_start_together_create_the_staging_tables_once(
    totesys_dsn, new_database, tmp_path
):
    """The Map's first iterations into a warehouse without staging tables all create them:
    one waits for the other's, then stages, instead of failing on a duplicate."""
    lake = Lake.from_uri(str(tmp_path))
    run_extract(lake, totesys_dsn, ExtractSettings(part_rows=PART_ROWS))
    run_transform(lake)
    warehouse = existing_warehouse(new_database)
    part = next(p for p in run_load(lake, warehouse, fan_out=True)["parts"])
    table = warehouse_table(part["table"])
    with connect(warehouse) as creating, ThreadPoolExecutor(1) as pool:
        with creating.cursor() as cur:  # an iteration creating them, not yet committed
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (STAGING_DDL_LOCK_ID,))
            _create_staging(cur, table)
        staging = pool.submit(
            run_stage_part, lake, warehouse, part["batch_id"], part["table"], part["part"]
        )
        waiting = (
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'totes-load-stage'"
            " AND wait_event_type = 'Lock'"
        )
        deadline = time.monotonic() + 30
        while one(warehouse, waiting) == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert one(warehouse, waiting) == 1
        creating.commit()
        assert staging.result(timeout=30)["staged"] > 0


def existing_warehouse(new_database) -> str:
    """A warehouse that has its tables (a big catch-up or a replay goes on the Map; a new
    warehouse's first batch is built in one call instead: test_load_build)."""
    warehouse = new_database("warehouse")
    with connect(warehouse) as conn:
        ensure_warehouse(conn)
    return warehouse


def staged_rows(dsn: str, batch_id: str, table: str, part: int) -> int:
    return one(
        dsn,
        sql.SQL("SELECT count(*) FROM {} WHERE staged_batch = %s AND staged_part = %s").format(
            sql.Identifier(f"etl_stage_{table}")
        ),
        (batch_id, part),
    )


def test_a_merge_whose_staging_is_incomplete_reads_the_parquet_itself(
    totesys_dsn, new_database, tmp_path
):
    lake = Lake.from_uri(str(tmp_path))
    run_extract(lake, totesys_dsn, ExtractSettings(part_rows=PART_ROWS))
    run_transform(lake)
    warehouse = existing_warehouse(new_database)
    parts = run_load(lake, warehouse, fan_out=True)["parts"]
    # The Map stopped before staging a sales order part (an abort, a timeout) ...
    missing = next(p for p in parts if p["table"] == "fact_sales_order")
    for part in parts:
        if part != missing:
            run_stage_part(lake, warehouse, part["batch_id"], part["table"], part["part"])
    # ... and the rows staged for a payment part were lost (a crash empties unlogged tables).
    lost = next(p for p in parts if p["table"] == "fact_payment")
    execute(warehouse, "DELETE FROM etl_stage_fact_payment WHERE staged_part = %s", (lost["part"],))
    run_load(lake, warehouse)
    assert differences(totesys_dsn, warehouse) == {}
    assert _warehouse(warehouse) == _warehouse_of_source(totesys_dsn, tmp_path, new_database)


def _warehouse_of_source(source: str, tmp_path, new_database) -> dict[str, Counter]:
    whole = new_database("whole")
    pipeline(Lake.from_uri(str(tmp_path / "whole")), source, whole)
    return _warehouse(whole)
