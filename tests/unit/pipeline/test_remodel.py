"""The remodel: typed source frames -> warehouse frames (values, dtypes, history rules).

The batch comes from tests/support/sample_csv.py.
"""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta
from decimal import Decimal

import polars as pl
import pytest

from tests.support.sample_csv import (
    BATCH_CSVS,
    CURRENCY_CSV,
    DEPARTMENT_CSV,
    PAYMENT_CSV,
    SALES_ORDER_CSV,
)
from totes.pipeline.ingestion_csv import read_ingestion_csv
from totes.pipeline.remodel import (
    RemodelError,
    _split_timestamp,
    conform,
    dim_counterparty,
    dim_currency,
    dim_date,
    dim_staff,
    fact,
    in_order,
    needs_state,
    remodel_batch,
)
from totes.schema.warehouse import WAREHOUSE_TABLE_NAMES, warehouse_table


def frame(table: str, text: str | None = None) -> pl.DataFrame:
    rows = read_ingestion_csv((text or BATCH_CSVS[table]).encode(), table, f"{table}/test.csv")
    assert rows.rejections == []
    return rows.frame


def source_frames() -> dict[str, pl.DataFrame]:
    return {table: frame(table) for table in BATCH_CSVS}


@pytest.fixture(scope="module")
def remodelled() -> dict[str, pl.DataFrame]:
    batch = source_frames()
    state = {t: batch[t] for t in needs_state(batch)}
    remodelled = remodel_batch(batch, state)
    assert remodelled.rejections == []
    return remodelled.frames


def rows(df: pl.DataFrame, key: str, value: object) -> dict:
    return df.filter(pl.col(key) == value).row(0, named=True)


def test_every_frame_has_exactly_the_warehouse_schema(remodelled):
    assert list(remodelled) == list(WAREHOUSE_TABLE_NAMES)
    for name, df in remodelled.items():
        assert df.schema == warehouse_table(name).polars_schema, name
        assert df.height > 0, name


def test_empty_batch_gives_empty_frames_with_the_schema():
    frames = remodel_batch({}, {}).frames
    for name, df in frames.items():
        assert df.is_empty() and df.schema == warehouse_table(name).polars_schema


def test_dim_staff_joins_department_and_keeps_leds(remodelled):
    staff = remodelled["dim_staff"]
    assert staff["staff_id"].to_list() == [1, 2, 3]
    assert rows(staff, "staff_id", 2) == {
        "staff_id": 2,
        "first_name": "Deron",
        "last_name": "Beier",
        "department_name": "Dispatch",
        "location": "Leds",
        "email_address": "deron.beier@terrifictotes.com",
    }
    assert rows(staff, "staff_id", 1)["department_name"] == "Purchasing"


def test_dim_location_keeps_null_apart_from_empty_string_and_odd_text(remodelled):
    location = remodelled["dim_location"]
    one, two, three = (rows(location, "location_id", i) for i in (1, 2, 3))
    assert one["address_line_1"] == "6826 Herzog Via\nUnit 3"
    assert one["address_line_2"] is None
    assert two["address_line_2"] == ""
    assert two["district"] is None
    assert three["address_line_1"] == "148 Sincere Fort, Flat 2"
    assert three["address_line_2"] == 'Apt. "B"'
    assert three["country"] == "Democratic People's Republic of Korea"
    assert three["phone"] == "0730 783349"


def test_dim_counterparty_prefixes_legal_address_and_drops_contacts(remodelled):
    cp = remodelled["dim_counterparty"]
    first = rows(cp, "counterparty_id", 1)
    assert first == {
        "counterparty_id": 1,
        "counterparty_legal_name": "Leannon, Predovic and Morar",
        "counterparty_legal_address_line_1": "148 Sincere Fort, Flat 2",
        "counterparty_legal_address_line_2": 'Apt. "B"',
        "counterparty_legal_district": "Buckinghamshire",
        "counterparty_legal_city": "Lake Charles",
        "counterparty_legal_postal_code": "89360",
        "counterparty_legal_country": "Democratic People's Republic of Korea",
        "counterparty_legal_phone_number": "0730 783349",
    }
    # Two counterparties share legal address 3.
    second = rows(cp, "counterparty_id", 2)
    assert second["counterparty_legal_name"] == "Grant - Lakin"
    assert second["counterparty_legal_country"] == first["counterparty_legal_country"]
    assert rows(cp, "counterparty_id", 3)["counterparty_legal_address_line_2"] is None


def test_dim_currency_names(remodelled):
    assert remodelled["dim_currency"].rows() == [
        (1, "GBP", "Pound Sterling"),
        (2, "USD", "US Dollar"),
        (3, "EUR", "Euro"),
    ]


def test_an_unknown_currency_code_is_rejected_and_the_others_delivered():
    unknown = CURRENCY_CSV.replace("EUR", "XQQ")
    currencies, rejections = dim_currency(frame("currency", unknown))
    assert currencies["currency_code"].to_list() == ["GBP", "USD"]
    (rejection,) = rejections
    assert (rejection.table, rejection.id, rejection.column, rejection.value) == (
        "currency", 3, "currency_code", "XQQ",
    )  # fmt: skip
    assert "'XQQ'" in rejection.reason


