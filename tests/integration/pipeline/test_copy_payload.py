"""The load's binary COPY stores exactly what CSV stores: the same values, the same version
hashes (a version loaded one way is the same version loaded the other)."""

from __future__ import annotations

import io
from datetime import date, time
from decimal import Decimal

import polars as pl
import psycopg2.errors
import pytest
from psycopg2 import sql

from tests.support.sql import query
from totes.pipeline.copy_payload import copy_payload, is_fixed_width
from totes.pipeline.db import connect
from totes.pipeline.load import ensure_warehouse
from totes.schema.warehouse import WAREHOUSE_TABLES, warehouse_table

# Values at the edges of each type: negative, zero and largest money; midnight and the last
# millisecond; days before 2000 (the binary format's epoch), on it and far after.
PAYMENTS = pl.DataFrame(
    {
        "payment_id": [1, 2, 3, 2_147_483_647],
        "created_date": [date(1999, 12, 31), date(2000, 1, 1), date(2022, 11, 3), date(2099, 1, 1)],
        # As the processed Parquet holds times of day (text, for Athena).
        "created_time": ["00:00:00.000", "23:59:59.999", "14:20:52.186", "12:00:00.001"],
        "last_updated_date": [date(1970, 1, 1), date(2000, 1, 2), date(2022, 11, 3),
                              date(2024, 2, 29)],
        "last_updated_time": ["00:00:00.001", "01:02:03.000", "14:20:52.186", "09:09:09.090"],
        "transaction_id": [1, 2, 3, 4],
        "counterparty_id": [1, 2, 3, 4],
        "payment_amount": [Decimal("-12345.67"), Decimal("0.00"), Decimal("99999999.99"),
                           Decimal("0.05")],
        "currency_id": [1, 2, 3, 1],
        "payment_type_id": [1, 2, 3, 4],
        "paid": [True, False, True, False],
        "payment_date": [date(2000, 1, 1), date(1999, 1, 1), date(2022, 11, 5), date(2030, 6, 15)],
    },
    schema=warehouse_table("fact_payment").polars_schema,
)  # fmt: skip


def _csv_copy(cur, frame: pl.DataFrame, into: str) -> None:
    buffer = io.BytesIO()
    frame.write_csv(buffer)
    buffer.seek(0)
    cur.copy_expert(
        sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv, HEADER true)").format(
            sql.Identifier(into), sql.SQL(", ").join(sql.Identifier(c) for c in frame.columns)
        ),
        buffer,
    )


def test_binary_copy_stores_what_csv_stores_with_the_same_version_hashes(warehouse_dsn):
    table = warehouse_table("fact_payment")
    assert is_fixed_width(table)
    with connect(warehouse_dsn) as conn:
        ensure_warehouse(conn)
        with conn, conn.cursor() as cur:
            for name in ("by_binary", "by_csv"):
                cur.execute(
                    sql.SQL("CREATE TABLE {} (LIKE fact_payment INCLUDING ALL)").format(
                        sql.Identifier(name)
                    )
                )
            payload = copy_payload(PAYMENTS, table, sql.Identifier("by_binary"), {"batch_id": "b1"})
            with payload.file:
                cur.copy_expert(payload.statement, payload.file)
            assert cur.rowcount == payload.rows == 4
            _csv_copy(cur, PAYMENTS.with_columns(batch_id=pl.lit("b1")), "by_csv")
    columns = ", ".join([*table.column_names, "batch_id", "version_hash"])
    by_binary = query(warehouse_dsn, f"SELECT {columns} FROM by_binary ORDER BY payment_id")
    assert by_binary == query(warehouse_dsn, f"SELECT {columns} FROM by_csv ORDER BY payment_id")
    assert [row[7] for row in by_binary] == [
        Decimal("-12345.67"), Decimal("0.00"), Decimal("99999999.99"), Decimal("0.05")
    ]  # fmt: skip
    assert [row[2] for row in by_binary][:2] == [time(0, 0), time(23, 59, 59, 999_000)]
    assert [row[1] for row in by_binary][:2] == [date(1999, 12, 31), date(2000, 1, 1)]


def test_a_table_with_text_or_nullable_columns_goes_as_csv():
    binary = {t.name for t in WAREHOUSE_TABLES if is_fixed_width(t)}
    assert binary == {"fact_sales_order", "fact_payment"}
    payload = copy_payload(
        pl.DataFrame(schema=warehouse_table("dim_transaction").polars_schema),
        warehouse_table("dim_transaction"),
        sql.Identifier("t"),
    )
    with payload.file:
        assert (
            payload.file.read()
            == b"transaction_id,transaction_type,sales_order_id,purchase_order_id\n"
        )


@pytest.mark.parametrize("rows", [0, 1])
def test_an_empty_or_one_row_frame_is_a_whole_binary_stream(warehouse_dsn, rows):
    table = warehouse_table("fact_payment")
    with connect(warehouse_dsn) as conn:
        ensure_warehouse(conn)
        with conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE payments (LIKE fact_payment INCLUDING ALL)")
            payload = copy_payload(
                PAYMENTS.head(rows), table, sql.Identifier("payments"), {"batch_id": "b1"}
            )
            with payload.file:
                cur.copy_expert(payload.statement, payload.file)
            assert cur.rowcount == rows
    assert query(warehouse_dsn, "SELECT payment_id FROM payments") == [(1,)] * rows


def test_a_null_in_a_binary_table_is_refused_by_the_server_not_written_as_zero(warehouse_dsn):
    table = warehouse_table("fact_payment")
    with_null = PAYMENTS.with_columns(
        payment_amount=pl.when(pl.col("payment_id") == 2).then(None).otherwise("payment_amount")
    )
    with connect(warehouse_dsn) as conn:
        ensure_warehouse(conn)
        with conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE payments (LIKE fact_payment INCLUDING ALL)")
            payload = copy_payload(with_null, table, sql.Identifier("payments"), {"batch_id": "b"})
            with (
                payload.file,
                pytest.raises(psycopg2.errors.NotNullViolation, match="payment_amount"),
            ):
                cur.copy_expert(payload.statement, payload.file)
