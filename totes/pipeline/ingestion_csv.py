"""Reading the extract's CSVs back into typed polars frames, exactly.

The CSVs are PostgreSQL ``COPY ... TO STDOUT WITH (FORMAT csv, HEADER true)`` output:
NULL is an unquoted empty field and an empty string is ``""``; timestamps are PostgreSQL's
text for ``timestamp(3)``, which drops trailing fractional zeros (``14:20:49.96``,
``14:20:49``); money is ``numeric(10,2)`` text; booleans are ``t``/``f``.

Every column is read as text first, then each value is checked against a pattern for its
source type and cast strictly, so nothing is guessed, rounded or passed through a float.
Agreed and payment dates are ``text`` in ToteSys and stay strings here (the remodel casts
them to dates, where a bad one can be reported with its row's id).
"""

from __future__ import annotations

import io

import polars as pl

from totes.schema.source import ENUM_TYPES, Column, source_table

_TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S%.f"


class IngestionFormatError(ValueError):
    """An ingestion CSV does not match the source schema; the message names table, key, row."""


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

# What PostgreSQL writes for each type; anything else is not its output.
_PATTERNS: dict[str, str] = {
    "integer": r"^-?\d{1,10}$",
    "timestamp(3)": r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d{1,3})?$",
    "numeric(10,2)": r"^-?\d{1,8}(\.\d{1,2})?$",
    "boolean": r"^[tf]$",
}


def source_polars_schema(table: str) -> pl.Schema:
    """The typed frame that ``read_ingestion_csv`` returns for ``table``."""
    return pl.Schema({c.name: _POLARS_TYPES[_kind(c.pg_type)] for c in source_table(table).columns})


def _cast(values: pl.Expr, col: Column, *, strict: bool = True) -> pl.Expr:
    """The cast of one text column to its source type; not strict: null where it fails."""
    kind = _kind(col.pg_type)
    if kind == "timestamp(3)":
        return values.str.to_datetime(_TIMESTAMP_FORMAT, time_unit="ms", strict=strict)
    if kind == "boolean":
        booleans = {"t": True, "f": False}
        if strict:
            return values.replace_strict(booleans, return_dtype=pl.Boolean)
        return values.replace_strict(booleans, default=None, return_dtype=pl.Boolean)
    return values.cast(_POLARS_TYPES[kind], strict=strict)


def _valid(values: pl.Expr, col: Column) -> pl.Expr:
    """True where a non-null value is well formed for its type (null where it is null)."""
    kind = _kind(col.pg_type)
    if kind == "enum":
        return values.is_in(ENUM_TYPES[col.pg_type.strip('"')])
    if kind == "text":
        limit = col.pg_type.removeprefix("varchar(").removesuffix(")")
        return values.str.len_chars() <= int(limit) if limit.isdigit() else values.is_not_null()
    # The pattern rejects what a lenient parser would accept or round (1.234, 1e3, 5 fractional
    # digits); the parse rejects what the pattern cannot see (month 13, integer overflow).
    return values.str.contains(_PATTERNS[kind]) & _cast(values, col, strict=False).is_not_null()


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


def _first_bad_row(frame: pl.DataFrame, col: Column) -> tuple[int, str | None] | None:
    """The 1-based data row (header not counted) and value of the first bad value, if any."""
    values = pl.col(col.name)
    bad = values.is_null() if not col.nullable else pl.lit(False)
    bad = bad | (values.is_not_null() & ~_valid(values, col).fill_null(False))
    hits = frame.with_row_index("_row", offset=1).filter(bad).head(1)
    if hits.is_empty():
        return None
    return hits["_row"][0], hits[col.name][0]


def read_ingestion_csv(data: bytes, table: str, key: str) -> pl.DataFrame:
    """The rows of one ingestion CSV of ``table``, typed as ``source_polars_schema(table)``.

    ``key`` is only used to name the file in errors. A short row (too few fields) reads as
    NULLs in its last columns; every ToteSys table's last column is NOT NULL, so it is caught.
    """
    where = _Where(table, key)
    _check_header(data, table, where)
    frame = _read_text(data, where)
    for col in source_table(table).columns:
        bad = _first_bad_row(frame, col)
        if bad is None:
            continue
        row, value = bad
        if value is None:
            raise where.error(f"column {col.name}: NULL in a NOT NULL column", row)
        raise where.error(f"column {col.name}: {value!r} is not {_describe(col)}", row)
    try:
        return frame.select(_cast(pl.col(c.name), c) for c in source_table(table).columns)
    except pl.exceptions.PolarsError as exc:  # a value the checks above let through
        raise where.error(f"a value does not cast to its type: {exc}") from exc
