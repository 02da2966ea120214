"""The fault suite: each way the warehouse could become wrong without anyone being told, run
on the REAL state machine definition on moto's engine with the real handlers.

Every case ends the same way: after healing (or an operator's explicit skip), the
warehouse equals ToteSys (the independent oracle finds no difference), and whatever needed
a person was said in an email.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg2
import pytest

import totes.pipeline.extract
import totes.pipeline.load
from tests.support.oracle import differences
from tests.support.sql import execute, one, query
from totes.local.report import RunReport
from totes.local.runner import RunSettings, execute_pipeline
from totes.pipeline.audit import run_audit
from totes.pipeline.lake import Lake
from totes.pipeline.object_store import LocalStore


@pytest.fixture
def settings(totesys_dsn: str, warehouse_dsn: str, tmp_path: Path) -> RunSettings:
    return RunSettings(
        source_dsn=totesys_dsn,
        warehouse_dsn=warehouse_dsn,
        lake=str(tmp_path / "lake"),
        retry_interval_seconds=1,
    )


def run(settings: RunSettings, **changes) -> RunReport:
    return execute_pipeline(dataclasses.replace(settings, **changes))


def lake_of(settings: RunSettings) -> Lake:
    return Lake.from_uri(settings.lake)


def healthy(settings: RunSettings) -> RunReport:
    """A run that must succeed and leave the warehouse equal to ToteSys: by the test's own
    oracle, and by `totes reconcile`'s audit (what an operator would run)."""
    report = run(settings)
    assert report.status == "SUCCEEDED", report
    assert differences(settings.source_dsn, settings.warehouse_dsn) == {}
    audit = run_audit(settings.source_dsn, settings.warehouse_dsn)
    assert audit.differences == 0, audit.to_dict()
    return report


def warning_email(report: RunReport) -> str:
    (alert,) = report.alerts
    assert alert["subject"] == "Terrific Totes pipeline: run succeeded with warnings"
    return alert["message"]


NOW = "now() AT TIME ZONE 'UTC'"  # the source's clock, as ToteSys stamps last_updated


def flip_paid(dsn: str, condition: str) -> None:
    """A visible update: payments marked (un)paid, last_updated bumped."""
    execute(dsn, f"UPDATE payment SET paid = NOT paid, last_updated = {NOW} WHERE {condition}")


def versions(settings: RunSettings, table: str, key: str, id_: int) -> int:
    return one(settings.warehouse_dsn, f"SELECT count(*) FROM {table} WHERE {key} = %s", (id_,))


def test_silent_edits_reach_the_warehouse_as_new_versions(settings: RunSettings) -> None:
    healthy(settings)
    source = settings.source_dsn
    order = one(source, "SELECT min(sales_order_id) FROM sales_order")
    design = one(source, "SELECT min(design_id) FROM design")
    # ToteSys's silent edits: content changes, last_updated does not.
    execute(
        source,
        "UPDATE sales_order SET staff_id = 5 + staff_id %% 10 WHERE sales_order_id = %s",
        (order,),
    )
    execute(source, "UPDATE design SET file_location = '/moved' WHERE design_id = %s", (design,))

    report = healthy(settings)

    assert report.load["rows"]["fact_sales_order"] == 1  # exactly the one new version
    assert versions(settings, "fact_sales_order", "sales_order_id", order) == 2
    assert (
        one(
            settings.warehouse_dsn,
            "SELECT file_location FROM dim_design WHERE design_id = %s",
            (design,),
        )
        == "/moved"
    )
    assert report.alerts == []


def test_a_last_updated_in_the_future_loses_nothing_and_is_reported_once(
    settings: RunSettings,
) -> None:
    healthy(settings)
    source = settings.source_dsn
    order = one(source, "SELECT min(sales_order_id) FROM sales_order")
    execute(
        source,
        "UPDATE sales_order SET last_updated = now() AT TIME ZONE 'UTC' + interval '2 days'"
        " WHERE sales_order_id = %s",
        (order,),
    )
    first = run(settings)
    assert "1 rows have a last_updated after the source's clock" in warning_email(first)
    # Committed later, stamped before the future row: a watermark at that row misses it.
    execute(
        source,
        "UPDATE payment SET paid = NOT paid, last_updated = now() AT TIME ZONE 'UTC'"
        " WHERE payment_id = (SELECT min(payment_id) FROM payment)",
    )
    second = healthy(settings)
    assert second.extract["changed"] == {"payment": 1}
    assert second.alerts == []  # told once, not every run