def test_plain_dimensions_drop_timestamps(remodelled):
    assert remodelled["dim_design"].row(0) == (8, "Wooden", "/usr", "wooden-20220717-npgz.json")
    assert remodelled["dim_payment_type"].rows() == [(1, "SALES_RECEIPT"), (3, "PURCHASE_PAYMENT")]
    assert remodelled["dim_transaction"].rows() == [
        (1, "PURCHASE", None, 1),
        (2, "SALE", 2, None),
        (3, "SALE", 3, None),
    ]


def test_fact_sales_order_splits_timestamps_and_casts_dates(remodelled):
    sales = remodelled["fact_sales_order"]
    assert rows(sales, "sales_order_id", 3) == {
        "sales_order_id": 3,
        "created_date": date(2022, 11, 3),
        "created_time": "14:20:52.100",
        "last_updated_date": date(2022, 11, 4),
        "last_updated_time": "09:00:00.000",
        "sales_staff_id": 3,
        "counterparty_id": 1,
        "units_sold": 65839,
        "unit_price": Decimal("2.10"),
        "currency_id": 3,
        "design_id": 51,
        "agreed_payment_date": date(2022, 11, 3),
        "agreed_delivery_date": date(2024, 11, 6),
        "agreed_delivery_location_id": 3,
    }
    assert rows(sales, "sales_order_id", 2)["created_time"] == "14:20:52.186"


def test_times_of_day_are_every_timestamps_own_to_the_millisecond():
    rng = random.Random(11)
    start = datetime(1, 1, 1)
    stamps = [
        start + timedelta(milliseconds=rng.randrange(0, 315_537_897_600_000)) for _ in range(5000)
    ]
    stamps += [datetime(1969, 12, 31, 23, 59, 59, 999_000), datetime(1970, 1, 1)]
    frame = pl.DataFrame({"created_at": stamps}, schema={"created_at": pl.Datetime("ms")})
    split = frame.select(_split_timestamp("created_at"))
    assert split["created_date"].to_list() == [s.date() for s in stamps]
    assert split["created_time"].to_list() == [s.strftime("%H:%M:%S.%f")[:-3] for s in stamps]


def test_fact_purchase_order_money_is_exact(remodelled):
    po = remodelled["fact_purchase_order"].row(0, named=True)
    assert po["item_unit_price"] == Decimal("99999999.99")
    assert po["item_code"] == "ZDOI5EA"
    assert po["staff_id"] == 1
    assert po["created_time"] == "14:20:52.180"


def test_fact_payment_drops_account_numbers(remodelled):
    payment = remodelled["fact_payment"]
    assert "company_ac_number" not in payment.columns
    assert payment["payment_id"].to_list() == [1, 2, 3]  # sorted by id
    assert rows(payment, "payment_id", 3)["paid"] is True
    assert rows(payment, "payment_id", 3)["payment_amount"] == Decimal("138261.90")
    assert rows(payment, "payment_id", 1)["payment_amount"] == Decimal("0.01")
    assert rows(payment, "payment_id", 2)["payment_date"] == date(2022, 11, 8)


def test_facts_keep_every_version_of_a_row():
    two_versions = PAYMENT_CSV + (
        "2,2022-11-03 14:20:52.186,2022-11-08 07:55:00.01,2,3,169309.68,2,1,t,2022-11-08,"
        "34235316,31622269\n"
    )
    payment, rejections = fact("fact_payment", frame("payment", two_versions))
    assert rejections == []
    versions = payment.filter(pl.col("payment_id") == 2)
    assert versions.select("paid", "last_updated_time").rows() == [
        (False, "14:20:52.186"),
        (True, "07:55:00.010"),
    ]


def test_dim_date_covers_every_fact_date_with_iso_fields(remodelled):
    dates = remodelled["dim_date"]
    facts = [remodelled[n] for n in ("fact_sales_order", "fact_purchase_order", "fact_payment")]
    referenced = {
        d for df in facts for c, t in df.schema.items() if t == pl.Date for d in df[c].to_list()
    }
    assert set(dates["date_id"].to_list()) == referenced
    assert dates["date_id"].is_sorted() and dates["date_id"].is_unique().all()
    assert date(2024, 11, 6) in referenced  # the delivery two years on
    assert rows(dates, "date_id", date(2022, 11, 3)) == {
        "date_id": date(2022, 11, 3),
        "year": 2022,
        "month": 11,
        "day": 3,
        "day_of_week": 4,
        "day_name": "Thursday",
        "month_name": "November",
        "quarter": 4,
    }


