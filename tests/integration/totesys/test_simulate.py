"""The simulator moves ToteSys on the way the live business does, at the live rates."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest

from tests.support.sql import one, query
from totes.schema.source import SOURCE_TABLE_NAMES
from totes.totesys.database import create_totesys
from totes.totesys.errors import ToteSysStateError
from totes.totesys.seed import seed_totesys
from totes.totesys.simulate import (
    SimulationSummary,
    simulate,
    simulated_now,
    wallclock_since_last_simulation,
)

START = datetime(2024, 11, 15, 9, 0)
DAYS = 30
WEEKDAYS = 21  # weekdays touched between 2024-11-15 09:00 and 2024-12-15 09:00
EDITABLE = {
    "sales_order": "design_id, staff_id, agreed_delivery_date, agreed_delivery_location_id",
    "purchase_order": "staff_id, item_code, agreed_delivery_date, agreed_delivery_location_id",
    "design": "file_location",
}


@dataclass
class Month:
    dsn: str
    summary: SimulationSummary
    before: dict[str, dict[int, tuple]]  # id -> (created_at, last_updated, editable columns)
    max_ids: dict[str, int]


def _snapshot(dsn: str) -> dict[str, dict[int, tuple]]:
    return {
        table: {
            row[0]: row[1:]
            for row in query(
                dsn, f"SELECT {table}_id, created_at, last_updated, {cols} FROM {table}"
            )
        }
        for table, cols in EDITABLE.items()
    }


@pytest.fixture(scope="module")
def month(module_database) -> Month:
    dsn = module_database("month")
    seed_totesys(dsn, seed=42)
    before = _snapshot(dsn)
    tables = ("sales_order", "purchase_order", "payment", "design")
    ids = {t: one(dsn, f"SELECT max({t}_id) FROM {t}") for t in tables}
    summary = simulate(dsn, minutes=DAYS * 24 * 60)
    return Month(dsn, summary, before, ids)


def test_the_clock_moves_on_and_remembers_the_real_time(month):
    assert month.summary.clock_from == START
    assert month.summary.clock_to == START + timedelta(days=DAYS)
    assert simulated_now(month.dsn) == START + timedelta(days=DAYS)
    assert timedelta(0) <= wallclock_since_last_simulation(month.dsn) < timedelta(minutes=5)


def test_orders_arrive_at_the_live_rates(month):
    inserted = month.summary.inserted
    assert 16 <= inserted["sales_order"] / WEEKDAYS <= 29
    assert 5.5 <= inserted["purchase_order"] / WEEKDAYS <= 13
    assert 0.3 <= inserted["design"] / WEEKDAYS <= 2.5
    orders = inserted["sales_order"] + inserted["purchase_order"]
    assert inserted["transaction"] == inserted["payment"] == orders
    assert one(month.dsn, "SELECT count(*) FROM sales_order WHERE sales_order_id > %s",
               (month.max_ids["sales_order"],)) == inserted["sales_order"]  # fmt: skip


def test_new_orders_come_with_their_transaction_and_payment_on_weekdays_in_office_hours(month):
    new_sales = query(
        month.dsn,
        """SELECT o.created_at, t.created_at, p.created_at, p.payment_amount,
                  o.units_sold * o.unit_price, p.last_updated
           FROM sales_order o JOIN transaction t USING (sales_order_id)
           JOIN payment p USING (transaction_id) WHERE o.sales_order_id > %s""",
        (month.max_ids["sales_order"],),
    )
    assert new_sales
    for order_at, txn_at, pay_at, amount, expected, _ in new_sales:
        assert order_at == txn_at == pay_at and amount == expected
        assert order_at.weekday() < 5 and 8 <= order_at.hour <= 18
        assert START <= order_at < START + timedelta(days=DAYS)
    for table in ("purchase_order", "design"):
        assert (
            one(
                month.dsn,
                f"SELECT count(*) FROM {table} WHERE {table}_id > %s"
                " AND (extract(isodow FROM created_at) > 5 OR created_at::time < '08:00')",
                (month.max_ids[table],),
            )
            == 0
        )


def test_the_0755_job_marks_due_payments_paid_and_that_is_visible(month):
    flips = month.summary.paid_flips
    visible = one(
        month.dsn, "SELECT count(*) FROM payment WHERE paid AND last_updated >= %s", (START,)
    )
    assert flips == visible
    assert 15 * WEEKDAYS <= flips <= 35 * WEEKDAYS  # ~60% of ~31 payments a weekday
    assert (
        one(
            month.dsn,
            "SELECT count(*) FROM payment WHERE paid"
            " AND (extract(isodow FROM payment_date::date) > 5"
            " OR last_updated::date <> payment_date::date"
            " OR to_char(last_updated, 'HH24:MI') <> '07:55')",
        )
        == 0
    )
    due_unpaid = one(
        month.dsn,
        "SELECT count(*) FROM payment WHERE NOT paid AND payment_date::date < %s"
        " AND extract(isodow FROM payment_date::date) <= 5"
        " AND payment_date::date <> created_at::date",
        (START + timedelta(days=DAYS),),
    )
    assert due_unpaid == 0


def test_silent_edits_happen_at_the_live_rates_and_leave_last_updated_alone(month):
    edits = month.summary.silent_edits
    assert 2 <= edits["sales_order"] <= 20  # ~7.5 a month
    assert 2 <= edits["purchase_order"] <= 20
    assert 2 <= edits["design"] <= 30  # ~10% of ~470 designs over 6 months
    after = _snapshot(month.dsn)
    for table, rows in month.before.items():
        changed = [i for i, row in rows.items() if after[table][i] != row]
        assert 0 < len(changed) <= edits[table]
        for i in changed:
            assert after[table][i][:2] == rows[i][:2], "created_at/last_updated must not move"


def test_consecutive_runs_continue_where_the_last_stopped(month):
    start = simulated_now(month.dsn)
    summary = simulate(month.dsn, minutes=90)
    assert summary.clock_from == start and simulated_now(month.dsn) == start + timedelta(minutes=90)
    text = summary.describe()
    assert "inserted" in text and "silent edits" in text and "paid" in text
    with pytest.raises(ValueError, match="before the clock"):
        simulate(month.dsn, until=start)
    with pytest.raises(ValueError, match="exactly one"):
        simulate(month.dsn)


def test_simulating_needs_a_seeded_totesys(module_database):
    dsn = module_database("unseeded")
    create_totesys(dsn)
    with pytest.raises(ToteSysStateError, match="seed"):
        simulate(dsn, minutes=10)


def _dump(dsn: str) -> dict[str, list[tuple]]:
    return {t: query(dsn, f"SELECT * FROM {t} ORDER BY 1") for t in SOURCE_TABLE_NAMES}


def test_seed_then_simulate_equals_seeding_further_however_the_time_is_cut(module_database):
    stepwise, direct = module_database("stepwise"), module_database("direct")
    end = datetime(2023, 3, 22, 12, 0)
    seed_totesys(stepwise, seed=9, scale=0.3, now=datetime(2023, 3, 1, 10, 30))
    simulate(stepwise, minutes=3 * 24 * 60 + 17)
    simulate(stepwise, until=end)
    seed_totesys(direct, seed=9, scale=0.3, now=end)
    assert _dump(stepwise) == _dump(direct)
