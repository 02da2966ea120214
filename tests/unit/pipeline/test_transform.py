"""The transform stage on a local lake: keys written, idempotency, Parquet types, history."""

from __future__ import annotations

import io
from datetime import date
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from tests.support.sample_csv import ADDRESS_CSV, BATCH_CSVS, DEPARTMENT_CSV, T0
from totes.pipeline.ingestion_csv import IngestionFormatError
from totes.pipeline.lake import (
    IngestionManifest,
    Lake,
    LakeError,
    Part,
    ProcessedManifest,
    Snapshot,
    TableExtract,
    csv_key,
    manifest_key,
    parquet_key,
    quarantine_key,
)
from totes.pipeline.object_store import LocalStore
from totes.pipeline.transform import (
    ChainBrokenError,
    TransformError,
    Unit,
    largest_first,
    run_transform,
    transform_batch,
    transform_batches,
)
from totes.schema.source import FULL_COPY_TABLES, SOURCE_TABLE_NAMES
from totes.schema.warehouse import WAREHOUSE_TABLE_NAMES, warehouse_table

B1 = "20221103T142100000000Z"
B2 = "20221104T080000000000Z"
B3 = "20221105T080000000000Z"

LATER = "2022-11-04 07:59:00.5"
# Department 4 renamed, alone (the extract writes a changed department table whole).
DEPARTMENT_B2 = DEPARTMENT_CSV.replace(
    f"4,Dispatch,Leds,Mark Hanna,{T0},{T0}", f"4,Shipping,Leds,Mark Hanna,{T0},{LATER}"
)
# Address 3 (the legal address of counterparties 1 and 2) gets a new phone, alone.
ADDRESS_B3 = ADDRESS_CSV.replace("0730 783349", "0730 000000").replace(
    "2022-11-03 14:20:49,2022-11-03 14:20:49.9", f"2022-11-03 14:20:49,{LATER}"
)


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake(LocalStore(tmp_path / "ingestion"), LocalStore(tmp_path / "processed"))


def extract(
    lake: Lake,
    batch_id: str,
    csvs: dict[str, str | list[str]],
    *,
    manifest: bool = True,
    snapshots: dict[str, Snapshot] | None = None,
) -> None:
    """What the extract stage leaves in the lake: the CSVs, then the manifest, which follows
    the latest manifest before it (the tables the transform needs whole are full copies,
    and the manifest points at the latest one). A table given as a list is in parts."""
    earlier = [b for b in lake.extracted_batches() if b < batch_id]
    previous = lake.ingestion_manifest(earlier[-1]) if earlier else None
    tables: dict[str, TableExtract] = {}
    for table in SOURCE_TABLE_NAMES:
        before = previous.tables[table] if previous else None
        text = csvs.get(table)
        if text is None:
            tables[table] = TableExtract(
                rows=0,
                key=None,
                watermark=before.watermark if before else None,
                full_copy=before.full_copy if before else None,
            )
            continue
        texts = text if isinstance(text, list) else [text]
        parts = []
        for number, part_text in enumerate(texts, start=1):
            part_key = csv_key(table, batch_id, number if len(texts) > 1 else None)
            lake.ingestion.put_new(part_key, part_text.encode())
            part_rows = pl.read_csv(io.BytesIO(part_text.encode()), infer_schema=False).height
            parts.append(Part(part_key, part_rows))
        key, rows = parts[0].key, sum(part.rows for part in parts)
        full = previous is None or table in FULL_COPY_TABLES
        snapshot = (snapshots or {}).get(table, Snapshot(100, None) if full else None)
        tables[table] = TableExtract(
            rows=rows,
            key=key,
            watermark="2022-11-03T14:20:52.186",
            snapshot=snapshot,
            full_copy=batch_id if table in FULL_COPY_TABLES else None,
            parts=parts if len(parts) > 1 else [],
        )
    if manifest:
        doc = IngestionManifest(
            batch_id=batch_id,
            previous_batch_id=previous.batch_id if previous else None,
            tables=tables,
        )
        lake.ingestion.put_new(manifest_key(batch_id), doc.to_json())


