"""Extract on a real ToteSys: explicit tables, schema drift, overlapping runs, exact CSV."""

from __future__ import annotations

import csv
import io
import threading
from datetime import timedelta

import psycopg2
import pytest

from tests.support.sql import execute, one
from totes.pipeline.db import connect
from totes.pipeline.extract import extract_batch
from totes.pipeline.extract_sessions import ExtractSessions
from totes.pipeline.extract_settings import ExtractSettings
from totes.pipeline.lake import Lake
from totes.pipeline.source_drift import SchemaDriftError, check_source_schema
from totes.pipeline.source_sql import smallest_first
from totes.schema.source import SOURCE_TABLE_NAMES, SOURCE_TABLES, source_table


def extract(dsn: str, lake: Lake):
    with connect(dsn) as conn:
        return extract_batch(conn, lake).manifest


def test_only_the_eleven_tables_are_extracted(totesys_dsn, tmp_path):
    execute(
        totesys_dsn,
        "INSERT INTO _prisma_migrations (id, checksum, migration_name)"
        " VALUES ('m1', 'abc', '20221103_init')",
    )
    lake = Lake.from_uri(str(tmp_path))
    manifest = extract(totesys_dsn, lake)
    assert list(manifest.tables) == list(SOURCE_TABLE_NAMES)
    tables_in_lake = {key.split("/")[0] for key in lake.ingestion.list()}
    assert tables_in_lake == {*SOURCE_TABLE_NAMES, "_manifests", "_checksums"}


def test_csv_round_trips_nulls_empty_strings_and_awkward_text(totesys_dsn, tmp_path):
    execute(
        totesys_dsn,
        """INSERT INTO address (address_line_1, address_line_2, district, city, postal_code,
                                country, phone, last_updated)
           VALUES ('1 "Quoted", Lane', '', NULL, 'Line
break', 'AB1 2CD', 'Democratic People''s Republic of Korea', '0161', '2030-01-01 00:00:00.5')""",
    )
    lake = Lake.from_uri(str(tmp_path))
    manifest = extract(totesys_dsn, lake)
    text = lake.ingestion.get(manifest.tables["address"].key).decode()
    raw_line = [line for line in text.split("\n") if line.startswith(tuple("0123456789"))][-1]
    assert ',"",,' in raw_line  # an empty string is quoted, a NULL is not
    record = list(csv.DictReader(io.StringIO(text)))[-1]
    assert record["address_line_1"] == '1 "Quoted", Lane'
    assert record["city"] == "Line\nbreak"
    assert record["country"] == "Democratic People's Republic of Korea"
    assert "None" not in text and "nan" not in text and "NULL" not in text
    assert record["last_updated"] == "2030-01-01 00:00:00.5"


def test_a_lost_column_stops_the_extract_and_writes_nothing(totesys_dsn, tmp_path):
    execute(totesys_dsn, "ALTER TABLE staff DROP COLUMN email_address")
    lake = Lake.from_uri(str(tmp_path))
    with pytest.raises(SchemaDriftError, match="table 'staff' lost column 'email_address'"):
        extract(totesys_dsn, lake)
    assert lake.ingestion.list() == []


def test_a_gained_column_is_reported_and_the_rest_extracted(totesys_dsn, tmp_path):
    execute(totesys_dsn, "ALTER TABLE staff ADD COLUMN nickname text")
    with connect(totesys_dsn) as conn:
        warnings = check_source_schema(conn)
    assert warnings == ["table 'staff' gained column 'nickname' (text); not extracted"]
    manifest = extract(totesys_dsn, Lake.from_uri(str(tmp_path)))
    assert manifest.tables["staff"].rows > 0


def test_overlapping_extracts_never_deliver_a_row_twice(totesys_dsn, tmp_path):
    lake = Lake.from_uri(str(tmp_path))
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(extract(totesys_dsn, lake)))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    delivered = [manifest for manifest in results if manifest is not None]
    assert len(delivered) == 1  # the others ran after it, found nothing new, wrote nothing
    assert len(lake.extracted_batches()) == 1


def test_a_retyped_column_is_reported_when_values_still_fit_and_stops_when_not(
    totesys_dsn, tmp_path
):
    execute(totesys_dsn, "ALTER TABLE payment ALTER COLUMN company_ac_number TYPE bigint")
    with connect(totesys_dsn) as conn:
        assert check_source_schema(conn) == [
            "table 'payment' column 'company_ac_number' is bigint, not integer; values that do"
            " not fit integer are set aside"
        ]
    execute(totesys_dsn, "ALTER TABLE payment ALTER COLUMN paid TYPE text")
    with pytest.raises(SchemaDriftError, match="column 'paid' is text, not boolean"):
        extract(totesys_dsn, Lake.from_uri(str(tmp_path)))