@pytest.mark.parametrize(
    ("column", "bad", "good"),
    [
        ("agreed_delivery_date", "2024-02-30", "2024-03-01"),  # a bad date in a text column
        ("units_sold", "3000000000", "3000"),  # outgrew int after an unnoticed retype
    ],
)
def test_a_bad_value_is_set_aside_named_and_delivered_once_corrected(
    settings: RunSettings, column: str, bad: str, good: str
) -> None:
    healthy(settings)
    source = settings.source_dsn
    if column == "units_sold":
        execute(source, "ALTER TABLE sales_order ALTER COLUMN units_sold TYPE bigint")
    order = one(source, "SELECT max(sales_order_id) FROM sales_order")
    execute(
        source,
        f"UPDATE sales_order SET {column} = %s, last_updated = now() AT TIME ZONE 'UTC'"
        " WHERE sales_order_id = %s",
        (bad, order),
    )
    execute(source, "UPDATE payment SET paid = NOT paid WHERE payment_id = 1")  # another change

    report = run(settings)

    assert report.status == "SUCCEEDED", report
    message = warning_email(report)
    assert f"sales_order: 1 rows set aside in batch {report.extract['batch_id']}" in message
    assert f"id {order}: column {column} = '{bad}'" in message
    assert "ingestion/sales_order/" in message  # the file, by name
    if column == "units_sold":
        assert "column 'units_sold' is bigint, not integer" in message
    assert report.transform["quarantined"] == {"sales_order": 1}
    assert report.load["rows"]["fact_payment"] == 1  # the rest of the batch was delivered
    (quarantine,) = [k for k in lake_of(settings).processed.list("_quarantine/")]
    assert bad in lake_of(settings).processed.get(quarantine).decode()

    # Someone corrects ToteSys without touching last_updated: reconciliation delivers it.
    execute(
        source, f"UPDATE sales_order SET {column} = %s WHERE sales_order_id = %s", (good, order)
    )
    healthy(settings)


def _extracted_not_transformed(settings: RunSettings) -> str:
    """A batch in the ingestion lake that the transform has not read yet."""
    failed = run(settings, fail_at="transform")
    assert failed.status == "FAILED"
    return failed.extract["batch_id"]


def test_a_truncated_csv_stops_every_run_until_skipped_then_its_rows_come_again(
    settings: RunSettings,
) -> None:
    healthy(settings)
    flip_paid(settings.source_dsn, "payment_id < 4")
    batch_id = _extracted_not_transformed(settings)
    lake = lake_of(settings)
    key = lake.ingestion_manifest(batch_id).tables["payment"].key
    path = Path(lake.ingestion.location(key))
    path.write_bytes(path.read_bytes()[:-25])  # truncated

    for _ in range(2):  # the same batch stops every run: nothing later overtakes it
        failed = run(settings)
        assert failed.status == "FAILED"
        (alert,) = failed.alerts
        assert (
            alert["subject"] == "Terrific Totes pipeline failed at Transform: IngestionFormatError"
        )
        assert "truncated" in alert["message"] and key in alert["message"]
        assert "totes skip" in alert["message"]

    lake.record_skip(batch_id, "payment CSV truncated", by="test", at="2026-11-28T00:00:00")
    repaired = healthy(settings)
    assert repaired.extract["batch_id"] is not None  # the repair batch
    register = dict(query(settings.warehouse_dsn, "SELECT batch_id, status FROM etl_loaded_batch"))
    assert register[batch_id] == "skipped"


