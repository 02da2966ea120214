"""The laptop's defaults: the embedded PostgreSQL's two databases and the lake folder."""

from __future__ import annotations

from pathlib import Path

from totes.local.embedded_postgres import EmbeddedPostgres, local_server, state_dir

SOURCE_DATABASE = "totesys"
WAREHOUSE_DATABASE = "warehouse"
# The login `make run` gives the pipeline on ToteSys: SELECT on the 11 tables, nothing else.
READER_ROLE = "totes_reader"

_server: EmbeddedPostgres | None = None


def server() -> EmbeddedPostgres:
    """The embedded server of the local state folder, started once per process."""
    global _server
    if _server is None:
        _server = local_server()
    return _server


def source_dsn() -> str:
    return server().ensure_database(SOURCE_DATABASE)


def warehouse_dsn() -> str:
    return server().ensure_database(WAREHOUSE_DATABASE)


def lake_path() -> Path:
    return state_dir() / "lake"
