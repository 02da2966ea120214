"""The warehouse's three overlapping star schemas: the one source of truth for their shape.

Analysts and BI tools query these exact table and column names; the transform's output
types, the Parquet files, the DDL, the load SQL and the tests all derive from here.

Lineage columns of our own (allowed beside the published ones):
- every table: ``batch_id``, the lake batch that last wrote the row;
- facts: ``version_hash``, a hash of the row's business columns, which with the natural id
  identifies a version so that re-reading or re-loading a version never duplicates it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import polars as pl

Kind = Literal["dimension", "fact"]

# A time of day travels as text, 'HH:MM:SS.fff': Parquet's TIME type is not one Athena
# reads, and the load's COPY turns the text into the warehouse's time(3) unchanged.
TIME_FORMAT = "%H:%M:%S%.3f"

_POLARS_TYPES: dict[str, pl.DataType] = {
    "integer": pl.Int32(),
    "date": pl.Date(),
    "time(3)": pl.String(),
    "numeric(10,2)": pl.Decimal(10, 2),
    "boolean": pl.Boolean(),
    "text": pl.String(),
}


@dataclass(frozen=True)
class Column:
    name: str
    pg_type: str
    nullable: bool = False
    references: str | None = None  # a dimension table, joined on its key

    @property
    def polars_type(self) -> pl.DataType:
        return _POLARS_TYPES[self.pg_type]


@dataclass(frozen=True)
class WarehouseTable:
    name: str
    kind: Kind
    key: str  # dimensions: the natural id (upsert key); facts: the source row's id
    columns: tuple[Column, ...]  # business columns: what the transform produces
    record_id: str | None = None  # facts only: serial surrogate key, one per version

    @property
    def source(self) -> str | None:
        """The ToteSys table whose primary key is this table's natural id (None: dim_date)."""
        return SOURCE_OF.get(self.name)

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def polars_schema(self) -> pl.Schema:
        return pl.Schema({c.name: c.polars_type for c in self.columns})

    @property
    def foreign_keys(self) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if c.references)


def _text(name: str, *, nullable: bool = False) -> Column:
    return Column(name, "text", nullable)


def _int(name: str, references: str | None = None) -> Column:
    return Column(name, "integer", references=references)


def _date(name: str) -> Column:
    return Column(name, "date", references="dim_date")


def _audit_columns() -> tuple[Column, ...]:
    return (
        _date("created_date"),
        Column("created_time", "time(3)"),
        _date("last_updated_date"),
        Column("last_updated_time", "time(3)"),
    )


DIMENSIONS: tuple[WarehouseTable, ...] = (
    WarehouseTable(
        "dim_date",
        "dimension",
        "date_id",
        (
            Column("date_id", "date"),
            _int("year"),
            _int("month"),
            _int("day"),
            _int("day_of_week"),
            _text("day_name"),
            _text("month_name"),
            _int("quarter"),
        ),
    ),
    WarehouseTable(
        "dim_staff",
        "dimension",
        "staff_id",
        (
            _int("staff_id"),
            _text("first_name"),
            _text("last_name"),
            _text("department_name"),
            _text("location"),
            _text("email_address"),
        ),
    ),
    WarehouseTable(
        "dim_location",
        "dimension",
        "location_id",
        (
            _int("location_id"),
            _text("address_line_1"),
            _text("address_line_2", nullable=True),
            _text("district", nullable=True),
            _text("city"),
            _text("postal_code"),
            _text("country"),
            _text("phone"),
        ),
    ),
    WarehouseTable(
        "dim_currency",
        "dimension",
        "currency_id",
        (_int("currency_id"), _text("currency_code"), _text("currency_name")),
    ),
    WarehouseTable(
        "dim_design",
        "dimension",
        "design_id",
        (_int("design_id"), _text("design_name"), _text("file_location"), _text("file_name")),
    ),
    WarehouseTable(
        "dim_counterparty",
        "dimension",
        "counterparty_id",
        (
            _int("counterparty_id"),
            _text("counterparty_legal_name"),
            _text("counterparty_legal_address_line_1"),
            _text("counterparty_legal_address_line_2", nullable=True),
            _text("counterparty_legal_district", nullable=True),
            _text("counterparty_legal_city"),
            _text("counterparty_legal_postal_code"),
            _text("counterparty_legal_country"),
            _text("counterparty_legal_phone_number"),
        ),
    ),
    WarehouseTable(
        "dim_payment_type",
        "dimension",
        "payment_type_id",
        (_int("payment_type_id"), _text("payment_type_name")),
    ),
    WarehouseTable(
        "dim_transaction",
        "dimension",
        "transaction_id",
        (
            _int("transaction_id"),
            _text("transaction_type"),
            Column("sales_order_id", "integer", nullable=True),
            Column("purchase_order_id", "integer", nullable=True),
        ),
    ),
)

