"""`totes psql` / `make psql`: the warehouse opens in psql, and no password is ever shown."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from psycopg2.extensions import parse_dsn

from tests.support.sql import execute
from totes.local import environment
from totes.local.cli import main
from totes.local.psql import open_command, psql_command, psql_invocation
from totes.local.report import RunReport, format_summary

SECRET = "s3cr3t-pa55"


@pytest.fixture
def state_dir(monkeypatch):
    # World-readable: as root, the embedded PostgreSQL runs as the user 'pgserver'.
    path = Path(tempfile.mkdtemp(prefix="totes-state-"))
    path.chmod(0o755)
    monkeypatch.setenv("TOTES_STATE_DIR", str(path))
    monkeypatch.delenv("WAREHOUSE_DSN", raising=False)
    monkeypatch.setattr(environment, "_server", None)
    yield path
    if environment._server is not None:
        environment._server.stop()


def test_the_summary_names_a_psql_that_exists(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no psql on the PATH: the bundled one
    assert Path(psql_command()).is_file()


def test_a_given_warehouse_opens_and_runs_a_command(capfd, warehouse_dsn):
    execute(warehouse_dsn, "CREATE TABLE hello AS SELECT 'from the warehouse' AS greeting")

    code = main(["psql", "--warehouse-dsn", warehouse_dsn, "-c", "SELECT greeting FROM hello"])

    assert code == 0
    assert "from the warehouse" in capfd.readouterr().out


def test_psql_arguments_after_a_double_dash_are_passed_on(capfd, warehouse_dsn):
    code = main(["psql", "--warehouse-dsn", warehouse_dsn, "--", "-At", "-c", "SELECT 40 + 2"])
    assert code == 0
    assert capfd.readouterr().out.strip() == "42"


def test_psql_exit_code_is_returned(capfd, warehouse_dsn):
    code = main(["psql", "--warehouse-dsn", warehouse_dsn, "-c", "SELECT * FROM no_such_table"])
    assert code != 0
    assert "no_such_table" in capfd.readouterr().err


def test_without_a_dsn_the_embedded_warehouse_is_started_and_opened(capfd, state_dir):
    code = main(["psql", "-c", "SELECT current_database()"])
    assert code == 0
    assert "warehouse" in capfd.readouterr().out


def test_the_password_goes_in_the_environment_never_on_the_command_line():
    dsn = f"postgresql://analyst:{SECRET}@db.example.com:5432/warehouse?sslmode=require"
    argv, env = psql_invocation(dsn, ["-c", "SELECT 1"])
    assert SECRET not in " ".join(argv)
    assert "host=db.example.com" in argv[1] and "sslmode=require" in argv[1]
    assert argv[2:] == ["-c", "SELECT 1"]
    assert env["PGPASSWORD"] == SECRET


def test_a_malformed_dsn_is_refused_without_a_piece_of_its_password(capsys):
    # Unquoted spaces: libpq names the word after the first, a piece of the password.
    code = main(["psql", "--warehouse-dsn", "host=db.example.com password=my s3cr3t-pa55"])
    err = capsys.readouterr().err
    assert code == 1 and "InvalidDsnError: the database DSN is malformed" in err
    assert SECRET not in err and "Traceback" not in err


def test_the_summary_prints_a_command_and_never_a_password(state_dir):
    external = f"host=db.example.com dbname=warehouse user=analyst password={SECRET}"
    summary = format_summary(RunReport("SUCCEEDED", "run-1"), str(state_dir / "lake"), external)
    assert SECRET not in summary
    assert (
        ".venv/bin/totes psql --warehouse-dsn 'user=analyst dbname=warehouse host=db.example.com'"
        "    (the password: in $PGPASSWORD or ~/.pgpass)"
    ) in summary

    embedded = f"postgresql://postgres:@/warehouse?host={state_dir / 'postgres'}"
    assert open_command(embedded).startswith("make psql")


def test_a_warehouse_from_the_environment_opens_with_the_bare_command(monkeypatch):
    external = f"host=db.example.com dbname=warehouse user=analyst password={SECRET}"
    monkeypatch.setenv("WAREHOUSE_DSN", external)
    # The summary is given the DSN redacted; the environment still holds the password.
    shown = open_command(external.replace(SECRET, "***"))
    assert shown == ".venv/bin/totes psql    (it reads $WAREHOUSE_DSN, password included)"


def test_the_warehouse_dsn_variable_is_the_default(capfd, monkeypatch, warehouse_dsn):
    monkeypatch.setenv("WAREHOUSE_DSN", warehouse_dsn)
    assert main(["psql", "-c", "SELECT current_database()"]) == 0
    assert parse_dsn(warehouse_dsn)["dbname"] in capfd.readouterr().out