def test_an_integer_retyped_to_numeric_with_a_scale_stops_the_extract(totesys_dsn, tmp_path):
    # Every value would read '99501.00', no integer: every row would be set aside.
    execute(totesys_dsn, "ALTER TABLE sales_order ALTER COLUMN units_sold TYPE numeric(10,2)")
    with pytest.raises(SchemaDriftError, match="column 'units_sold' is numeric\\(10,2\\)"):
        extract(totesys_dsn, Lake.from_uri(str(tmp_path)))
    execute(totesys_dsn, "ALTER TABLE sales_order ALTER COLUMN units_sold TYPE numeric(12,0)")
    with connect(totesys_dsn) as conn:  # whole numbers: compatible, told once
        assert any("'units_sold' is numeric(12,0)" in w for w in check_source_schema(conn))
    # Not a key, though: its buckets and id ranges are integer arithmetic.
    execute(totesys_dsn, "ALTER TABLE design ALTER COLUMN design_id TYPE numeric(12,0)")
    with pytest.raises(SchemaDriftError, match="column 'design_id' is numeric\\(12,0\\)"):
        extract(totesys_dsn, Lake.from_uri(str(tmp_path)))


def test_a_schema_change_is_told_once_then_only_logged(totesys_dsn, tmp_path):
    lake = Lake.from_uri(str(tmp_path))
    extract(totesys_dsn, lake)
    execute(totesys_dsn, "ALTER TABLE staff ADD COLUMN nickname text")
    with connect(totesys_dsn) as conn:
        first = extract_batch(conn, lake)
        again = extract_batch(conn, lake)
    assert first.manifest is not None and first.manifest.rows == 0  # a batch to record it
    assert first.warnings == ["table 'staff' gained column 'nickname' (text); not extracted"]
    assert again.manifest is None and again.warnings == []


def test_the_watermark_never_passes_the_source_clock(totesys_dsn, tmp_path):
    lake = Lake.from_uri(str(tmp_path))
    extract(totesys_dsn, lake)
    now = "now() AT TIME ZONE 'UTC'"
    execute(
        totesys_dsn,
        f"UPDATE sales_order SET last_updated = {now} + interval '2 days' WHERE sales_order_id = 1",
    )
    # Reconciliation off: only the watermark can find the next change.
    never = ExtractSettings(reconcile_interval=timedelta(days=365), every_run_rows=0)
    with connect(totesys_dsn) as conn:
        future = extract_batch(conn, lake, never)
    assert future.manifest.tables["sales_order"].future_rows == 1
    assert future.manifest.tables["sales_order"].watermark < "2100"  # held at the clock
    assert "1 rows have a last_updated after the source's clock" in future.warnings[0]
    # Committed later with a timestamp before the future row's: still found.
    execute(totesys_dsn, f"UPDATE sales_order SET last_updated = {now} WHERE sales_order_id = 2")
    with connect(totesys_dsn) as conn:
        later = extract_batch(conn, lake, never)
    assert later.manifest.tables["sales_order"].changed_rows == 1
    assert later.warnings == []  # the future row was told about once


def test_reconciliation_finds_silent_edits_and_deletions_when_due(totesys_dsn, tmp_path):
    lake = Lake.from_uri(str(tmp_path))
    extract(totesys_dsn, lake)
    execute(totesys_dsn, "UPDATE design SET file_location = '/moved' WHERE design_id = 3")
    execute(totesys_dsn, "DELETE FROM payment WHERE payment_id = 250")
    hourly = ExtractSettings(reconcile_interval=timedelta(hours=1), every_run_rows=0)
    with connect(totesys_dsn) as conn:
        assert extract_batch(conn, lake, hourly).manifest is None  # not due: nothing seen
        forced = extract_batch(conn, lake, ExtractSettings(force_reconcile=True)).manifest
    design = forced.tables["design"]
    assert design.changed_rows == 0 and design.snapshot.buckets == (0,)
    text = lake.ingestion.get(design.key).decode()
    assert "/moved" in text
    payment = forced.tables["payment"]
    assert payment.snapshot.buckets == (2,)  # the bucket of id 250, re-read whole
    assert ",/moved," not in lake.ingestion.get(payment.key).decode()
    assert "\n250," not in lake.ingestion.get(payment.key).decode()


