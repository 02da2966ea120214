"""The REAL state machine definition, executed by moto's Step Functions engine, with the
real Lambda handlers in-process against a small seeded ToteSys and a fresh warehouse.

Retry intervals are 1 s here, by substitution (never by editing the definition).
"""

from __future__ import annotations

import dataclasses
import os
import threading
from pathlib import Path

import pytest
from psycopg2 import sql

import totes.local.invoke
from tests.support.sql import one
from totes.contract import FUNCTION_LIMITS, FunctionLimits, read_definition
from totes.local.embedded_postgres import EmbeddedPostgres
from totes.local.report import RunReport
from totes.local.runner import LocalExecutionError, RunSettings, execute_pipeline
from totes.pipeline.db import connect
from totes.pipeline.load import ensure_warehouse
from totes.schema.source import SOURCE_TABLE_NAMES
from totes.schema.warehouse import WAREHOUSE_TABLE_NAMES
from totes.totesys.seed import seed_totesys

SCALE = 0.02
# A socket folder that does not exist: connecting fails at once with our real error.
UNREACHABLE_DSN = "host=/nonexistent/totes-test dbname=nowhere connect_timeout=1"
FACTS = {
    "fact_sales_order": "sales_order",
    "fact_purchase_order": "purchase_order",
    "fact_payment": "payment",
}


@pytest.fixture(scope="module")
def seeded_source(pg_server: EmbeddedPostgres):
    """One small, realistic ToteSys shared by the module: the pipeline only reads it."""
    name = "t_sfn_source"
    dsn = pg_server.ensure_database(name)
    seed_totesys(dsn, scale=SCALE)
    yield dsn
    pg_server.drop_database(name)


@pytest.fixture
def settings(seeded_source: str, new_database, tmp_path: Path) -> RunSettings:
    """The shared source, a fresh warehouse, a fresh lake; retries after 1 s."""
    return RunSettings(
        source_dsn=seeded_source,
        warehouse_dsn=new_database("warehouse"),
        lake=str(tmp_path / "lake"),
        retry_interval_seconds=1,
    )