def test_a_truncated_parquet_file_stops_the_load_until_skipped(settings: RunSettings) -> None:
    healthy(settings)
    execute(settings.source_dsn, "UPDATE design SET file_name = 'x.json' WHERE design_id = 1")
    failed = run(settings, fail_at="load")
    batch_id = failed.transform["batch_ids"][0]
    lake = lake_of(settings)
    key = lake.processed_manifest(batch_id).tables["dim_design"].key
    path = Path(lake.processed.location(key))
    path.write_bytes(path.read_bytes()[:100])

    failed = run(settings)
    assert (
        failed.alerts[0]["subject"] == "Terrific Totes pipeline failed at Load: ProcessedFileError"
    )
    lake.record_skip(batch_id, "dim_design parquet truncated", by="test", at="2026-11-28T00:00:00")
    healthy(settings)


def test_a_fact_whose_dimension_row_is_set_aside_waits_and_arrives_with_it(
    settings: RunSettings,
) -> None:
    healthy(settings)
    source = settings.source_dsn
    execute(source, "INSERT INTO currency (currency_code, last_updated) VALUES ('XQQ', now())")
    currency = one(source, "SELECT currency_id FROM currency WHERE currency_code = 'XQQ'")
    execute(
        source,
        f"UPDATE payment SET currency_id = %s, last_updated = {NOW} WHERE payment_id = 1",
        (currency,),
    )

    report = run(settings)

    assert report.status == "SUCCEEDED"
    message = warning_email(report)
    assert "currency" in message and "'XQQ'" in message
    assert "fact_payment: 1 rows of batch" in message and "wait for their dimension rows" in message
    assert report.load["waiting"] == {"fact_payment": 1}

    execute(source, "UPDATE currency SET currency_code = 'CHF' WHERE currency_id = %s", (currency,))
    later = healthy(settings)
    assert later.load["waiting"] == {}


def test_a_deleted_source_row_is_marked_deleted(settings: RunSettings) -> None:
    healthy(settings)
    payment = one(settings.source_dsn, "SELECT max(payment_id) FROM payment")
    execute(settings.source_dsn, "DELETE FROM payment WHERE payment_id = %s", (payment,))

    report = healthy(settings)

    assert report.load["deleted"] == {"fact_payment": 1}
    assert "marked in etl_deleted_row" in warning_email(report)
    assert (
        one(
            settings.warehouse_dsn,
            "SELECT count(*) FROM etl_deleted_row WHERE table_name = 'fact_payment' AND id = %s",
            (payment,),
        )
        == 1
    )
    assert versions(settings, "fact_payment", "payment_id", payment) == 1  # history is kept


def test_a_fresh_empty_warehouse_is_filled_from_the_lake(
    settings: RunSettings, new_database
) -> None:
    healthy(settings)
    flip_paid(settings.source_dsn, "payment_id = 2")
    healthy(settings)
    fresh = dataclasses.replace(settings, warehouse_dsn=new_database("fresh"))
    report = healthy(fresh)
    assert len(report.load["loaded_batch_ids"]) == 2


def test_replay_rebuilds_what_the_incremental_runs_built(settings: RunSettings) -> None:
    healthy(settings)
    execute(settings.source_dsn, "UPDATE sales_order SET design_id = 2 WHERE sales_order_id = 1")
    execute(
        settings.source_dsn,
        "DELETE FROM payment WHERE payment_id = (SELECT max(payment_id) FROM payment)",
    )
    healthy(settings)

    statements = {
        "fact_sales_order": "SELECT sales_order_id, version_hash, batch_id FROM fact_sales_order",
        "fact_payment": "SELECT payment_id, version_hash, batch_id FROM fact_payment",
        "dim_design": "SELECT * FROM dim_design",
        "etl_deleted_row": "SELECT table_name, id, batch_id FROM etl_deleted_row",
    }

    def content() -> dict[str, set]:
        return {t: set(query(settings.warehouse_dsn, q)) for t, q in statements.items()}

    incremental = content()
    for replay in ("all", "fact_sales_order", "dim_design"):
        report = run(settings, execution_input={"replay": replay})
        assert report.status == "SUCCEEDED", report
        assert content() == incremental, replay
        # How many batches, through the state machine's selectors (the list is capped).
        assert report.load["loaded_batches"] == len(report.load["loaded_batch_ids"]) == 2
        if replay == "fact_sales_order":  # every batch's versions counted, not the last's
            assert report.load["rows"] == {"fact_sales_order": len(incremental[replay])}
    assert differences(settings.source_dsn, settings.warehouse_dsn) == {}