def test_small_tables_reconcile_every_run_and_large_ones_when_due(totesys_dsn, tmp_path):
    lake = Lake.from_uri(str(tmp_path))
    extract(totesys_dsn, lake)
    execute(totesys_dsn, "UPDATE design SET file_location = '/moved' WHERE design_id = 3")
    execute(
        totesys_dsn,
        "UPDATE sales_order SET agreed_delivery_date = '2031-01-01' WHERE sales_order_id = 3",
    )
    designs = one(totesys_dsn, "SELECT count(*) FROM design")
    # Tables up to the design table's size are small; sales orders are large.
    cadence = ExtractSettings(reconcile_interval=timedelta(hours=1), every_run_rows=designs)
    with connect(totesys_dsn) as conn:
        first = extract_batch(conn, lake, cadence).manifest
    assert first.tables["design"].snapshot.buckets == (0,)  # small: every run
    assert first.tables["sales_order"].snapshot is None  # large: not due for an hour
    assert first.tables["sales_order"].reconciled_rows > designs
    with connect(totesys_dsn) as conn:
        due = extract_batch(conn, lake, ExtractSettings(force_reconcile=True)).manifest
    assert due.tables["sales_order"].snapshot.buckets == (0,)


def test_a_second_session_surveys_in_the_same_snapshot(totesys_dsn, tmp_path):
    """With a helper session (as run_extract uses), the batch is the one a single session
    writes: same rows, counts, parts and checksums, for a first and a reconciling extract."""
    alone, helped = Lake.from_uri(str(tmp_path / "alone")), Lake.from_uri(str(tmp_path / "helped"))
    settings = ExtractSettings(part_rows=100, force_reconcile=True)
    silent_edit = "UPDATE sales_order SET units_sold = units_sold + 1 WHERE sales_order_id = 5"
    for edit in (None, silent_edit):
        if edit:
            execute(totesys_dsn, edit)
        with connect(totesys_dsn) as conn, connect(totesys_dsn) as helper:
            first = extract_batch(conn, alone, settings).manifest
            second = extract_batch(conn, helped, settings, helper).manifest
        for name, table in first.tables.items():
            other = second.tables[name]
            assert (table.rows, table.snapshot) == (other.rows, other.snapshot)
            assert [p.rows for p in table.files] == [p.rows for p in other.files]
            assert [alone.ingestion.get(p.key) for p in table.files] == [
                helped.ingestion.get(p.key) for p in other.files
            ]
            if table.checksums:
                assert alone.checksums(table.checksums) == helped.checksums(other.checksums)


def _sessions(conn, helper) -> ExtractSessions:
    """The extract's two sessions, the second with one small survey to do first."""
    conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
    return ExtractSessions(conn, helper, "2030-01-01T00:00:00.000", [source_table("currency")], 100)


def _backend(session, job: int) -> tuple[int, int]:
    with session.cursor() as cur:
        cur.execute("SELECT pg_backend_pid() FROM pg_sleep(0.05)")
        return job, cur.fetchone()[0]


def test_parts_are_shared_with_the_second_session_once_it_has_no_survey_left(totesys_dsn):
    with connect(totesys_dsn) as conn, connect(totesys_dsn) as helper:
        sessions = _sessions(conn, helper)
        try:
            done = sessions.share(range(1, 21), _backend)
        finally:
            sessions.close()
        pids = {conn.get_backend_pid(), helper.get_backend_pid()}
    assert [job for job, _ in done] == list(range(1, 21))  # in the jobs' order
    assert {pid for _, pid in done} == pids  # both sessions took some


@pytest.mark.parametrize("failing", ["first", "second"])
def test_a_failed_part_fails_the_extract_and_the_other_session_stops(failing, totesys_dsn):
    taken = []

    def copy_part(session, job: int) -> int:
        taken.append(job)
        if session is (conn if failing == "first" else helper):
            raise psycopg2.DatabaseError(f"the lake refused part {job}")
        _backend(session, job)
        return job

    with connect(totesys_dsn) as conn, connect(totesys_dsn) as helper:
        sessions = _sessions(conn, helper)
        try:
            with pytest.raises(psycopg2.DatabaseError, match="refused part"):
                sessions.share(range(1, 101), copy_part)
        finally:
            sessions.close()
    assert len(taken) < 10  # no part was started after the failure but one in hand


def test_tables_are_worked_smallest_first_and_listed_in_the_sources_order(totesys_dsn, tmp_path):
    execute(
        totesys_dsn,
        "INSERT INTO design (design_name, file_location, file_name, created_at, last_updated)"
        " SELECT 'Design ' || n, '/designs', 'design-' || n || '.jpg', now(), now()"
        " FROM generate_series(1, 5000) AS n",
    )
    with connect(totesys_dsn) as conn:
        order = [table.name for table in smallest_first(conn, SOURCE_TABLES)]
    sizes = [one(totesys_dsn, "SELECT pg_relation_size(%s::regclass)", (name,)) for name in order]
    assert sorted(order) == sorted(SOURCE_TABLE_NAMES)
    assert sizes == sorted(sizes)
    assert order[-1] == "design"  # the largest now, so worked last
    manifest = extract(totesys_dsn, Lake.from_uri(str(tmp_path)))
    assert list(manifest.tables) == list(SOURCE_TABLE_NAMES)
    assert manifest.tables["design"].rows == one(totesys_dsn, "SELECT count(*) FROM design")
