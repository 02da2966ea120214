"""Source frames -> warehouse frames: pure polars functions, no I/O.

Input frames are typed as ``ingestion_csv.source_polars_schema``; every output frame has
exactly ``warehouse_table(name).polars_schema`` (checked once, in ``conform``). A source
row that cannot become a warehouse row (a text date that is not a date, an unknown
currency, a department that is not there, a NULL the warehouse does not allow) is left
out and reported as a ``Rejection``; the rest of the batch is delivered.

Facts get one row per source row of the batch: each row in a batch is a new version, and
the load de-duplicates versions. Dimensions hold latest values: dim_staff and
dim_counterparty are built from the CURRENT FULL state of their two source tables (see
``STATE_TABLES``), because a department or an address that changes alone must change every
row derived from it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache, partial

import polars as pl

from totes.pipeline.ingestion_csv import Rejection, source_polars_schema
from totes.schema.currencies import UnknownCurrencyError, currency_name
from totes.schema.source import source_table
from totes.schema.warehouse import TIME_FORMAT, WAREHOUSE_TABLE_NAMES, warehouse_table

Rejections = list[Rejection]
Built = tuple[pl.DataFrame, Rejections]  # a warehouse frame, and the source rows left out

Frames = Mapping[str, pl.DataFrame]

AUDIT_TIMESTAMPS = ("created_at", "last_updated")

# Dimensions rebuilt in full from the current state of these source tables whenever the
# batch holds a row of any of them (the extract writes them whole: FULL_COPY_TABLES).
STATE_TABLES: dict[str, tuple[str, str]] = {
    "dim_staff": ("staff", "department"),
    "dim_counterparty": ("counterparty", "address"),
}

# Dimensions that are one source table renamed (timestamps dropped by the column selection).
_PLAIN_DIMENSIONS: dict[str, tuple[str, dict[str, str]]] = {
    "dim_location": ("address", {"address_id": "location_id"}),
    "dim_design": ("design", {}),
    "dim_payment_type": ("payment_type", {}),
    "dim_transaction": ("transaction", {}),
}

_FACT_SOURCES: dict[str, tuple[str, dict[str, str]]] = {
    "fact_sales_order": ("sales_order", {"staff_id": "sales_staff_id"}),
    "fact_purchase_order": ("purchase_order", {}),
    "fact_payment": ("payment", {}),
}

_LEGAL = "counterparty_legal_"
_LEGAL_RENAMES = {"phone": "phone_number"}


class RemodelError(ValueError):
    """Source rows that cannot become warehouse rows; the message names table, id, column."""


def conform(name: str, frame: pl.DataFrame) -> Built:
    """``frame`` as exactly the warehouse table's columns and types; rows with a NULL where
    the warehouse has NOT NULL are left out and returned as rejections."""
    table = warehouse_table(name)
    missing = [c for c in table.column_names if c not in frame.columns]
    if missing:
        raise RemodelError(f"{name}: the remodel produced no column {missing}")
    out = frame.select(pl.col(c.name).cast(c.polars_type, strict=True) for c in table.columns)
    rejections: Rejections = []
    required = [c.name for c in table.columns if not c.nullable]
    nulls = out.filter(pl.any_horizontal(pl.col(required).is_null())) if required else out.clear()
    for row in nulls.iter_rows(named=True):
        for column in required:
            if row[column] is None:
                rejections.append(
                    Rejection(
                        table.source or name, None, row[table.key], column, None,
                        f"NULL in {name}.{column}, which the warehouse requires",
                    )
                )  # fmt: skip
    if rejections:
        out = out.filter(~pl.any_horizontal(pl.col(required).is_null()))
    if out.schema != table.polars_schema:  # cannot happen after the casts; a cheap guard
        raise RemodelError(f"{name}: schema {out.schema} is not {table.polars_schema}")
    return out, rejections


def empty_source(table: str) -> pl.DataFrame:
    return pl.DataFrame(schema=source_polars_schema(table))


# --- dimensions ---------------------------------------------------------------------------


def in_order(frame: pl.DataFrame, key: str, *then: str) -> pl.DataFrame:
    """``frame`` sorted by ``key``, then ``then`` (stable): as it is, at no cost, when its
    ``key`` already rises strictly, as in the extract's CSVs (COPY ... ORDER BY the id)."""
    ids = frame.get_column(key)
    if ids.null_count() == 0 and (ids.diff().drop_nulls() > 0).all():
        return frame
    return frame.sort(key, *then, maintain_order=True)


def _renamed_dimension(name: str, frame: pl.DataFrame, renames: dict[str, str]) -> Built:
    table = warehouse_table(name)
    return conform(name, in_order(frame.rename(renames), table.key))