def parquet(lake: Lake, manifest: ProcessedManifest, table: str) -> pl.DataFrame:
    key = manifest.tables[table].key
    assert key is not None, table
    return pl.read_parquet(io.BytesIO(lake.processed.get(key)))


def test_first_batch_writes_every_table_then_the_manifest(lake):
    extract(lake, B1, BATCH_CSVS)
    manifest = transform_batch(lake, B1)
    assert list(manifest.tables) == list(WAREHOUSE_TABLE_NAMES)
    expected = {parquet_key(t, B1) for t in WAREHOUSE_TABLE_NAMES} | {manifest_key(B1)}
    assert set(lake.processed.list()) == expected
    assert lake.processed_manifest(B1) == manifest
    assert manifest.tables["fact_payment"].rows == 3
    assert manifest.tables["dim_staff"].rows == 3


def test_parquet_round_trips_the_warehouse_types(lake):
    extract(lake, B1, BATCH_CSVS)
    manifest = transform_batch(lake, B1)
    for table in WAREHOUSE_TABLE_NAMES:
        df = parquet(lake, manifest, table)
        assert df.schema == warehouse_table(table).polars_schema, table
        assert df.height == manifest.tables[table].rows
    sales = parquet(lake, manifest, "fact_sales_order").filter(pl.col("sales_order_id") == 3)
    assert sales["unit_price"][0] == Decimal("2.10")
    assert sales["created_time"][0] == "14:20:52.100"
    assert sales["agreed_delivery_date"][0] == date(2024, 11, 6)
    po = parquet(lake, manifest, "fact_purchase_order")
    assert po["item_unit_price"][0] == Decimal("99999999.99")
    location = parquet(lake, manifest, "dim_location")
    assert location["address_line_2"].to_list() == [None, "", 'Apt. "B"']


def test_second_call_writes_nothing_and_returns_the_same_manifest(lake):
    extract(lake, B1, BATCH_CSVS)
    first = transform_batch(lake, B1)
    before = {k: lake.processed.get(k) for k in lake.processed.list()}
    again = transform_batch(lake, B1)
    assert again == first
    assert {k: lake.processed.get(k) for k in lake.processed.list()} == before


def test_interrupted_run_is_completed_over_its_own_files(lake):
    extract(lake, B1, BATCH_CSVS)
    first = transform_batch(lake, B1)
    # Simulate a crash before the manifest: the Parquet files stay, the manifest is gone.
    (lake.processed.root / manifest_key(B1)).unlink()
    assert transform_batch(lake, B1) == first


def test_existing_file_with_other_content_is_never_overwritten(lake):
    extract(lake, B1, BATCH_CSVS)
    stale = pl.DataFrame(schema=warehouse_table("dim_currency").polars_schema)
    buffer = io.BytesIO()
    stale.write_parquet(buffer)
    lake.processed.put_new(parquet_key("dim_currency", B1), buffer.getvalue())
    with pytest.raises(TransformError, match="other content"):
        transform_batch(lake, B1)
    assert not lake.processed.exists(manifest_key(B1))


def test_batch_with_only_facts_writes_only_their_tables(lake):
    extract(lake, B1, BATCH_CSVS)
    payment_b2 = (
        BATCH_CSVS["payment"].splitlines()[0]
        + "\n"
        + (
            "2,2022-11-03 14:20:52.186,2022-11-08 07:55:00,2,3,169309.68,2,1,t,2022-11-08,"
            "34235316,31622269\n"
        )
    )
    extract(lake, B2, {"payment": payment_b2})
    manifest = transform_batch(lake, B2)
    written = {t for t, out in manifest.tables.items() if out.key}
    assert written == {"fact_payment", "dim_date"}
    assert all(out.rows == 0 for t, out in manifest.tables.items() if t not in written)
    assert parquet(lake, manifest, "fact_payment")["paid"].to_list() == [True]
    assert parquet(lake, manifest, "dim_date")["date_id"].to_list() == [
        date(2022, 11, 3),
        date(2022, 11, 8),
    ]


