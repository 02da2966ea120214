"""One generated warehouse (and its lake) for the analytics tests: the small seeded ToteSys,
loaded, then moved on a few days with a pipeline run after each."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import pytest
from psycopg2 import sql

from totes.analytics.sample_warehouse import fill
from totes.local.embedded_postgres import EmbeddedPostgres
from totes.pipeline.lake import Lake

DAYS = 4


@dataclass(frozen=True)
class Generated:
    source_dsn: str
    warehouse_dsn: str
    lake_path: Path

    @property
    def lake(self) -> Lake:
        return Lake.from_uri(str(self.lake_path))


@pytest.fixture(scope="package")
def generated(
    pg_server: EmbeddedPostgres, seeded_template: str, tmp_path_factory
) -> Iterator[Generated]:
    conn = psycopg2.connect(pg_server.dsn())
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(sql.SQL("DROP DATABASE IF EXISTS t_analytics_totesys WITH (FORCE)"))
        cur.execute(
            sql.SQL("CREATE DATABASE t_analytics_totesys TEMPLATE {}").format(
                sql.Identifier(seeded_template)
            )
        )
    conn.close()
    pg_server.drop_database("t_analytics_warehouse")
    source = pg_server.dsn("t_analytics_totesys")
    warehouse = pg_server.ensure_database("t_analytics_warehouse")
    lake_path = tmp_path_factory.mktemp("analytics") / "lake"
    fill(source, warehouse, Lake.from_uri(str(lake_path)), days=DAYS)
    yield Generated(source, warehouse, lake_path)
    pg_server.drop_database("t_analytics_totesys")
    pg_server.drop_database("t_analytics_warehouse")
