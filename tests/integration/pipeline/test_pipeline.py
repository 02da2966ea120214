"""The three stages end to end on the embedded PostgreSQL, with a folder lake and an S3 lake."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import datetime, timedelta

import boto3
import psycopg2
import pytest
from moto import mock_aws
from psycopg2 import sql

from tests.support.oracle import differences, rows
from tests.support.sql import execute, query
from totes.local.report import _batches_loaded
from totes.pipeline import extract, load, load_deletions
from totes.pipeline.audit import run_audit
from totes.pipeline.extract import run_extract
from totes.pipeline.extract_settings import ExtractSettings
from totes.pipeline.lake import Lake, ObjectExistsError
from totes.pipeline.load import run_load
from totes.pipeline.object_store import S3Store
from totes.pipeline.transform import run_transform
from totes.schema.source import SOURCE_TABLE_NAMES
from totes.totesys.database import read_only_dsn


def run_pipeline(
    lake: Lake, source_dsn: str, warehouse_dsn: str, settings: ExtractSettings | None = None
) -> dict:
    """The three stages as the state machine runs them: each takes whatever is pending."""
    return {
        "extract": run_extract(lake, source_dsn, settings),
        "transform": run_transform(lake),
        "load": run_load(lake, warehouse_dsn),
    }


# A big table between two reconciliation passes.
NOT_DUE = ExtractSettings(reconcile_interval=timedelta(days=1), every_run_rows=0)


def add_design(dsn: str, design_id: int) -> None:
    """A new design, stamped by the business's clock."""
    stamp = source_now(dsn)
    execute(
        dsn,
        "INSERT INTO design (design_id, created_at, design_name, file_location, file_name,"
        " last_updated) VALUES (%s, %s, 'Brief', '/b', 'b.json', %s)",
        (design_id, stamp, stamp),
    )


def source_now(dsn: str) -> str:
    """A last_updated just after the newest one in ToteSys (the business's own clock)."""
    (latest,) = rows(dsn, "SELECT max(last_updated) FROM payment")
    return (latest[0] + timedelta(minutes=1)).isoformat(sep=" ")


@pytest.fixture
def folder_lake(tmp_path) -> Lake:
    return Lake.from_uri(str(tmp_path / "lake"))


@pytest.fixture
def s3_lake(monkeypatch) -> Iterator[Lake]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-2")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        s3 = boto3.client("s3")
        for bucket in ("totes-ingestion", "totes-processed"):
            s3.create_bucket(
                Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-2"}
            )
        yield Lake(S3Store("totes-ingestion", client=s3), S3Store("totes-processed", client=s3))


@pytest.fixture(params=["folder", "s3"])
def lake(request) -> Lake:
    return request.getfixturevalue(f"{request.param}_lake")


@pytest.fixture
def reader_dsn(totesys_dsn: str) -> str:
    """A role that can only SELECT on the 11 ToteSys tables: the pipeline must need no more."""
    return read_only_dsn(totesys_dsn, "t_reader")


def fact_versions(dsn: str, table: str, key: str, id_: int) -> list[tuple]:
    statement = sql.SQL("SELECT * FROM {} WHERE {} = %s").format(
        sql.Identifier(table), sql.Identifier(key)
    )
    return query(dsn, statement, (id_,))


def test_initial_run_makes_every_table_match_the_source(
    lake, reader_dsn, totesys_dsn, warehouse_dsn
):
    result = run_pipeline(lake, reader_dsn, warehouse_dsn)

    assert differences(totesys_dsn, warehouse_dsn) == {}
    assert result["extract"]["rows"] == sum(
        rows(totesys_dsn, f"SELECT count(*) FROM {t}").pop()[0] for t in SOURCE_TABLE_NAMES
    )
    assert result["load"]["loaded_batch_ids"] == [result["extract"]["batch_id"]]
    (orders,) = rows(totesys_dsn, "SELECT count(*) FROM sales_order")
    assert result["load"]["rows"]["fact_sales_order"] == orders[0]


