"""Reading the extract's CSVs: exact round trip of COPY's text, and errors that name the spot."""

from __future__ import annotations

import io
import random
from datetime import datetime
from decimal import Decimal

import polars as pl
import pytest

from tests.support.sample_csv import (
    ADDRESS_CSV,
    BATCH_CSVS,
    COUNTERPARTY_CSV,
    CURRENCY_CSV,
    SALES_ORDER_CSV,
)
from totes.pipeline.ingestion_csv import (
    IngestionFormatError,
    Rejection,
    _valid,
    read_ingestion_csv,
    source_polars_schema,
)
from totes.schema.source import SOURCE_TABLE_NAMES, source_table

KEY = "sales_order/2026/11/27/20261127T130501123456Z.csv"


def read(table: str, text: str, key: str = KEY) -> pl.DataFrame:
    """The good rows; the test fails if any row was set aside."""
    rows = read_ingestion_csv(text.encode(), table, key)
    assert rows.rejections == [], rows.rejections
    return rows.frame


def rejected(table: str, text: str) -> list[Rejection]:
    return read_ingestion_csv(text.encode(), table, KEY).rejections


def test_polars_reads_unquoted_empty_as_null_and_quoted_empty_as_empty_string():
    # The reader relies on this polars behaviour (empty_string_is_null=True; polars 2 has
    # no missing_utf8_is_empty_string): keep it pinned.
    raw = pl.read_csv(
        io.BytesIO(b'a,b,c\n1,"",\n2,,""\n'), infer_schema=False, empty_string_is_null=True
    )
    assert raw.rows() == [("1", "", None), ("2", None, "")]


def test_null_and_empty_string_stay_apart():
    address = read("address", ADDRESS_CSV)
    assert address["address_line_2"].to_list() == [None, "", 'Apt. "B"']
    assert address["district"].to_list() == ["Avon", None, "Buckinghamshire"]


def test_commas_quotes_apostrophes_and_newlines_round_trip():
    address = read("address", ADDRESS_CSV)
    assert address["address_line_1"].to_list() == [
        "6826 Herzog Via\nUnit 3",
        "179 Alexie Cliffs",
        "148 Sincere Fort, Flat 2",
    ]
    assert address["country"][2] == "Democratic People's Republic of Korea"
    counterparty = read("counterparty", COUNTERPARTY_CSV)
    assert counterparty["counterparty_legal_name"][0] == "Leannon, Predovic and Morar"
    assert counterparty["commercial_contact"].to_list() == [
        "Christy O'Hara",
        None,
        "Mr. Ross Reichel",
    ]
    assert counterparty["delivery_contact"][0] == "Mrs. Lucy\nRunolfsdottir"


def test_timestamps_with_0_to_3_fractional_digits_are_exact():
    address = read("address", ADDRESS_CSV)
    assert address["created_at"].to_list() == [
        datetime(2022, 11, 3, 14, 20, 49, 962_000),
        datetime(2022, 11, 3, 14, 20, 49, 960_000),
        datetime(2022, 11, 3, 14, 20, 49),
    ]
    assert address["last_updated"][2] == datetime(2022, 11, 3, 14, 20, 49, 900_000)
    assert address.schema["created_at"] == pl.Datetime("ms")