def test_dim_date_iso_weekday_ends_on_sunday():
    days = pl.DataFrame({"d": [date(2024, 3, 31), date(2024, 4, 1)]})  # a Sunday, a Monday
    out = dim_date({"f": days})
    assert out.select("day_of_week", "day_name", "month_name", "quarter").rows() == [
        (7, "Sunday", "March", 1),
        (1, "Monday", "April", 2),
    ]


def test_a_bad_text_date_rejects_its_row_naming_table_id_column_and_value():
    bad = SALES_ORDER_CSV.replace("2024-11-06", "2024-02-30")
    sales, rejections = fact("fact_sales_order", frame("sales_order", bad))
    assert sales["sales_order_id"].to_list() == [2]
    assert [(r.table, r.id, r.column, r.value) for r in rejections] == [
        ("sales_order", 3, "agreed_delivery_date", "2024-02-30")
    ]
    assert rejections[0].reason == "not a date (yyyy-mm-dd)"


def test_a_text_date_in_year_zero_is_rejected_as_postgresql_rejects_it():
    """There is no year 0 (1 BC comes before AD 1); polars would read it as 1 BC."""
    bad = PAYMENT_CSV.replace("2022-11-07", "0000-11-07")
    payments, rejections = fact("fact_payment", frame("payment", bad))
    assert [(r.id, r.column, r.value) for r in rejections] == [(1, "payment_date", "0000-11-07")]
    assert payments["payment_id"].to_list() == [2, 3]


def test_a_loose_text_date_is_rejected():
    bad = PAYMENT_CSV.replace("2022-11-07", "2022-11-7")
    payments, rejections = fact("fact_payment", frame("payment", bad))
    assert [(r.id, r.column) for r in rejections] == [(1, "payment_date")]
    assert payments["payment_id"].to_list() == [2, 3]


def test_staff_with_unknown_department_is_rejected():
    staff, rejections = dim_staff(
        frame("staff"), frame("department").filter(pl.col("department_id") != 4)
    )
    assert staff["staff_id"].to_list() == [1]
    assert [(r.table, r.id, r.column, r.value) for r in rejections] == [
        ("staff", 2, "department_id", "4"),
        ("staff", 3, "department_id", "4"),
    ]
    assert rejections[0].reason == "department_id 4 is not in department"


def test_counterparty_with_unknown_address_is_rejected():
    counterparties, rejections = dim_counterparty(
        frame("counterparty"), frame("address").filter(pl.col("address_id") > 1)
    )
    assert counterparties["counterparty_id"].to_list() == [1, 2]
    assert [(r.id, r.column, r.value) for r in rejections] == [(3, "legal_address_id", "1")]


def test_a_null_in_a_not_null_warehouse_column_rejects_the_row():
    no_location = DEPARTMENT_CSV.replace("Dispatch,Leds,", "Dispatch,,")
    staff, rejections = dim_staff(frame("staff"), frame("department", no_location))
    assert staff["staff_id"].to_list() == [1]
    assert [(r.table, r.id, r.column) for r in rejections] == [
        ("staff", 2, "location"),
        ("staff", 3, "location"),
    ]
    assert rejections[0].reason == "NULL in dim_staff.location, which the warehouse requires"


def test_conform_orders_and_casts_columns():
    raw = pl.DataFrame(
        {"currency_name": ["Euro"], "currency_code": ["EUR"], "currency_id": [3], "x": [1]}
    )
    out, rejections = conform("dim_currency", raw)
    assert rejections == []
    assert out.schema == warehouse_table("dim_currency").polars_schema
    with pytest.raises(RemodelError, match="no column"):
        conform("dim_currency", raw.drop("currency_name"))


def test_needs_state_only_for_staff_and_counterparty_sources():
    batch = source_frames()
    assert needs_state({"sales_order": batch["sales_order"]}) == []
    assert needs_state({"department": batch["department"]}) == ["staff", "department"]
    assert needs_state({"address": batch["address"]}) == ["counterparty", "address"]


def test_only_changed_tables_give_dimension_rows():
    batch = {"department": frame("department")}
    state = {"staff": frame("staff"), "department": frame("department")}
    out = remodel_batch(batch, state).frames
    assert out["dim_staff"].height == 3  # the full dimension, from the state
    assert all(out[n].is_empty() for n in WAREHOUSE_TABLE_NAMES if n != "dim_staff")


def test_state_dimension_without_state_is_an_error():
    with pytest.raises(RemodelError, match="current state"):
        remodel_batch({"address": frame("address")}, {})


def test_rows_come_out_in_id_order_then_last_updated_whatever_order_they_came_in():
    rows = pl.DataFrame(
        {"id": [3, 1, 3, 2], "last_updated": [9, 5, 4, 7], "v": ["a", "b", "c", "d"]}
    )
    ordered = in_order(rows, "id", "last_updated")
    assert ordered.rows() == [(1, 5, "b"), (2, 7, "d"), (3, 4, "c"), (3, 9, "a")]
    # Rows already in id order (the extract's CSVs are) come back as they are.
    one_each = ordered.unique("id", keep="first", maintain_order=True)
    assert in_order(one_each, "id").equals(one_each)
