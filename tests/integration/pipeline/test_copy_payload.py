"""The load's binary COPY stores exactly what CSV stores: the same values, the same version
hashes (a version loaded one way is the same version loaded the other)."""

from __future__ import annotations

import io
from datetime import date
from decimal import Decimal

import polars as pl
import psycopg2.errors
import pytest
from psycopg2 import sql

from tests.support.sql import query
from totes.pipeline.copy_payload import MAX_LAYOUTS, CopyPayload, copy_payload
from totes.pipeline.db import connect
from totes.pipeline.load import ensure_warehouse
from totes.schema.warehouse import WAREHOUSE_TABLES, WarehouseTable, warehouse_table

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

# NULLs, text of several lengths, multi-byte UTF-8, the empty string, CSV's special
# characters: a few layouts, so a dimension goes in binary, group by group.
LOCATIONS = pl.DataFrame(
    {
        "location_id": [1, 2, 3, 4, 5],
        "address_line_1": ["6826 Herzog Via", "Straße 7", "", 'a "quoted", line\nbreak', "x"],
        "address_line_2": [None, "Flat 2", None, "", "Ünit 9"],
        "district": ["Avon", None, "Avon", None, "Kent"],
        "city": ["New Patienceburgh", "Aliso Viejo", "Lake Charles", "Ω", "Ely"],
        "postal_code": ["28441", "99305-7380", "", "x", "CB7"],
        "country": ["Turkey", "San Marino", "Chad", "Peru", "UK"],
        "phone": ["1803 637401", "9621 880720", "0", "1", "2"],
    },
    schema=warehouse_table("dim_location").polars_schema,
)

TRANSACTIONS = pl.DataFrame(
    {
        "transaction_id": [1, 2, 3],
        "transaction_type": ["SALE", "PURCHASE", "SALE"],
        "sales_order_id": [1, None, 2],
        "purchase_order_id": [None, 1, None],
    },
    schema=warehouse_table("dim_transaction").polars_schema,
)


def _payload(frame: pl.DataFrame, table: WarehouseTable, into: str) -> CopyPayload:
    return copy_payload(frame, table, sql.Identifier(into), {"batch_id": "b1"})


def _is_binary(payload: CopyPayload) -> bool:
    start = payload.file.read(6)
    payload.file.seek(0)
    return start == b"PGCOPY"


def _csv_copy(cur, frame: pl.DataFrame, into: str) -> None:
    buffer = io.BytesIO()
    frame.with_columns(batch_id=pl.lit("b1")).write_csv(buffer)
    buffer.seek(0)
    cur.copy_expert(
        sql.SQL("COPY {} ({}, batch_id) FROM STDIN WITH (FORMAT csv, HEADER true)").format(
            sql.Identifier(into), sql.SQL(", ").join(sql.Identifier(c) for c in frame.columns)
        ),
        buffer,
    )


@pytest.mark.parametrize(
    ("frame", "name"),
    [(PAYMENTS, "fact_payment"), (LOCATIONS, "dim_location"), (TRANSACTIONS, "dim_transaction")],
)
def test_binary_copy_stores_what_csv_stores_with_the_same_version_hashes(
    warehouse_dsn, frame, name
):
    table = warehouse_table(name)
    with connect(warehouse_dsn) as conn:
        ensure_warehouse(conn)
        with conn, conn.cursor() as cur:
            for copy in ("by_binary", "by_csv"):
                cur.execute(
                    sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING ALL)").format(
                        sql.Identifier(copy), sql.Identifier(name)
                    )
                )
            payload = _payload(frame, table, "by_binary")
            assert _is_binary(payload)
            with payload.file:
                cur.copy_expert(payload.statement, payload.file)
            assert cur.rowcount == payload.rows == frame.height
            _csv_copy(cur, frame, "by_csv")
    hashed = ["version_hash"] if table.kind == "fact" else []
    columns = ", ".join([*table.column_names, "batch_id", *hashed])
    by_binary = query(warehouse_dsn, f"SELECT {columns} FROM by_binary ORDER BY {table.key}")
    assert by_binary == query(warehouse_dsn, f"SELECT {columns} FROM by_csv ORDER BY {table.key}")
    assert len(by_binary) == frame.height


def test_money_and_times_arrive_exactly(warehouse_dsn):
    table = warehouse_table("fact_payment")
    with connect(warehouse_dsn) as conn:
        ensure_warehouse(conn)
        with conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE payments (LIKE fact_payment INCLUDING ALL)")
            payload = _payload(PAYMENTS, table, "payments")
            with payload.file:
                cur.copy_expert(payload.statement, payload.file)
    found = query(
        warehouse_dsn,
        "SELECT payment_amount, created_time::text, created_date FROM payments ORDER BY payment_id",
    )
    assert found == [
        (Decimal("-12345.67"), "00:00:00", date(1999, 12, 31)),
        (Decimal("0.00"), "23:59:59.999", date(2000, 1, 1)),
        (Decimal("99999999.99"), "14:20:52.186", date(2022, 11, 3)),
        (Decimal("0.05"), "12:00:00.001", date(2099, 1, 1)),
    ]


