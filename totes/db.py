"""Database connections: a DSN locally, a Secrets Manager secret on AWS."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

import psycopg2
from psycopg2.extensions import connection as Connection


class DatabaseUnavailableError(Exception):
    """The database could not be reached; worth retrying (the state machine does)."""


@cache
def dsn_from_secret(secret_id: str) -> str:
    """Build a libpq DSN from a Secrets Manager secret (the RDS JSON shape).

    Cached for the life of the process, so a warm Lambda does not fetch it again.
    """
    import boto3

    raw = boto3.client("secretsmanager").get_secret_value(SecretId=secret_id)["SecretString"]
    secret = json.loads(raw)
    if "dsn" in secret:
        return secret["dsn"]
    parts = {
        "host": secret["host"],
        "port": secret.get("port", 5432),
        "dbname": secret.get("dbname") or secret.get("database"),
        "user": secret.get("username") or secret.get("user"),
        "password": secret["password"],
    }
    return " ".join(f"{k}='{_escape(str(v))}'" for k, v in parts.items() if v is not None)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


@contextmanager
def connect(dsn: str, *, application_name: str = "totes") -> Iterator[Connection]:
    """A connection that is closed on exit; a connection failure raises a retryable error."""
    try:
        conn = psycopg2.connect(dsn, application_name=application_name, connect_timeout=10)
    except psycopg2.OperationalError as exc:
        # The message may echo the DSN's host but never its password.
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatabaseUnavailableError(f"cannot connect to the database: {first_line}") from None
    try:
        yield conn
    finally:
        conn.close()
