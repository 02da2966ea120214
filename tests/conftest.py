"""Shared fixtures: one embedded PostgreSQL per test session, a fresh database per test."""

from __future__ import annotations

import itertools
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from totes.embedded_postgres import EmbeddedPostgres

_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[EmbeddedPostgres]:
    # Not pytest's tmp_path: as root, pgserver runs postgres as the user 'pgserver', which
    # cannot enter pytest's private (0700) temp folders.
    root = Path(tempfile.mkdtemp(prefix="totes-pg-"))
    root.chmod(0o755)
    server = EmbeddedPostgres(root / "pgdata", delete_on_exit=True)
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def new_database(pg_server: EmbeddedPostgres) -> Iterator[callable]:
    """A factory of empty databases, each dropped after the test."""
    created: list[str] = []

    def make(label: str = "db") -> str:
        name = f"t_{label}_{next(_counter)}"
        created.append(name)
        return pg_server.ensure_database(name)

    yield make
    for name in created:
        pg_server.drop_database(name)


@pytest.fixture
def empty_db(new_database) -> str:
    """The DSN of a new, empty database."""
    return new_database("empty")