def _orphans(joined: pl.DataFrame, probe: str, child: str, fk: str, parent: str) -> Built:
    """After a left join: rows that found no parent (``probe``: a NOT NULL parent column)
    are left out and rejected."""
    found = pl.col(probe).is_not_null()
    pk = source_table(child).primary_key
    rejections = [
        Rejection(child, None, row_id, fk, str(parent_id), f"{fk} {parent_id} is not in {parent}")
        for row_id, parent_id in joined.filter(~found).select(pk, fk).iter_rows()
    ]
    return joined.filter(found), rejections


def dim_staff(staff: pl.DataFrame, department: pl.DataFrame) -> Built:
    """From the FULL current staff and department tables."""
    departments = department.select("department_id", "department_name", "location")
    joined = staff.join(departments, on="department_id", how="left", validate="m:1")
    joined, orphans = _orphans(joined, "department_name", "staff", "department_id", "department")
    frame, nulls = _renamed_dimension("dim_staff", joined, {})
    return frame, orphans + nulls


def _legal_address(address: pl.DataFrame) -> pl.DataFrame:
    """Address columns as dim_counterparty names them, keyed by legal_address_id."""
    spec = source_table("address")
    columns = [c for c in spec.column_names if c not in AUDIT_TIMESTAMPS and c != spec.primary_key]
    return address.select(
        pl.col(spec.primary_key).alias("legal_address_id"),
        *(pl.col(c).alias(_LEGAL + _LEGAL_RENAMES.get(c, c)) for c in columns),
    )


def dim_counterparty(counterparty: pl.DataFrame, address: pl.DataFrame) -> Built:
    """From the FULL current counterparty and address tables; contacts are dropped."""
    joined = counterparty.join(
        _legal_address(address), on="legal_address_id", how="left", validate="m:1"
    )
    joined, orphans = _orphans(
        joined, _LEGAL + "city", "counterparty", "legal_address_id", "address"
    )
    frame, nulls = _renamed_dimension("dim_counterparty", joined, {})
    return frame, orphans + nulls


def dim_currency(currency: pl.DataFrame) -> Built:
    """With each code's ISO 4217 name; a code without one is rejected."""
    names: dict[str, str] = {}
    rejections: Rejections = []
    for currency_id, code in currency.select("currency_id", "currency_code").iter_rows():
        try:
            names[code] = currency_name(code)
        except UnknownCurrencyError as exc:
            rejections.append(
                Rejection("currency", None, currency_id, "currency_code", code, str(exc))
            )
    named = currency.filter(pl.col("currency_code").is_in(list(names))).with_columns(
        currency_name=pl.col("currency_code").replace_strict(names, return_dtype=pl.String)
    )
    frame, nulls = _renamed_dimension("dim_currency", named, {})
    return frame, rejections + nulls


def calendar(days: pl.Series) -> pl.DataFrame:
    """dim_date: one row per distinct day of ``days`` (a Date series)."""
    day = pl.col("date_id")
    frame, _ = conform(  # every column derives from a non-null date: nothing to reject
        "dim_date",
        days.alias("date_id")
        .unique()
        .drop_nulls()
        .sort()
        .to_frame()
        .with_columns(
            year=day.dt.year(),
            month=day.dt.month(),
            day=day.dt.day(),
            day_of_week=day.dt.weekday(),  # ISO 8601: Monday = 1 .. Sunday = 7
            day_name=day.dt.strftime("%A"),  # chrono's English names, whatever the locale
            month_name=day.dt.strftime("%B"),
            quarter=day.dt.quarter(),
        ),
    )
    return frame


def dim_date(facts: Frames) -> pl.DataFrame:
    """One row per distinct calendar day that any of the given fact frames references."""
    days = [
        frame.get_column(c)
        for frame in facts.values()
        if frame.height
        for c, dtype in frame.schema.items()
        if dtype == pl.Date
    ]
    return calendar(pl.concat(days)) if days else _nothing("dim_date")[0]


# --- facts --------------------------------------------------------------------------------


def _split_timestamp(column: str) -> list[pl.Expr]:
    """created_at -> created_date, created_time; last_updated -> last_updated_date, ..."""
    stem = column.removesuffix("_at")
    return [
        pl.col(column).dt.date().alias(f"{stem}_date"),
        # Formatted as a time of day: the same text, in 60% of the time a datetime takes.
        pl.col(column).dt.time().dt.strftime(TIME_FORMAT).alias(f"{stem}_time"),
    ]


