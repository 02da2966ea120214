"""The audit Lambda (lambdas/audit.py): counts out, never values; one metric per table and
the total the alarm watches; bad input refused."""

from __future__ import annotations

import json

import pytest

from lambdas import audit, extract, load, transform
from tests.support.sql import execute
from totes.contract import AUDIT_TOTAL, DIFFERENCES_METRIC, METRICS_NAMESPACE
from totes.pipeline.audit_model import AUDITED_TABLE_NAMES, UnknownTableError
from totes.pipeline.events import InvalidInputError


@pytest.fixture
def loaded(monkeypatch, tmp_path, totesys_dsn, warehouse_dsn):
    """A warehouse loaded from ToteSys through the handlers; metrics on, as on AWS."""
    for name in ("INGESTION_BUCKET", "PROCESSED_BUCKET", "SOURCE_DB_SECRET_ARN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LAKE", str(tmp_path / "lake"))
    monkeypatch.setenv("SOURCE_DSN", totesys_dsn)
    monkeypatch.setenv("WAREHOUSE_DSN", warehouse_dsn)
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    # The batch ids when the extract names them; else each stage takes what is pending.
    batches = extract.handler({}, None).get("pending_batch_ids")
    transformed = transform.handler({"batch_ids": batches} if batches else {}, None)
    load.handler({"batch_ids": transformed["batch_ids"]} if batches else {}, None)
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "totes")
    return warehouse_dsn


def differences_published(stdout: str) -> dict[str, float]:
    """table -> value of each WarehouseDifferences data point in the EMF lines."""
    found = {}
    for line in stdout.splitlines():
        if not line.startswith('{"_aws"'):
            continue
        record = json.loads(line)
        (directive,) = record["_aws"]["CloudWatchMetrics"]
        if directive["Metrics"][0]["Name"] != DIFFERENCES_METRIC:
            continue
        assert directive["Namespace"] == METRICS_NAMESPACE
        assert directive["Dimensions"] == [["table", "service"]]  # what the alarm names
        assert record["service"] == "totes"
        found[record["table"]] = record[DIFFERENCES_METRIC][0]
    return found


def test_a_clean_warehouse_publishes_zero_for_every_table_and_the_total(loaded, capsys):
    result = audit.handler({}, None)

    assert result["equal"] is True and result["differences"] == 0
    assert list(result["by_table"]) == list(AUDITED_TABLE_NAMES)
    published = differences_published(capsys.readouterr().out)
    assert published == {**dict.fromkeys(AUDITED_TABLE_NAMES, 0.0), AUDIT_TOTAL: 0.0}


def test_differences_are_counted_and_published_without_their_values(loaded, capsys):
    execute(loaded, "UPDATE dim_design SET file_location = '/secret/path' WHERE design_id = 1")

    result = audit.handler({"tables": ["dim_design", "fact_payment"]}, None)

    assert result["differences"] == 1
    (example,) = result["by_table"]["dim_design"]["examples"]
    assert example == {"kind": "differing", "id": 1, "column": "file_location"}
    assert "/secret/path" not in json.dumps(result)
    assert len(json.dumps(result)) < 4096
    published = differences_published(capsys.readouterr().out)
    assert published == {"dim_design": 1.0, "fact_payment": 0.0, AUDIT_TOTAL: 1.0}


@pytest.mark.parametrize(
    ("event", "error"),
    [
        ({"tables": "dim_staff"}, InvalidInputError),
        ({"tables": [1]}, InvalidInputError),
        ({"tables": []}, InvalidInputError),
        ({"tables": ["staff"]}, UnknownTableError),
    ],
)
def test_bad_input_is_refused_before_any_work(loaded, event, error):
    with pytest.raises(error):
        audit.handler(event, None)
