"""Reading the extract's CSVs back into typed polars frames, exactly.

The CSVs are PostgreSQL ``COPY ... TO STDOUT WITH (FORMAT csv, HEADER true)`` output:
NULL is an unquoted empty field and an empty string is ``""``; timestamps are PostgreSQL's
text for ``timestamp(3)``, which drops trailing fractional zeros (``14:20:49.96``,
``14:20:49``); money is ``numeric(10,2)`` text; booleans are ``t``/``f``.

Every column is read as text first, then each value is checked against a pattern for its
source type and cast strictly, so nothing is guessed, rounded or passed through a float; a
row with a value that fails is set aside whole, with the reason, and the rest is delivered.
A clean file (nearly every one) is read, cast and checked in one streaming pass that keeps
no text; only a file with a bad value is read again in full, to name each bad value.
Agreed and payment dates are ``text`` in ToteSys and stay strings here (the remodel casts
them to dates, where a bad one can be reported with its row's id).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import polars as pl

from totes.pipeline.errors import UndeliverableBatchError
from totes.schema.source import ENUM_TYPES, Column, SourceTable, source_table


class IngestionFormatError(UndeliverableBatchError, ValueError):
    """An ingestion CSV cannot be read at all (not a CSV, truncated, other columns); the
    message names the table and the file."""


def _kind(pg_type: str) -> str:
    if pg_type in ("serial", "integer"):
        return "integer"
    if pg_type.startswith('"'):
        return "enum"
    if pg_type.startswith("varchar") or pg_type == "text":
        return "text"
    if pg_type in ("timestamp(3)", "numeric(10,2)", "boolean"):
        return pg_type
    raise TypeError(f"no CSV reading rule for the source type {pg_type!r}")


_POLARS_TYPES: dict[str, pl.DataType] = {
    "integer": pl.Int32(),
    "enum": pl.String(),
    "text": pl.String(),
    "timestamp(3)": pl.Datetime("ms"),
    "numeric(10,2)": pl.Decimal(10, 2),
    "boolean": pl.Boolean(),
}

# What PostgreSQL writes for each type; anything else is not its output. Integers are
# ``-?\d{1,10}`` and booleans ``t`` or ``f``: checked without a pattern (see ``_valid``).
_PATTERNS: dict[str, str] = {
    "timestamp(3)": r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d{1,3})?$",
    "numeric(10,2)": r"^-?\d{1,8}(\.\d{1,2})?$",
}


def source_polars_schema(table: str) -> pl.Schema:
    """The typed frame that ``read_ingestion_csv`` returns for ``table``."""
    return pl.Schema({c.name: _POLARS_TYPES[_kind(c.pg_type)] for c in source_table(table).columns})


def _cast(values: pl.Expr, col: Column) -> pl.Expr:
    """The cast of one text column to its source type: null where it fails."""
    kind = _kind(col.pg_type)
    if kind == "timestamp(3)":
        return _timestamp(values)
    if kind == "boolean":
        return pl.when(values == "t").then(True).when(values == "f").then(False)
    return values.cast(_POLARS_TYPES[kind], strict=False)


def _timestamp(values: pl.Expr) -> pl.Expr:
    """PostgreSQL's ``timestamp(3)`` text: its whole seconds in the one format polars parses
    on a fast path (a fifth of the time of ``%.f``), then the milliseconds. Exact for every
    text the pattern admits (the check refuses the rest); null where a field is out of
    range (month 13, hour 24), a leap second included (chrono would read :60 as the next
    minute; PostgreSQL never writes one)."""
    whole_seconds = values.str.slice(0, 19).str.to_datetime(
        "%Y-%m-%d %H:%M:%S", time_unit="ms", strict=False, cache=False
    )
    # ".96" is 960 ms; no fraction at all is 0.
    millis = values.str.slice(20, 3).str.pad_end(3, "0").cast(pl.Int64, strict=False)
    leap_second = values.str.slice(17, 2) == "60"
    return pl.when(~leap_second).then(whole_seconds + pl.duration(milliseconds=millis))


def _casts(spec: SourceTable) -> list[pl.Expr]:
    """Every column cast once, beside its text (as ``_typed(name)``): the casts serve both
    the checks and the frame returned."""
    return [_cast(pl.col(c.name), c).alias(_typed(c.name)) for c in spec.columns]


def _typed(name: str) -> str:
    """The column that holds the cast of column ``name`` while a file is checked."""
    return f"{name} (typed)"


def _valid(values: pl.Expr, typed: pl.Expr, col: Column) -> pl.Expr:
    """True where a non-null value is well formed for its type (null where it is null);
    ``typed``: the value cast to its type (null where the cast failed)."""
    kind = _kind(col.pg_type)
    if kind == "enum":
        return values.is_in(ENUM_TYPES[col.pg_type.strip('"')])
    if kind == "text":
        limit = col.pg_type.removeprefix("varchar(").removesuffix(")")
        return values.str.len_chars() <= int(limit) if limit.isdigit() else values.is_not_null()
    if kind == "boolean":  # the cast gives a value for "t" and "f" only
        return typed.is_not_null()
    if kind == "integer":
        # The cast succeeds for ASCII digits with an optional sign, within int32: of what
        # it takes, PostgreSQL never writes a plus sign or more than 10 digits (leading
        # zeros). A third of the time of matching ``-?\d{1,10}``; a test holds the two equal.
        most_bytes = 10 + values.str.starts_with("-").cast(pl.UInt32)
        return (
            typed.is_not_null()
            & (values.str.len_bytes() <= most_bytes)
            & ~values.str.starts_with("+")
        )
    # The pattern rejects what a lenient parser would accept or round (1.234, 1e3, 5 fractional
    # digits); the parse rejects what the pattern cannot see (month 13, integer overflow).
    return values.str.contains(_PATTERNS[kind]) & typed.is_not_null()


def _describe(col: Column) -> str:
    kind = _kind(col.pg_type)
    if kind == "enum":
        return f"a {col.pg_type} label"
    if kind == "timestamp(3)":
        return "a timestamp(3) (yyyy-mm-dd hh:mm:ss[.fff])"
    return f"a {col.pg_type}" if kind != "integer" else "an integer"


class _Where:
    """The prefix every error about one file starts with."""

    def __init__(self, table: str, key: str) -> None:
        self.table, self.key = table, key

    def error(self, message: str, row: int | None = None) -> IngestionFormatError:
        at = f" row {row}" if row is not None else ""
        return IngestionFormatError(f"{self.table} ({self.key}){at}: {message}")


def _read_text(data: bytes, where: _Where, n_rows: int | None = None) -> pl.DataFrame:
    try:
        # empty_string_is_null=True: an unquoted empty field is NULL, a quoted "" is ''.
        return pl.read_csv(
            io.BytesIO(data),
            infer_schema=False,
            empty_string_is_null=True,
            raise_if_empty=True,
            n_rows=n_rows,
        )
    except pl.exceptions.PolarsError as exc:
        raise where.error(f"not a readable CSV: {exc}") from exc


def _check_header(data: bytes, table: str, where: _Where) -> None:
    """Before the rows are parsed, whose field count follows the header."""
    if not data:
        raise where.error("the file is empty (not even a header)")
    if not data.endswith(b"\n"):
        raise where.error("the file does not end with a newline: truncated?")
    columns = _read_text(data, where, n_rows=0).columns
    expected = source_table(table).column_names
    if tuple(columns) == expected:
        return
    missing = [c for c in expected if c not in columns]
    extra = [c for c in columns if c not in expected]
    detail = f"missing {missing}, unexpected {extra}" if missing or extra else "columns reordered"
    raise where.error(f"header {columns} does not match the source schema: {detail}")


@dataclass(frozen=True)
class Rejection:
    """One bad value of a source row: the row is set aside (quarantined), not delivered."""

    table: str
    # 1-based data row of the CSV (records, not lines), counted on across a table's parts
    # when the transform reads them as one; None: not in the file.
    row: int | None
    id: int | None  # the row's primary key, when that itself is readable
    column: str
    value: str | None
    reason: str


@dataclass(frozen=True)
class CsvRows:
    """The good rows of one ingestion CSV, typed; the rows set aside and why."""

    frame: pl.DataFrame  # typed as source_polars_schema(table)
    rows: pl.Series  # the CSV data row of each frame row (to name it later)
    rejections: list[Rejection]
    rejected_text: pl.DataFrame  # the set-aside rows as read (text), with a "_row" column


def _bad(col: Column) -> pl.Expr:
    """True where the value is not one PostgreSQL writes for the column's type."""
    values = pl.col(col.name)
    bad = values.is_null() if not col.nullable else pl.lit(False)
    return bad | (
        values.is_not_null() & ~_valid(values, pl.col(_typed(col.name)), col).fill_null(False)
    )


