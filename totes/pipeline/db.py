"""Database connections, by libpq DSN.

A connection that cannot be made raises one of two errors whose messages never hold the
password (libpq and psycopg2 echo parts of the DSN: ``invalid dsn: ...``): a retryable
``DatabaseUnavailableError`` (the state machine retries it by name), or ``InvalidDsnError``
for a DSN that can never work. A DSN built from a secret whose password the server refuses
is fetched again, once, and tried again: that is how a warm Lambda survives a rotation.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2
from psycopg2.extensions import connection as Connection
from psycopg2.extensions import parse_dsn

from totes.pipeline.redact import password_of, redact
from totes.pipeline.secrets import SecretDsn

CONNECT_TIMEOUT_SECONDS = 10
# libpq's words when the server refuses the credentials (password, SCRAM, PAM, IAM token).
_AUTHENTICATION_FAILED = re.compile(r"authentication failed|password must be|no password", re.I)


class DatabaseUnavailableError(Exception):
    """The database could not be reached or refused us; worth retrying (the state machine
    does, by this class name)."""


class InvalidDsnError(ValueError):
    """The DSN cannot be parsed: a configuration error, never retried."""


def _malformed(reason: str, dsn: str) -> InvalidDsnError:
    # "invalid dsn: missing "=" after "<a piece of the DSN>" ...": the quoted piece may be
    # part of a password, so every quoted fragment goes.
    reason = redact(re.sub(r'"[^"]*"', '"…"', reason), password_of(dsn))
    return InvalidDsnError(
        f"the database DSN is malformed ({reason}): expected key=value pairs (host=..."
        " dbname=..., a value with spaces in single quotes) or a postgresql:// URI"
    )


def _check_uri(dsn: str) -> None:
    """A URI whose user or password holds a raw '@' or '/' is cut by libpq at the wrong
    place, and the pieces (parts of the password) would show as host or database names."""
    scheme, sep, rest = dsn.partition("://")
    if not sep or not re.fullmatch(r"postgres(ql)?", scheme.strip(), re.I):
        return
    authority, _, after = rest.partition("/")
    if authority.count("@") > 1 or "@" in after.partition("?")[0]:
        raise InvalidDsnError(
            "the database DSN is malformed: its postgresql:// URI holds a raw '@' or '/' in"
            " its user or password; percent-encode them (@ as %40, / as %2F)"
        )


def parse_dsn_safely(dsn: str) -> dict[str, str]:
    """libpq's reading of a DSN; ``InvalidDsnError``, whose message holds no part of the
    password, when it cannot be read."""
    dsn = str(dsn)
    _check_uri(dsn)
    try:
        return parse_dsn(dsn)
    except psycopg2.Error as exc:
        failure = _malformed(_first_line(exc), dsn)
    raise failure  # outside the handler: psycopg2's error is not even kept as context


def describe(dsn: str) -> str:
    """Which database a DSN names, for messages: ``user@host:port/dbname``, no password."""
    try:
        parts = parse_dsn_safely(dsn)
    except InvalidDsnError:
        return "(a malformed DSN)"
    where = parts.get("host") or "localhost"
    if parts.get("port"):
        where += f":{parts['port']}"
    user = f"{parts['user']}@" if parts.get("user") else ""
    return f"{user}{where}/{parts.get('dbname', '')}"


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _open(dsn: str, application_name: str) -> Connection:
    """One attempt; every failure becomes an error that names the database, not the password."""
    failure: Exception
    _check_uri(str(dsn))
    try:
        return psycopg2.connect(
            str(dsn), application_name=application_name, connect_timeout=CONNECT_TIMEOUT_SECONDS
        )
    except psycopg2.OperationalError as exc:
        reason = redact(_first_line(exc), password_of(str(dsn)))
        failure = DatabaseUnavailableError(
            f"cannot connect to the database {describe(dsn)}: {reason}"
        )
    except psycopg2.Error as exc:
        failure = _malformed(_first_line(exc), str(dsn))
    # Raised outside the handler: psycopg2's error, which may quote the DSN, is not even
    # kept as the new error's context.
    raise failure


def _is_authentication_failure(error: DatabaseUnavailableError) -> bool:
    return bool(_AUTHENTICATION_FAILED.search(str(error)))


def open_connection(dsn: str, *, application_name: str = "totes") -> Connection:
    """A new connection; a secret's DSN refused for its credentials is fetched again once."""
    try:
        return _open(dsn, application_name)
    except DatabaseUnavailableError as error:
        if not (isinstance(dsn, SecretDsn) and _is_authentication_failure(error)):
            raise
        refused, secret_dsn = str(error), dsn
    fresh = secret_dsn.refetch()
    if str(fresh) == str(secret_dsn):
        raise DatabaseUnavailableError(
            f"{refused} (the secret {secret_dsn.secret_id} still holds the same credentials)"
        )
    return _open(fresh, application_name)


@contextmanager
def connect(dsn: str, *, application_name: str = "totes") -> Iterator[Connection]:
    """A connection that is closed on exit (see ``open_connection``)."""
    conn = open_connection(dsn, application_name=application_name)
    try:
        yield conn
    except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
        # The server went away mid-stage (restart, failover, network), or stopped a statement
        # that waited too long (a lock or statement timeout): worth a retry either way, and
        # the transaction it was in was rolled back, so nothing partial remains.
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        stopped = getattr(exc, "pgcode", None) and not conn.closed
        what = (
            "the database stopped a statement" if stopped else "lost the connection to the database"
        )
        raise DatabaseUnavailableError(f"{what}: {first_line}") from None
    finally:
        conn.close()
