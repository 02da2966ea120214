"""ToteSys, the operational database we extract from: the one source of truth for its schema.

The physical types are those of the live database (Prisma-managed): strings are ``text``,
timestamps ``timestamp(3)`` without time zone, money ``numeric(10,2)``, agreed and payment
dates are ``text`` holding ``yyyy-mm-dd``. The simulator's DDL (``totes.totesys.schema_ddl``),
the extractor's column lists, the CSV reader and the tests all read this module.
"""

from __future__ import annotations

from dataclasses import dataclass

ENUM_TYPES: dict[str, tuple[str, ...]] = {
    "PaymentTypeName": ("SALES_RECEIPT", "SALES_REFUND", "PURCHASE_PAYMENT", "PURCHASE_REFUND"),
    "TransactionType": ("SALE", "PURCHASE"),
}


@dataclass(frozen=True)
class Column:
    name: str
    pg_type: str
    nullable: bool = False
    references: str | None = None  # the referenced table; its primary key is the target
    on_delete: str = "RESTRICT"
    unique: bool = False


@dataclass(frozen=True)
class SourceTable:
    name: str
    columns: tuple[Column, ...]

    @property
    def primary_key(self) -> str:
        """Every ToteSys table has a single integer key, its first column."""
        return self.columns[0].name

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> Column:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(f"table {self.name!r} has no column {name!r}")


def _pk(table: str) -> Column:
    return Column(f"{table}_id", "serial")


CREATED_AT = Column("created_at", "timestamp(3)")
LAST_UPDATED = Column("last_updated", "timestamp(3)")
MONEY = "numeric(10,2)"


def _fk(name: str, table: str, *, nullable: bool = False, on_delete: str = "RESTRICT") -> Column:
    return Column(name, "integer", nullable=nullable, references=table, on_delete=on_delete)


# Declared in dependency order (a table only references tables above it), and with each
# table's columns in the live database's order, which differs between tables.
SOURCE_TABLES: tuple[SourceTable, ...] = (
    SourceTable(
        "address",
        (
            _pk("address"),
            Column("address_line_1", "text"),
            Column("address_line_2", "text", nullable=True),
            Column("district", "text", nullable=True),
            Column("city", "text"),
            Column("postal_code", "text"),
            Column("country", "text"),
            Column("phone", "text"),
            CREATED_AT,
            LAST_UPDATED,
        ),
    ),
    SourceTable(
        "counterparty",
        (
            _pk("counterparty"),
            Column("counterparty_legal_name", "text"),
            _fk("legal_address_id", "address"),
            Column("commercial_contact", "text", nullable=True),
            Column("delivery_contact", "text", nullable=True),
            CREATED_AT,
            LAST_UPDATED,
        ),
    ),
    SourceTable(
        "currency",
        (_pk("currency"), Column("currency_code", "varchar(3)"), CREATED_AT, LAST_UPDATED),
    ),
    SourceTable(
        "department",
        (
            _pk("department"),
            Column("department_name", "text"),
            Column("location", "text", nullable=True),
            Column("manager", "text", nullable=True),
            CREATED_AT,
            LAST_UPDATED,
        ),
    ),
    SourceTable(
        "design",
        (
            _pk("design"),
            CREATED_AT,
            Column("design_name", "text"),
            Column("file_location", "text"),
            Column("file_name", "text"),
            LAST_UPDATED,
        ),
    ),
    SourceTable(
        "staff",
        (
            _pk("staff"),
            Column("first_name", "text"),
            Column("last_name", "text"),
            _fk("department_id", "department"),
            Column("email_address", "text"),
            CREATED_AT,
            LAST_UPDATED,
        ),
    ),
    SourceTable(
        "payment_type",
        (
            _pk("payment_type"),
            Column("payment_type_name", '"PaymentTypeName"'),
            CREATED_AT,
            LAST_UPDATED,
        ),
    ),
    SourceTable(
        "sales_order",
        (
            _pk("sales_order"),
            CREATED_AT,
            LAST_UPDATED,
            _fk("design_id", "design"),
            _fk("staff_id", "staff"),
            _fk("counterparty_id", "counterparty"),
            Column("units_sold", "integer"),
            Column("unit_price", MONEY),
            _fk("currency_id", "currency"),
            Column("agreed_delivery_date", "text"),
            Column("agreed_payment_date", "text"),
            _fk("agreed_delivery_location_id", "address"),
        ),
    ),
    SourceTable(
        "purchase_order",
        (
            _pk("purchase_order"),
            CREATED_AT,
            LAST_UPDATED,
            _fk("staff_id", "staff"),
            _fk("counterparty_id", "counterparty"),
            Column("item_code", "text"),
            Column("item_quantity", "integer"),
            Column("item_unit_price", MONEY),
            _fk("currency_id", "currency"),
            Column("agreed_delivery_date", "text"),
            Column("agreed_payment_date", "text"),
            _fk("agreed_delivery_location_id", "address"),
        ),
    ),
    SourceTable(
        "transaction",
        (
            _pk("transaction"),
            Column("transaction_type", '"TransactionType"'),
            Column(
                "sales_order_id",
                "integer",
                nullable=True,
                references="sales_order",
                on_delete="SET NULL",
                unique=True,
            ),
            Column(
                "purchase_order_id",
                "integer",
                nullable=True,
                references="purchase_order",
                on_delete="SET NULL",
                unique=True,
            ),
            CREATED_AT,
            LAST_UPDATED,
        ),
    ),
    SourceTable(
        "payment",
        (
            _pk("payment"),
            CREATED_AT,
            LAST_UPDATED,
            Column("transaction_id", "integer", references="transaction", unique=True),
            _fk("counterparty_id", "counterparty"),
            Column("payment_amount", MONEY),
            _fk("currency_id", "currency"),
            _fk("payment_type_id", "payment_type"),
            Column("paid", "boolean"),
            Column("payment_date", "text"),
            Column("company_ac_number", "integer"),
            Column("counterparty_ac_number", "integer"),
        ),
    ),
)

SOURCE_TABLE_NAMES: tuple[str, ...] = tuple(t.name for t in SOURCE_TABLES)
_BY_NAME = {t.name: t for t in SOURCE_TABLES}


def source_table(name: str) -> SourceTable:
    """The table called ``name``; a KeyError names the unknown table (allow-list check)."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"{name!r} is not a ToteSys table we extract") from None


# Tables the transform needs whole (dim_staff and dim_counterparty join them in full): the
# extract writes a full copy of one whenever any of its rows changed. They are small.
FULL_COPY_TABLES: tuple[str, ...] = ("address", "counterparty", "department", "staff")

# How PostgreSQL's format_type() spells each declared type, to detect a retyped column.
_CATALOG_TYPES = {
    "serial": "integer",
    "integer": "integer",
    "text": "text",
    "boolean": "boolean",
    "timestamp(3)": "timestamp(3) without time zone",
    "numeric(10,2)": "numeric(10,2)",
    "varchar(3)": "character varying(3)",
}


def catalog_type(col: Column) -> str:
    """The type as ``format_type()`` prints it for a column declared like ``col``."""
    if col.pg_type.startswith('"'):
        return col.pg_type  # an enum: format_type quotes mixed-case names the same way
    return _CATALOG_TYPES[col.pg_type]


def foreign_keys() -> list[tuple[SourceTable, Column]]:
    """Every (table, column) that references another table."""
    return [(t, c) for t in SOURCE_TABLES for c in t.columns if c.references]