@pytest.fixture
def terminate_once(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict]:
    """Kill a stage's own database session in the middle of its work, once."""
    state = {"armed": None}

    def wrap(module, name: str):
        real = getattr(module, name)

        def killing(cur, *args, **kwargs):
            if state["armed"] == name:
                state["armed"] = None
                with psycopg2.connect(cur.connection.dsn) as other, other.cursor() as killer:
                    killer.execute(
                        "SELECT pg_terminate_backend(%s)", (cur.connection.get_backend_pid(),)
                    )
            return real(cur, *args, **kwargs)

        monkeypatch.setattr(module, name, killing)

    wrap(totes.pipeline.load, "append_facts")
    yield state


def test_the_warehouse_going_away_mid_load_is_retried_and_nothing_is_half_loaded(
    settings: RunSettings, terminate_once: dict
) -> None:
    healthy(settings)  # a new warehouse's first batch is built, not appended: load it first
    flip_paid(settings.source_dsn, "payment_id < 4")
    terminate_once["armed"] = "append_facts"
    report = healthy(settings)
    assert terminate_once["armed"] is None  # the session was killed mid-load
    assert report.alerts == []  # retried (DatabaseUnavailableError), then loaded whole


def test_the_source_going_away_mid_extract_is_retried(
    settings: RunSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = totes.pipeline.extract.copy_to
    killed = []

    def copy_then_die(conn, table, where, stream):
        if table.name == "payment" and not killed:
            killed.append(table.name)
            with psycopg2.connect(settings.source_dsn) as other, other.cursor() as killer:
                killer.execute("SELECT pg_terminate_backend(%s)", (conn.get_backend_pid(),))
        return real(conn, table, where, stream)

    monkeypatch.setattr(totes.pipeline.extract, "copy_to", copy_then_die)
    report = healthy(settings)
    assert killed == ["payment"] and report.alerts == []


def test_a_lake_write_failing_mid_extract_leaves_no_batch_and_the_next_run_delivers(
    settings: RunSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = LocalStore.open_new
    checksum_files = []

    @contextmanager
    def failing(store, key):
        if "_checksums/" in key:
            checksum_files.append(key)
        with real(store, key) as stream:
            if len(checksum_files) == 4:  # the disk fills up writing the fourth table's
                stream.write(b'{"buckets": {"0": [')
                raise OSError(28, "No space left on device")
            yield stream

    monkeypatch.setattr(LocalStore, "open_new", failing)
    failed = run(settings)
    assert failed.status == "FAILED"
    assert "No space left on device" in failed.alerts[0]["message"]
    assert len(checksum_files) == 4  # it failed in the extract, after three tables
    assert lake_of(settings).extracted_batches() == []  # no manifest: no batch
    monkeypatch.setattr(LocalStore, "open_new", real)
    healthy(settings)


def test_a_lake_write_failing_mid_csv_leaves_no_batch_and_the_next_run_delivers(
    settings: RunSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = LocalStore.open_new
    streams = []

    @contextmanager
    def failing(store, key):
        streams.append(key)
        with real(store, key) as stream:
            if len(streams) == 3:  # the disk fills up half way through the third CSV
                stream.write(b"sales_order_id,created_at\n1,")
                raise OSError(28, "No space left on device")
            yield stream

    monkeypatch.setattr(LocalStore, "open_new", failing)
    failed = run(settings)
    assert failed.status == "FAILED"
    assert "No space left on device" in failed.alerts[0]["message"]
    assert lake_of(settings).extracted_batches() == []  # no manifest: no batch
    # The half-written CSV was never published (the two before it are, unreferenced).
    assert not lake_of(settings).ingestion.exists(streams[2])
    monkeypatch.setattr(LocalStore, "open_new", real)
    healthy(settings)


def test_injected_failures_in_each_stage_heal_on_the_next_run(settings: RunSettings) -> None:
    for stage in ("extract", "transform", "load"):
        flip_paid(settings.source_dsn, "payment_id = 3")
        assert run(settings, fail_at=stage).status == "FAILED"
        healthy(settings)
    assert os.environ.get("TOTES_FAIL_AT") is None