def test_empty_batch_writes_only_its_manifest(lake):
    extract(lake, B1, {})
    manifest = transform_batch(lake, B1)
    assert lake.processed.list() == [manifest_key(B1)]
    assert all(out.rows == 0 and out.key is None for out in manifest.tables.values())


def test_department_renamed_alone_reemits_full_dim_staff(lake):
    extract(lake, B1, BATCH_CSVS)
    extract(lake, B2, {"department": DEPARTMENT_B2})
    first, second = transform_batches(lake, [B2, B1])  # given out of order, run in order
    assert (first.batch_id, second.batch_id) == (B1, B2)
    staff = parquet(lake, second, "dim_staff")
    assert staff.select("staff_id", "department_name", "location").rows() == [
        (1, "Purchasing", "Manchester"),
        (2, "Shipping", "Leds"),
        (3, "Shipping", "Leds"),
    ]
    assert {t for t, out in second.tables.items() if out.key} == {"dim_staff"}
    assert second.tables["dim_staff"].snapshot.full  # rebuilt whole: its ids are all there


def test_address_changed_alone_updates_counterparty_and_location(lake):
    extract(lake, B1, BATCH_CSVS)
    extract(lake, B2, {"department": DEPARTMENT_B2})
    extract(lake, B3, {"address": ADDRESS_B3})
    third = transform_batches(lake, [B1, B2, B3])[-1]
    assert {t for t, out in third.tables.items() if out.key} == {"dim_counterparty", "dim_location"}
    counterparty = parquet(lake, third, "dim_counterparty")
    assert counterparty.select("counterparty_id", "counterparty_legal_phone_number").rows() == [
        (1, "0730 000000"),
        (2, "0730 000000"),
        (3, "1803 637401"),  # address 1, from batch 1's state
    ]
    location = parquet(lake, third, "dim_location")
    assert location.select("location_id", "phone").rows()[-1] == (3, "0730 000000")


def test_state_ignores_later_batches_and_files_without_a_manifest(lake):
    extract(lake, B1, BATCH_CSVS)
    extract(lake, B3, {"department": DEPARTMENT_B2})  # a later batch
    # A failed extract's CSV, between B1 and B3, with no manifest.
    extract(lake, B2, {"department": DEPARTMENT_CSV.replace("Dispatch", "Ghost")}, manifest=False)
    first = transform_batch(lake, B1)
    assert set(parquet(lake, first, "dim_staff")["department_name"]) == {"Purchasing", "Dispatch"}
    third = transform_batch(lake, B3)
    assert set(parquet(lake, third, "dim_staff")["department_name"]) == {"Purchasing", "Shipping"}


def test_missing_ingestion_manifest_is_an_error(lake):
    extract(lake, B1, BATCH_CSVS, manifest=False)
    with pytest.raises(LakeError, match=f"batch {B1} has no ingestion manifest"):
        transform_batch(lake, B1)
    assert lake.processed.list() == []


def test_a_bad_value_sets_its_row_aside_and_the_rest_is_delivered(lake):
    bad = dict(BATCH_CSVS, sales_order=BATCH_CSVS["sales_order"].replace("3.94", "abc"))
    extract(lake, B1, bad)
    manifest = transform_batch(lake, B1)
    assert parquet(lake, manifest, "fact_sales_order")["sales_order_id"].to_list() == [3]
    assert manifest.tables["fact_sales_order"].quarantined_ids == [2]
    assert manifest.tables["fact_payment"].rows == 3  # every other table is delivered whole
    quarantined = manifest.quarantine["sales_order"]
    assert quarantined.rows == 1 and quarantined.key == quarantine_key("sales_order", B1)
    rows = pl.read_csv(io.BytesIO(lake.processed.get(quarantined.key)), infer_schema=False)
    assert rows.select("row", "id", "column", "value", "reason").rows() == [
        ("1", "2", "unit_price", "abc", "not a numeric(10,2)")
    ]
    assert rows["units_sold"].to_list() == ["42972"]  # the row as read, for the person fixing it
    (summary, detail) = manifest.warnings
    assert summary.startswith(f"sales_order: 1 rows set aside in batch {B1}")
    assert detail == (
        f"  sales_order ({lake.ingestion.location(csv_key('sales_order', B1))}) row 1, id 2: "
        "column unit_price = 'abc': not a numeric(10,2)"
    )


