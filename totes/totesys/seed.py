"""Fill an empty ToteSys with two years of realistic history, fast enough for 100x volumes.

History is generated day by day by the same model the simulator uses (``totes.totesys.activity``),
buffered, and COPYed in chunks, all in one transaction. Payments get their final state as
of ``now``: the 07:55 job has already marked the due ones paid.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import polars as pl
from psycopg2.extensions import cursor as Cursor

from totes.pipeline.db import connect
from totes.totesys import reference_data as ref
from totes.totesys.activity import GENESIS_DAY, DayPlan, plan_day, to_ms, window
from totes.totesys.activity_rows import ORDER_TABLES, UsedNames, build_batch
from totes.totesys.clock import write_clock
from totes.totesys.database import (
    apply_updates,
    copy_frame,
    count_rows,
    create_totesys,
    foreign_keys_deferred_to_the_end,
    reset_sequences,
)
from totes.totesys.errors import ToteSysStateError

DEFAULT_NOW = datetime(2024, 11, 15, 9, 0)
FLUSH_EVERY_ORDERS = 60_000  # bounds memory: a chunk of days is COPYed, then forgotten


class AlreadySeededError(ToteSysStateError):
    """Seeding would mix two histories; ToteSys must be empty."""


def is_seeded(dsn: str) -> bool:
    """True when ToteSys exists and any of its tables has rows."""
    with connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass('currency') IS NOT NULL")
        if not cur.fetchone()[0]:
            return False
        return any(count_rows(cur).values())


def seed_totesys(
    dsn: str,
    *,
    seed: int = 42,
    scale: float = 1.0,
    now: datetime | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, int]:
    """Create ToteSys if missing and fill it with history from 2022-11-03 to `now` (default
    2024-11-15 09:00, simulated time). Refuses (raises a clear error) if ToteSys already has
    data. Returns rows per table. Sets the simulated clock to `now`."""
    now = now or DEFAULT_NOW
    say = progress or (lambda _message: None)
    if scale <= 0:
        raise ValueError(f"scale must be positive, not {scale}")
    if now <= ref.FIRST_ORDERS_AT:
        raise ValueError(f"now must be after ToteSys's first orders ({ref.FIRST_ORDERS_AT})")
    create_totesys(dsn)
    with connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("LOCK TABLE currency IN EXCLUSIVE MODE")  # two seeders: one waits, then refuses
        if any(count_rows(cur).values()):
            raise AlreadySeededError(
                "ToteSys already has data; seed into an empty database (or drop its tables)"
            )
        say(f"seeding ToteSys (seed {seed}, scale {scale:g}) up to {now:%Y-%m-%d %H:%M}")
        with foreign_keys_deferred_to_the_end(cur):
            _load_static(cur)
            _load_history(cur, seed=seed, scale=scale, now=now, say=say)
            say("  checking foreign keys")
        reset_sequences(cur)
        write_clock(cur, now, seed=seed, scale=scale)
        counts = count_rows(cur)
        conn.commit()
    say("seeded: " + ", ".join(f"{t} {n:,}" for t, n in counts.items()))
    return counts


def _static_frames() -> dict[str, pl.DataFrame]:
    born, people = ref.GENESIS, ref.PEOPLE_LOADED_AT

    def frame(rows: list[dict], at: datetime) -> pl.DataFrame:
        return pl.DataFrame(rows).with_columns(
            created_at=pl.lit(at, pl.Datetime("ms")), last_updated=pl.lit(at, pl.Datetime("ms"))
        )

    line1, line2, district, city, postcode, country, phone = zip(*ref.ADDRESSES, strict=True)
    addresses = pl.DataFrame(
        {
            "address_id": range(1, len(ref.ADDRESSES) + 1),
            "address_line_1": line1,
            "address_line_2": line2,
            "district": district,
            "city": city,
            "postal_code": postcode,
            "country": country,
            "phone": phone,
        },
        schema_overrides={"address_line_2": pl.String, "district": pl.String},
    ).with_columns(
        created_at=pl.lit(born, pl.Datetime("ms")), last_updated=pl.lit(born, pl.Datetime("ms"))
    )
    return {
        "address": addresses,
        "counterparty": frame(
            [
                {
                    "counterparty_id": i,
                    "counterparty_legal_name": name,
                    "legal_address_id": address,
                    "commercial_contact": commercial,
                    "delivery_contact": delivery,
                }
                for i, (name, address, commercial, delivery) in enumerate(ref.COUNTERPARTIES, 1)
            ],
            people,
        ),
        "currency": frame(
            [{"currency_id": i, "currency_code": c} for i, c in enumerate(ref.CURRENCIES, 1)],
            born,
        ),
        "department": frame(
            [
                {"department_id": i, "department_name": n, "location": loc, "manager": m}
                for i, (n, loc, m) in enumerate(ref.DEPARTMENTS, 1)
            ],
            born,
        ),
        "staff": frame(
            [
                {
                    "staff_id": i,
                    "first_name": first,
                    "last_name": last,
                    "department_id": department,
                    "email_address": f"{first}.{last}@{ref.STAFF_EMAIL_DOMAIN}".lower(),
                }
                for i, (first, last, department) in enumerate(ref.STAFF, 1)
            ],
            people,
        ),
        "payment_type": frame(
            [
                {"payment_type_id": i, "payment_type_name": n}
                for i, n in enumerate(ref.PAYMENT_TYPES, 1)
            ],
            born,
        ),
    }


def _load_static(cur: Cursor) -> None:
    for table, frame in _static_frames().items():
        copy_frame(cur, table, frame)
    for migration_id, checksum, name in ref.PRISMA_MIGRATIONS:
        cur.execute(
            'INSERT INTO "_prisma_migrations" (id, checksum, finished_at, migration_name,'
            " started_at, applied_steps_count) VALUES (%s, %s, %s, %s, %s, 1)",
            (migration_id, checksum, ref.GENESIS, name, ref.GENESIS - timedelta(seconds=2)),
        )


def _load_history(
    cur: Cursor, *, seed: int, scale: float, now: datetime, say: Callable[[str], None]
) -> None:
    now_ms = to_ms(now)
    ids = dict.fromkeys(ORDER_TABLES, 0)
    names = UsedNames()
    pending: list[DayPlan] = []
    pending_orders = 0

    def flush() -> None:
        nonlocal pending, pending_orders
        if not pending:
            return
        batch = build_batch(pending, seed=seed, ids=ids, taken=names.checks(), paid_as_of_ms=now_ms)
        names.record(batch)
        for table in ORDER_TABLES:
            copy_frame(cur, table, batch.frames[table])
        apply_updates(cur, batch.updates)
        say(f"  history up to {pending[-1].day}: {ids['sales_order']:,} sales orders")
        pending, pending_orders = [], 0

    day = GENESIS_DAY
    while day <= now.date():
        plan = plan_day(seed, day, scale)
        if day == now.date():
            plan = window(plan, 0, now_ms)
        pending.append(plan)
        pending_orders += plan.order_count
        if pending_orders >= FLUSH_EVERY_ORDERS:
            flush()
        day += timedelta(days=1)
    flush()
