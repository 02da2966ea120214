"""The REAL state machine definition, executed by moto's Step Functions engine, with the
real Lambda handlers in-process against a small seeded ToteSys and a fresh warehouse.

Retry intervals are 1 s here, by substitution (never by editing the definition).
"""

from __future__ import annotations

import os
from pathlib import Path

import psycopg2
import pytest
from psycopg2 import sql

import totes.local_state_machine as lsm
from totes.embedded_postgres import EmbeddedPostgres
from totes.local import RunReport
from totes.seed import seed_totesys
from totes.source_schema import SOURCE_TABLE_NAMES
from totes.warehouse_schema import WAREHOUSE_TABLE_NAMES

pytestmark = pytest.mark.integration

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
def environment(seeded_source: str, new_database, tmp_path: Path) -> dict[str, str]:
    """What the handlers read: the shared source, a fresh warehouse, a fresh lake."""
    return {
        "SOURCE_DSN": seeded_source,
        "WAREHOUSE_DSN": new_database("warehouse"),
        "LAKE": str(tmp_path / "lake"),
    }


def counts(dsn: str, tables: tuple[str, ...]) -> dict[str, int]:
    """Rows per existing table (a table not created yet is left out)."""
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            result = {}
            for table in tables:
                cur.execute("SELECT to_regclass(%s) IS NOT NULL", (table,))
                if cur.fetchone()[0]:
                    cur.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
                    result[table] = cur.fetchone()[0]
            return result
    finally:
        conn.close()


def run(environment: dict[str, str], **kwargs) -> RunReport:
    return lsm.execute_pipeline(environment, retry_interval_seconds=1, **kwargs)


def count_calls(monkeypatch: pytest.MonkeyPatch, *, fail_first: dict[str, int] | None = None):
    """Record each handler call; optionally make a stage's database unreachable for its
    first N attempts (the real handler runs and raises our real DatabaseUnavailableError)."""
    calls: list[str] = []
    real = lsm.call_handler
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

    monkeypatch.setattr(lsm, "call_handler", calling)
    return calls


def test_a_run_loads_the_warehouse(environment: dict[str, str], monkeypatch) -> None:
    calls = count_calls(monkeypatch)
    report = run(environment)

    assert report.status == "SUCCEEDED", report
    assert calls == ["extract", "transform", "load"]
    assert report.alerts == []
    batch_id = report.extract["batch_id"]
    assert batch_id and report.extract["pending_batch_ids"] == [batch_id]
    assert report.transform["batch_ids"] == [batch_id]
    assert report.load["loaded_batch_ids"] == [batch_id]
    source = counts(environment["SOURCE_DSN"], SOURCE_TABLE_NAMES)
    assert report.extract["tables"] == {t: n for t, n in source.items() if n}
    warehouse = counts(environment["WAREHOUSE_DSN"], WAREHOUSE_TABLE_NAMES)
    for fact, source_table in FACTS.items():
        assert warehouse[fact] == source[source_table] > 0
        assert report.load["rows"][fact] == source[source_table]


def test_nothing_new_succeeds_without_transform_or_load(
    environment: dict[str, str], monkeypatch
) -> None:
    run(environment)
    before = counts(environment["WAREHOUSE_DSN"], WAREHOUSE_TABLE_NAMES)
    calls = count_calls(monkeypatch)

    report = run(environment)

    assert report.status == "SUCCEEDED", report
    assert calls == ["extract"]
    assert report.extract == {"batch_id": None, "rows": 0, "tables": {}, "pending_batch_ids": []}
    assert report.transform is None and report.load is None
    assert report.alerts == []
    assert counts(environment["WAREHOUSE_DSN"], WAREHOUSE_TABLE_NAMES) == before


def test_an_unreachable_warehouse_is_retried_then_the_run_succeeds(
    environment: dict[str, str], monkeypatch
) -> None:
    calls = count_calls(monkeypatch, fail_first={"load": 1})

    report = run(environment)

    assert report.status == "SUCCEEDED", report
    assert calls == ["extract", "transform", "load", "load"]
    assert report.alerts == []
    warehouse = counts(environment["WAREHOUSE_DSN"], WAREHOUSE_TABLE_NAMES)
    assert warehouse["fact_sales_order"] == report.load["rows"]["fact_sales_order"] > 0


def test_an_unreachable_source_is_retried_then_alerted_once(
    environment: dict[str, str], monkeypatch
) -> None:
    calls = count_calls(monkeypatch, fail_first={"extract": 99})

    report = run(environment)

    assert report.status == "FAILED"
    assert calls == ["extract"] * 4  # the first attempt and 3 retries
    (alert,) = report.alerts
    assert alert["subject"] == "Terrific Totes pipeline failed at Extract: DatabaseUnavailableError"
    assert "Message:    cannot connect to the database:" in alert["message"]
    assert "dbname" not in alert["message"]  # the DSN is not echoed
    assert counts(environment["WAREHOUSE_DSN"], WAREHOUSE_TABLE_NAMES) == {}