def test_every_timestamp_reads_as_python_reads_it():
    """The positional parse against Python's own, over a spread of dates and times with
    0 to 3 fractional digits (PostgreSQL drops trailing zeros)."""
    start = datetime(1, 1, 1)
    values = [
        start + (datetime(9999, 12, 31, 23, 59, 59, 999_000) - start) * (i / 4999)
        for i in range(5000)
    ]
    values = [v.replace(microsecond=v.microsecond // 1000 * 1000) for v in values]
    values += [
        datetime(2024, 2, 29, 23, 59, 59),
        datetime(2000, 1, 1),
        datetime(1999, 12, 31, 0, 0, 0, 100_000),
    ]
    texts = [v.isoformat(sep=" ", timespec="milliseconds").rstrip("0").rstrip(".") for v in values]
    csv = ",".join(source_table("address").column_names) + "\n"
    csv += "".join(f"{i},a,,,c,p,x,1,{t},{t}\n" for i, t in enumerate(texts))
    address = read("address", csv)
    assert address["created_at"].to_list() == values
    assert address["last_updated"].to_list() == values


def test_money_is_exact_decimal_and_text_dates_stay_text():
    sales = read("sales_order", SALES_ORDER_CSV)
    assert sales.schema["unit_price"] == pl.Decimal(10, 2)
    assert sales["unit_price"].to_list() == [Decimal("3.94"), Decimal("2.10")]
    assert sales.schema["agreed_delivery_date"] == pl.String
    assert sales["agreed_delivery_date"].to_list() == ["2022-11-07", "2024-11-06"]
    big = read("purchase_order", BATCH_CSVS["purchase_order"])
    assert big["item_unit_price"][0] == Decimal("99999999.99")


def test_booleans_enums_and_nullable_integers():
    payment = read("payment", BATCH_CSVS["payment"])
    assert payment["paid"].to_list() == [False, True, False]
    assert payment["company_ac_number"][0] == 34235316
    transaction = read("transaction", BATCH_CSVS["transaction"])
    assert transaction["transaction_type"].to_list() == ["PURCHASE", "SALE", "SALE"]
    assert transaction["sales_order_id"].to_list() == [None, 2, 3]
    assert transaction.schema["sales_order_id"] == pl.Int32


@pytest.mark.parametrize("table", SOURCE_TABLE_NAMES)
def test_every_table_reads_with_its_schema(table):
    df = read(table, BATCH_CSVS[table])
    assert df.schema == source_polars_schema(table)
    assert df.columns == list(source_table(table).column_names)
    header_only = read(table, BATCH_CSVS[table].splitlines()[0] + "\n")
    assert header_only.is_empty() and header_only.schema == source_polars_schema(table)


@pytest.mark.parametrize(
    ("old", "new", "detail"),
    [
        ("units_sold,", "", "missing ['units_sold']"),
        ("units_sold,", "units,", "missing ['units_sold'], unexpected ['units']"),
        ("units_sold,", "units_sold,extra,", "missing [], unexpected ['extra']"),
        ("units_sold,unit_price,", "unit_price,units_sold,", "columns reordered"),
    ],
)
def test_bad_header_is_named(old, new, detail):
    header, *data = SALES_ORDER_CSV.splitlines()
    with pytest.raises(IngestionFormatError) as err:
        read("sales_order", "\n".join([header.replace(old, new), *data]) + "\n")
    message = str(err.value)
    assert message.startswith(f"sales_order ({KEY}): header")
    assert detail in message


def _sales_row2(column: str, value: str) -> str:
    """SALES_ORDER_CSV with ``column`` of the second data row set to the raw field ``value``."""
    header, first, second = SALES_ORDER_CSV.splitlines()
    fields = second.split(",")
    fields[header.split(",").index(column)] = value
    return "\n".join([header, first, ",".join(fields)]) + "\n"


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        ("unit_price", "abc", "not a numeric(10,2)"),
        ("unit_price", "2.105", "not a numeric(10,2)"),
        ("unit_price", "1e3", "not a numeric(10,2)"),
        ("unit_price", "123456789.00", "not a numeric(10,2)"),
        ("units_sold", "2147483648", "not an integer"),  # outgrew int after a retype
        ("units_sold", "1.0", "not an integer"),
        ("units_sold", '""', "not an integer"),
        (
            "created_at",
            "2022-11-03 14:20:52.1234",
            "not a timestamp(3) (yyyy-mm-dd hh:mm:ss[.fff])",
        ),
        ("created_at", "2022-13-03 14:20:52", "not a timestamp(3) (yyyy-mm-dd hh:mm:ss[.fff])"),
        ("created_at", "2022-11-03T14:20:52", "not a timestamp(3) (yyyy-mm-dd hh:mm:ss[.fff])"),
        ("created_at", "2022-02-29 14:20:52", "not a timestamp(3) (yyyy-mm-dd hh:mm:ss[.fff])"),
        ("created_at", "2022-11-03 24:00:00", "not a timestamp(3) (yyyy-mm-dd hh:mm:ss[.fff])"),
        ("created_at", "2022-11-03 14:60:52", "not a timestamp(3) (yyyy-mm-dd hh:mm:ss[.fff])"),
        ("created_at", "2022-11-03 14:20:60", "not a timestamp(3) (yyyy-mm-dd hh:mm:ss[.fff])"),
        ("created_at", "2022-11-03 14:20:5.", "not a timestamp(3) (yyyy-mm-dd hh:mm:ss[.fff])"),
        ("design_id", "", "NULL in a NOT NULL column"),
        ("agreed_delivery_location_id", "", "NULL in a NOT NULL column"),
    ],
)
def test_a_bad_value_sets_its_row_aside_and_names_row_id_column_value(column, value, expected):
    rows = read_ingestion_csv(_sales_row2(column, value).encode(), "sales_order", KEY)
    raw = None if value == "" else value.strip('"')
    assert rows.rejections == [Rejection("sales_order", 2, 3, column, raw, expected)]
    assert rows.frame["sales_order_id"].to_list() == [2]  # the other row is delivered
    assert rows.rows.to_list() == [1]
    assert rows.rejected_text["_row"].to_list() == [2]


def test_every_bad_value_of_every_row_is_named_not_only_the_first():
    bad = SALES_ORDER_CSV.replace("42972,3.94", "x,y").replace("65839,2.10", "1,z")
    found = [(r.row, r.id, r.column, r.value) for r in rejected("sales_order", bad)]
    assert found == [
        (1, 2, "units_sold", "x"),
        (1, 2, "unit_price", "y"),
        (2, 3, "unit_price", "z"),
    ]


