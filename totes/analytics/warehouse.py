"""Which warehouse the notebook reads, and reading its views into polars frames.

The warehouse is ``$WAREHOUSE_DSN`` (from the environment or a git-ignored ``.env`` file,
the same variable the ``totes`` command reads), else the local one that ``make run`` fills,
on the embedded PostgreSQL, which is started if need be and stops when the notebook's
kernel ends (unless something else still uses it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import psycopg2
from psycopg2 import sql

from totes.local.embedded_postgres import DEFAULT_STATE_DIR, STATE_DIR_ENV, state_dir
from totes.local.psql import without_password
from totes.pipeline.warehouse_views import VIEW_NAMES

WAREHOUSE_DSN = "WAREHOUSE_DSN"
ENV_FILE_VARIABLE = "TOTES_ENV_FILE"  # the `totes` command's (totes.local.cli)


class WarehouseNotReadyError(RuntimeError):
    """The warehouse has no views yet: nothing has been loaded into it."""


def load_dotenv_file() -> Path | None:
    """Read ``$TOTES_ENV_FILE`` (as the ``totes`` command does; empty: none), else the
    nearest ``.env`` (this folder or a parent: a kernel runs in ``notebooks/``). Variables
    already set are kept."""
    from dotenv import find_dotenv, load_dotenv

    named = os.environ.get(ENV_FILE_VARIABLE)
    found = named if named is not None else find_dotenv(usecwd=True)
    if not found or not Path(found).is_file():
        return None
    load_dotenv(found, override=False)
    return Path(found)


def use_project_state_dir() -> Path:
    """The local state folder ``make run`` uses, found from inside the repository too.

    A notebook's kernel runs in ``notebooks/``: without this, ``.state`` would mean a new,
    empty ``notebooks/.state``. ``$TOTES_STATE_DIR`` still wins when set.
    """
    if STATE_DIR_ENV not in os.environ:
        here = Path.cwd().resolve()
        for folder in (here, *here.parents):
            if (folder / DEFAULT_STATE_DIR).is_dir() or (folder / "pyproject.toml").is_file():
                os.environ[STATE_DIR_ENV] = str(folder / DEFAULT_STATE_DIR)
                break
    return state_dir()


def warehouse_dsn() -> str:
    """``$WAREHOUSE_DSN`` (``.env`` included), else the local embedded warehouse's DSN."""
    load_dotenv_file()
    configured = os.environ.get(WAREHOUSE_DSN)
    if configured:
        return configured
    use_project_state_dir()
    from totes.local import environment  # starts the embedded server in this process

    return environment.warehouse_dsn()


@dataclass(frozen=True)
class Warehouse:
    dsn: str

    @classmethod
    def connect(cls) -> Warehouse:
        """The configured warehouse, checked to hold the views the notebook reads."""
        warehouse = cls(warehouse_dsn())
        warehouse.check_ready()
        return warehouse

    @property
    def description(self) -> str:
        """Where this is, for people to read: the DSN without its password."""
        return without_password(self.dsn)

    def check_ready(self) -> None:
        missing = self.query(
            "SELECT name FROM unnest(%s::text[]) AS name WHERE to_regclass(name) IS NULL",
            (list(VIEW_NAMES),),
        )
        if missing.height:
            raise WarehouseNotReadyError(
                f"the warehouse ({self.description}) has no view {missing['name'][0]} yet: "
                "run `make run` (or the pipeline against it) first"
            )

    def view(self, name: str) -> pl.DataFrame:
        """Every row of one of the warehouse's views (``totes.pipeline.warehouse_views``)."""
        if name not in VIEW_NAMES:
            raise KeyError(f"{name!r} is not one of the warehouse's views {VIEW_NAMES}")
        return self.query(sql.SQL("SELECT * FROM {}").format(sql.Identifier(name)))

    def query(self, statement: str | sql.Composable, params: tuple = ()) -> pl.DataFrame:
        """Any SELECT, as a frame with the result's column names."""
        conn = psycopg2.connect(self.dsn, application_name="totes-notebook")
        try:
            with conn, conn.cursor() as cur:
                cur.execute(statement, params or None)
                names = [d.name for d in cur.description]
                rows = cur.fetchall()
        finally:
            conn.close()
        return pl.DataFrame(rows, schema=names, orient="row", infer_schema_length=None)