@pytest.mark.parametrize("stage", ["extract", "transform", "load"])
def test_a_permanent_failure_alerts_once_and_loads_nothing(
    environment: dict[str, str], monkeypatch, stage: str
) -> None:
    calls = count_calls(monkeypatch)
    before = counts(environment["WAREHOUSE_DSN"], WAREHOUSE_TABLE_NAMES)

    report = run(environment, fail_at=stage)

    assert report.status == "FAILED"
    # Not retried: an error that is not transient fails the same way every time.
    stages = ["extract", "transform", "load"]
    assert calls == stages[: stages.index(stage) + 1]
    (alert,) = report.alerts
    state = stage.capitalize()
    assert alert["subject"] == f"Terrific Totes pipeline failed at {state}: InjectedFailure"
    message = alert["message"]
    assert f"Stage:      {state}\n" in message
    assert "Error type: InjectedFailure\n" in message
    # The Lambda errorMessage itself, not the runtime's JSON around it.
    assert f"Message:    failure injected into the {stage} stage (TOTES_FAIL_AT)\n" in message
    assert "errorType" not in message and "stackTrace" not in message
    assert f"Execution:  {report.execution_name}\n" in message
    if stage == "extract":
        assert "Batch:      (none yet: the extract did not finish)\n" in message
        assert report.extract is None
    else:
        assert f"Batch:      [{report.extract['batch_id']}]\n" in message
    assert (
        "https://eu-west-2.console.aws.amazon.com/states/home?region=eu-west-2"
        "#/v2/executions/details/arn:aws:states:eu-west-2:"
    ) in message
    assert message.count(report.execution_name) == 2  # the name, and in the console link
    assert report.load is None
    assert counts(environment["WAREHOUSE_DSN"], WAREHOUSE_TABLE_NAMES) == before


def test_a_failed_load_is_picked_up_by_the_next_run(
    pg_server: EmbeddedPostgres, new_database, tmp_path: Path
) -> None:
    from totes.simulate import simulate

    source = new_database("source")
    seed_totesys(source, scale=SCALE)
    environment = {
        "SOURCE_DSN": source,
        "WAREHOUSE_DSN": new_database("warehouse"),
        "LAKE": str(tmp_path / "lake"),
    }
    assert run(environment).status == "SUCCEEDED"
    loaded = counts(environment["WAREHOUSE_DSN"], WAREHOUSE_TABLE_NAMES)
    simulate(source, minutes=3 * 24 * 60)

    failed = run(environment, fail_at="load")
    assert failed.status == "FAILED" and len(failed.alerts) == 1
    assert counts(environment["WAREHOUSE_DSN"], WAREHOUSE_TABLE_NAMES) == loaded
    batch_id = failed.extract["batch_id"]
    assert batch_id

    recovered = run(environment)
    assert recovered.status == "SUCCEEDED", recovered
    assert recovered.extract["batch_id"] is None  # nothing newer in ToteSys
    assert recovered.load["loaded_batch_ids"] == [batch_id]
    after = counts(environment["WAREHOUSE_DSN"], WAREHOUSE_TABLE_NAMES)
    assert after["fact_sales_order"] > loaded["fact_sales_order"]


def test_the_environment_is_restored_after_a_run(environment: dict[str, str]) -> None:
    before = {k: os.environ.get(k) for k in (*environment, "TOTES_FAIL_AT", "LOG_LEVEL")}
    run(environment, fail_at="extract")
    assert {k: os.environ.get(k) for k in before} == before


def test_an_s3_lake_is_moto_s3_and_must_exist(environment: dict[str, str], monkeypatch) -> None:
    # A local run executes on moto: an s3:// lake is moto's in-memory S3, never AWS.
    environment["LAKE"] = "s3://totes-lake-that-is-not-here/lake"
    with pytest.raises(lsm.LocalExecutionError, match="moto's in-memory S3"):
        run(environment)


def test_inside_a_callers_mock_an_s3_lake_works(environment: dict[str, str]) -> None:
    import boto3
    from moto import mock_aws

    environment["LAKE"] = "s3://totes-test-lake/lake"
    with mock_aws():
        boto3.client("s3", region_name="eu-west-2").create_bucket(
            Bucket="totes-test-lake",
            CreateBucketConfiguration={"LocationConstraint": "eu-west-2"},
        )
        first = run(environment)
        second = run(environment)
        keys = boto3.client("s3", region_name="eu-west-2").list_objects_v2(
            Bucket="totes-test-lake", Prefix="lake/processed/"
        )
    assert first.status == "SUCCEEDED", first
    assert first.load["loaded_batch_ids"] == [first.extract["batch_id"]]
    assert second.status == "SUCCEEDED" and second.load is None  # the lake outlived run one
    assert keys["KeyCount"] > 0


def test_a_failure_outside_the_alert_path_is_an_error(
    environment: dict[str, str], tmp_path: Path
) -> None:
    # A definition fault (here: the alert path reads a path nothing sets) fails the
    # execution with States.Runtime and sends nothing: that must never look like a normal
    # failure.
    broken = tmp_path / "broken.asl.json"
    text = lsm.DEFINITION_PATH.read_text(encoding="utf-8")
    assert "$.lambda_error.parsed.errorMessage)" in text
    text = text.replace("$.lambda_error.parsed.errorMessage)", "$.no_such.path)")
    broken.write_text(text, encoding="utf-8")
    with pytest.raises(lsm.LocalExecutionError, match="without an alert"):
        lsm.execute_pipeline(environment, fail_at="extract", definition_path=broken)
