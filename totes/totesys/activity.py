"""What Terrific Totes does on a given day: the one model behind the seeder and the simulator.

``plan_day(seed, day, scale)`` is a pure function: the same day always brings the same
orders, designs, paid-job time and silent edits. Seeding up to X and then simulating to Y
therefore writes the same rows as seeding up to Y directly. Times are integer milliseconds
since 1970 (naive UTC, like ToteSys's ``timestamp(3)``) and dates are days since 1970, so
hundreds of thousands of rows stay cheap to generate without numpy.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import cache
from itertools import pairwise
from typing import NamedTuple

from totes.totesys import reference_data as ref

MS_PER_MINUTE = 60_000
MS_PER_DAY = 86_400_000
_EPOCH = datetime(1970, 1, 1)
GENESIS_DAY = ref.GENESIS.date()

OPENING_MINUTE = 8 * 60  # the first order minute is 08:00, the last 18:59
BUSINESS_MINUTES = 11 * 60
# Order events land about 10 s into their minute (09.600-10.399 s in the live data).
EVENT_OFFSET_MS = 9_600
EVENT_JITTER_MS = 800
PAID_JOB_MINUTE = 7 * 60 + 55  # the weekday job at ~07:55:11 marks today's payments paid

# Weekday rates at scale 1, as (day, rate) knots interpolated linearly: the business ramped
# up over its first two months, then settled at ~22 sales and ~9 purchases a weekday.
RATE_KNOTS: dict[str, tuple[tuple[date, float], ...]] = {
    "sales_order": (
        (date(2022, 11, 3), 2.2),
        (date(2022, 12, 9), 3.3),
        (date(2022, 12, 12), 10.0),
        (date(2023, 1, 31), 22.3),
    ),
    "purchase_order": (
        (date(2022, 11, 3), 2.8),
        (date(2022, 12, 1), 5.5),
        (date(2023, 1, 10), 9.2),
    ),
    # ~0.9 a weekday up to the 2024-11 snapshot (473 designs); later snapshots show ~1.4.
    "design": ((date(2022, 11, 3), 0.88), (date(2024, 11, 15), 0.88), (date(2025, 1, 15), 1.4)),
}
DAILY_RATE_SHAPE = 60.0  # gamma-distributed busy/quiet days: daily counts vary more than Poisson
GENESIS_COUNTS = {"design": 10, "sales_order": 5, "purchase_order": 5}

# Silent edits: ~7.5 order rows a month per order table; ~10% of designs over 6 months.
ORDER_EDITS_PER_WEEKDAY = 7.5 * 12 / 261
DESIGN_EDIT_SHARE_PER_WEEKDAY = 0.10 / 130
SALES_EDIT_COLUMNS = (
    "design_id",
    "staff_id",
    "agreed_delivery_date",
    "agreed_delivery_location_id",
)
PURCHASE_EDIT_COLUMNS = (
    "staff_id",
    "item_code",
    "agreed_delivery_date",
    "agreed_delivery_location_id",
)

_ITEM_CODE_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_FILE_SUFFIX_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def to_ms(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def from_ms(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def day_number(day: date) -> int:
    return (day - _EPOCH.date()).days


def date_of(number: int) -> date:
    return _EPOCH.date() + timedelta(days=number)


class DesignEvent(NamedTuple):
    ms: int
    name: str
    location: str
    file_name: str


class SaleEvent(NamedTuple):
    ms: int
    u_design: float  # resolved against the designs that exist at ``ms``
    staff: int
    counterparty: int
    units: int
    price_cents: int
    currency: int
    delivery_day: int
    payment_day: int
    location: int
    company_ac: int
    counterparty_ac: int


class PurchaseEvent(NamedTuple):
    ms: int
    staff: int
    counterparty: int
    item_code: str
    quantity: int
    price_cents: int
    currency: int
    delivery_day: int
    payment_day: int
    location: int
    company_ac: int
    counterparty_ac: int


class SilentEdit(NamedTuple):
    """An edit at ``ms`` of a row picked uniformly among those created by then (``u_row``)."""

    ms: int
    table: str
    column: str
    value: int | str | None  # None: a design id, picked with ``u_value`` among existing ones
    u_row: float
    u_value: float


@dataclass
class DayPlan:
    day: date
    designs: list[DesignEvent] = field(default_factory=list)
    sales: list[SaleEvent] = field(default_factory=list)
    purchases: list[PurchaseEvent] = field(default_factory=list)
    edits: list[SilentEdit] = field(default_factory=list)

    @property
    def order_count(self) -> int:
        return len(self.sales) + len(self.purchases)


# --- rates -----------------------------------------------------------------------------------


def weekday_rate(kind: str, day: date) -> float:
    """Expected events of ``kind`` on a weekday ``day``, at scale 1."""
    knots = RATE_KNOTS[kind]
    if day <= knots[0][0]:
        return knots[0][1]
    for (d0, r0), (d1, r1) in pairwise(knots):
        if day <= d1:
            return r0 + (r1 - r0) * (day - d0).days / (d1 - d0).days
    return knots[-1][1]


@cache
def _expected_designs_by(day: date) -> float:
    """Designs expected to exist at the start of ``day`` (scale 1): sizes the design edits."""
    if day <= GENESIS_DAY:
        return 0.0
    before = day - timedelta(days=1)
    added = GENESIS_COUNTS["design"] if before == GENESIS_DAY else 0.0
    if before > GENESIS_DAY and before.weekday() < 5:
        added = weekday_rate("design", before)
    return _expected_designs_by(before) + added


def expected_designs_by(day: date) -> float:
    # Warm the cache a year at a time so the recursion stays shallow.
    probe = GENESIS_DAY
    while probe < day:
        probe = min(day, probe + timedelta(days=300))
        _expected_designs_by(probe)
    return _expected_designs_by(day)


def poisson(rng: random.Random, mean: float) -> int:
    if mean <= 0:
        return 0
    if mean > 40:  # normal approximation: accurate enough, and O(1)
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, k, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        k += 1
        product *= rng.random()
    return k


# --- random values ---------------------------------------------------------------------------


def _code(rng: random.Random, alphabet: str, length: int) -> str:
    n = int(rng.random() * len(alphabet) ** length)
    chars = []
    for _ in range(length):
        n, i = divmod(n, len(alphabet))
        chars.append(alphabet[i])
    return "".join(chars)


@cache
def _chunks(alphabet: str, length: int) -> tuple[str, ...]:
    if length == 0:
        return ("",)
    return tuple(a + rest for a in alphabet for rest in _chunks(alphabet, length - 1))


def item_code(rng: random.Random) -> str:
    """7 upper-case alphanumerics, from one draw (the hot path of 100x seeding)."""
    n = int(rng.random() * 36**7)
    high, low = divmod(n, 36**4)
    middle, low = divmod(low, 36**2)
    two = _chunks(_ITEM_CODE_ALPHABET, 2)
    return _chunks(_ITEM_CODE_ALPHABET, 3)[high] + two[middle] + two[low]


def reroll(value: str, attempt: int) -> str:
    """A deterministic replacement for an item code or file name that is already taken."""
    rng = random.Random(f"reroll:{value}:{attempt}")
    if value.endswith(".json"):
        stem = value.rsplit("-", 1)[0]
        return f"{stem}-{_code(rng, _FILE_SUFFIX_ALPHABET, 4)}.json"
    return item_code(rng)


def _design(rng: random.Random, ms: int) -> DesignEvent:
    name = rng.choice(ref.DESIGN_NAMES)
    drawn_on = from_ms(ms).date() - timedelta(days=3 + int(rng.random() * 726))
    suffix = _code(rng, _FILE_SUFFIX_ALPHABET, 4)
    file_name = f"{name.lower()}-{drawn_on:%Y%m%d}-{suffix}.json"
    return DesignEvent(ms, name, rng.choice(ref.FILE_LOCATIONS), file_name)


def _days_after(rng: random.Random, ms: int, span_days: float) -> int:
    """The date of a moment uniformly up to ``span_days`` after ``ms``."""
    return int((ms + rng.random() * span_days * MS_PER_DAY) // MS_PER_DAY)


def _sale(rng: random.Random, ms: int) -> SaleEvent:
    r = rng.random
    return SaleEvent(
        ms=ms,
        u_design=r(),
        staff=1 + int(r() * len(ref.STAFF)),
        counterparty=1 + int(r() * len(ref.COUNTERPARTIES)),
        units=1_001 + int(r() * 98_999),
        price_cents=200 + int(r() * 201),
        currency=1 + int(r() * len(ref.CURRENCIES)),
        delivery_day=int((ms + r() * 7 * MS_PER_DAY) // MS_PER_DAY),
        payment_day=int((ms + r() * 6 * MS_PER_DAY) // MS_PER_DAY),
        location=1 + int(r() * len(ref.ADDRESSES)),
        company_ac=10_000_000 + int(r() * 90_000_000),
        counterparty_ac=10_000_000 + int(r() * 90_000_000),
    )


def _purchase(rng: random.Random, ms: int) -> PurchaseEvent:
    r = rng.random
    return PurchaseEvent(
        ms=ms,
        staff=1 + int(r() * len(ref.STAFF)),
        counterparty=1 + int(r() * len(ref.COUNTERPARTIES)),
        item_code=item_code(rng),
        quantity=1 + int(r() * 999),
        price_cents=300 + int(r() * 99_701),
        currency=1 + int(r() * len(ref.CURRENCIES)),
        delivery_day=int((ms + r() * 7 * MS_PER_DAY) // MS_PER_DAY),
        payment_day=int((ms + r() * 6 * MS_PER_DAY) // MS_PER_DAY),
        location=1 + int(r() * len(ref.ADDRESSES)),
        company_ac=10_000_000 + int(r() * 90_000_000),
        counterparty_ac=10_000_000 + int(r() * 90_000_000),
    )


def _business_moments(rng: random.Random, day_ms: int, count: int) -> list[int]:
    return sorted(
        day_ms
        + (OPENING_MINUTE + int(rng.random() * BUSINESS_MINUTES)) * MS_PER_MINUTE
        + EVENT_OFFSET_MS
        + int(rng.random() * EVENT_JITTER_MS)
        for _ in range(count)
    )


# --- a day -----------------------------------------------------------------------------------


def paid_job_ms(seed: int, day: date) -> int | None:
    """When the weekday job marks ``day``'s payments paid (None on weekends)."""
    if day.weekday() >= 5:
        return None
    rng = random.Random(f"paid-job:{seed}:{day.isoformat()}")
    seconds_ms = 11_100 + int(rng.random() * 800)
    return day_number(day) * MS_PER_DAY + PAID_JOB_MINUTE * MS_PER_MINUTE + seconds_ms