def test_which_parts_go_in_binary():
    # A fact part of one layout: binary, in order.
    assert _is_binary(_payload(PAYMENTS, warehouse_table("fact_payment"), "t"))
    # A fact part of two layouts (item codes of two lengths): CSV, so no row moves.
    orders = pl.DataFrame(
        {"item_code": ["ABCDEFG", "ABC"]}, schema={"item_code": pl.String}
    ).with_columns(
        pl.lit(None).cast(dtype).alias(name)
        for name, dtype in warehouse_table("fact_purchase_order").polars_schema.items()
        if name != "item_code"
    )
    assert not _is_binary(_payload(orders, warehouse_table("fact_purchase_order"), "t"))
    # A dimension of a few layouts: binary; of many (names of every length): CSV.
    assert _is_binary(_payload(LOCATIONS, warehouse_table("dim_location"), "t"))
    designs = pl.DataFrame(
        {
            "design_id": list(range(MAX_LAYOUTS + 1)),
            "design_name": ["x" * n for n in range(MAX_LAYOUTS + 1)],
            "file_location": ["/usr"] * (MAX_LAYOUTS + 1),
            "file_name": ["a.json"] * (MAX_LAYOUTS + 1),
        },
        schema=warehouse_table("dim_design").polars_schema,
    )
    assert not _is_binary(_payload(designs, warehouse_table("dim_design"), "t"))
    assert _is_binary(_payload(designs.head(MAX_LAYOUTS), warehouse_table("dim_design"), "t"))


def test_every_warehouse_type_has_a_binary_encoding():
    types = {c.pg_type for t in WAREHOUSE_TABLES for c in t.columns}
    assert types <= {"integer", "date", "time(3)", "numeric(10,2)", "boolean", "text"}


@pytest.mark.parametrize("rows", [0, 1])
def test_an_empty_or_one_row_frame_is_a_whole_binary_stream(warehouse_dsn, rows):
    table = warehouse_table("fact_payment")
    with connect(warehouse_dsn) as conn:
        ensure_warehouse(conn)
        with conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE payments (LIKE fact_payment INCLUDING ALL)")
            payload = _payload(PAYMENTS.head(rows), table, "payments")
            assert _is_binary(payload)
            with payload.file:
                cur.copy_expert(payload.statement, payload.file)
            assert cur.rowcount == rows
    assert query(warehouse_dsn, "SELECT payment_id FROM payments") == [(1,)] * rows


def test_a_null_in_a_not_null_column_is_refused_by_the_server_not_written_as_zero(warehouse_dsn):
    table = warehouse_table("fact_payment")
    with_null = PAYMENTS.with_columns(
        payment_amount=pl.when(pl.col("payment_id") == 2).then(None).otherwise("payment_amount")
    )
    with connect(warehouse_dsn) as conn:
        ensure_warehouse(conn)
        with conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE payments (LIKE fact_payment INCLUDING ALL)")
            payload = _payload(with_null, table, "payments")
            with payload.file, pytest.raises(psycopg2.errors.NotNullViolation, match="amount"):
                cur.copy_expert(payload.statement, payload.file)


def _purchase_orders() -> pl.DataFrame:
    """Two purchase orders whose item codes differ in length: a fact part of two layouts."""
    value = {"integer": 7, "date": date(2024, 5, 6), "time(3)": "08:09:10.011",
             "numeric(10,2)": Decimal("3.50"), "boolean": True, "text": "x"}  # fmt: skip
    table = warehouse_table("fact_purchase_order")
    columns = {c.name: [value[c.pg_type]] * 2 for c in table.columns}
    columns[table.key] = [1, 2]
    columns["item_code"] = ["ABCDEFG", "ABC"]
    return pl.DataFrame(columns, schema=table.polars_schema)


@pytest.mark.parametrize(
    ("frame", "name", "binary"),
    [(PAYMENTS, "fact_payment", True), (_purchase_orders(), "fact_purchase_order", False)],
)
def test_a_facts_rows_can_carry_their_record_ids_counted_up_in_order(
    warehouse_dsn, frame, name, binary
):
    """As a new warehouse's build sends them (``load_build``), in binary and in CSV."""
    table = warehouse_table(name)
    with connect(warehouse_dsn) as conn:
        ensure_warehouse(conn)
        with conn, conn.cursor() as cur:
            numbered = sql.SQL("CREATE TABLE numbered (LIKE {} INCLUDING ALL)")
            cur.execute(numbered.format(sql.Identifier(name)))
            payload = copy_payload(
                frame, table, sql.Identifier("numbered"), {"batch_id": "b1"}, first_record_id=41
            )
            assert _is_binary(payload) == binary
            with payload.file:
                cur.copy_expert(payload.statement, payload.file)
    ids = sql.SQL("SELECT {}, {} FROM numbered ORDER BY 1").format(
        sql.Identifier(table.record_id), sql.Identifier(table.key)
    )
    keys = frame[table.key].to_list()
    assert query(warehouse_dsn, ids) == [(41 + n, key) for n, key in enumerate(keys)]
