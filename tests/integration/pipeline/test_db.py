"""Connections: a rotated password is fetched again, and no password is ever shown.

``password_role`` (tests/integration/conftest.py) is a login that must give its password,
so that a wrong or rotated password is refused the way RDS refuses it.
"""

from __future__ import annotations

import json

import psycopg2
import pytest
from psycopg2 import sql
from psycopg2.extensions import parse_dsn

import totes.pipeline.db
from tests.integration.conftest import PASSWORD_ROLE, admin_sql, wrong_password_dsn
from totes.pipeline.db import DatabaseUnavailableError, InvalidDsnError, connect
from totes.pipeline.extract import EXTRACT_LOCK_ID, run_extract
from totes.pipeline.lake import Lake
from totes.pipeline.load import LOAD_LOCK_ID, run_load
from totes.pipeline.observability import stage_handler
from totes.pipeline.secrets import dsn_from_secret
from totes.totesys.database import read_only_dsn

PASSWORDS = ("first-Passw0rd", "second-Passw0rd", "third-Passw0rd")


def set_password(pg_server, password: str) -> None:
    admin_sql(
        pg_server,
        sql.SQL("ALTER ROLE {} PASSWORD %s").format(sql.Identifier(PASSWORD_ROLE)),
        (password,),
    )


def test_a_warm_container_survives_a_rotation(pg_server, password_role, secretsmanager):
    set_password(pg_server, PASSWORDS[0])
    arn = secretsmanager.create_secret(Name="totes/db", SecretString=json.dumps(password_role))[
        "ARN"
    ]
    cached = dsn_from_secret(arn)  # a warm container's DSN (its defaults: verify-full TLS)
    assert parse_dsn(cached)["sslmode"] == "verify-full"
    with connect(cached) as conn:
        assert conn.info.user == PASSWORD_ROLE

    # The rotation: the database and the secret get a new password; the cache is stale.
    set_password(pg_server, PASSWORDS[1])
    secretsmanager.put_secret_value(
        SecretId=arn, SecretString=json.dumps({**password_role, "password": PASSWORDS[1]})
    )
    assert parse_dsn(dsn_from_secret(arn))["password"] == PASSWORDS[0]  # still cached
    with connect(dsn_from_secret(arn)) as conn:  # refused, fetched again, connected
        assert conn.info.user == PASSWORD_ROLE
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
        (
            lambda role: wrong_password_dsn(role, "hunter2-wrong"),
            DatabaseUnavailableError,
            "password authentication failed",
        ),
        (
            lambda role: "host=127.0.0.1 port=1 dbname=wh user=u password=hunter2-wrong",
            DatabaseUnavailableError,
            "u@127.0.0.1:1/wh",
        ),
        # libpq cuts a URI at a raw '/' or '@' in its password: the pieces would be named
        # as the host, port or database.
        (
            lambda role: "postgresql://u:hunter2-wrong/secret-tail@db/wh",
            InvalidDsnError,
            "percent-encode",
        ),
        (
            lambda role: "postgresql://u:hunter2-wrong@secret-tail@db/wh",
            InvalidDsnError,
            "percent-encode",
        ),
    ],
    ids=[
        "malformed-dsn",
        "malformed-uri",
        "wrong-password",
        "unreachable-host",
        "raw-slash-in-uri-password",
        "raw-at-in-uri-password",
    ],
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


def test_a_statement_stopped_by_a_lock_timeout_is_not_called_a_lost_connection(warehouse_dsn):
    holder = psycopg2.connect(warehouse_dsn)
    try:
        with holder.cursor() as cur:
            cur.execute("CREATE TABLE held (id integer)")
            holder.commit()
            cur.execute("LOCK TABLE held IN ACCESS EXCLUSIVE MODE")
        with (
            pytest.raises(DatabaseUnavailableError) as caught,
            connect(warehouse_dsn) as conn,
            conn.cursor() as cur,
        ):
            cur.execute("SET lock_timeout = '50ms'")
            cur.execute("SELECT * FROM held")
    finally:
        holder.rollback()
        holder.close()
    assert str(caught.value) == (
        "the database stopped a statement: canceling statement due to lock timeout"
    )


@pytest.mark.parametrize("stage", ["extract", "load"])
def test_a_lock_another_run_holds_is_waited_for_a_bounded_time_and_named(
    stage, monkeypatch, totesys_dsn, warehouse_dsn, tmp_path
):
    """An overlapping run, or a replay, holds the stage's lock: this run gives up after
    LOCK_WAIT with an error the state machine retries, naming who holds the lock, where an
    unbounded wait ended in the function's timeout."""
    monkeypatch.setattr(totes.pipeline.db, "LOCK_WAIT", "300ms")
    dsn = totesys_dsn if stage == "extract" else warehouse_dsn
    lock = EXTRACT_LOCK_ID if stage == "extract" else LOAD_LOCK_ID
    lake = Lake.from_uri(str(tmp_path / "lake"))
    holder = psycopg2.connect(dsn, application_name="totes-replay-by-hand")
    try:
        with holder.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", (lock,))
        with pytest.raises(DatabaseUnavailableError) as caught:
            if stage == "extract":
                run_extract(lake, totesys_dsn)
            else:
                run_load(lake, warehouse_dsn)
    finally:
        holder.close()
    assert str(caught.value).startswith(
        f"another {stage} holds the lock this run needs (totes-replay-by-hand, since "
    )
    assert "this run waited 300ms for it" in str(caught.value)
    # Once it is free, the same call goes through.
    assert (run_extract if stage == "extract" else run_load)(lake, dsn) is not None


def test_a_lock_held_by_a_session_this_role_cannot_see_is_still_a_retried_error(
    monkeypatch, totesys_dsn, tmp_path
):
    monkeypatch.setattr(totes.pipeline.db, "LOCK_WAIT", "300ms")
    reader = read_only_dsn(totesys_dsn, "t_lock_reader")  # cannot see others' sessions
    holder = psycopg2.connect(totesys_dsn, application_name="totes-extract")
    try:
        with holder.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", (EXTRACT_LOCK_ID,))
        # It sees who, but not since when (another role's session): still the same error.
        with pytest.raises(DatabaseUnavailableError, match=r"needs \(totes-extract\); this"):
            run_extract(Lake.from_uri(str(tmp_path / "lake")), reader)
    finally:
        holder.close()