def test_incremental_run_appends_exactly_the_new_versions(
    folder_lake, reader_dsn, totesys_dsn, warehouse_dsn
):
    run_pipeline(folder_lake, reader_dsn, warehouse_dsn)
    (before,) = rows(warehouse_dsn, "SELECT count(*) FROM fact_payment")
    now = source_now(totesys_dsn)
    # The 07:55 job: a payment is marked paid and its last_updated bumped.
    (unpaid,) = rows(totesys_dsn, "SELECT min(payment_id) FROM payment WHERE NOT paid")
    execute(
        totesys_dsn,
        "UPDATE payment SET paid = true, last_updated = %s WHERE payment_id = %s",
        (now, unpaid[0]),
    )
    # A new sales order event: order, transaction and payment with one timestamp.
    execute(
        totesys_dsn,
        """WITH so AS (
             INSERT INTO sales_order (created_at, last_updated, design_id, staff_id,
                 counterparty_id, units_sold, unit_price, currency_id, agreed_delivery_date,
                 agreed_payment_date, agreed_delivery_location_id)
             VALUES (%(t)s, %(t)s, 1, 2, 3, 1500, 2.50, 1, '2030-01-02', '2030-01-03', 4)
             RETURNING sales_order_id),
           tr AS (
             INSERT INTO transaction (transaction_type, sales_order_id, created_at, last_updated)
             SELECT 'SALE', sales_order_id, %(t)s, %(t)s FROM so RETURNING transaction_id)
           INSERT INTO payment (created_at, last_updated, transaction_id, counterparty_id,
               payment_amount, currency_id, payment_type_id, paid, payment_date,
               company_ac_number, counterparty_ac_number)
           SELECT %(t)s, %(t)s, transaction_id, 3, 3750.00, 1, 1, false, '2030-01-03',
                  12345678, 87654321 FROM tr""",
        {"t": now},
    )

    second = run_pipeline(folder_lake, reader_dsn, warehouse_dsn)

    assert second["extract"]["changed"] == {
        "sales_order": 1,
        "transaction": 1,
        "payment": 2,
    }
    # Reconciliation re-reads the buckets those rows are in; the load adds only the changes.
    assert second["load"]["rows"]["fact_payment"] == 2
    assert differences(totesys_dsn, warehouse_dsn) == {}
    (after,) = rows(warehouse_dsn, "SELECT count(*) FROM fact_payment")
    assert after[0] == before[0] + 2
    versions = fact_versions(warehouse_dsn, "fact_payment", "payment_id", unpaid[0])
    assert sorted(v[11] for v in versions) == [False, True]  # paid: the old and the new version
    (new_order,) = rows(totesys_dsn, "SELECT max(sales_order_id) FROM sales_order")
    assert (
        len(fact_versions(warehouse_dsn, "fact_sales_order", "sales_order_id", new_order[0])) == 1
    )
    (dates,) = rows(warehouse_dsn, "SELECT count(*) FROM dim_date WHERE date_id = '2030-01-02'")
    assert dates == (1,)


def test_department_renamed_alone_updates_every_staff_row(
    folder_lake, reader_dsn, totesys_dsn, warehouse_dsn
):
    run_pipeline(folder_lake, reader_dsn, warehouse_dsn)
    execute(
        totesys_dsn,
        "UPDATE department SET department_name = 'Purchasing & Supply', last_updated = %s"
        " WHERE department_name = 'Purchasing'",
        (source_now(totesys_dsn),),
    )

    second = run_pipeline(folder_lake, reader_dsn, warehouse_dsn)

    assert second["extract"]["changed"] == {"department": 1}
    assert second["extract"]["tables"] == {"department": 8}  # written whole: a full copy
    assert differences(totesys_dsn, warehouse_dsn) == {}
    renamed = rows(
        warehouse_dsn,
        "SELECT count(*) FROM dim_staff WHERE department_name = 'Purchasing & Supply'",
    )
    staff = rows(
        totesys_dsn,
        "SELECT count(*) FROM staff JOIN department USING (department_id)"
        " WHERE department_name = 'Purchasing & Supply'",
    )
    assert renamed == staff and staff.pop()[0] > 0


