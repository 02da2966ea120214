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
import psycopg2.errors
from psycopg2 import sql
from psycopg2.extensions import connection as Connection
from psycopg2.extensions import cursor as Cursor
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


# How long a stage waits for another run's lock (an overlapping run, a replay) before it
# gives up with DatabaseUnavailableError: the state machine retries that (3 times, backing
# off), well within the run's and the function's time limits, where an unbounded wait
# ended in a function timeout and an alert that blamed nothing in particular.
LOCK_WAIT = "60s"
# Advisory locks (64-bit numbers, each unique to its purpose: all of them here, so that no
# two purposes share one). Extracts against the same source, one at a time:
EXTRACT_LOCK_ID = 7_146_203_951
# Loads into the same warehouse, one at a time:
LOAD_LOCK_ID = 7_146_203_952
# Creating the staging tables, one session at a time: the Map's iterations start together,
# and a CREATE TABLE IF NOT EXISTS that waits on another session's uncommitted one fails (a
# duplicate in the catalog) instead of doing nothing.
STAGING_DDL_LOCK_ID = 7_146_203_953


def take_lock(cur: Cursor, lock_id: int, holder: str, *, for_transaction: bool = True) -> None:
    """Take advisory lock ``lock_id`` (for the transaction, or the session), waiting at most
    LOCK_WAIT; ``holder`` names what holds it, for the message (\"another run's load\")."""
    take = "SELECT pg_advisory_xact_lock(%s)" if for_transaction else "SELECT pg_advisory_lock(%s)"
    cur.execute("SET lock_timeout = %s", (LOCK_WAIT,))
    try:
        cur.execute(take, (lock_id,))
    except psycopg2.errors.LockNotAvailable:
        conn = cur.connection
        if conn.autocommit:
            cur.execute("RESET lock_timeout")
        else:
            conn.rollback()  # the aborted transaction, and the SET with it
        failure = DatabaseUnavailableError(
            f"{holder} holds the lock this run needs{_held_since(cur, lock_id)}; this run waited"
            f" {LOCK_WAIT} for it. Runs that overlap (one over 10 minutes, a replay) end this"
            " way: the next run takes up what this one left."
        )
        raise failure from None
    cur.execute("RESET lock_timeout")


def _held_since(cur: Cursor, lock_id: int) -> str:
    """' (application, since hh:mm:ss UTC)' of the session holding the lock, if visible."""
    cur.execute(
        "SELECT a.application_name, coalesce(a.xact_start, a.backend_start) AT TIME ZONE 'UTC'"
        " FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
        " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1"
        " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        " AND ((l.classid::bigint << 32) | l.objid::bigint) = %s LIMIT 1",
        (lock_id,),
    )
    found = cur.fetchone()
    if not cur.connection.autocommit:
        cur.connection.rollback()
    if not found:
        return ""
    application, since = found  # both NULL for another role's session
    when = f", since {since:%H:%M:%S} UTC" if since is not None else ""
    return f" ({application or 'a session of another role'}{when})"


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


def bucket_of(key: sql.Composable, width: sql.Composable) -> sql.Composable:
    """SQL: the id bucket of ``key``, ``key // width`` rounded down, as ``Snapshot`` counts
    buckets (PostgreSQL's integer division rounds toward zero, which would put ids -99 to 99
    in one bucket), as a bigint."""
    return sql.SQL(
        "(CASE WHEN {key} >= 0 THEN {key} / {w} ELSE ({key} + 1) / {w} - 1 END)::bigint"
    ).format(key=key, w=width)