def _genesis(seed: int, scale: float) -> DayPlan:
    rng = random.Random(f"genesis:{seed}")
    plan = DayPlan(GENESIS_DAY)
    genesis_ms, first_orders_ms = to_ms(ref.GENESIS), to_ms(ref.FIRST_ORDERS_AT)
    count = {k: max(1, round(n * scale)) for k, n in GENESIS_COUNTS.items()}
    plan.designs = [_design(rng, genesis_ms) for _ in range(count["design"])]
    plan.sales = [
        _sale(rng, first_orders_ms + int(rng.random() * 3)) for _ in range(count["sales_order"])
    ]
    plan.purchases = [
        _purchase(rng, first_orders_ms + int(rng.random() * 3))
        for _ in range(count["purchase_order"])
    ]
    plan.sales.sort(key=lambda e: e.ms)
    plan.purchases.sort(key=lambda e: e.ms)
    return plan


def _edits(rng: random.Random, day: date, day_ms: int, scale: float) -> list[SilentEdit]:
    edits: list[SilentEdit] = []
    n_sales = poisson(rng, ORDER_EDITS_PER_WEEKDAY * scale)
    n_purchases = poisson(rng, ORDER_EDITS_PER_WEEKDAY * scale)
    n_designs = poisson(rng, DESIGN_EDIT_SHARE_PER_WEEKDAY * expected_designs_by(day) * scale)
    for table, columns, count in (
        ("sales_order", SALES_EDIT_COLUMNS, n_sales),
        ("purchase_order", PURCHASE_EDIT_COLUMNS, n_purchases),
        ("design", ("file_location",), n_designs),
    ):
        for ms in _business_moments(rng, day_ms, count):
            column = rng.choice(columns)
            value: int | str | None
            if column == "design_id":
                value = None
            elif column == "staff_id":
                value = 1 + int(rng.random() * len(ref.STAFF))
            elif column == "agreed_delivery_location_id":
                value = 1 + int(rng.random() * len(ref.ADDRESSES))
            elif column == "agreed_delivery_date":
                value = date_of(_days_after(rng, ms, 7)).isoformat()
            elif column == "item_code":
                value = item_code(rng)
            else:
                value = rng.choice(ref.FILE_LOCATIONS)
            edits.append(SilentEdit(ms, table, column, value, rng.random(), rng.random()))
    edits.sort(key=lambda e: e.ms)
    return edits


