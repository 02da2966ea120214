"""The `totes` command as a user runs it: exit codes, summaries, JSON, errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.integration.conftest import wrong_password_dsn
from tests.support.sql import execute
from totes.local.cli import main
from totes.local.psql import psql_command
from totes.pipeline.lake import Lake
from totes.totesys.database import read_only_dsn


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_seed_and_simulate_print_what_they_did(capsys, empty_db):
    code, out, _ = run_cli(capsys, "seed", "--source-dsn", empty_db, "--scale", "0.01")
    assert code == 0
    assert "sales_order" in out and "payment_type" in out

    code, out, _ = run_cli(capsys, "simulate", "--source-dsn", empty_db, "--minutes", "600")
    assert code == 0
    assert "2024-11-15 09:00 -> 2024-11-15 19:00" in out


def test_run_against_given_databases_prints_json_and_is_incremental(
    capsys, totesys_dsn, warehouse_dsn, tmp_path
):
    args = ["run", "--source-dsn", totesys_dsn, "--warehouse-dsn", warehouse_dsn]
    args += ["--lake", str(tmp_path / "lake"), "--json"]

    code, out, _ = run_cli(capsys, *args)
    first = json.loads(out)
    assert code == 0 and first["status"] == "SUCCEEDED"
    assert first["load"]["rows"]["fact_sales_order"] == first["extract"]["tables"]["sales_order"]

    code, out, _ = run_cli(capsys, *args)
    second = json.loads(out)
    assert code == 0 and second["extract"]["rows"] == 0
    assert second["load"]["loaded_batch_ids"] == []


def test_an_injected_failure_exits_non_zero_and_shows_the_email(
    capsys, totesys_dsn, warehouse_dsn, tmp_path
):
    code, out, err = run_cli(
        capsys,
        "run",
        "--source-dsn", totesys_dsn,
        "--warehouse-dsn", warehouse_dsn,
        "--lake", str(tmp_path / "lake"),
        "--fail-at", "load",
    )  # fmt: skip
    assert code == 1
    assert "FAILED" in out and "Alert email that would have been sent" in out
    assert "Stage:" in out and "InjectedFailure" in out
    assert err.strip().splitlines()[-1].startswith("error: Terrific Totes pipeline failed at Load")


def test_errors_are_one_line_unless_verbose(capsys, tmp_path):
    bad = f"host={tmp_path} dbname=nowhere"
    code, _, err = run_cli(capsys, "seed", "--source-dsn", bad)
    assert code == 1
    assert "Traceback" not in err
    assert err.splitlines()[0].startswith("error: DatabaseUnavailableError")
    with pytest.raises(Exception, match="cannot connect"):
        main(["--verbose", "seed", "--source-dsn", bad])


def test_demo_seeds_once_then_moves_the_business_on(capsys, state_dir):
    code, out, err = run_cli(capsys, "demo")
    assert code == 0, err
    assert "Seeding ToteSys" in err
    assert "  extract: " in err and "  load: " in err  # progress, stage by stage
    assert "SUCCEEDED" in out and "fact_sales_order" in out
    assert "Open the warehouse:\n  make psql" in out and "postgresql://" not in out
    assert "ingestion/sales_order/" in out and "processed/fact_sales_order/" in out
    [first_run] = json.loads(run_cli(capsys, "status", "--json")[1])["executions"]
    assert first_run["status"] == "SUCCEEDED" and first_run["loaded"]["fact_sales_order"] > 0

    code, out, err = run_cli(capsys, "demo")
    assert code == 0, err
    assert "Seeding" not in err and "Letting the business move on" in err
    assert (state_dir / "lake" / "ingestion" / "_manifests").is_dir()
    assert os.listdir(state_dir / "lake" / "processed" / "_manifests")


def test_the_summary_names_a_psql_that_exists(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no psql on the PATH: the bundled one
    assert Path(psql_command()).is_file()


@pytest.fixture
def s3_endpoint(monkeypatch):
    """An S3 endpoint in another process (moto's server), standing in for real S3."""
    import socket
    import subprocess
    import sys
    import time

    import boto3

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    for name, value in {
        "AWS_ENDPOINT_URL_S3": endpoint,
        "AWS_ACCESS_KEY_ID": "real-looking-key",
        "AWS_SECRET_ACCESS_KEY": "real-looking-secret",
        "AWS_DEFAULT_REGION": "eu-west-2",
    }.items():
        monkeypatch.setenv(name, value)
    s3 = boto3.client("s3")
    for _ in range(100):
        try:
            s3.list_buckets()
            break
        except Exception:
            time.sleep(0.1)
    yield s3
    server.terminate()
    server.wait(timeout=10)


def test_run_with_an_s3_lake_uses_the_real_bucket(capsys, s3_endpoint, totesys_dsn, warehouse_dsn):
    s3_endpoint.create_bucket(
        Bucket="totes-lake", CreateBucketConfiguration={"LocationConstraint": "eu-west-2"}
    )
    args = ["run", "--source-dsn", totesys_dsn, "--warehouse-dsn", warehouse_dsn]
    code, out, err = run_cli(capsys, *args, "--lake", "s3://totes-lake/team", "--json")

    assert code == 0, err
    report = json.loads(out)
    keys = [o["Key"] for o in s3_endpoint.list_objects_v2(Bucket="totes-lake")["Contents"]]
    batch_id = report["extract"]["batch_id"]
    assert f"team/ingestion/_manifests/{batch_id}.json" in keys
    assert any(k.startswith("team/processed/fact_sales_order/") for k in keys)
    assert f"team/processed/_manifests/{batch_id}.json" in keys
    assert report["load"]["rows"]["fact_payment"] == report["extract"]["tables"]["payment"]


@pytest.mark.parametrize(
    "source",
    [
        # libpq would echo "secret-tail" (the password's second word) in its complaint.
        lambda role: "host=db dbname=totesys password=hunter2-cli secret-tail",
        lambda role: wrong_password_dsn(role, "hunter2-cli"),
        lambda role: "host=127.0.0.1 port=1 dbname=totesys user=reader password=hunter2-cli",
    ],
    ids=["malformed-dsn", "wrong-password", "unreachable-host"],
)
def test_no_password_in_the_alert_email_the_progress_or_the_error_line(
    capsys, password_role, warehouse_dsn, tmp_path, state_dir, source
):
    code, out, err = run_cli(
        capsys,
        "run",
        "--source-dsn", source(password_role),
        "--warehouse-dsn", warehouse_dsn,
        "--lake", str(tmp_path / "lake"),
    )  # fmt: skip
    assert code == 1
    assert "Alert email that would have been sent" in out and "Stage:      Extract" in out
    assert "  extract failed: " in err  # the progress line
    assert err.strip().splitlines()[-1].startswith("error: Terrific Totes pipeline failed")
    [kept] = (state_dir / "runs").glob("*.json")  # the report `totes status` reads
    for shown in (out, err, kept.read_text()):
        assert "hunter2-cli" not in shown and "secret-tail" not in shown


def test_the_error_line_never_shows_a_password(capsys):
    code, _, err = run_cli(
        capsys, "seed", "--source-dsn", "postgresql://u:hunter2-seed@127.0.0.1:1/totesys"
    )
    assert code == 1
    assert err.startswith("error: DatabaseUnavailableError: cannot connect to the database")
    assert "hunter2-seed" not in err


def test_an_unreadable_dotenv_file_is_one_line_naming_it(capsys, monkeypatch, tmp_path):
    env_file = tmp_path / "laptop.env"
    env_file.write_bytes(b"WAREHOUSE_DSN=host=db password=\xff\xfe\n")
    monkeypatch.setenv("TOTES_ENV_FILE", str(env_file))
    code, _, err = run_cli(capsys, "status")
    assert code == 1
    assert err.startswith(f"error: ConfigurationError: {env_file}: cannot be read as a UTF-8")
    assert "Traceback" not in err


def test_verbose_may_follow_the_command_as_the_error_line_suggests(capsys):
    unreachable = "host=127.0.0.1 port=1 dbname=wh user=u"
    databases = ["--source-dsn", unreachable, "--warehouse-dsn", unreachable]
    code, _, err = run_cli(capsys, "reconcile", *databases)
    assert code == 2 and "(run again with --verbose for the full trace)" in err
    with pytest.raises(Exception, match="cannot connect to the database"):
        main(["reconcile", *databases, "--verbose"])  # the trace, not a usage error


def test_reconcile_reads_the_databases_from_the_environment(capsys, monkeypatch):
    monkeypatch.setenv("SOURCE_DSN", "host=127.0.0.1 port=1 dbname=totesys user=operator")
    monkeypatch.setenv("WAREHOUSE_DSN", "host=127.0.0.1 port=1 dbname=wh user=operator")
    code, _, err = run_cli(capsys, "reconcile")
    assert code == 2
    assert "cannot connect to the database operator@127.0.0.1:1/" in err  # not the embedded


def test_a_reader_that_goes_away_ends_the_output_quietly(capsys, monkeypatch):
    def gone(args):
        raise BrokenPipeError

    monkeypatch.setattr("totes.local.status_cli.run", gone)
    monkeypatch.setattr("totes.local.cli.status_cli.run", gone)
    code, _, err = run_cli(capsys, "status")
    assert code == 141 and err == ""


def test_skip_refuses_a_batch_the_warehouse_holds(capsys, totesys_dsn, warehouse_dsn, tmp_path):
    lake = str(tmp_path / "lake")
    databases = ["--source-dsn", totesys_dsn, "--warehouse-dsn", warehouse_dsn]
    code, out, err = run_cli(capsys, "run", *databases, "--lake", lake, "--json")
    assert code == 0, err
    (loaded,) = json.loads(out)["load"]["loaded_batch_ids"]

    code, _, err = run_cli(
        capsys, "skip", loaded, "--reason", "by mistake", "--lake", lake,
        "--warehouse-dsn", warehouse_dsn,
    )  # fmt: skip

    assert code == 1
    assert f"batch {loaded} is in the warehouse already (etl_loaded_batch: loaded)" in err
    assert Lake.from_uri(lake).skipped() == {}


def test_settings_come_from_a_dotenv_file(
    capsys, monkeypatch, tmp_path, totesys_dsn, warehouse_dsn
):
    env_file = tmp_path / "laptop.env"
    env_file.write_text(
        f"SOURCE_DSN={read_only_dsn(totesys_dsn, 'totes_reader')}\n"
        f"WAREHOUSE_DSN='{warehouse_dsn}'\n"
        f"LAKE={tmp_path / 'env-lake'}\n"
    )
    for name in ("SOURCE_DSN", "WAREHOUSE_DSN", "LAKE"):
        monkeypatch.setenv(name, "restored-after-the-test")
        monkeypatch.delenv(name)
    monkeypatch.setenv("TOTES_ENV_FILE", str(env_file))
    code, out, err = run_cli(capsys, "run", "--json")
    assert code == 0, err
    assert json.loads(out)["load"]["rows"]["fact_sales_order"] > 0
    assert (tmp_path / "env-lake" / "ingestion" / "_manifests").is_dir()
    # A variable already set wins over the file.
    monkeypatch.setenv("LAKE", str(tmp_path / "set-lake"))
    assert run_cli(capsys, "run", "--json")[0] == 0
    assert (tmp_path / "set-lake" / "ingestion" / "_manifests").is_dir()


def test_reconcile_exits_0_when_equal_and_1_naming_each_difference(
    capsys, totesys_dsn, warehouse_dsn, tmp_path
):
    databases = ["--source-dsn", totesys_dsn, "--warehouse-dsn", warehouse_dsn]
    code, _, err = run_cli(capsys, "run", *databases, "--lake", str(tmp_path / "lake"))
    assert code == 0, err

    code, out, err = run_cli(capsys, "reconcile", *databases)
    assert code == 0, err
    assert out.startswith("The warehouse matches ToteSys: no differences")
    assert "fact_sales_order" in out and "total" in out
    assert "dim_date: comparing" in err  # progress, table by table

    execute(
        totesys_dsn, "DELETE FROM payment WHERE payment_id = (SELECT max(payment_id) FROM payment)"
    )
    execute(warehouse_dsn, "UPDATE dim_staff SET first_name = '' WHERE staff_id = 1")
    code, out, _ = run_cli(capsys, "reconcile", *databases)
    assert code == 1
    assert "2 differences in 2 of 11 tables" in out
    assert "dim_staff: 1 difference\n" in out and "differing columns: first_name 1" in out
    assert "id 1, first_name: ToteSys '" in out and "warehouse ''" in out
    assert "fact_payment: 1 difference\n" in out and "unmarked_deletion" in out
    assert "unmarked_deletion: in the warehouse, gone from ToteSys" in out  # the legend

    code, out, _ = run_cli(capsys, "reconcile", *databases, "--table", "dim_staff", "--json")
    found = json.loads(out)
    assert code == 1 and found["differences"] == 1 and list(found["by_table"]) == ["dim_staff"]
    (example,) = found["by_table"]["dim_staff"]["examples"]
    assert example["column"] == "first_name" and example["warehouse"] == ""


def test_reconcile_exits_2_on_error_without_showing_the_password(capsys, tmp_path, empty_db):
    bad = f"host={tmp_path} dbname=nowhere user=nobody password=s3cret"
    code, out, err = run_cli(capsys, "reconcile", "--source-dsn", empty_db, "--warehouse-dsn", bad)
    assert code == 2 and out == ""
    assert err.splitlines()[0].startswith("error: DatabaseUnavailableError")
    assert "s3cret" not in err

    code, _, err = run_cli(
        capsys, "reconcile", "--source-dsn", empty_db, "--warehouse-dsn", empty_db
    )
    assert code == 2
    assert "the warehouse has no table" in err


def test_reconcile_defaults_to_the_embedded_databases(capsys, state_dir):
    assert run_cli(capsys, "seed", "--scale", "0.01")[0] == 0
    assert run_cli(capsys, "run")[0] == 0

    code, out, err = run_cli(capsys, "reconcile", "--table", "fact_payment")
    assert code == 0, err
    assert "The warehouse matches ToteSys" in out
