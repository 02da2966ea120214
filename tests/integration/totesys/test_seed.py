"""The seeded ToteSys has the live database's shapes, counts, quirks and paid pattern."""

from __future__ import annotations

from datetime import datetime

import psycopg2
import pytest

from tests.support.sql import one, query
from totes.schema.source import SOURCE_TABLE_NAMES
from totes.totesys.database import create_totesys, table_counts
from totes.totesys.seed import AlreadySeededError, is_seeded, seed_totesys
from totes.totesys.simulate import simulated_now


@pytest.fixture(scope="module")
def seeded(module_database) -> str:
    dsn = module_database("full")
    seed_totesys(dsn, seed=42)
    return dsn


def test_counts_match_the_live_database_in_november_2024(seeded):
    counts = table_counts(seeded)
    assert list(counts) == list(SOURCE_TABLE_NAMES)
    fixed = {"address": 30, "counterparty": 20, "currency": 3, "department": 8, "staff": 20}
    assert {t: counts[t] for t in fixed} == fixed
    assert counts["payment_type"] == 4
    assert 420 <= counts["design"] <= 520
    assert 10_300 <= counts["sales_order"] <= 12_100
    assert 4_200 <= counts["purchase_order"] <= 5_100
    orders = counts["sales_order"] + counts["purchase_order"]
    assert counts["transaction"] == counts["payment"] == orders
    assert one(seeded, "SELECT count(*) FROM sales_order WHERE created_at < '2023-11-15'") >= 4_500


def test_static_tables_keep_the_live_quirks(seeded):
    assert query(seeded, "SELECT currency_id, currency_code FROM currency ORDER BY 1") == [
        (1, "GBP"), (2, "USD"), (3, "EUR"),
    ]  # fmt: skip
    assert one(seeded, "SELECT location FROM department WHERE department_name = 'Dispatch'") == (
        "Leds"
    )
    assert one(seeded, "SELECT count(*) FROM department WHERE manager IS NULL") == 0
    assert one(seeded, "SELECT count(*) FROM staff WHERE department_id = 1") == 0
    assert (
        one(
            seeded,
            "SELECT count(*) FROM staff"
            " WHERE email_address <> lower(first_name || '.' || last_name || '@terrifictotes.com')",
        )
        == 0
    )
    assert query(
        seeded,
        "SELECT count(*) FILTER (WHERE address_line_2 IS NULL),"
        " count(*) FILTER (WHERE district IS NULL) FROM address",
    ) == [(20, 14)]
    assert one(seeded, "SELECT count(*) FROM address WHERE country LIKE '%People''s%'") == 1
    assert one(seeded, "SELECT count(DISTINCT legal_address_id) FROM counterparty") == 14
    assert one(seeded, "SELECT count(*) FROM counterparty WHERE delivery_contact LIKE '%''%'") >= 1
    assert one(seeded, "SELECT count(*) FROM counterparty WHERE counterparty_legal_name LIKE '%,%'")
    assert one(
        seeded, "SELECT count(*) FROM counterparty WHERE counterparty_legal_name LIKE '% - %'"
    )
    assert one(seeded, 'SELECT count(*) FROM "_prisma_migrations"') >= 1


def test_designs(seeded):
    names, locations, files, rows = query(
        seeded,
        "SELECT count(DISTINCT design_name), count(DISTINCT file_location),"
        " count(DISTINCT file_name), count(*) FROM design",
    )[0]
    assert names == 12 and 50 <= locations <= 60 and files == rows
    pattern = "^[a-z]+-[0-9]{8}-[0-9a-z]{4}[.]json$"
    assert one(seeded, "SELECT count(*) FROM design WHERE file_name !~ %s", (pattern,)) == 0


def test_orders_have_the_live_value_domains(seeded):
    row = query(
        seeded,
        "SELECT min(units_sold), max(units_sold), min(unit_price), max(unit_price),"
        " count(DISTINCT currency_id) FROM sales_order",
    )[0]
    assert row[0] >= 1001 and row[1] <= 99_999 and row[2] >= 2 and row[3] <= 4 and row[4] == 3
    row = query(
        seeded,
        "SELECT min(item_quantity), max(item_quantity), min(item_unit_price),"
        " max(item_unit_price), count(DISTINCT item_code) = count(*),"
        " bool_and(item_code ~ '^[0-9A-Z]{7}$') FROM purchase_order",
    )[0]
    assert row[0] >= 1 and row[1] <= 999 and row[2] >= 3 and row[3] <= 1000 and row[4] and row[5]
    for table in ("sales_order", "purchase_order"):
        assert (
            one(
                seeded,
                f"SELECT count(*) FROM {table} WHERE extract(isodow FROM created_at) > 5"
                " OR (created_at::time NOT BETWEEN '08:00' AND '19:00'"
                " AND created_at > '2022-11-04')",
            )
            == 0
        )
        offsets = query(
            seeded,
            f"SELECT min(agreed_payment_date::date - created_at::date),"
            f" max(agreed_payment_date::date - created_at::date) FROM {table}",
        )[0]
        assert offsets == (0, 6)