FACTS: tuple[WarehouseTable, ...] = (
    WarehouseTable(
        "fact_sales_order",
        "fact",
        "sales_order_id",
        (
            _int("sales_order_id"),
            *_audit_columns(),
            _int("sales_staff_id", "dim_staff"),
            _int("counterparty_id", "dim_counterparty"),
            _int("units_sold"),
            Column("unit_price", "numeric(10,2)"),
            _int("currency_id", "dim_currency"),
            _int("design_id", "dim_design"),
            _date("agreed_payment_date"),
            _date("agreed_delivery_date"),
            _int("agreed_delivery_location_id", "dim_location"),
        ),
        record_id="sales_record_id",
    ),
    WarehouseTable(
        "fact_purchase_order",
        "fact",
        "purchase_order_id",
        (
            _int("purchase_order_id"),
            *_audit_columns(),
            _int("staff_id", "dim_staff"),
            _int("counterparty_id", "dim_counterparty"),
            _text("item_code"),
            _int("item_quantity"),
            Column("item_unit_price", "numeric(10,2)"),
            _int("currency_id", "dim_currency"),
            _date("agreed_delivery_date"),
            _date("agreed_payment_date"),
            _int("agreed_delivery_location_id", "dim_location"),
        ),
        record_id="purchase_record_id",
    ),
    WarehouseTable(
        "fact_payment",
        "fact",
        "payment_id",
        (
            _int("payment_id"),
            *_audit_columns(),
            _int("transaction_id", "dim_transaction"),
            _int("counterparty_id", "dim_counterparty"),
            Column("payment_amount", "numeric(10,2)"),
            _int("currency_id", "dim_currency"),
            _int("payment_type_id", "dim_payment_type"),
            Column("paid", "boolean"),
            _date("payment_date"),
        ),
        record_id="payment_record_id",
    ),
)

# Each table's natural id is the primary key of one ToteSys table: a source row deleted
# there is a warehouse row to mark deleted here.
SOURCE_OF: dict[str, str] = {
    "dim_staff": "staff",
    "dim_location": "address",
    "dim_currency": "currency",
    "dim_design": "design",
    "dim_counterparty": "counterparty",
    "dim_payment_type": "payment_type",
    "dim_transaction": "transaction",
    "fact_sales_order": "sales_order",
    "fact_purchase_order": "purchase_order",
    "fact_payment": "payment",
}

# Load order: dimensions (dim_date first) before the facts that reference them.
WAREHOUSE_TABLES: tuple[WarehouseTable, ...] = DIMENSIONS + FACTS
WAREHOUSE_TABLE_NAMES: tuple[str, ...] = tuple(t.name for t in WAREHOUSE_TABLES)
_BY_NAME = {t.name: t for t in WAREHOUSE_TABLES}


def warehouse_table(name: str) -> WarehouseTable:
    """The table called ``name``; a KeyError names the unknown table (allow-list check)."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"{name!r} is not a warehouse table") from None