def test_a_warning_shows_the_start_of_a_long_bad_value_and_the_file_all_of_it(lake):
    long_value = "9" * 5000
    bad = dict(BATCH_CSVS, sales_order=BATCH_CSVS["sales_order"].replace("3.94", long_value))
    extract(lake, B1, bad)
    manifest = transform_batch(lake, B1)
    assert f"column unit_price = '{'9' * 60}... (5000 characters)'" in manifest.warnings[1]
    assert len(manifest.warnings[1]) < 400
    kept = lake.processed.get(manifest.quarantine["sales_order"].key).decode()
    assert long_value in kept


def test_a_bad_text_date_is_set_aside_with_its_csv_row(lake):
    bad = dict(
        BATCH_CSVS, sales_order=BATCH_CSVS["sales_order"].replace("2024-11-06", "2024-02-30")
    )
    extract(lake, B1, bad)
    manifest = transform_batch(lake, B1)
    assert manifest.tables["fact_sales_order"].rows == 1
    assert "row 2, id 3: column agreed_delivery_date = '2024-02-30'" in manifest.warnings[1]


def test_rows_set_aside_in_an_earlier_full_copy_are_not_taken_for_deleted(lake):
    # B2's full copy of staff has a bad value for staff 3; B3 changes only a department,
    # so dim_staff is rebuilt from B2's copy, which lacks staff 3. The load marks ids of a
    # full snapshot without a row deleted, unless the batch says they were set aside.
    extract(lake, B1, BATCH_CSVS)
    transform_batch(lake, B1)
    bad_staff = BATCH_CSVS["staff"].replace("3,Jeanette,Erdman,4,", "3,Jeanette,Erdman,4x,")
    assert bad_staff != BATCH_CSVS["staff"]
    extract(lake, B2, {"staff": bad_staff})
    assert transform_batch(lake, B2).tables["dim_staff"].quarantined_ids == [3]
    extract(lake, B3, {"department": DEPARTMENT_B2})
    third = transform_batch(lake, B3)
    staff = third.tables["dim_staff"]
    assert parquet(lake, third, "dim_staff")["staff_id"].to_list() == [1, 2]
    assert staff.snapshot.full and staff.quarantined_ids == [3]
    assert third.warnings == [
        f"staff: 1 rows set aside in batch {B2}'s full copy (ids 3) are still left out of what"
        " is built from it; the warehouse keeps them as they were"
    ]


def test_a_table_read_whole_from_parts_names_each_set_aside_row_once_in_its_file(lake):
    header = BATCH_CSVS["counterparty"].splitlines(keepends=True)[0]
    bad = [f"1,Alpha,3,,,{T0},BAD-ONE\n", f"2,Beta,3,,,{T0},{T0}\n", f"3,Gamma,1,,,{T0},BAD-TWO\n"]
    extract(lake, B1, dict(BATCH_CSVS, counterparty=[header + bad[0] + bad[1], header + bad[2]]))
    manifest = transform_batch(lake, B1)
    assert manifest.tables["dim_counterparty"].quarantined_ids == [1, 3]
    assert manifest.quarantine["counterparty"].rows == 2
    listed = pl.read_csv(
        io.BytesIO(lake.processed.get(manifest.quarantine["counterparty"].key)), infer_schema=False
    )
    # Rows are numbered across the parts; each bad value sits beside its own row.
    assert listed.select("row", "id", "counterparty_id", "value").rows() == [
        ("1", "1", "1", "BAD-ONE"),
        ("3", "3", "3", "BAD-TWO"),
    ]
    second_part = lake.ingestion.location(csv_key("counterparty", B1, 2))
    assert f"  counterparty ({second_part}) row 1, id 3: column" in manifest.warnings[2]


