"""Configuration from the environment, secrets, and the metrics the handlers publish."""

from __future__ import annotations

import io
import json
import logging
import threading
from types import SimpleNamespace

import pytest

from totes.pipeline import config, observability
from totes.pipeline.observability import stage_handler
from totes.pipeline.tls import RDS_CA_BUNDLE


def test_a_secret_in_the_rds_shape_becomes_a_dsn(secretsmanager, monkeypatch):
    secret = {
        "host": "db.example.com",
        "port": 5432,
        "dbname": "totesys",
        "username": "reader",
        "password": "it's s3cret\\",
    }
    arn = secretsmanager.create_secret(Name="totes/source", SecretString=json.dumps(secret))["ARN"]
    monkeypatch.delenv("SOURCE_DSN", raising=False)
    monkeypatch.setenv("SOURCE_DB_SECRET_ARN", arn)
    dsn = config.source_dsn_from_env()
    from psycopg2.extensions import parse_dsn

    assert parse_dsn(dsn) == {
        "host": "db.example.com",
        "port": "5432",
        "dbname": "totesys",
        "user": "reader",
        "password": "it's s3cret\\",
        "sslmode": "verify-full",
        "sslrootcert": str(RDS_CA_BUNDLE),
    }


def test_a_secret_may_hold_a_dsn_and_is_cached(secretsmanager, monkeypatch):
    arn = secretsmanager.create_secret(
        Name="totes/wh", SecretString='{"dsn": "dbname=wh sslmode=disable"}'
    )
    monkeypatch.delenv("WAREHOUSE_DSN", raising=False)
    monkeypatch.setenv("WAREHOUSE_DB_SECRET_ARN", arn["ARN"])
    assert config.warehouse_dsn_from_env() == "dbname=wh sslmode=disable"
    secretsmanager.delete_secret(SecretId=arn["ARN"], ForceDeleteWithoutRecovery=True)
    # Within its time limit (totes.pipeline.secrets.SECRET_MAX_AGE_SECONDS) from the cache.
    assert config.warehouse_dsn_from_env() == "dbname=wh sslmode=disable"


def test_the_lake_comes_from_a_uri_or_two_buckets(monkeypatch):
    monkeypatch.delenv("LAKE", raising=False)
    monkeypatch.setenv("INGESTION_BUCKET", "in-bucket")
    monkeypatch.setenv("PROCESSED_BUCKET", "out-bucket")
    lake = config.lake_from_env()
    assert lake.ingestion.location("k") == "s3://in-bucket/k"
    assert lake.processed.location("k") == "s3://out-bucket/k"
    monkeypatch.delenv("PROCESSED_BUCKET")
    with pytest.raises(config.ConfigurationError, match="LAKE, or both"):
        config.lake_from_env()


def test_a_stage_publishes_rows_per_table_and_its_duration(monkeypatch, capsys):
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)

    @stage_handler("load")
    def handler(event: dict) -> dict:
        return {"loaded_batch_ids": [], "rows": {"fact_payment": 3, "dim_date": 1}}

    assert handler({"batch_ids": []}, None)["rows"]["fact_payment"] == 3
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    published = {
        (name, doc.get("table") or doc.get("stage")): doc[name]
        for doc in emf
        for directive in doc["_aws"]["CloudWatchMetrics"]
        for name in (m["Name"] for m in directive["Metrics"])
    }
    assert published[("RowsLoaded", "fact_payment")] == [3.0]
    assert published[("RowsLoaded", "dim_date")] == [1.0]
    assert ("RunDurationSeconds", "load") in published
    assert all(d["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "TerrificTotes" for d in emf)


def test_a_failing_stage_logs_and_re_raises(monkeypatch, caplog):
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")

    @stage_handler("extract")
    def handler(event: dict) -> dict:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        handler({}, None)
    failed = [r for r in caplog.records if r.getMessage() == "stage failed"]
    assert [(r.levelname, r.error_type, r.error) for r in failed] == [
        ("ERROR", "RuntimeError", "boom")
    ]


def test_calls_running_side_by_side_each_log_their_own_request_id(monkeypatch):
    # On a laptop a Map's calls run in threads of one process, sharing the logger.
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    both_running = threading.Barrier(2)

    @stage_handler("transform")
    def handler(event: dict) -> dict:
        both_running.wait(timeout=10)
        return {"unit": event["unit"]}

    def call(unit: int) -> None:
        handler({"unit": unit}, SimpleNamespace(aws_request_id=f"request-{unit}"))

    threads = [threading.Thread(target=call, args=(unit,)) for unit in (0, 1)]
    logger = observability.logger
    written = io.StringIO()  # the lines as the Lambda's log would hold them
    handler_of_test = logging.StreamHandler(written)
    handler_of_test.setFormatter(logger.registered_formatter)
    level = logger.log_level
    logger.addHandler(handler_of_test)
    logger.setLevel("INFO")
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        logger.setLevel(level)
        logger.removeHandler(handler_of_test)
    lines = [json.loads(line) for line in written.getvalue().splitlines()]
    finished = [d for d in lines if d["message"] == "stage finished"]
    assert {(d["result"]["unit"], d["request_id"]) for d in finished} == {
        (0, "request-0"),
        (1, "request-1"),
    }
