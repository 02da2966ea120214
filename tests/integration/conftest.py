"""Integration fixtures: a login of the embedded PostgreSQL that must give its password."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
from psycopg2 import sql
from psycopg2.extensions import parse_dsn

PASSWORD_ROLE = "t_rotating"
FIRST_PASSWORD = "first-Passw0rd"


def admin_sql(pg_server, statement: sql.Composable | str, params: tuple = ()) -> list:
    """Run one statement as the server's superuser (autocommit); its rows, if any."""
    conn = psycopg2.connect(pg_server.dsn())
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(statement, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


@pytest.fixture(scope="session")
def password_role(pg_server) -> Iterator[dict]:
    """A login that must give its password (SCRAM), like any RDS user, and its secret in the
    RDS shape. The embedded server trusts its Unix socket: one pg_hba.conf line, for this
    role alone, makes it ask; the file is restored afterwards."""
    [[hba_file]] = admin_sql(pg_server, "SHOW hba_file")
    original = Path(hba_file).read_text()
    Path(hba_file).write_text(f"local all {PASSWORD_ROLE} scram-sha-256\n" + original)
    role = sql.Identifier(PASSWORD_ROLE)
    admin_sql(
        pg_server, sql.SQL("CREATE ROLE {} LOGIN PASSWORD %s").format(role), (FIRST_PASSWORD,)
    )
    admin_sql(pg_server, "SELECT pg_reload_conf()")
    server = parse_dsn(pg_server.dsn())
    yield {
        "host": server["host"],  # the socket folder: libpq does no TLS there
        "port": int(server.get("port", 5432)),
        "dbname": "postgres",
        "username": PASSWORD_ROLE,
        "password": FIRST_PASSWORD,
    }
    Path(hba_file).write_text(original)
    admin_sql(pg_server, "SELECT pg_reload_conf()")
    admin_sql(pg_server, sql.SQL("DROP ROLE {}").format(role))


def wrong_password_dsn(role: dict, password: str) -> str:
    """A DSN for the password role with ``password`` (not its own)."""
    return (
        f"host={role['host']} port={role['port']} dbname=postgres "
        f"user={PASSWORD_ROLE} password={password}"
    )
