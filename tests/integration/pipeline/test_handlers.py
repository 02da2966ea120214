"""The Lambda handlers' contract: small JSON in, small JSON out, and failures raise."""

from __future__ import annotations

import json

import pytest

from lambdas import extract, load, transform
from totes.pipeline.config import ConfigurationError
from totes.pipeline.db import DatabaseUnavailableError
from totes.pipeline.events import InvalidInputError
from totes.pipeline.lake import Lake


@pytest.fixture
def env(monkeypatch, tmp_path, totesys_dsn, warehouse_dsn):
    for name in ("INGESTION_BUCKET", "PROCESSED_BUCKET", "SOURCE_DB_SECRET_ARN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LAKE", str(tmp_path / "lake"))
    monkeypatch.setenv("SOURCE_DSN", totesys_dsn)
    monkeypatch.setenv("WAREHOUSE_DSN", warehouse_dsn)
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    return monkeypatch


def test_the_three_handlers_pass_only_ids_and_counts(env, tmp_path):
    extracted = extract.handler({}, None)
    assert set(extracted) == {"batch_id", "rows", "tables", "changed", "warnings"}
    assert extracted["rows"] == sum(extracted["tables"].values()) > 0

    transformed = transform.handler({}, None)
    assert set(transformed) == {
        "batch_ids", "rows", "quarantined", "warnings", "fan_out", "units",
    }  # fmt: skip
    assert transformed["fan_out"] is False and transformed["units"] == []
    assert transformed["batch_ids"] == [extracted["batch_id"]]
    assert transformed["rows"]["fact_sales_order"] == extracted["tables"]["sales_order"]

    loaded = load.handler({}, None)
    assert loaded["fan_out"] is False and loaded["parts"] == []
    assert loaded["loaded_batch_ids"] == transformed["batch_ids"]
    assert loaded["rows"]["fact_payment"] == extracted["tables"]["payment"]
    assert loaded["waiting"] == {} and loaded["deleted"] == {} and loaded["warnings"] == ""

    for result in (extracted, transformed, loaded):
        assert len(json.dumps(result)) < 4096  # state data stays small: never rows
    assert Lake.from_uri(str(tmp_path / "lake")).untransformed_batches() == []


def test_nothing_new_returns_no_batch_and_the_other_stages_nothing(env):
    extract.handler({}, None)
    transform.handler({}, None)
    load.handler({}, None)
    assert extract.handler({}, None) == {
        "batch_id": None,
        "rows": 0,
        "tables": {},
        "changed": {},
        "warnings": "",
    }
    assert transform.handler({}, None)["batch_ids"] == []
    assert load.handler({}, None)["loaded_batch_ids"] == []


@pytest.mark.parametrize(
    "event", [[], {"batch_ids": ["../../etc/passwd"]}, {"batch_ids": "x"}, {"replay": "dim_x"}]
)
def test_bad_input_raises_a_clear_error(env, event):
    if "replay" not in event:
        with pytest.raises(InvalidInputError):
            transform.handler(event, None)
    with pytest.raises(InvalidInputError):
        load.handler(event, None)
    with pytest.raises(InvalidInputError, match="'reconcile' must be true or false"):
        extract.handler({"reconcile": "yes"}, None)


def test_missing_configuration_raises(env):
    env.delenv("SOURCE_DSN")
    with pytest.raises(ConfigurationError, match="SOURCE_DSN or SOURCE_DB_SECRET_ARN"):
        extract.handler({}, None)


def test_unreachable_database_raises_the_retryable_error(env, tmp_path):
    env.setenv("SOURCE_DSN", f"host={tmp_path} dbname=nowhere user=nobody password=s3cret")
    with pytest.raises(DatabaseUnavailableError) as caught:
        extract.handler({}, None)
    assert "s3cret" not in str(caught.value)
