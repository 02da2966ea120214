"""Shared fixtures: one embedded PostgreSQL per test session, a fresh database per test."""

from __future__ import annotations

import itertools
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters
from moto import mock_aws

from totes.local.embedded_postgres import EmbeddedPostgres

_counter = itertools.count()
_TIERS = ("unit", "integration", "cdk")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test with its tier, from its folder (tests/<tier>/...), so that
    ``-m "not integration"`` means what it says."""
    for item in items:
        parts = Path(str(item.path)).parts
        tier = next((part for part in parts if part in _TIERS), None)
        if tier is not None:
            item.add_marker(getattr(pytest.mark, tier))
        if tier == "cdk":
            # With pytest-xdist (make test runs two workers), the CDK tests share one worker:
            # their session fixture synthesises the app once per worker that runs them.
            item.add_marker(pytest.mark.xdist_group("cdk"))


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


@contextmanager
def _databases(server: EmbeddedPostgres) -> Iterator[Callable[[str], str]]:
    """A factory of empty databases, each dropped on exit."""
    created: list[str] = []

    def make(label: str = "db") -> str:
        name = f"t_{label}_{next(_counter)}"
        created.append(name)
        return server.ensure_database(name)

    yield make
    for name in created:
        server.drop_database(name)


@pytest.fixture
def new_database(pg_server: EmbeddedPostgres) -> Iterator[Callable[[str], str]]:
    """Empty databases for one test: ``new_database(label)`` returns a DSN."""
    with _databases(pg_server) as make:
        yield make


@pytest.fixture(scope="module")
def module_database(pg_server: EmbeddedPostgres) -> Iterator[Callable[[str], str]]:
    """Empty databases that live for a whole module (when seeding once is what costs)."""
    with _databases(pg_server) as make:
        yield make


@pytest.fixture
def empty_db(new_database) -> str:
    """The DSN of a new, empty database."""
    return new_database("empty")


SMALL_SCALE = 0.02  # ~220 sales orders: every shape of the real data, in a second


@pytest.fixture(scope="session")
def seeded_template(pg_server: EmbeddedPostgres) -> str:
    """A small seeded ToteSys, made once per session, to clone from (CREATE ... TEMPLATE)."""
    from totes.totesys.seed import seed_totesys

    name = "t_totesys_template"
    pg_server.drop_database(name)
    seed_totesys(pg_server.ensure_database(name), seed=7, scale=SMALL_SCALE)
    return name


@pytest.fixture
def totesys_dsn(pg_server: EmbeddedPostgres, seeded_template: str) -> Iterator[str]:
    """A fresh copy of the small seeded ToteSys for one test."""
    import psycopg2
    from psycopg2 import sql

    name = f"t_totesys_{next(_counter)}"
    conn = psycopg2.connect(pg_server.dsn())
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(seeded_template)
            )
        )
    conn.close()
    yield pg_server.dsn(name)
    pg_server.drop_database(name)


@pytest.fixture
def warehouse_dsn(new_database) -> str:
    return new_database("warehouse")


@pytest.fixture
def secretsmanager(monkeypatch: pytest.MonkeyPatch) -> Iterator:
    """A Secrets Manager client on moto, with Powertools' secret cache empty before and
    after (a secret cached by one test must not answer for another)."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-2")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    parameters.clear_caches()
    with mock_aws():
        yield boto3.client("secretsmanager")
    parameters.clear_caches()