def test_each_order_has_one_transaction_and_one_payment_created_at_the_same_millisecond(seeded):
    mismatches = one(
        seeded,
        """SELECT count(*) FROM sales_order o
           JOIN transaction t USING (sales_order_id) JOIN payment p USING (transaction_id)
           WHERE t.created_at <> o.created_at OR p.created_at <> o.created_at
              OR p.payment_amount <> o.units_sold * o.unit_price
              OR p.counterparty_id <> o.counterparty_id OR p.currency_id <> o.currency_id
              OR p.payment_type_id <> 1 OR t.transaction_type <> 'SALE'
              OR p.payment_date <> o.agreed_payment_date""",
    )
    assert mismatches == 0
    assert one(
        seeded,
        """SELECT count(*) FROM purchase_order o
           JOIN transaction t USING (purchase_order_id) JOIN payment p USING (transaction_id)
           WHERE p.created_at = o.created_at AND p.payment_type_id = 3
             AND p.payment_amount = o.item_quantity * o.item_unit_price""",
    ) == one(seeded, "SELECT count(*) FROM purchase_order")
    assert one(seeded, "SELECT count(*) FROM payment WHERE payment_type_id IN (2, 4)") == 0
    assert (
        one(
            seeded,
            "SELECT count(*) FROM payment WHERE company_ac_number NOT BETWEEN 10000000 AND 99999999"
            " OR counterparty_ac_number NOT BETWEEN 10000000 AND 99999999",
        )
        == 0
    )
    assert one(seeded, "SELECT pg_typeof(created_at)::text FROM payment LIMIT 1") == (
        "timestamp without time zone"
    )
    assert (
        one(
            seeded,
            "SELECT count(*) FROM payment"
            " WHERE date_trunc('milliseconds', created_at) <> created_at",
        )
        == 0
    )


def test_the_paid_pattern(seeded):
    today = "2024-11-15"
    assert (
        one(
            seeded,
            "SELECT count(*) FROM payment"
            " WHERE paid AND extract(isodow FROM payment_date::date) > 5",
        )
        == 0
    )
    share = one(seeded, "SELECT avg(paid::int) FROM payment")
    assert 0.55 <= share <= 0.66
    assert (
        one(
            seeded,
            "SELECT count(*) FROM payment WHERE paid AND (last_updated::date <> payment_date::date"
            " OR to_char(last_updated, 'HH24:MI') <> '07:55' OR payment_date > %s)",
            (today,),
        )
        == 0
    )
    # Weekday-dated, already due, and still unpaid: only those created on their payment day,
    # after the 07:55 job had run.
    assert (
        one(
            seeded,
            "SELECT count(*) FROM payment WHERE NOT paid AND payment_date <= %s"
            " AND extract(isodow FROM payment_date::date) <= 5"
            " AND payment_date::date <> created_at::date",
            (today,),
        )
        == 0
    )
    assert (
        one(seeded, "SELECT count(*) FROM payment WHERE NOT paid AND last_updated <> created_at")
        == 0
    )


def test_history_already_holds_some_silent_edits(seeded):
    # Silently edited delivery dates end up far from their order; some orders point at a
    # design created after them.
    assert (
        one(
            seeded,
            "SELECT count(*) FROM sales_order"
            " WHERE agreed_delivery_date::date - created_at::date > 7",
        )
        > 5
    )
    assert (
        one(
            seeded,
            "SELECT count(*) FROM sales_order o JOIN design d USING (design_id)"
            " WHERE d.created_at > o.created_at",
        )
        > 0
    )


def test_sequences_continue_after_the_seeded_ids_and_the_clock_is_set(seeded):
    assert simulated_now(seeded) == datetime(2024, 11, 15, 9, 0)
    # Rolled back: the module's other tests share this ToteSys.
    with psycopg2.connect(seeded) as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO currency (currency_code, last_updated) VALUES ('CHF', now())"
            " RETURNING currency_id"
        )
        assert cur.fetchone()[0] == 4
        conn.rollback()
    assert is_seeded(seeded)


def test_seeding_twice_refuses(seeded):
    with pytest.raises(AlreadySeededError, match="already has data"):
        seed_totesys(seeded)


def test_create_is_idempotent_and_an_empty_totesys_is_not_seeded(module_database):
    dsn = module_database("empty")
    assert not is_seeded(dsn)
    assert create_totesys(dsn) is True
    assert create_totesys(dsn) is False
    assert not is_seeded(dsn)
    assert one(dsn, "SELECT to_regclass('public.clock')") is None
    assert one(dsn, "SELECT to_regclass('simulator.clock')") is not None


def _dump(dsn: str) -> dict[str, list[tuple]]:
    return {t: query(dsn, f"SELECT * FROM {t} ORDER BY 1") for t in SOURCE_TABLE_NAMES}


def test_same_seed_same_data_and_scale_shrinks_the_order_tables(module_database):
    first, second, other = module_database("a"), module_database("b"), module_database("c")
    for dsn, seed in ((first, 5), (second, 5), (other, 6)):
        seed_totesys(dsn, seed=seed, scale=0.1)
    assert _dump(first) == _dump(second)
    assert _dump(first)["sales_order"] != _dump(other)["sales_order"]
    counts = table_counts(first)
    assert 900 <= counts["sales_order"] <= 1_350
    assert 380 <= counts["purchase_order"] <= 560
    assert 35 <= counts["design"] <= 65
    assert counts["staff"] == 20
