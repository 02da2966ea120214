"""The business model behind the seeder and simulator: pure, deterministic, realistic."""

from __future__ import annotations

import random
import re
from datetime import date, datetime

import pytest

from totes.totesys import activity
from totes.totesys.activity import from_ms, plan_day, to_ms, weekday_rate, window
from totes.totesys.activity_rows import UsedNames, build_batch, unique_values

WEDNESDAY = date(2024, 3, 13)
SATURDAY = date(2024, 3, 16)


def test_a_day_is_the_same_every_time_for_a_seed():
    assert plan_day(7, WEDNESDAY, 1.0) == plan_day(7, WEDNESDAY, 1.0)
    assert plan_day(7, WEDNESDAY, 1.0) != plan_day(8, WEDNESDAY, 1.0)


def test_nothing_happens_at_weekends_or_before_the_database_existed():
    for day in (SATURDAY, date(2024, 3, 17), date(2022, 11, 2)):
        plan = plan_day(1, day, 1.0)
        assert not (plan.sales or plan.purchases or plan.designs or plan.edits)
    assert activity.paid_job_ms(1, SATURDAY) is None


def test_orders_land_on_weekdays_between_0800_and_1859_about_ten_seconds_into_a_minute():
    for offset in range(5):
        day = date(2024, 3, 11 + offset)
        plan = plan_day(3, day, 1.0)
        for event in [*plan.sales, *plan.purchases, *plan.designs]:
            moment = from_ms(event.ms)
            assert moment.date() == day
            assert 8 <= moment.hour <= 18
            assert 9.6 <= moment.second + moment.microsecond / 1e6 < 10.4


def test_value_domains_match_the_live_data():
    sales = [s for d in range(11, 16) for s in plan_day(5, date(2024, 3, d), 1.0).sales]
    purchases = [p for d in range(11, 16) for p in plan_day(5, date(2024, 3, d), 1.0).purchases]
    assert all(1_001 <= s.units <= 99_999 and 200 <= s.price_cents <= 400 for s in sales)
    assert all(1 <= p.quantity <= 999 and 300 <= p.price_cents <= 100_000 for p in purchases)
    assert all(re.fullmatch(r"[0-9A-Z]{7}", p.item_code) for p in purchases)
    for order in [*sales, *purchases]:
        created = order.ms // activity.MS_PER_DAY
        assert 0 <= order.payment_day - created <= 6
        assert 0 <= order.delivery_day - created <= 7
        assert 10_000_000 <= order.company_ac <= 99_999_999


def test_design_file_names_look_like_the_live_ones():
    designs = [d for day in range(11, 30) for d in plan_day(5, date(2024, 3, day), 3.0).designs]
    assert designs
    for design in designs:
        assert re.fullmatch(rf"{design.name.lower()}-\d{{8}}-[0-9a-z]{{4}}\.json", design.file_name)
        assert design.location.startswith("/")


def test_rates_ramp_up_then_settle():
    assert weekday_rate("sales_order", date(2022, 11, 10)) < 5
    assert weekday_rate("sales_order", date(2024, 6, 3)) == pytest.approx(22.3)
    assert weekday_rate("purchase_order", date(2024, 6, 3)) == pytest.approx(9.2)


def test_scale_multiplies_the_daily_volume():
    days = [date(2024, 4, d) for d in range(1, 27) if date(2024, 4, d).weekday() < 5]
    small = sum(len(plan_day(1, d, 1.0).sales) for d in days)
    large = sum(len(plan_day(1, d, 10.0).sales) for d in days)
    assert 7 < large / small < 13


def test_poisson_has_the_right_mean():
    rng = random.Random(0)
    for mean in (0.3, 5.0, 300.0):
        draws = [activity.poisson(rng, mean) for _ in range(4000)]
        assert sum(draws) / len(draws) == pytest.approx(mean, rel=0.08)


def test_window_keeps_only_the_events_inside():
    plan = plan_day(2, WEDNESDAY, 1.0)
    noon = to_ms(datetime(2024, 3, 13, 12))
    morning, afternoon = window(plan, 0, noon), window(plan, noon, noon * 2)
    assert len(morning.sales) + len(afternoon.sales) == len(plan.sales)
    assert all(s.ms < noon for s in morning.sales)


def test_taken_or_repeated_values_are_redrawn_deterministically():
    values = ["AAAAAAA", "BBBBBBB", "AAAAAAA"]
    first = unique_values(values, lambda vs: {"BBBBBBB"} & set(vs))
    assert first == unique_values(values, lambda vs: {"BBBBBBB"} & set(vs))
    assert first[0] == "AAAAAAA" and len(set(first)) == 3 and "BBBBBBB" not in first
    assert all(re.fullmatch(r"[0-9A-Z]{7}", v) for v in first)


def _batch(days: list[date], paid_as_of: datetime):
    plans = [plan_day(11, d, 2.0) for d in days]
    ids = {t: 0 for t in ("design", "sales_order", "purchase_order", "transaction", "payment")}
    ids["design"] = 50  # designs that already exist
    return build_batch(
        plans, seed=11, ids=ids, taken=UsedNames().checks(), paid_as_of_ms=to_ms(paid_as_of)
    )


def test_batches_pair_each_order_with_a_transaction_and_a_payment():
    batch = _batch([date(2024, 3, d) for d in range(4, 9)], datetime(2024, 3, 20))
    frames = batch.frames
    orders = frames["sales_order"].height + frames["purchase_order"].height
    assert frames["transaction"].height == frames["payment"].height == orders
    assert (
        frames["payment"]["created_at"].to_list() == frames["transaction"]["created_at"].to_list()
    )
    assert frames["transaction"]["transaction_id"].to_list() == list(range(1, orders + 1))
    sales = (
        frames["sales_order"]
        .join(frames["transaction"], on="sales_order_id")
        .join(frames["payment"], on="transaction_id", suffix="_pay")
    )
    assert (sales["created_at"] == sales["created_at_pay"]).all()
    assert (
        sales["units_sold"] * sales["unit_price__cents"] == sales["payment_amount__cents"]
    ).all()
    assert (sales["counterparty_id"] == sales["counterparty_id_pay"]).all()
    assert set(sales["payment_type_id"]) == {1}
    assert (
        sales["design_id"].min() >= 1 and sales["design_id"].max() <= 50 + frames["design"].height
    )


def test_payments_are_paid_by_the_weekday_job_after_their_creation_only():
    batch = _batch([date(2024, 3, d) for d in range(4, 9)], datetime(2024, 3, 11, 12))
    payments = batch.frames["payment"].with_columns(
        day=batch.frames["payment"]["payment_date"].str.to_date()
    )
    paid = payments.filter("paid")
    assert paid.height > 0
    assert (paid["day"].dt.weekday() <= 5).all()
    assert (paid["last_updated"].dt.date() == paid["day"]).all()
    assert all(t.hour == 7 and t.minute == 55 for t in paid["last_updated"])
    unpaid = payments.filter(~payments["paid"])
    assert (unpaid["last_updated"] == unpaid["created_at"]).all()
    weekday_past = unpaid.filter(
        (unpaid["day"].dt.weekday() <= 5) & (unpaid["day"] < date(2024, 3, 11))
    )
    # Only same-day payments escape the job: it ran at 07:55, before they were created.
    assert (weekday_past["day"] == weekday_past["created_at"].dt.date()).all()