def counts(dsn: str, tables: tuple[str, ...]) -> dict[str, int]:
    """Rows per existing table (a table not created yet is left out)."""
    return {
        table: one(dsn, sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
        for table in tables
        if one(dsn, "SELECT to_regclass(%s) IS NOT NULL", (table,))
    }


def run(settings: RunSettings, **changes) -> RunReport:
    return execute_pipeline(dataclasses.replace(settings, **changes))


def count_calls(monkeypatch: pytest.MonkeyPatch, *, fail_first: dict[str, int] | None = None):
    """Record each handler call; optionally make a stage's database unreachable for its
    first N attempts (the real handler runs and raises our real DatabaseUnavailableError)."""
    calls: list[str] = []
    real = totes.local.invoke.call_handler
    fail_first = dict(fail_first or {})

    def calling(stage, event, context):
        calls.append(stage)
        if fail_first.get(stage, 0) > 0:
            fail_first[stage] -= 1
            variable = "WAREHOUSE_DSN" if stage == "load" else "SOURCE_DSN"
            saved = os.environ[variable]
            os.environ[variable] = UNREACHABLE_DSN
            try:
                return real(stage, event, context)
            finally:
                os.environ[variable] = saved
        return real(stage, event, context)

    monkeypatch.setattr(totes.local.invoke, "call_handler", calling)
    return calls


def test_a_run_loads_the_warehouse(settings: RunSettings, monkeypatch) -> None:
    calls = count_calls(monkeypatch)
    report = run(settings)

    assert report.status == "SUCCEEDED", report
    assert calls == ["extract", "transform", "load"]
    assert report.alerts == []
    batch_id = report.extract["batch_id"]
    assert batch_id and report.transform["batch_ids"] == [batch_id]
    assert report.load["loaded_batch_ids"] == [batch_id]
    source = counts(settings.source_dsn, SOURCE_TABLE_NAMES)
    assert report.extract["tables"] == {t: n for t, n in source.items() if n}
    warehouse = counts(settings.warehouse_dsn, WAREHOUSE_TABLE_NAMES)
    for fact, source_table in FACTS.items():
        assert warehouse[fact] == source[source_table] > 0
        assert report.load["rows"][fact] == source[source_table]


def test_nothing_new_succeeds_and_changes_nothing(settings: RunSettings, monkeypatch) -> None:
    run(settings)
    before = counts(settings.warehouse_dsn, WAREHOUSE_TABLE_NAMES)
    calls = count_calls(monkeypatch)

    report = run(settings)

    assert report.status == "SUCCEEDED", report
    # Transform and load always run: they find work the lake or the warehouse has pending.
    assert calls == ["extract", "transform", "load"]
    assert report.extract["batch_id"] is None and report.extract["rows"] == 0
    assert report.transform["batch_ids"] == [] and report.load["loaded_batch_ids"] == []
    assert report.alerts == []
    assert counts(settings.warehouse_dsn, WAREHOUSE_TABLE_NAMES) == before


def test_an_unreachable_warehouse_is_retried_then_the_run_succeeds(
    settings: RunSettings, monkeypatch
) -> None:
    calls = count_calls(monkeypatch, fail_first={"load": 1})

    report = run(settings)

    assert report.status == "SUCCEEDED", report
    assert calls == ["extract", "transform", "load", "load"]
    assert report.alerts == []
    warehouse = counts(settings.warehouse_dsn, WAREHOUSE_TABLE_NAMES)
    assert warehouse["fact_sales_order"] == report.load["rows"]["fact_sales_order"] > 0


def test_an_unreachable_source_is_retried_then_alerted_once(
    settings: RunSettings, monkeypatch
) -> None:
    calls = count_calls(monkeypatch, fail_first={"extract": 99})

    report = run(settings)

    assert report.status == "FAILED"
    assert calls == ["extract"] * 4  # the first attempt and 3 retries
    (alert,) = report.alerts
    assert alert["subject"] == "Terrific Totes pipeline failed at Extract: DatabaseUnavailableError"
    # Which database (host and name, never the password), and libpq's reason.
    assert (
        "Message:    cannot connect to the database /nonexistent/totes-test/nowhere: "
        in alert["message"]
    )
    assert "dbname" not in alert["message"]  # the DSN is not echoed
    assert counts(settings.warehouse_dsn, WAREHOUSE_TABLE_NAMES) == {}


def test_a_call_past_its_deployed_time_limit_is_warned_of(settings: RunSettings, monkeypatch):
    # The handlers run in-process, unbounded: the run says what AWS would have stopped.
    limits = {**FUNCTION_LIMITS, "load": FunctionLimits(1024, 0)}
    monkeypatch.setattr(totes.local.invoke, "FUNCTION_LIMITS", limits)
    progress: list[str] = []
    report = execute_pipeline(settings, progress=progress.append)
    assert report.status == "SUCCEEDED"
    warned = [line.strip() for line in progress if "warning" in line]
    assert len(warned) == 1 and warned[0].startswith("warning: load took ")
    assert warned[0].endswith("past its deployed limit of 0 s: on AWS this call would have"
                              " been stopped, and the run would have failed")  # fmt: skip


@pytest.mark.parametrize("stage", ["extract", "transform", "load"])
def test_a_permanent_failure_alerts_once_and_loads_nothing(
    settings: RunSettings, monkeypatch, stage: str
) -> None:
    before = counts(settings.warehouse_dsn, WAREHOUSE_TABLE_NAMES)
    progress: list[str] = []

    report = execute_pipeline(
        dataclasses.replace(settings, fail_at=stage), progress=progress.append
    )

    assert report.status == "FAILED"
    # Not retried: an error that is not transient fails the same way every time.
    stages = ["extract", "transform", "load"]
    started = [line.strip().removesuffix(" ...") for line in progress if line.endswith(" ...")]
    assert started == stages[: stages.index(stage) + 1]
    (alert,) = report.alerts
    state = stage.capitalize()
    assert alert["subject"] == f"Terrific Totes pipeline failed at {state}: InjectedFailure"
    message = alert["message"]
    assert f"Stage:      {state}\n" in message
    assert "Error type: InjectedFailure\n" in message
    # The Lambda errorMessage itself, not the runtime's JSON around it.
    assert f"Message:    failure injected into the {stage} stage (--fail-at)\n" in message
    assert "errorType" not in message and "stackTrace" not in message
    assert f"Execution:  {report.execution_name}\n" in message
    if stage == "extract":
        assert "Batch:      (none yet: the extract did not finish)\n" in message
        assert report.extract is None
    else:
        batch_id = report.extract["batch_id"]
        assert f"Batch:      the batch named in the message (newest extracted: {batch_id})\n" in (
            message
        )
        assert f"Message:    failure injected into the {stage} stage" in message
    assert (
        "https://eu-west-2.console.aws.amazon.com/states/home?region=eu-west-2"
        "#/v2/executions/details/arn:aws:states:eu-west-2:"
    ) in message
    assert message.count(report.execution_name) == 2  # the name, and in the console link
    assert report.load is None
    assert counts(settings.warehouse_dsn, WAREHOUSE_TABLE_NAMES) == before


def test_a_failed_load_is_picked_up_by_the_next_run(
    pg_server: EmbeddedPostgres, new_database, tmp_path: Path
) -> None:
    from totes.totesys.simulate import simulate

    source = new_database("source")
    seed_totesys(source, scale=SCALE)
    settings = RunSettings(
        source_dsn=source,
        warehouse_dsn=new_database("warehouse"),
        lake=str(tmp_path / "lake"),
        retry_interval_seconds=1,
    )
    assert run(settings).status == "SUCCEEDED"
    loaded = counts(settings.warehouse_dsn, WAREHOUSE_TABLE_NAMES)
    simulate(source, minutes=3 * 24 * 60)

    failed = run(settings, fail_at="load")
    assert failed.status == "FAILED" and len(failed.alerts) == 1
    assert counts(settings.warehouse_dsn, WAREHOUSE_TABLE_NAMES) == loaded
    batch_id = failed.extract["batch_id"]
    assert batch_id

    recovered = run(settings)
    assert recovered.status == "SUCCEEDED", recovered
    assert recovered.extract["batch_id"] is None  # nothing newer in ToteSys
    assert recovered.load["loaded_batch_ids"] == [batch_id]
    after = counts(settings.warehouse_dsn, WAREHOUSE_TABLE_NAMES)
    assert after["fact_sales_order"] > loaded["fact_sales_order"]


def test_the_environment_is_restored_after_a_run(settings: RunSettings) -> None:
    before = {k: os.environ.get(k) for k in (*settings.handler_environment(), "AWS_ACCESS_KEY_ID")}
    run(settings, fail_at="extract")
    assert {k: os.environ.get(k) for k in before} == before


def test_an_s3_lake_is_moto_s3_and_must_exist(settings: RunSettings, monkeypatch) -> None:
    # A local run executes on moto: an s3:// lake is moto's in-memory S3, never AWS.
    with pytest.raises(LocalExecutionError, match="moto's in-memory S3"):
        run(settings, lake="s3://totes-lake-that-is-not-here/lake")


def test_inside_a_callers_mock_an_s3_lake_works(settings: RunSettings) -> None:
    import boto3
    from moto import mock_aws

    settings = dataclasses.replace(settings, lake="s3://totes-test-lake/lake")
    with mock_aws():
        boto3.client("s3", region_name="eu-west-2").create_bucket(
            Bucket="totes-test-lake",
            CreateBucketConfiguration={"LocationConstraint": "eu-west-2"},
        )
        first = run(settings)
        second = run(settings)
        keys = boto3.client("s3", region_name="eu-west-2").list_objects_v2(
            Bucket="totes-test-lake", Prefix="lake/processed/"
        )
    assert first.status == "SUCCEEDED", first
    assert first.load["loaded_batch_ids"] == [first.extract["batch_id"]]
    assert second.status == "SUCCEEDED"
    assert second.load["loaded_batch_ids"] == []  # the lake outlived run one
    assert keys["KeyCount"] > 0


def test_a_failure_outside_the_alert_path_is_an_error(
    settings: RunSettings, tmp_path: Path
) -> None:
    # A definition fault (here: the alert path reads a path nothing sets) fails the
    # execution with States.Runtime and sends nothing: that must never look like a normal
    # failure.
    text = read_definition()
    assert "$.lambda_error.parsed.errorMessage)" in text
    broken = text.replace("$.lambda_error.parsed.errorMessage)", "$.no_such.path)")
    with pytest.raises(LocalExecutionError, match="without an alert"):
        run(settings, fail_at="extract", definition=broken)


def recorded_calls(monkeypatch) -> list[tuple[str, dict]]:
    """Every handler call the state machine makes, (stage, event), as it makes them."""
    events: list[tuple[str, dict]] = []
    real = totes.local.invoke.call_handler

    def recording(stage, event, context):
        events.append((stage, event))
        return real(stage, event, context)

    monkeypatch.setattr(totes.local.invoke, "call_handler", recording)
    return events


def test_a_big_batch_fans_out_on_the_maps_and_loads_the_warehouse(
    settings: RunSettings, monkeypatch
) -> None:
    with connect(settings.warehouse_dsn) as conn:
        ensure_warehouse(conn)  # a warehouse with tables: a big batch is staged on the Map
    events = recorded_calls(monkeypatch)
    # The first two calls of each Map wait for each other: they can only meet if the runner
    # runs a Map's iterations side by side, as AWS does (else the wait times out).
    recording = totes.local.invoke.call_handler
    meetings = {"unit": threading.Barrier(2, timeout=30), "part": threading.Barrier(2, timeout=30)}
    arrived = {kind: 0 for kind in meetings}
    counting = threading.Lock()

    def meeting(stage, event, context):
        kind = next((k for k in meetings if k in event), None)
        if kind is not None:
            with counting:
                arrived[kind] += 1
                first_two = arrived[kind] <= 2
            if first_two:
                meetings[kind].wait()
        return recording(stage, event, context)

    monkeypatch.setattr(totes.local.invoke, "call_handler", meeting)
    report = run(settings, stage_settings={"PART_ROWS": "40"})

    assert report.status == "SUCCEEDED", report
    batch_id = report.extract["batch_id"]
    transform_calls = [event for stage, event in events if stage == "transform"]
    # Listed (not done), then one call per unit on the Map, then the call that finishes.
    assert transform_calls[0] == {"fan_out": True}
    unit_calls = transform_calls[1:-1]
    assert len(unit_calls) > 3
    assert sorted(e["unit"] for e in unit_calls) == list(range(len(unit_calls)))
    assert {e["batch_id"] for e in unit_calls} == {batch_id}
    assert transform_calls[-1] == {}
    load_calls = [event for stage, event in events if stage == "load"]
    # Listed (not loaded), one call per part staged on the Map, then the one merge.
    assert load_calls[0] == {"fan_out": True}
    stage_calls = load_calls[1:-1]
    assert {e["table"] for e in stage_calls} >= set(FACTS)
    assert len({(e["table"], e["part"]) for e in stage_calls}) == len(stage_calls)
    assert load_calls[-1] == {}
    assert [stage for stage, _ in events] == [
        "extract",
        *["transform"] * len(transform_calls),
        *["load"] * len(load_calls),
    ]
    assert report.transform["batch_ids"] == [batch_id]
    assert report.load["loaded_batch_ids"] == [batch_id]
    source = counts(settings.source_dsn, SOURCE_TABLE_NAMES)
    warehouse = counts(settings.warehouse_dsn, WAREHOUSE_TABLE_NAMES)
    for fact, source_table in FACTS.items():
        assert warehouse[fact] == source[source_table] > 40  # more than one part each


def test_a_new_warehouses_big_first_batch_is_built_in_one_load_call(
    settings: RunSettings, monkeypatch
) -> None:
    events = recorded_calls(monkeypatch)
    report = run(settings, stage_settings={"PART_ROWS": "40"})

    assert report.status == "SUCCEEDED", report
    transform_calls = [event for stage, event in events if stage == "transform"]
    assert len(transform_calls) > 3  # the transform still fans out on its Map
    load_calls = [event for stage, event in events if stage == "load"]
    assert load_calls == [{"fan_out": True}]  # no Map: built by parallel sessions (load_build)
    assert report.load["loaded_batch_ids"] == [report.extract["batch_id"]]
    source = counts(settings.source_dsn, SOURCE_TABLE_NAMES)
    warehouse = counts(settings.warehouse_dsn, WAREHOUSE_TABLE_NAMES)
    for fact, source_table in FACTS.items():
        assert warehouse[fact] == source[source_table] > 40
