"""Connections: a rotated password is fetched again, and no password is ever shown.

The embedded PostgreSQL trusts its Unix socket; for these tests one role must give a
password (a pg_hba.conf line for that role alone, removed afterwards), so that a wrong or
rotated password is refused the way RDS refuses it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import boto3
import psycopg2
import pytest
from aws_lambda_powertools.utilities import parameters
from moto import mock_aws
from psycopg2 import sql
from psycopg2.extensions import parse_dsn

from totes.pipeline.db import DatabaseUnavailableError, InvalidDsnError, connect
from totes.pipeline.observability import stage_handler
from totes.pipeline.secrets import dsn_from_secret

ROLE = "t_rotating"
PASSWORDS = ("first-Passw0rd", "second-Passw0rd", "third-Passw0rd")


def _admin(pg_server, statement: sql.Composable | str, params: tuple = ()) -> list:
    conn = psycopg2.connect(pg_server.dsn())
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(statement, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def set_password(pg_server, password: str) -> None:
    _admin(
        pg_server, sql.SQL("ALTER ROLE {} PASSWORD %s").format(sql.Identifier(ROLE)), (password,)
    )


@pytest.fixture(scope="module")
def password_role(pg_server) -> Iterator[dict]:
    """A login that must give its password (SCRAM), like any RDS user; its RDS-shaped secret."""
    [[hba_file]] = _admin(pg_server, "SHOW hba_file")
    original = Path(hba_file).read_text()
    Path(hba_file).write_text(f"local all {ROLE} scram-sha-256\n" + original)
    _admin(pg_server, sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(ROLE)))
    set_password(pg_server, PASSWORDS[0])
    _admin(pg_server, "SELECT pg_reload_conf()")
    server = parse_dsn(pg_server.dsn())
    yield {
        "host": server["host"],  # the socket folder: libpq does no TLS there
        "port": int(server.get("port", 5432)),
        "dbname": "postgres",
        "username": ROLE,
        "password": PASSWORDS[0],
    }
    Path(hba_file).write_text(original)
    _admin(pg_server, "SELECT pg_reload_conf()")
    _admin(pg_server, sql.SQL("DROP ROLE {}").format(sql.Identifier(ROLE)))


@pytest.fixture
def secretsmanager(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-2")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    parameters.clear_caches()
    with mock_aws():
        yield boto3.client("secretsmanager")
    parameters.clear_caches()


def test_a_warm_container_survives_a_rotation(pg_server, password_role, secretsmanager):
    set_password(pg_server, PASSWORDS[0])
    arn = secretsmanager.create_secret(Name="totes/db", SecretString=json.dumps(password_role))[
        "ARN"
    ]
    cached = dsn_from_secret(arn)  # a warm container's DSN (its defaults: verify-full TLS)
    assert parse_dsn(cached)["sslmode"] == "verify-full"
    with connect(cached) as conn:
        assert conn.info.user == ROLE

    # The rotation: the database and the secret get a new password; the cache is stale.
    set_password(pg_server, PASSWORDS[1])
    secretsmanager.put_secret_value(
        SecretId=arn, SecretString=json.dumps({**password_role, "password": PASSWORDS[1]})
    )
    assert parse_dsn(dsn_from_secret(arn))["password"] == PASSWORDS[0]  # still cached
    with connect(dsn_from_secret(arn)) as conn:  # refused, fetched again, connected
        assert conn.info.user == ROLE
    assert parse_dsn(dsn_from_secret(arn))["password"] == PASSWORDS[1]  # and cached anew


def test_a_password_the_secret_does_not_have_yet_fails_without_showing_it(
    pg_server, password_role, secretsmanager
):
    set_password(pg_server, PASSWORDS[2])  # mid-rotation: the database is ahead of the secret
    arn = secretsmanager.create_secret(Name="totes/db2", SecretString=json.dumps(password_role))[
        "ARN"
    ]
    with pytest.raises(DatabaseUnavailableError, match="still holds the same") as caught:
        connect(dsn_from_secret(arn)).__enter__()
    assert "password authentication failed" in str(caught.value)
    assert PASSWORDS[0] not in str(caught.value) and PASSWORDS[2] not in str(caught.value)


def _wrong_password_dsn(role: dict) -> str:
    where = f"host={role['host']} port={role['port']} dbname=postgres"
    return f"{where} user={ROLE} password=hunter2-wrong"


@pytest.mark.parametrize(
    ("make_dsn", "error", "expected"),
    [
        # libpq echoes a piece of a malformed DSN: here, the second word of the password.
        (
            lambda role: "host=db dbname=wh password=hunter2-wrong secret-tail",
            InvalidDsnError,
            "malformed",
        ),
        (
            lambda role: "postgresql://u:hunter2-wrong@db:notaport/wh",
            DatabaseUnavailableError,
            "port",
        ),
        (_wrong_password_dsn, DatabaseUnavailableError, "password authentication failed"),
        (
            lambda role: "host=127.0.0.1 port=1 dbname=wh user=u password=hunter2-wrong",
            DatabaseUnavailableError,
            "u@127.0.0.1:1/wh",
        ),
    ],
    ids=["malformed-dsn", "malformed-uri", "wrong-password", "unreachable-host"],
)
def test_no_connection_error_shows_the_password(
    password_role, caplog, monkeypatch, make_dsn, error, expected
):
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    dsn = make_dsn(password_role)

    @stage_handler("load")
    def handler(event: dict) -> dict:
        with connect(dsn):
            return {}

    with pytest.raises(error) as caught:
        handler({}, None)
    shown = (
        f"{caught.value} {caught.value!r} {caught.value.__cause__!r} {caught.value.__context__!r}"
    )
    assert expected in str(caught.value)
    assert "hunter2-wrong" not in shown and "secret-tail" not in shown
    logged = " ".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "stage failed" in logged
    assert "hunter2-wrong" not in logged and "secret-tail" not in logged
