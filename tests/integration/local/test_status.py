"""`totes status`: what the on-call person sees after runs, locally and on AWS (moto)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from moto import mock_aws

from tests.support.sql import execute
from totes.contract import Names
from totes.local import environment
from totes.local.cli import main
from totes.local.runner import RunSettings, execute_pipeline
from totes.local.status import (
    FRESHNESS_PROMISE,
    Execution,
    StateMachineNotFoundError,
    alarms_firing,
    aws_executions,
    collect,
    find_state_machine,
    freshness,
)
from totes.local.status_view import format_status
from totes.pipeline.db import connect
from totes.pipeline.lake import IngestionManifest, Lake, manifest_key
from totes.pipeline.load import ensure_warehouse
from totes.totesys import seed
from totes.totesys.database import read_only_dsn


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_after_a_run_and_a_failed_load_status_shows_the_failure_and_the_pending_batch(
    capsys, state_dir
):
    source = environment.source_dsn()
    seed.seed_totesys(source, seed=3, scale=0.02)
    code, _, err = run_cli(capsys, "run", "--fail-at", "load")
    assert code == 1, err

    code, out, _ = run_cli(capsys, "status", "--json")
    assert code == 0
    status = json.loads(out)
    [failed] = status["executions"]
    assert failed["status"] == "FAILED"
    assert failed["error"] == "Terrific Totes pipeline failed at Load: InjectedFailure"
    assert failed["extracted"]["sales_order"] > 0 and failed["loaded"] == {}
    assert status["pending"] == [{"batch_id": failed["batch_id"], "stage": "transformed"}]
    assert status["last_alert"]["execution"] == failed["name"]
    assert status["freshness"]["kept"] is False  # no run has succeeded yet
    # The extract itself succeeded: every watermark is ToteSys's latest.
    lags = {t["table"]: t for t in status["tables"]}
    assert lags["sales_order"]["lag_seconds"] == 0
    assert lags["sales_order"]["watermark"] == lags["sales_order"]["source_latest"]
    assert status["notes"] == []

    code, out, _ = run_cli(capsys, "status")
    assert "FAILED" in out and "Terrific Totes pipeline failed at Load: InjectedFailure" in out
    assert f"Pending batches (in the lake, not in the warehouse): 1\n  {failed['batch_id']}" in out
    assert "Last alert:" in out and failed["name"] in out

    # The next run delivers the pending batch; the warehouse's register says so.
    assert run_cli(capsys, "run")[0] == 0
    status = json.loads(run_cli(capsys, "status", "--json")[1])
    succeeded = status["executions"][0]
    assert succeeded["status"] == "SUCCEEDED" and status["freshness"]["kept"] is True
    assert succeeded["loaded_batch_ids"] == [failed["batch_id"]]
    assert succeeded["loaded"]["fact_sales_order"] == failed["extracted"]["sales_order"]
    assert status["pending"] == []
    # Until another alert, the failed run's stays the last one.
    assert status["last_alert"]["execution"] == failed["name"]


def test_freshness_is_the_age_of_the_last_successful_run():
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

    def run(status: str, minutes_ago: int) -> Execution:
        stopped = (now - timedelta(minutes=minutes_ago)).isoformat()
        return Execution("x", status, stopped, stopped, 0.0, None)

    assert freshness([run("FAILED", 1), run("SUCCEEDED", 29)], now).kept is True
    late = freshness([run("FAILED", 1), run("SUCCEEDED", 31)], now)
    assert late.kept is False and late.age_seconds == 31 * 60
    assert late.promise_seconds == FRESHNESS_PROMISE.total_seconds()
    assert freshness([run("FAILED", 1)], now).kept is False
    assert "BROKEN: no successful run recorded" in format_status(
        collect(mode="local", read_executions=lambda: ([], None), lake=None, source_dsn=None,
                warehouse_dsn=None, now=now)
    )  # fmt: skip


def test_what_cannot_be_read_is_a_note_without_the_password(tmp_path, warehouse_dsn):
    unreachable = "host=127.0.0.1 port=1 dbname=totesys user=reader password=hunter2-status"
    status = collect(
        mode="local",
        read_executions=lambda: ([], None),
        lake=Lake.from_uri(str(tmp_path / "lake")),
        source_dsn=unreachable,
        warehouse_dsn=unreachable.replace("totesys", "wh"),
    )
    text = status.to_json() + format_status(status)
    assert "hunter2-status" not in text
    assert any(n.startswith("ToteSys: DatabaseUnavailableError") for n in status.notes)
    assert any(n.startswith("warehouse: DatabaseUnavailableError") for n in status.notes)
    assert "reader@127.0.0.1:1/totesys" in text
    assert [t.table for t in status.tables][:2] == ["address", "counterparty"]  # still shown
    # Never "none pending" when the warehouse's register could not be read.
    assert not status.pending_known
    assert "Pending batches: UNKNOWN" in format_status(status)
    assert "Pending batches: none" not in format_status(status)


def test_status_exits_2_when_part_of_it_could_not_be_read(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("WAREHOUSE_DSN", "host=127.0.0.1 port=1 dbname=wh user=u")
    monkeypatch.setenv("SOURCE_DSN", "host=127.0.0.1 port=1 dbname=totesys user=u")
    code, out, _ = run_cli(capsys, "status", "--lake", str(tmp_path / "lake"))
    assert code == 2
    assert "Could not read:" in out and "Pending batches: UNKNOWN" in out


@pytest.fixture
def aws(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-2")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        boto3.client("s3").create_bucket(
            Bucket="lake", CreateBucketConfiguration={"LocationConstraint": "eu-west-2"}
        )
        yield


def test_on_aws_status_reads_the_state_machines_history(aws, totesys_dsn, warehouse_dsn):
    settings = RunSettings(
        source_dsn=read_only_dsn(totesys_dsn, "totes_reader"),
        warehouse_dsn=warehouse_dsn,
        lake="s3://lake",
    )
    execute_pipeline(RunSettings(**{**settings.__dict__, "fail_at": "load"}))
    execute_pipeline(settings)  # loads the batch the failed run left pending
    sfn = boto3.client("stepfunctions")
    # Each local run makes its own state machine (in this test's moto): read each one's.
    read = [
        aws_executions(sfn, machine["stateMachineArn"], limit=10)
        for machine in sfn.list_state_machines()["stateMachines"]
    ]
    by_status = {executions[0].status: (executions[0], alert) for executions, alert in read}
    failed, alert = by_status["FAILED"]
    assert failed.extracted["sales_order"] > 0 and failed.loaded == {}
    assert alert.subject == "Terrific Totes pipeline failed at Load: InjectedFailure"
    assert "Stage:      Load" in alert.message and alert.execution == failed.name
    succeeded, no_alert = by_status["SUCCEEDED"]
    assert no_alert is None and succeeded.error is None
    assert succeeded.loaded["fact_sales_order"] == failed.extracted["sales_order"]
    assert succeeded.duration_seconds is not None


def test_status_aws_on_the_command_line(aws, capsys, totesys_dsn, warehouse_dsn, monkeypatch):
    names = Names("prod")
    sfn = boto3.client("stepfunctions")
    iam = boto3.client("iam")
    role = iam.create_role(RoleName="sm", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    definition = json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}})
    sfn.create_state_machine(name=names.state_machine, definition=definition, roleArn=role)
    cloudwatch = boto3.client("cloudwatch")
    for name in (names.alarm("NoSuccessfulRun"), Names("dev").alarm("NoSuccessfulRun")):
        cloudwatch.put_metric_alarm(
            AlarmName=name, MetricName="ExecutionsSucceeded", Namespace="AWS/States",
            Statistic="Sum", Period=1800, EvaluationPeriods=1, Threshold=1,
            ComparisonOperator="LessThanThreshold",
        )  # fmt: skip
        cloudwatch.set_alarm_state(AlarmName=name, StateValue="ALARM", StateReason="test")
    assert alarms_firing(cloudwatch, names) == [names.alarm("NoSuccessfulRun")]
    monkeypatch.setenv("LAKE", "s3://lake")
    monkeypatch.setenv("SOURCE_DSN", totesys_dsn)
    monkeypatch.setenv("WAREHOUSE_DSN", warehouse_dsn)

    code, out, err = run_cli(capsys, "status", "--aws", "--environment", "prod")
    assert code == 0, err
    assert "Terrific Totes status (aws, terrific-totes-prod)" in out
    assert "Recent executions: none recorded" in out
    assert "Alarms firing now:\n  terrific-totes-prod.NoSuccessfulRun" in out
    assert "sales_order" in out and "never extracted" in out  # ToteSys read, lake empty

    with pytest.raises(StateMachineNotFoundError, match="terrific-totes-test-pipeline"):
        find_state_machine(sfn, Names("test").state_machine)


def test_skip_on_aws_writes_to_the_deployments_ingestion_bucket(aws, monkeypatch, capsys):
    """The Lambdas keep each lake at its bucket's root, in two buckets: the runbook's skip
    must find the batch there."""
    s3 = boto3.client("s3")
    for bucket in ("ingestion-bucket", "processed-bucket"):
        s3.create_bucket(
            Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-2"}
        )
    deployed = Lake.from_buckets("ingestion-bucket", "processed-bucket")
    batch_id = "20261128T153347656456Z"
    deployed.ingestion.put_new(
        manifest_key(batch_id), IngestionManifest(batch_id, None, {}).to_json()
    )
    monkeypatch.setenv("INGESTION_BUCKET", "ingestion-bucket")
    monkeypatch.setenv("PROCESSED_BUCKET", "processed-bucket")
    monkeypatch.delenv("LAKE", raising=False)

    code, out, err = run_cli(capsys, "skip", batch_id, "--reason", "truncated CSV", "--aws")

    assert code == 0, err
    assert f"Batch {batch_id} is skipped (truncated CSV)" in out
    assert list(deployed.skipped()) == [batch_id]


def test_the_environment_may_come_from_the_dotenv_file(aws, capsys, monkeypatch, tmp_path):
    env_file = tmp_path / "laptop.env"
    env_file.write_text("TOTES_ENVIRONMENT=prod\nLAKE=s3://lake\n")
    monkeypatch.setenv("TOTES_ENV_FILE", str(env_file))
    for name in ("TOTES_ENVIRONMENT", "LAKE"):
        # Set, then removed: monkeypatch then removes what the .env file sets, after the test
        # (a LAKE left behind sent a later test's runs to an S3 bucket).
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    _, out, _ = run_cli(capsys, "status", "--aws")
    assert "Terrific Totes status (aws, terrific-totes-prod)" in out


def test_fact_rows_waiting_for_a_dimension_row_stay_in_sight(tmp_path, warehouse_dsn):
    with connect(warehouse_dsn) as conn:
        ensure_warehouse(conn)
    execute(
        warehouse_dsn,
        "INSERT INTO etl_waiting_row (table_name, id, batch_id, row, missing, waiting_since)"
        " VALUES ('fact_payment', 7, '20261128T153347656456Z', '{}', 'dim_transaction 9',"
        " '2026-11-28 15:40:00+00'), ('fact_payment', 8, '20261128T160000000000Z', '{}',"
        " 'dim_transaction 9', '2026-11-28 16:00:00+00')",
    )
    status = collect(
        mode="local",
        read_executions=lambda: ([], None),
        lake=Lake.from_uri(str(tmp_path / "lake")),
        source_dsn=None,
        warehouse_dsn=warehouse_dsn,
    )
    assert [(w.table, w.rows) for w in status.waiting] == [("fact_payment", 2)]
    shown = format_status(status)
    assert "Fact rows waiting for a dimension row (etl_waiting_row):" in shown
    assert "  fact_payment  2  since 2026-11-28 15:40:00 UTC" in shown
