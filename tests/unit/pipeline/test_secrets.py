"""Secrets: cached for a time, picked up again after a rotation, and TLS that verifies."""

from __future__ import annotations

import json
import ssl
from datetime import datetime, timedelta

import pytest
from aws_lambda_powertools.utilities.parameters import base as parameters_base
from psycopg2.extensions import parse_dsn

from totes.pipeline import secrets
from totes.pipeline.secrets import SecretDsn, SecretFormatError, dsn_from_secret
from totes.pipeline.tls import RDS_CA_BUNDLE

RDS_SECRET = {
    "engine": "postgres",
    "host": "totesys.abc123xyz.eu-west-2.rds.amazonaws.com",
    "port": 5432,
    "dbname": "totesys",
    "username": "reader",
    "password": "first-Passw0rd",
}


def rotate(client, arn: str, password: str) -> None:
    """What a rotation leaves behind: a new AWSCURRENT version with a new password."""
    client.put_secret_value(
        SecretId=arn, SecretString=json.dumps({**RDS_SECRET, "password": password})
    )


class Clock:
    """Powertools' cache clock, moved by hand: time passes without a sleep."""

    def __init__(self) -> None:
        self.now_value = datetime.now()

    def now(self) -> datetime:
        return self.now_value

    def advance(self, seconds: float) -> None:
        self.now_value += timedelta(seconds=seconds)


@pytest.fixture
def clock(monkeypatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(parameters_base, "datetime", fake)
    return fake


def test_a_rotated_secret_is_picked_up(secretsmanager, clock):
    arn = secretsmanager.create_secret(Name="totes/source-db", SecretString=json.dumps(RDS_SECRET))[
        "ARN"
    ]
    before = dsn_from_secret(arn)
    assert parse_dsn(before)["password"] == "first-Passw0rd"
    rotate(secretsmanager, arn, "second-Passw0rd")

    # Within the cache's time limit the old value is served: no call to Secrets Manager ...
    assert parse_dsn(dsn_from_secret(arn))["password"] == "first-Passw0rd"
    # ... unless a connection was refused for it (totes.pipeline.db asks for this) ...
    assert parse_dsn(before.refetch())["password"] == "second-Passw0rd"
    # ... and once the time limit has passed.
    rotate(secretsmanager, arn, "third-Passw0rd")
    clock.advance(secrets.SECRET_MAX_AGE_SECONDS - 1)
    assert parse_dsn(dsn_from_secret(arn))["password"] == "second-Passw0rd"
    clock.advance(2)
    assert parse_dsn(dsn_from_secret(arn))["password"] == "third-Passw0rd"


def test_a_secret_dsn_remembers_its_secret_and_hides_its_password(secretsmanager):
    arn = secretsmanager.create_secret(Name="totes/wh", SecretString=json.dumps(RDS_SECRET))["ARN"]
    dsn = dsn_from_secret(arn)
    assert isinstance(dsn, SecretDsn) and dsn.secret_id == arn
    assert "first-Passw0rd" in str(dsn)  # what libpq is given
    assert "first-Passw0rd" not in repr(dsn)  # what a traceback or a log would show


def test_the_dsn_from_an_rds_shaped_secret_verifies_the_server():
    parts = parse_dsn(secrets.dsn_from_secret_value(json.dumps(RDS_SECRET)))
    assert parts["sslmode"] == "verify-full"  # the certificate AND the host name
    assert parts["sslrootcert"] == str(RDS_CA_BUNDLE)
    assert parts["host"] == RDS_SECRET["host"]


def test_the_shipped_bundle_holds_the_rds_root_cas():
    context = ssl.create_default_context(cafile=str(RDS_CA_BUNDLE))
    names = {
        dict(pair[0] for pair in cert["subject"])["commonName"] for cert in context.get_ca_certs()
    }
    for region in ("eu-west-2", "us-east-1"):
        assert f"Amazon RDS {region} Root CA RSA2048 G1" in names
        assert f"Amazon RDS {region} Root CA ECC384 G1" in names


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"sslrootcert": "system"}, {"sslmode": "verify-full", "sslrootcert": "system"}),
        ({"sslmode": "verify-ca"}, {"sslmode": "verify-ca", "sslrootcert": str(RDS_CA_BUNDLE)}),
        ({"sslmode": "require"}, {"sslmode": "require"}),
    ],
)
def test_a_secret_may_choose_its_own_tls(fields, expected):
    parts = parse_dsn(secrets.dsn_from_secret_value(json.dumps({**RDS_SECRET, **fields})))
    assert {k: v for k, v in parts.items() if k.startswith("ssl")} == expected


@pytest.mark.parametrize(
    ("dsn", "expected"),
    [
        ("host=db dbname=wh", {"sslmode": "verify-full", "sslrootcert": str(RDS_CA_BUNDLE)}),
        ("postgresql://u:p@db/wh", {"sslmode": "verify-full", "sslrootcert": str(RDS_CA_BUNDLE)}),
        (
            "postgresql://u:p@db/wh?connect_timeout=5",
            {"sslmode": "verify-full", "sslrootcert": str(RDS_CA_BUNDLE)},
        ),
        ("host=db sslmode=disable", {"sslmode": "disable"}),
    ],
)
def test_a_dsn_in_a_secret_verifies_the_server_unless_it_says_otherwise(dsn, expected):
    parts = parse_dsn(secrets.dsn_from_secret_value(json.dumps({"dsn": dsn})))
    assert {k: v for k, v in parts.items() if k.startswith("ssl")} == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('{"host": "db", "password": ', "not JSON"),
        ('["host"]', "not a JSON object"),
        ('{"host": "db", "username": "u"}', "missing password"),
    ],
)
def test_a_bad_secret_is_named_and_not_echoed(value, message):
    with pytest.raises(SecretFormatError, match=message) as caught:
        secrets.dsn_from_secret_value(value, "totes/source-db")
    assert "totes/source-db" in str(caught.value)
    assert '"db"' not in str(caught.value)