def _text_dates(frame: pl.DataFrame, table: str, columns: Sequence[str]) -> Built:
    """Text yyyy-mm-dd columns cast to Date; a row with one that is not a date is rejected.
    Each column is parsed once: its dates and whether each is well formed, in one pass."""
    if not columns:
        return frame, []
    pk = source_table(table).primary_key
    parsed = frame.with_columns(
        pl.col(c).str.to_date("%Y-%m-%d", strict=False).alias(f"{c} (date)") for c in columns
    ).with_columns(
        (
            pl.col(c).is_null()
            # Year 0 is no year (PostgreSQL refuses it); polars would read it as 1 BC.
            | (
                pl.col(c).str.contains(r"^\d{4}-\d{2}-\d{2}$")
                & (pl.col(f"{c} (date)").dt.year().fill_null(0) > 0)
            )
        ).alias(f"{c} (ok)")
        for c in columns
    )
    good = pl.all_horizontal(pl.col(f"{c} (ok)") for c in columns)
    rejections: Rejections = [
        Rejection(table, None, row_id, col, value, "not a date (yyyy-mm-dd)")
        for col in columns
        for row_id, value in parsed.filter(~pl.col(f"{col} (ok)")).select(pk, col).iter_rows()
    ]
    if rejections:
        parsed = parsed.filter(good)
    return parsed.select(
        pl.col(f"{c} (date)").alias(c) if c in columns else pl.col(c) for c in frame.columns
    ), rejections


def fact(name: str, source: pl.DataFrame) -> Built:
    """One fact row per source row: timestamps split, text dates cast, columns renamed."""
    table, renames = _FACT_SOURCES[name]
    spec = source_table(table)
    text_dates = [
        c.name
        for c in warehouse_table(name).columns
        if c.pg_type == "date" and c.name in spec.column_names
    ]
    frame, bad_dates = _text_dates(source, table, text_dates)
    frame = frame.with_columns(
        *(e for column in AUDIT_TIMESTAMPS for e in _split_timestamp(column))
    )
    out = in_order(frame.rename(renames), spec.primary_key, "last_updated")
    conformed, nulls = conform(name, out)
    return conformed, bad_dates + nulls


# --- a whole batch ------------------------------------------------------------------------


def needs_state(batch: Frames) -> list[str]:
    """The source tables whose current full state ``remodel_batch`` needs for this batch."""
    tables: list[str] = []
    for sources in STATE_TABLES.values():
        if any(_has_rows(batch, t) for t in sources):
            tables.extend(sources)
    return tables


def _has_rows(frames: Frames, table: str) -> bool:
    return table in frames and not frames[table].is_empty()


def _nothing(name: str) -> Built:
    """The warehouse table ``name`` with no rows, and nothing left out: a new frame from a
    kept one (a unit of a big batch has ten empty tables, and building each from its
    schema took half a millisecond)."""
    return _empty(name).clear(), []


@cache
def _empty(name: str) -> pl.DataFrame:
    return pl.DataFrame(schema=warehouse_table(name).polars_schema)


def _state_dimension(name: str, batch: Frames, state: Frames) -> Built:
    sources = STATE_TABLES[name]
    if not any(_has_rows(batch, t) for t in sources):
        return _nothing(name)
    absent = [t for t in sources if t not in state]
    if absent:
        raise RemodelError(f"{name}: the current state of {absent} was not provided")
    build = dim_staff if name == "dim_staff" else dim_counterparty
    return build(*(state[t] for t in sources))


@dataclass(frozen=True)
class Remodelled:
    """Every warehouse frame of one batch, and the source rows left out with the reason."""

    frames: dict[str, pl.DataFrame]
    rejections: Rejections


def remodel_batch(batch: Frames, state: Frames) -> Remodelled:
    """Every warehouse frame (empty where the batch has nothing) for one batch.

    ``batch``: the batch's source frames by table (absent = no rows). ``state``: the
    current full state of the tables ``needs_state(batch)`` names, this batch included.
    """

    def from_rows(name: str, source: str, build: Callable[[pl.DataFrame], Built]) -> Built:
        # Without rows of its source, a table is empty without the work: most units of a
        # big batch are one part of one table, and building ten empty frames the long way
        # cost more than remodelling a small part.
        return build(batch[source]) if _has_rows(batch, source) else _nothing(name)

    built: dict[str, Built] = {
        name: from_rows(name, source, partial(fact, name))
        for name, (source, _) in _FACT_SOURCES.items()
    }
    built["dim_currency"] = from_rows("dim_currency", "currency", dim_currency)
    for name in STATE_TABLES:
        built[name] = _state_dimension(name, batch, state)
    for name, (source, renames) in _PLAIN_DIMENSIONS.items():
        built[name] = from_rows(name, source, partial(_renamed_dimension, name, renames=renames))
    facts = {name: built[name][0] for name in _FACT_SOURCES}
    built["dim_date"] = (dim_date(facts), [])
    assert set(built) == set(WAREHOUSE_TABLE_NAMES), sorted(built)
    return Remodelled(
        frames={name: built[name][0] for name in WAREHOUSE_TABLE_NAMES},
        rejections=[r for name in WAREHOUSE_TABLE_NAMES for r in built[name][1]],
    )