def plan_day(seed: int, day: date, scale: float) -> DayPlan:
    """Everything that happens on ``day`` (at any time of it), deterministically."""
    if day < GENESIS_DAY or day.weekday() >= 5:
        return DayPlan(day)
    if day == GENESIS_DAY:
        return _genesis(seed, scale)
    rng = random.Random(f"day:{seed}:{day.isoformat()}")
    busy = rng.gammavariate(DAILY_RATE_SHAPE, 1 / DAILY_RATE_SHAPE)
    day_ms = day_number(day) * MS_PER_DAY
    plan = DayPlan(day)
    counts = {kind: poisson(rng, weekday_rate(kind, day) * scale * busy) for kind in RATE_KNOTS}
    plan.designs = [_design(rng, ms) for ms in _business_moments(rng, day_ms, counts["design"])]
    plan.sales = [_sale(rng, ms) for ms in _business_moments(rng, day_ms, counts["sales_order"])]
    plan.purchases = [
        _purchase(rng, ms) for ms in _business_moments(rng, day_ms, counts["purchase_order"])
    ]
    plan.edits = _edits(random.Random(f"edits:{seed}:{day.isoformat()}"), day, day_ms, scale)
    return plan


def window(plan: DayPlan, start_ms: int, end_ms: int) -> DayPlan:
    """The part of ``plan`` that happens in [start_ms, end_ms)."""

    def inside(events: list) -> list:
        return [e for e in events if start_ms <= e.ms < end_ms]

    return DayPlan(
        plan.day,
        inside(plan.designs),
        inside(plan.sales),
        inside(plan.purchases),
        inside(plan.edits),
    )