def test_address_changed_alone_updates_locations_and_counterparties(
    folder_lake, reader_dsn, totesys_dsn, warehouse_dsn
):
    run_pipeline(folder_lake, reader_dsn, warehouse_dsn)
    execute(
        totesys_dsn,
        "UPDATE address SET city = 'St. Helen''s', last_updated = %s WHERE address_id ="
        " (SELECT legal_address_id FROM counterparty ORDER BY counterparty_id LIMIT 1)",
        (source_now(totesys_dsn),),
    )

    run_pipeline(folder_lake, reader_dsn, warehouse_dsn)

    assert differences(totesys_dsn, warehouse_dsn) == {}
    assert (
        rows(
            warehouse_dsn,
            "SELECT count(*) FROM dim_counterparty WHERE counterparty_legal_city = 'St. Helen''s'",
        ).pop()[0]
        >= 1
    )


def test_a_late_commit_with_an_older_timestamp_is_not_lost(
    folder_lake, reader_dsn, totesys_dsn, warehouse_dsn
):
    run_pipeline(folder_lake, reader_dsn, warehouse_dsn)
    (latest,) = rows(totesys_dsn, "SELECT max(last_updated) FROM payment")
    # Committed after the first run, but stamped five minutes before its watermark.
    late = (latest[0] - timedelta(minutes=5)).isoformat(sep=" ")
    (unpaid,) = rows(totesys_dsn, "SELECT min(payment_id) FROM payment WHERE NOT paid")
    execute(
        totesys_dsn,
        "UPDATE payment SET paid = true, last_updated = %s WHERE payment_id = %s",
        (late, unpaid[0]),
    )

    second = run_pipeline(folder_lake, reader_dsn, warehouse_dsn)

    assert second["extract"]["changed"] == {"payment": 1}
    assert differences(totesys_dsn, warehouse_dsn) == {}