def test_a_run_lists_at_most_a_hundred_warnings_over_all_its_batches(lake):
    header, first, _ = BATCH_CSVS["sales_order"].split("\n", 2)
    _, rest = first.replace("3.94", "abc").split(",", 1)
    bad_rows = [f"{order_id},{rest}" for order_id in range(1, 61)]  # a bad price each
    orders = "\n".join([header, *bad_rows]) + "\n"
    extract(lake, B1, dict(BATCH_CSVS, sales_order=orders))
    extract(lake, B2, {"sales_order": orders})

    result = run_transform(lake)

    assert result["quarantined"] == {"sales_order": 120}  # every one counted
    lines = result["warnings"].splitlines()
    assert len(lines) == 101 and lines[-1] == "... and 22 more"  # 2 summaries + 120 rows


def test_a_truncated_csv_stops_the_batch_and_writes_nothing(lake):
    extract(lake, B1, dict(BATCH_CSVS, payment=BATCH_CSVS["payment"][:-30]))
    with pytest.raises(IngestionFormatError, match="truncated"):
        transform_batch(lake, B1)
    assert lake.processed.list() == []


def test_a_missing_full_copy_is_a_broken_chain_not_stale_dimensions(lake):
    extract(lake, B1, BATCH_CSVS)
    extract(lake, B2, {"department": DEPARTMENT_B2})
    extract(lake, B3, {"staff": BATCH_CSVS["staff"]})  # department's full copy is in B2
    (lake.ingestion.root / manifest_key(B2)).unlink()
    with pytest.raises(ChainBrokenError, match=f"full copy of department is in batch {B2}"):
        transform_batch(lake, B3)


def test_skipped_batches_are_never_transformed_and_pending_ones_are_found(lake):
    extract(lake, B1, BATCH_CSVS)
    extract(lake, B2, {"department": DEPARTMENT_B2})
    extract(lake, B3, {"address": ADDRESS_B3})
    lake.record_skip(B2, "bad file", by="test", at="2022-11-06T00:00:00")
    assert [m.batch_id for m in transform_batches(lake)] == [B1, B3]
    assert transform_batches(lake) == []
    assert transform_batches(lake, [B2]) == []


def test_snapshots_and_set_aside_ids_reach_the_processed_manifest(lake):
    snapshot = Snapshot(100, (0,))
    extract(lake, B1, BATCH_CSVS)
    extract(lake, B2, {"design": BATCH_CSVS["design"]}, snapshots={"design": snapshot})
    second = transform_batches(lake)[-1]
    assert second.tables["dim_design"].snapshot == snapshot
    assert second.tables["fact_sales_order"].snapshot is None
    assert second.previous_batch_id == B1


def test_row_count_differing_from_the_manifest_is_an_error(lake):
    extract(lake, B1, {"currency": BATCH_CSVS["currency"]})
    doc = lake.ingestion_manifest(B1)
    doc.tables["currency"].rows = 4
    (lake.ingestion.root / manifest_key(B1)).write_bytes(doc.to_json())
    with pytest.raises(IngestionFormatError, match="3 rows, but the batch manifest says 4"):
        transform_batch(lake, B1)


def test_staff_without_their_department_are_set_aside(lake):
    extract(lake, B1, {"staff": BATCH_CSVS["staff"]})  # no department ever extracted
    manifest = transform_batch(lake, B1)
    assert manifest.tables["dim_staff"].rows == 0
    assert manifest.quarantine["staff"].rows == 3
    assert manifest.tables["dim_staff"].quarantined_ids == [1, 2, 3]


def test_units_start_largest_part_first_whole_tables_last():
    def part(table: str, rows: int) -> Unit:
        return Unit(part=(table, Part(f"{table}-{rows}.csv", rows)))

    batch_units = [
        Unit(("staff", "department")),
        part("sales_order", 100_000),
        part("sales_order", 10_000),
        part("payment", 100_000),
        part("payment", 58_000),
    ]
    assert largest_first(batch_units) == [1, 3, 4, 2, 0]
