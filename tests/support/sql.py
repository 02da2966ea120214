"""Running SQL against a test database: one connection per call, committed."""

from __future__ import annotations

from typing import Any

import psycopg2
from psycopg2.sql import Composable

Statement = str | Composable


def query(dsn: str, statement: Statement, params: tuple | dict = ()) -> list[tuple]:
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(statement, params or None)
            return cur.fetchall()
    finally:
        conn.close()


def one(dsn: str, statement: Statement, params: tuple | dict = ()) -> Any:
    """The first column of the first row."""
    return query(dsn, statement, params)[0][0]


def execute(dsn: str, statement: Statement, params: tuple | dict = ()) -> None:
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(statement, params or None)
    finally:
        conn.close()