@pytest.mark.parametrize("buckets_found_by", ["index ranges", "a hashed lookup"])
def test_silent_edits_and_deletions_at_the_ends_of_the_id_range_reach_the_warehouse(
    buckets_found_by, folder_lake, totesys_dsn, warehouse_dsn, monkeypatch
):
    """Buckets are ids // 100 rounded down everywhere (PostgreSQL's own division rounds
    toward zero): -150 is in bucket -2, -5 in bucket -1; the last bucket's end is past
    the integers. The load finds a snapshot's ids either way (few buckets, or many)."""
    if buckets_found_by == "a hashed lookup":
        monkeypatch.setattr(load_deletions, "RANGE_SCANNED_BUCKETS", 0)
    top = 2**31 - 1
    stamp = source_now(totesys_dsn)
    for design_id in (-5, -150, top):
        execute(
            totesys_dsn,
            "INSERT INTO design (design_id, created_at, design_name, file_location, file_name,"
            " last_updated) VALUES (%s, %s, 'Edge', '/e', 'e.json', %s)",
            (design_id, stamp, stamp),
        )
    run_pipeline(folder_lake, totesys_dsn, warehouse_dsn)
    execute(totesys_dsn, "UPDATE design SET file_location = '/silent' WHERE design_id = -150")
    execute(totesys_dsn, "DELETE FROM design WHERE design_id IN (-5, %s)", (top,))

    second = run_pipeline(folder_lake, totesys_dsn, warehouse_dsn)

    assert folder_lake.ingestion_manifest(second["extract"]["batch_id"]).tables[
        "design"
    ].snapshot.buckets == (-2, -1, top // 100)
    assert second["load"]["deleted"] == {"dim_design": 2}
    assert differences(totesys_dsn, warehouse_dsn) == {}


def test_silent_edits_that_swap_values_between_rows_of_a_bucket_reach_the_warehouse(
    folder_lake, totesys_dsn, warehouse_dsn
):
    """A row's hash weighs its columns' hashes linearly: summed over a bucket as they are,
    two rows exchanging a column's values would leave the bucket's checksum as it was."""
    run_pipeline(folder_lake, totesys_dsn, warehouse_dsn)
    for table, column in (
        ("sales_order", "staff_id"),
        ("sales_order", "agreed_delivery_date"),
        ("design", "file_location"),
    ):
        pk = sql.Identifier(f"{table}_id")
        pick = sql.SQL("SELECT {pk}, {c} FROM {t} WHERE {pk} < 100 ORDER BY {pk}").format(
            pk=pk, c=sql.Identifier(column), t=sql.Identifier(table)
        )
        ids_and_values = query(totesys_dsn, pick)  # bucket 0
        first, a = ids_and_values[0]
        second, b = next((i, v) for i, v in ids_and_values if v != a)
        change = sql.SQL("UPDATE {t} SET {c} = %s WHERE {pk} = %s").format(
            t=sql.Identifier(table), c=sql.Identifier(column), pk=pk
        )
        execute(totesys_dsn, change, (b, first))
        execute(totesys_dsn, change, (a, second))

    second = run_pipeline(folder_lake, totesys_dsn, warehouse_dsn)

    tables = folder_lake.ingestion_manifest(second["extract"]["batch_id"]).tables
    assert {name: t.snapshot.buckets for name, t in tables.items() if t.snapshot} == {
        "design": (0,),
        "sales_order": (0,),
    }
    assert differences(totesys_dsn, warehouse_dsn) == {}


def test_a_silent_edit_undone_is_a_version_again_and_current(
    folder_lake, totesys_dsn, warehouse_dsn
):
    """A -> B -> A, last_updated untouched: the third is changed content (from B), so a new
    version, and the current one; the history holds all three."""
    run_pipeline(folder_lake, totesys_dsn, warehouse_dsn)
    order, staff = query(
        totesys_dsn, "SELECT sales_order_id, staff_id FROM sales_order ORDER BY 1 LIMIT 1"
    )[0]
    other = query(totesys_dsn, "SELECT min(staff_id) FROM staff WHERE staff_id <> %s", (staff,))
    edit = "UPDATE sales_order SET staff_id = %s WHERE sales_order_id = %s"
    execute(totesys_dsn, edit, (other[0][0], order))
    run_pipeline(folder_lake, totesys_dsn, warehouse_dsn)
    execute(totesys_dsn, edit, (staff, order))

    third = run_pipeline(folder_lake, totesys_dsn, warehouse_dsn)

    assert third["load"]["rows"] == {"fact_sales_order": 1}
    history = (
        "SELECT sales_staff_id FROM fact_sales_order WHERE sales_order_id = %s ORDER BY batch_id"
    )
    assert query(warehouse_dsn, history, (order,)) == [(staff,), other[0], (staff,)]
    assert differences(totesys_dsn, warehouse_dsn) == {}
    assert run_audit(totesys_dsn, warehouse_dsn).equal  # A again is no duplicate version
    # A neighbour's silent edit: the bucket is read again, the order's A with it, unchanged.
    assert order // 100 == (order + 1) // 100
    neighbour = (
        "UPDATE sales_order SET staff_id = (SELECT min(staff_id) FROM staff"
        " WHERE staff_id <> sales_order.staff_id) WHERE sales_order_id = %s"
    )
    execute(totesys_dsn, neighbour, (order + 1,))
    again = run_pipeline(folder_lake, totesys_dsn, warehouse_dsn)
    assert again["load"]["rows"] == {"fact_sales_order": 1}  # the neighbour's
    assert len(query(warehouse_dsn, history, (order,))) == 3


def test_a_row_inserted_and_deleted_between_two_passes_is_marked_deleted(
    folder_lake, totesys_dsn, warehouse_dsn
):
    """A big table is reconciled now and then: in between, a new row reaches the warehouse
    by its last_updated and is deleted again, leaving its bucket as the last pass saw it."""

    def run(settings: ExtractSettings | None = None) -> dict:
        return run_pipeline(folder_lake, totesys_dsn, warehouse_dsn, settings)

    run()
    add_design(totesys_dsn, 100000)
    second = run(NOT_DUE)["extract"]
    assert second["changed"] == {"design": 1}
    delivered = folder_lake.ingestion_manifest(second["batch_id"]).tables["design"]
    assert delivered.snapshot is None and delivered.delivered_buckets == [1000]
    execute(totesys_dsn, "DELETE FROM design WHERE design_id = 100000")

    third = run(ExtractSettings(force_reconcile=True))

    assert third["load"]["deleted"] == {"dim_design": 1}
    assert differences(totesys_dsn, warehouse_dsn) == {}


@pytest.mark.parametrize("last_updated", ["infinity", "10000-01-01 00:00:00"])
def test_a_last_updated_past_year_9999_is_a_future_row_set_aside_once(
    last_updated, folder_lake, totesys_dsn, warehouse_dsn
):
    """PostgreSQL stores such times; the extract delivers the row once, as a future row,
    and the transform sets it aside (no warehouse date holds it), naming it."""
    execute(totesys_dsn, "UPDATE design SET last_updated = %s WHERE design_id = 3", (last_updated,))
    designs = rows(totesys_dsn, "SELECT count(*) FROM design").pop()[0]

    first = run_pipeline(folder_lake, totesys_dsn, warehouse_dsn)
    assert first["extract"]["tables"]["design"] == designs  # the whole table, that row too
    assert (
        "table 'design': 1 rows have a last_updated after the source's clock"
        in (first["extract"]["warnings"])
    )
    assert first["transform"]["quarantined"] == {"design": 1}
    assert "id 3: column last_updated" in first["transform"]["warnings"]

    execute(totesys_dsn, "UPDATE currency SET last_updated = now() WHERE currency_id = 1")
    second = run_pipeline(folder_lake, totesys_dsn, warehouse_dsn)
    assert second["extract"]["changed"] == {"currency": 1}  # not design 3 again
    assert second["transform"]["quarantined"] == {}


def test_a_late_commit_stamped_before_the_version_it_overwrites_is_current(
    folder_lake, totesys_dsn, warehouse_dsn
):
    """A write stamped when its transaction began waits on a row lock and commits after a
    newer-stamped one: ToteSys holds its value, so the warehouse's current view must too."""
    run_pipeline(folder_lake, totesys_dsn, warehouse_dsn)
    stamp = datetime.fromisoformat(source_now(totesys_dsn))
    change = "UPDATE payment SET payment_amount = %s, last_updated = %s WHERE payment_id = 2"
    execute(totesys_dsn, change, ("111.11", stamp))
    run_pipeline(folder_lake, totesys_dsn, warehouse_dsn)
    execute(totesys_dsn, change, ("222.22", stamp - timedelta(minutes=5)))

    third = run_pipeline(folder_lake, totesys_dsn, warehouse_dsn)

    assert third["load"]["rows"] == {"fact_payment": 1}
    current = "SELECT payment_amount::text FROM fact_payment_current WHERE payment_id = 2"
    assert query(warehouse_dsn, current) == [("222.22",)]
    assert differences(totesys_dsn, warehouse_dsn) == {}


def skewable_reader(totesys_dsn: str) -> str:
    """A read-only role whose clock_timestamp() is the server's plus ``clock.skew``."""
    reader = read_only_dsn(totesys_dsn, "t_clock")
    for statement in (
        "CREATE SCHEMA clock",
        "CREATE TABLE clock.skew (skew interval NOT NULL)",
        "INSERT INTO clock.skew VALUES ('0')",
        "CREATE FUNCTION clock.clock_timestamp() RETURNS timestamptz LANGUAGE sql VOLATILE"
        " AS $$ SELECT pg_catalog.clock_timestamp() + (SELECT skew FROM clock.skew) $$",
        "GRANT USAGE ON SCHEMA clock TO t_clock",
        "GRANT SELECT ON clock.skew TO t_clock",
        "ALTER ROLE t_clock SET search_path = public, clock, pg_catalog",
    ):
        execute(totesys_dsn, statement)
    return reader


def test_a_source_clock_set_back_keeps_batches_in_order_and_says_so_once(
    folder_lake, totesys_dsn, warehouse_dsn
):
    """The source server's clock runs a day fast for one extract, then is set right (NTP):
    later batches must still come after that one, or its version would stay current."""
    reader = skewable_reader(totesys_dsn)
    change = "UPDATE payment SET payment_amount = %s, last_updated = %s WHERE payment_id = 2"
    run_pipeline(folder_lake, reader, warehouse_dsn)
    execute(totesys_dsn, "UPDATE clock.skew SET skew = '1 day'")
    execute(totesys_dsn, change, ("111.11", source_now(totesys_dsn)))
    fast = run_pipeline(folder_lake, reader, warehouse_dsn)["extract"]
    execute(totesys_dsn, "UPDATE clock.skew SET skew = '0'")
    execute(totesys_dsn, change, ("222.22", source_now(totesys_dsn)))

    set_back = run_pipeline(folder_lake, reader, warehouse_dsn)["extract"]
    execute(totesys_dsn, change, ("333.33", source_now(totesys_dsn)))
    after = run_pipeline(folder_lake, reader, warehouse_dsn)["extract"]

    assert fast["batch_id"] < set_back["batch_id"] < after["batch_id"]
    assert (
        "the source database's clock reads earlier than the previous batch"
        in (set_back["warnings"])
    )
    assert after["warnings"] == ""  # said once, not every 10 minutes
    current = "SELECT payment_amount::text FROM fact_payment_current WHERE payment_id = 2"
    assert query(warehouse_dsn, current) == [("333.33",)]
    assert differences(totesys_dsn, warehouse_dsn) == {}


def test_an_extract_that_stopped_midway_never_has_its_files_taken_by_the_next(
    folder_lake, totesys_dsn, warehouse_dsn, monkeypatch
):
    """With the clock set back, batch ids no longer come from it: an attempt that stopped
    before its manifest left a CSV under the id it chose. A next attempt that chose the same
    id must fail, not take that older CSV for its own (its newer rows would never come)."""
    reader = skewable_reader(totesys_dsn)
    change = "UPDATE payment SET payment_amount = %s, last_updated = %s WHERE payment_id = 2"
    run_pipeline(folder_lake, reader, warehouse_dsn)
    execute(totesys_dsn, "UPDATE clock.skew SET skew = '1 day'")
    execute(totesys_dsn, change, ("100.00", source_now(totesys_dsn)))
    run_pipeline(folder_lake, reader, warehouse_dsn)
    execute(totesys_dsn, "UPDATE clock.skew SET skew = '0'")
    execute(totesys_dsn, change, ("111.11", source_now(totesys_dsn)))
    copy_table = extract._extract_table

    def stopping_after_payment(conn, table, *args):
        run = copy_table(conn, table, *args)
        if table.name == "payment":
            raise InterruptedError("the extract stops (a timeout) after payment's CSV")
        return run

    with monkeypatch.context() as patched:
        patched.setattr(extract, "_extract_table", stopping_after_payment)
        patched.setattr(secrets, "randbelow", lambda _: 0)  # this id, then the same again
        with pytest.raises(InterruptedError):
            run_extract(folder_lake, reader)
        execute(totesys_dsn, change, ("222.22", source_now(totesys_dsn)))
        patched.setattr(extract, "_extract_table", copy_table)
        with pytest.raises(ObjectExistsError, match=r"payment/.*\.csv already exists"):
            run_extract(folder_lake, reader)

    run_pipeline(folder_lake, reader, warehouse_dsn)  # another id

    current = "SELECT payment_amount::text FROM fact_payment_current WHERE payment_id = 2"
    assert query(warehouse_dsn, current) == [("222.22",)]
    assert differences(totesys_dsn, warehouse_dsn) == {}


def test_a_deletion_whose_pass_was_in_a_skipped_batch_is_found_by_the_repair(
    folder_lake, totesys_dsn, warehouse_dsn
):
    def run(settings: ExtractSettings | None = None) -> dict:
        return run_pipeline(folder_lake, totesys_dsn, warehouse_dsn, settings)

    run()
    add_design(totesys_dsn, 100000)
    run(NOT_DUE)  # delivered by its last_updated
    execute(totesys_dsn, "DELETE FROM design WHERE design_id = 100000")
    # The pass that sees the deletion is in a batch an operator then skips.
    passed = run_extract(folder_lake, totesys_dsn, ExtractSettings(force_reconcile=True))
    folder_lake.record_skip(passed["batch_id"], "damaged", by="test", at="2026-11-28T00:00:00")

    repair = run(NOT_DUE)

    assert repair["load"]["deleted"] == {"dim_design": 1}
    assert differences(totesys_dsn, warehouse_dsn) == {}


def test_a_skipped_batch_whose_repair_was_skipped_too_is_repaired_by_the_next(
    folder_lake, totesys_dsn, warehouse_dsn
):
    """Two runs in a row that cannot be delivered (the disk full for twenty minutes): the
    second, which repaired the first, is skipped too, and delivered nothing. The next run
    repairs both: a repair that was skipped in its turn does not count."""
    run_pipeline(folder_lake, totesys_dsn, warehouse_dsn)
    stamp = source_now(totesys_dsn)
    change = "UPDATE sales_order SET units_sold = units_sold + 1000, last_updated = %s"
    execute(totesys_dsn, change + " WHERE sales_order_id = 1", (stamp,))
    for reason in ("disk full", "disk still full"):  # each with a reconciliation pass
        reconciled = ExtractSettings(force_reconcile=True)
        skipped = run_extract(folder_lake, totesys_dsn, reconciled)["batch_id"]
        folder_lake.record_skip(skipped, reason, by="test", at="2026-11-29T00:00:00")

    repair = run_pipeline(folder_lake, totesys_dsn, warehouse_dsn, NOT_DUE)

    assert differences(totesys_dsn, warehouse_dsn) == {}
    manifest = folder_lake.ingestion_manifest(repair["extract"]["batch_id"])
    assert len(manifest.repairs) == 2  # both skipped batches, delivered again
    again = run_pipeline(folder_lake, totesys_dsn, warehouse_dsn, NOT_DUE)
    assert again["extract"]["batch_id"] is None  # repaired: nothing pending any more


def test_a_replay_of_a_long_history_lists_the_latest_batches_and_counts_them_all(
    folder_lake, totesys_dsn, warehouse_dsn, monkeypatch
):
    """A replay loads every batch of the lake (tens of thousands after a year): its result
    lists only the latest, as a state's data is capped at 256 KiB, and says how many."""
    batches = []
    for payment_id in (1, 2, 3):
        stamp = source_now(totesys_dsn)
        paid = "UPDATE payment SET paid = NOT paid, last_updated = %s WHERE payment_id = %s"
        execute(totesys_dsn, paid, (stamp, payment_id))
        batches.append(run_pipeline(folder_lake, totesys_dsn, warehouse_dsn)["extract"]["batch_id"])
    monkeypatch.setattr(load, "MAX_LISTED_BATCHES", 2)

    replayed = run_load(folder_lake, warehouse_dsn, replay_what="all")

    assert replayed["loaded_batches"] == len(folder_lake.transformed_batches()) == 3
    assert replayed["loaded_batch_ids"] == batches[-2:]
    assert _batches_loaded(replayed) == (
        f"Batches loaded: 3, the latest 2 of them {batches[-2]} to {batches[-1]}"
    )
    assert differences(totesys_dsn, warehouse_dsn) == {}


def test_an_id_past_integer_after_a_retype_is_set_aside_and_the_rest_delivered(
    folder_lake, totesys_dsn, warehouse_dsn
):
    run_pipeline(folder_lake, totesys_dsn, warehouse_dsn)
    execute(totesys_dsn, "ALTER TABLE design ALTER COLUMN design_id TYPE bigint")  # compatible
    stamp = source_now(totesys_dsn)
    execute(
        totesys_dsn,
        "INSERT INTO design (design_id, created_at, design_name, file_location, file_name,"
        " last_updated) VALUES (3000000000, %s, 'Huge', '/h', 'h.json', %s)",
        (stamp, stamp),
    )
    paid = "UPDATE payment SET paid = NOT paid, last_updated = %s WHERE payment_id = 1"
    execute(totesys_dsn, paid, (stamp,))

    second = run_pipeline(folder_lake, totesys_dsn, warehouse_dsn)

    assert second["transform"]["quarantined"] == {"design": 1}  # reported, not stopping
    assert (
        "id 3000000000: column design_id = '3000000000': not an integer"
        in (second["transform"]["warnings"])
    )
    assert second["load"]["rows"].get("fact_payment") == 1  # the rest is delivered


def test_running_each_stage_twice_changes_nothing(
    folder_lake, reader_dsn, totesys_dsn, warehouse_dsn
):
    first = run_pipeline(folder_lake, reader_dsn, warehouse_dsn)
    batch_ids = first["transform"]["batch_ids"]
    keys_before = folder_lake.ingestion.list() + folder_lake.processed.list()
    counts_before = {
        t: rows(warehouse_dsn, f"SELECT count(*) FROM {t}")
        for t in ("fact_sales_order", "fact_payment", "dim_staff", "dim_date")
    }

    again_extract = run_extract(folder_lake, reader_dsn)
    again_transform = run_transform(folder_lake, batch_ids)
    again_load = run_load(folder_lake, warehouse_dsn, batch_ids)

    assert again_extract["batch_id"] is None
    assert again_transform["batch_ids"] == batch_ids  # the same manifests, nothing rewritten
    assert again_load["loaded_batch_ids"] == []
    assert folder_lake.ingestion.list() + folder_lake.processed.list() == keys_before
    assert {
        t: rows(warehouse_dsn, f"SELECT count(*) FROM {t}") for t in counts_before
    } == counts_before


def test_a_failed_load_is_picked_up_by_the_next_run(
    folder_lake, reader_dsn, totesys_dsn, warehouse_dsn, new_database
):
    extracted = run_extract(folder_lake, reader_dsn)
    run_transform(folder_lake)
    # The load never happens (its Lambda died); the next run must still deliver the batch.
    second = run_pipeline(folder_lake, reader_dsn, warehouse_dsn)

    assert second["extract"]["batch_id"] is None
    assert second["load"]["loaded_batch_ids"] == [extracted["batch_id"]]
    assert differences(totesys_dsn, warehouse_dsn) == {}


def test_the_pipeline_role_can_read_but_not_write_totesys(reader_dsn):
    assert rows(reader_dsn, "SELECT count(*) FROM currency") == {(3,)}
    with pytest.raises(psycopg2.errors.InsufficientPrivilege):
        execute(reader_dsn, "UPDATE currency SET currency_code = 'XXX'")


def test_overlapping_runs_deliver_everything_exactly_once(
    folder_lake, reader_dsn, totesys_dsn, warehouse_dsn
):
    import threading

    run_pipeline(folder_lake, reader_dsn, warehouse_dsn)
    execute(
        totesys_dsn,
        "UPDATE payment SET paid = true, last_updated = %s WHERE payment_id IN"
        " (SELECT payment_id FROM payment WHERE NOT paid ORDER BY payment_id LIMIT 3)",
        (source_now(totesys_dsn),),
    )
    errors: list[BaseException] = []

    def one_run() -> None:
        try:
            run_pipeline(folder_lake, reader_dsn, warehouse_dsn)
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=one_run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert differences(totesys_dsn, warehouse_dsn) == {}
    duplicates = rows(
        warehouse_dsn,
        "SELECT payment_id FROM fact_payment GROUP BY payment_id, last_updated_date,"
        " last_updated_time, paid HAVING count(*) > 1",
    )
    assert duplicates == set()
    (versions,) = rows(
        warehouse_dsn, "SELECT count(*) - count(DISTINCT payment_id) FROM fact_payment"
    )
    assert versions == (3,)  # exactly the three paid flips became second versions


def test_after_the_business_moves_on_exactly_the_new_versions_are_appended(
    folder_lake, reader_dsn, totesys_dsn, warehouse_dsn
):
    from totes.totesys.simulate import simulate

    run_pipeline(folder_lake, reader_dsn, warehouse_dsn)
    before = {
        t: rows(warehouse_dsn, f"SELECT count(*) FROM {t}").pop()[0]
        for t in ("fact_sales_order", "fact_payment")
    }
    (watermark,) = rows(totesys_dsn, "SELECT max(last_updated) FROM payment")
    # Two weeks of business (the small ToteSys has a few orders a day): orders, the 07:55
    # paid job, silent edits.
    summary = simulate(totesys_dsn, until=datetime(2024, 11, 29, 19, 0))
    assert summary.paid_flips > 0 and summary.inserted["sales_order"] > 0

    second = run_pipeline(folder_lake, reader_dsn, warehouse_dsn)

    since = f"'{watermark[0]}'::timestamp"
    changed = {
        fact: rows(
            totesys_dsn, f"SELECT count(*) FROM {source} WHERE last_updated > {since}"
        ).pop()[0]
        for fact, source in (("fact_sales_order", "sales_order"), ("fact_payment", "payment"))
    }
    for table in before:
        after = rows(warehouse_dsn, f"SELECT count(*) FROM {table}").pop()[0]
        assert after == before[table] + changed[table]
    assert changed["fact_payment"] == summary.inserted["payment"] + summary.paid_flips
    paid = rows(
        warehouse_dsn,
        "SELECT payment_id FROM fact_payment GROUP BY payment_id HAVING count(*) = 2"
        " AND bool_or(paid) AND NOT bool_and(paid)",
    )
    assert len(paid) == summary.paid_flips  # each paid payment: an unpaid and a paid version
    assert second["load"]["rows"]["fact_sales_order"] == summary.inserted["sales_order"]
    assert differences(totesys_dsn, warehouse_dsn) == {}