def test_bad_boolean_enum_and_varchar():
    (paid,) = rejected(
        "payment", BATCH_CSVS["payment"].replace(",f,2022-11-08", ",true,2022-11-08")
    )
    assert (paid.row, paid.column, paid.value, paid.reason) == (1, "paid", "true", "not a boolean")
    (kind,) = rejected("transaction", BATCH_CSVS["transaction"].replace("PURCHASE", "GIFT"))
    assert kind.reason == 'not a "TransactionType" label'
    (code,) = rejected("currency", CURRENCY_CSV.replace("EUR", "EURO"))
    assert (code.row, code.column, code.value) == (3, "currency_code", "EURO")


def test_row_number_counts_records_not_lines():
    # Row 1 of the counterparty CSV spans two lines; the bad value is in data row 3.
    bad = COUNTERPARTY_CSV.replace("Fahey and Sons,1,", "Fahey and Sons,x,")
    (rejection,) = rejected("counterparty", bad)
    assert (rejection.row, rejection.id, rejection.column, rejection.value) == (
        3, 3, "legal_address_id", "x",
    )  # fmt: skip


def test_a_short_row_is_set_aside():
    rows = read_ingestion_csv(SALES_ORDER_CSV.encode() + SHORT_ROW, "sales_order", KEY)
    assert [(r.row, r.id, r.column) for r in rows.rejections] == [
        (3, 4, "agreed_delivery_location_id")
    ]
    assert rows.frame.height == 2


# A row cut before its last field (every ToteSys table's last column is NOT NULL).
SHORT_ROW = (
    b"4,2022-11-03 14:20:52.186,2022-11-03 14:20:52.186,8,2,3,4297,3.94,2,2022-11-07,2022-11-08\n"
)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", "empty"),
        (SALES_ORDER_CSV.encode()[:-40], "does not end with a newline"),
        (SALES_ORDER_CSV.encode().replace(b"3.94", b"3.94,9"), "not a readable CSV"),
        (SALES_ORDER_CSV.encode().replace(b"3.94", b"3.\xff94"), "not a readable CSV"),
    ],
)
def test_malformed_files_are_named(data, expected):
    with pytest.raises(IngestionFormatError) as err:
        read_ingestion_csv(data, "sales_order", KEY)
    assert str(err.value).startswith(f"sales_order ({KEY})")
    assert expected in str(err.value)


def test_polars_streaming_scan_reads_empty_fields_as_the_reader_does():
    raw = pl.scan_csv(b'a,b,c\n1,"",\n2,,""\n', infer_schema=False, empty_string_is_null=True)
    assert raw.collect(engine="streaming").rows() == [("1", "", None), ("2", None, "")]


@pytest.mark.parametrize("table", sorted(BATCH_CSVS))
def test_a_clean_file_reads_as_the_full_pass_reads_its_good_rows(table):
    # A clean file takes one streaming pass; a file with a bad value the full pass, which
    # names it. Both must give the same frame for the same good rows.
    clean = BATCH_CSVS[table]
    pk = source_table(table).primary_key
    text = pl.read_csv(io.BytesIO(clean.encode()), infer_schema=False)
    bad_row = io.BytesIO()  # the first row again, quoted as COPY would, its id not an integer
    text.head(1).with_columns(pl.lit("x").alias(pk)).write_csv(bad_row, include_header=False)
    with_bad = read_ingestion_csv(clean.encode() + bad_row.getvalue(), table, KEY)
    fast = read_ingestion_csv(clean.encode(), table, KEY)
    assert [r.column for r in with_bad.rejections] == [pk]
    assert fast.rejections == [] and fast.rejected_text.height == 0
    assert fast.frame.equals(with_bad.frame)
    assert fast.rows.to_list() == with_bad.rows.to_list()


def test_an_integer_is_what_postgresql_writes_exactly_as_its_pattern_says():
    # The integer check leans on what polars' cast takes; if a polars release takes more
    # (spaces, other digits), this says so before a bad value slips through.
    rng = random.Random(7)
    odd = "-+ .e_x\t\u0663\uff11"  # signs, spaces, a float's marks, other scripts' digits

    def text(length: int) -> str:
        return "".join(
            rng.choice(odd if rng.random() < 0.1 else "0123456789") for _ in range(length)
        )

    texts = {text(length) for length in range(1, 14) for _ in range(2000)}
    texts |= {str(n) for n in (2**31 - 1, 2**31, -(2**31), -(2**31) - 1, 0)}
    texts |= {"-0", "+0", "+5", "007", "0000000001", "00000000001", "-00000000001", " 5", "5 "}
    values = pl.Series("units_sold", sorted(texts))
    column = source_table("sales_order").column("units_sold")
    typed = values.cast(pl.Int32, strict=False).alias("typed")
    checked = pl.DataFrame([values, typed]).select(
        found=_valid(pl.col("units_sold"), pl.col("typed"), column).fill_null(False),
        pattern=pl.col("units_sold").str.contains(r"^-?\d{1,10}$") & pl.col("typed").is_not_null(),
    )
    assert checked["found"].to_list() == checked["pattern"].to_list()
    assert checked["found"].sum() > 1000  # many of them are integers
