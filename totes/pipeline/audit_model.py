"""What the warehouse should hold, stated as SQL over ToteSys: the audit's own, independent
statement of the remodel (shared/domain warehouse derivations), not derived from the
transform. If the two disagree, one of them is wrong, and the audit says which rows.

Each audited table names, per warehouse column, its type and the ToteSys expression it
comes from. Both sides cast every column to that warehouse type before rendering it as
text, so a row has the same canonical text (and md5) in both databases.

Why not read ``totes.schema.warehouse``: that module imports polars (for the transform's
types), which the audit Lambda does not ship. A test keeps these declarations equal to it
(names, order, types), so the two cannot drift apart silently.

dim_date is audited separately (``totes.pipeline.audit_dates``): it is generated, not
extracted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from totes.schema.currencies import ISO_4217_NAMES

Kind = Literal["dimension", "fact"]

# The warehouse types a column may be cast to; the audit's SQL uses nothing else.
TYPES = frozenset({"integer", "date", "time(3)", "numeric(10,2)", "boolean", "text"})


@dataclass(frozen=True)
class AuditColumn:
    name: str  # the warehouse column
    pg_type: str  # its warehouse type
    source: str  # the ToteSys expression it is derived from (over ``AuditTable.source_from``)


@dataclass(frozen=True)
class AuditTable:
    name: str
    kind: Kind
    key: str  # the natural id: a dimension's key, a fact's source row id
    columns: tuple[AuditColumn, ...]
    # The FROM clause over ToteSys, and the aliases whose last_updated make up the row's
    # "changed at" (a dimension built from a join changes when either side does).
    source_from: str
    changed_by: tuple[str, ...]
    record_id: str | None = None  # facts: the surrogate key, one per version

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def key_index(self) -> int:
        return self.column_names.index(self.key)

    @property
    def source_key(self) -> str:
        return self.columns[self.key_index].source


def _col(name: str, source: str, pg_type: str = "text") -> AuditColumn:
    if pg_type not in TYPES:
        raise ValueError(f"audit column {name}: unknown type {pg_type!r}")
    return AuditColumn(name, pg_type, source)


def _int(name: str, source: str | None = None) -> AuditColumn:
    return _col(name, source or f"s.{name}", "integer")


def _text_date(name: str) -> AuditColumn:
    """A ToteSys text date as the transform reads it: a yyyy-mm-dd that is a day, or NULL.
    The transform sets a row with any other text aside (it is then missing from, or older
    in, the warehouse: a difference); a plain ``::date`` would fail the whole audit on it,
    or read some of them (``2024-1-5``) where the transform does not."""
    text = f"s.{name}"
    # Nested: a CASE evaluates its THEN only when its WHEN holds, so the month is a month.
    last_day = f"extract(day FROM (left({text}, 7) || '-01')::date + interval '1 month - 1 day')"
    return _col(
        name,
        f"CASE WHEN {text} ~ '^\\d{{4}}-(0[1-9]|1[0-2])-(0[1-9]|[12]\\d|3[01])$'"
        f" AND left({text}, 4) <> '0000'"
        f" THEN CASE WHEN substr({text}, 9, 2)::int <= {last_day} THEN {text}::date END END",
        "date",
    )


def _timestamps() -> tuple[AuditColumn, ...]:
    """created_at and last_updated split into date and time (milliseconds kept)."""
    return (
        _col("created_date", "s.created_at::date", "date"),
        _col("created_time", "s.created_at::time(3)", "time(3)"),
        _col("last_updated_date", "s.last_updated::date", "date"),
        _col("last_updated_time", "s.last_updated::time(3)", "time(3)"),
    )


# ISO 4217 names, given to the currency query as two parallel array parameters.
SOURCE_PARAMS = {
    "currency_codes": list(ISO_4217_NAMES),
    "currency_names": list(ISO_4217_NAMES.values()),
}

AUDIT_TABLES: tuple[AuditTable, ...] = (
    AuditTable(
        "dim_staff",
        "dimension",
        "staff_id",
        (
            _int("staff_id"),
            _col("first_name", "s.first_name"),
            _col("last_name", "s.last_name"),
            _col("department_name", "d.department_name"),
            _col("location", "d.location"),
            _col("email_address", "s.email_address"),
        ),
        "staff s JOIN department d ON d.department_id = s.department_id",
        ("s", "d"),
    ),
    AuditTable(
        "dim_location",
        "dimension",
        "location_id",
        (
            _int("location_id", "s.address_id"),
            _col("address_line_1", "s.address_line_1"),
            _col("address_line_2", "s.address_line_2"),
            _col("district", "s.district"),
            _col("city", "s.city"),
            _col("postal_code", "s.postal_code"),
            _col("country", "s.country"),
            _col("phone", "s.phone"),
        ),
        "address s",
        ("s",),
    ),
    AuditTable(
        "dim_currency",
        "dimension",
        "currency_id",
        (
            _int("currency_id"),
            _col("currency_code", "s.currency_code"),
            _col("currency_name", "n.name"),
        ),
        "currency s LEFT JOIN unnest(%(currency_codes)s::text[], %(currency_names)s::text[])"
        " AS n (code, name) ON n.code = s.currency_code",
        ("s",),
    ),
    AuditTable(
        "dim_design",
        "dimension",
        "design_id",
        (
            _int("design_id"),
            _col("design_name", "s.design_name"),
            _col("file_location", "s.file_location"),
            _col("file_name", "s.file_name"),
        ),
        "design s",
        ("s",),
    ),
    AuditTable(
        "dim_counterparty",
        "dimension",
        "counterparty_id",
        (
            _int("counterparty_id"),
            _col("counterparty_legal_name", "s.counterparty_legal_name"),
            _col("counterparty_legal_address_line_1", "a.address_line_1"),
            _col("counterparty_legal_address_line_2", "a.address_line_2"),
            _col("counterparty_legal_district", "a.district"),
            _col("counterparty_legal_city", "a.city"),
            _col("counterparty_legal_postal_code", "a.postal_code"),
            _col("counterparty_legal_country", "a.country"),
            _col("counterparty_legal_phone_number", "a.phone"),
        ),
        "counterparty s JOIN address a ON a.address_id = s.legal_address_id",
        ("s", "a"),
    ),
    AuditTable(
        "dim_payment_type",
        "dimension",
        "payment_type_id",
        (_int("payment_type_id"), _col("payment_type_name", "s.payment_type_name::text")),
        "payment_type s",
        ("s",),
    ),
    AuditTable(
        "dim_transaction",
        "dimension",
        "transaction_id",
        (
            _int("transaction_id"),
            _col("transaction_type", "s.transaction_type::text"),
            _int("sales_order_id"),
            _int("purchase_order_id"),
        ),
        "transaction s",
        ("s",),
    ),
    AuditTable(
        "fact_sales_order",
        "fact",
        "sales_order_id",
        (
            _int("sales_order_id"),
            *_timestamps(),
            _int("sales_staff_id", "s.staff_id"),
            _int("counterparty_id"),
            _int("units_sold"),
            _col("unit_price", "s.unit_price", "numeric(10,2)"),
            _int("currency_id"),
            _int("design_id"),
            _text_date("agreed_payment_date"),
            _text_date("agreed_delivery_date"),
            _int("agreed_delivery_location_id"),
        ),
        "sales_order s",
        ("s",),
        record_id="sales_record_id",
    ),
    AuditTable(
        "fact_purchase_order",
        "fact",
        "purchase_order_id",
        (
            _int("purchase_order_id"),
            *_timestamps(),
            _int("staff_id"),
            _int("counterparty_id"),
            _col("item_code", "s.item_code"),
            _int("item_quantity"),
            _col("item_unit_price", "s.item_unit_price", "numeric(10,2)"),
            _int("currency_id"),
            _text_date("agreed_delivery_date"),
            _text_date("agreed_payment_date"),
            _int("agreed_delivery_location_id"),
        ),
        "purchase_order s",
        ("s",),
        record_id="purchase_record_id",
    ),
    AuditTable(
        "fact_payment",
        "fact",
        "payment_id",
        (
            _int("payment_id"),
            *_timestamps(),
            _int("transaction_id"),
            _int("counterparty_id"),
            _col("payment_amount", "s.payment_amount", "numeric(10,2)"),
            _int("currency_id"),
            _int("payment_type_id"),
            _col("paid", "s.paid", "boolean"),
            _text_date("payment_date"),
        ),
        "payment s",
        ("s",),
        record_id="payment_record_id",
    ),
)

DATE_TABLE = "dim_date"
# Every table the audit compares, in the warehouse's load order (dim_date first).
AUDITED_TABLE_NAMES: tuple[str, ...] = (DATE_TABLE, *(t.name for t in AUDIT_TABLES))
FACTS: tuple[AuditTable, ...] = tuple(t for t in AUDIT_TABLES if t.kind == "fact")
_BY_NAME = {t.name: t for t in AUDIT_TABLES}


class UnknownTableError(KeyError):
    """A table name the audit does not know (the allow-list check)."""

    def __str__(self) -> str:
        return str(self.args[0])


def audit_table(name: str) -> AuditTable:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise UnknownTableError(
            f"{name!r} is not an audited warehouse table;"
            f" choose from {', '.join(AUDITED_TABLE_NAMES)}"
        ) from None


def check_table_names(names: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """``names`` in load order, each checked against the allow-list."""
    for name in names:
        if name != DATE_TABLE:
            audit_table(name)
    return tuple(n for n in AUDITED_TABLE_NAMES if n in set(names))
