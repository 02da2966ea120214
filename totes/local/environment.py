"""The laptop's defaults: the embedded PostgreSQL's two databases and the lake folder; and
what a command uses: its option, else the environment (and .env), else those defaults."""

from __future__ import annotations

import os
from pathlib import Path

from totes.local.embedded_postgres import EmbeddedPostgres, local_server, state_dir
from totes.totesys.database import read_only_dsn

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


def chosen_source_dsn(given: str | None, *, read_only: bool = True) -> str:
    """ToteSys: ``given``, else SOURCE_DSN, else the embedded one, read as the read-only
    role the pipeline uses (unless ``read_only`` is False)."""
    if chosen := given or os.environ.get("SOURCE_DSN"):
        return chosen
    return read_only_dsn(source_dsn(), READER_ROLE) if read_only else source_dsn()


def chosen_warehouse_dsn(given: str | None) -> str:
    """The warehouse: ``given``, else WAREHOUSE_DSN, else the embedded one."""
    return given or os.environ.get("WAREHOUSE_DSN") or warehouse_dsn()


def chosen_lake(given: str | None) -> str:
    """The lake: ``given``, else LAKE, else the local state folder's."""
    return given or os.environ.get("LAKE") or str(lake_path())