def _reason(col: Column, value: str | None) -> str:
    return "NULL in a NOT NULL column" if value is None else f"not {_describe(col)}"


def read_ingestion_csv(data: bytes, table: str, key: str) -> CsvRows:
    """The rows of one ingestion CSV of ``table``, typed as ``source_polars_schema(table)``.

    A row with a value that is not what PostgreSQL writes for its column (a bad integer,
    a value beyond the declared type, a NULL where NOT NULL...) is set aside with every
    bad value named; the file as a whole is refused (IngestionFormatError) only when it
    cannot be trusted at all: not a CSV, truncated, or with other columns. ``key`` names
    the file in messages. A short row reads as NULLs in its last columns; every ToteSys
    table's last column is NOT NULL, so it is caught.
    """
    where = _Where(table, key)
    _check_header(data, table, where)
    spec = source_table(table)
    if (clean := _read_clean(data, spec, where)) is not None:
        return clean
    text = _read_text(data, where).with_row_index("_row", offset=1)
    text = text.with_columns(_casts(spec))
    flags = text.select(_bad(c).alias(c.name) for c in spec.columns)
    is_bad = flags.select(pl.any_horizontal(pl.all())).to_series()
    bad, flags = text.filter(is_bad), flags.filter(is_bad)  # usually nothing: no work below
    rejections: list[Rejection] = []
    pk = spec.primary_key
    for col in spec.columns:
        hits = bad.filter(flags[col.name]).select("_row", col.name, pl.col(pk).alias("_id"))
        for row, value, pk_text in hits.iter_rows():
            rejections.append(
                Rejection(table, row, _int_or_none(pk_text), col.name, value, _reason(col, value))
            )
    rejections.sort(key=lambda r: (r.row, spec.column_names.index(r.column)))
    # The typed columns only: filtering the text too would copy it for nothing.
    good = text.select("_row", *(pl.col(_typed(c.name)).alias(c.name) for c in spec.columns))
    if rejections:
        good = good.filter(~is_bad)
    del text
    return CsvRows(
        good.drop("_row"), good["_row"], rejections, bad.select("_row", *spec.column_names)
    )


def _read_clean(data: bytes, spec: SourceTable, where: _Where) -> CsvRows | None:
    """The file's rows typed, in one streaming pass that keeps no text column, if no value
    is bad (nearly always); None when one is, for the full pass that names each."""
    checked = (
        pl.scan_csv(data, infer_schema=False, empty_string_is_null=True)
        .with_row_index("_row", offset=1)
        .with_columns(_casts(spec))
        .select(
            "_row",
            *(pl.col(_typed(c.name)).alias(c.name) for c in spec.columns),
            pl.any_horizontal(_bad(c) for c in spec.columns).alias("_bad"),
        )
    )
    try:
        rows = checked.collect(engine="streaming")
    except pl.exceptions.PolarsError as exc:
        raise where.error(f"not a readable CSV: {exc}") from exc
    if rows["_bad"].any():
        return None
    empty = pl.DataFrame(schema={"_row": pl.UInt32, **dict.fromkeys(spec.column_names, pl.String)})
    return CsvRows(rows.drop("_row", "_bad"), rows["_row"], [], empty)


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None
