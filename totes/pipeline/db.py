"""Database connections, by libpq DSN; a connection failure is a retryable error."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2
from psycopg2.extensions import connection as Connection


class DatabaseUnavailableError(Exception):
    """The database could not be reached; worth retrying (the state machine does)."""


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
    except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
        # The server went away mid-stage (restart, failover, network): worth a retry, and
        # the transaction it was in was rolled back, so nothing partial remains.
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatabaseUnavailableError(
            f"lost the connection to the database: {first_line}"
        ) from None
    finally:
        conn.close()
