"""Let the business move on: advance ToteSys's simulated clock, writing what happens.

Each simulated hour is one database transaction that also moves the clock, so an
interrupted run leaves a consistent ToteSys that the next run continues. What happens comes
from ``totes.totesys.activity.plan_day``, the seeder's model, keyed by (seed, day): the outcome does
not depend on how the time is cut into runs. Rates scale with the seeded scale.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from psycopg2.extensions import connection as Connection

from totes.pipeline.db import connect
from totes.totesys.activity import DayPlan, from_ms, paid_job_ms, plan_day, to_ms, window
from totes.totesys.activity_rows import ORDER_TABLES, UsedNames, build_batch
from totes.totesys.clock import Clock, read_clock, real_time_since_clock_write, write_clock
from totes.totesys.database import apply_updates, copy_frame, max_ids, reset_sequences

SLOT = timedelta(hours=1)


@dataclass
class SimulationSummary:
    clock_from: datetime
    clock_to: datetime
    inserted: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ORDER_TABLES, 0))
    paid_flips: int = 0
    silent_edits: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(("sales_order", "purchase_order", "design"), 0)
    )

    def describe(self) -> str:
        span = self.clock_to - self.clock_from
        weekdays = sum(
            1
            for i in range((self.clock_to.date() - self.clock_from.date()).days + 1)
            if (self.clock_from.date() + timedelta(days=i)).weekday() < 5
        )
        return "\n".join(
            [
                f"ToteSys simulated {self.clock_from:%Y-%m-%d %H:%M} -> "
                f"{self.clock_to:%Y-%m-%d %H:%M} ({_span(span)}, touching {weekdays} weekdays)",
                "  inserted: " + ", ".join(f"{t} {n:,}" for t, n in self.inserted.items()),
                f"  payments marked paid by the 07:55 job: {self.paid_flips:,}",
                "  silent edits (last_updated untouched): "
                + ", ".join(f"{t} {n:,}" for t, n in self.silent_edits.items()),
            ]
        )


def _span(span: timedelta) -> str:
    hours = span.total_seconds() / 3600
    return f"{hours / 24:.1f} days" if hours >= 48 else f"{hours:.1f} hours"


def simulated_now(dsn: str) -> datetime:
    with connect(dsn) as conn, conn.cursor() as cur:
        return read_clock(cur).simulated_now


def wallclock_since_last_simulation(dsn: str) -> timedelta:
    """Real time elapsed since the last seed or simulate call."""
    with connect(dsn) as conn, conn.cursor() as cur:
        return real_time_since_clock_write(cur)


def simulate(
    dsn: str,
    *,
    minutes: int | None = None,
    until: datetime | None = None,
    seed: int | None = None,
) -> SimulationSummary:
    """Advance the clock by ``minutes`` or to ``until``, writing the business's activity.

    ``seed`` defaults to the one ToteSys was seeded with; together with the clock it fixes
    what happens.
    """
    if (minutes is None) == (until is None):
        raise ValueError("give exactly one of minutes or until")
    if minutes is not None and minutes < 0:
        raise ValueError(f"minutes must not be negative, not {minutes}")
    with connect(dsn) as conn:
        with conn.cursor() as cur:
            clock = read_clock(cur)
        start = clock.simulated_now
        end = start + timedelta(minutes=minutes) if minutes is not None else until
        assert end is not None
        if end < start:
            raise ValueError(
                f"cannot simulate back in time: until {end} is before the clock ({start})"
            )
        summary = SimulationSummary(start, end)
        _run(conn, clock, end, clock.seed if seed is None else seed, summary)
    return summary


def _run(conn: Connection, clock: Clock, end: datetime, seed: int, summary: SimulationSummary):
    with conn.cursor() as cur:
        ids = max_ids(cur, ORDER_TABLES)
        cur.execute("SELECT item_code FROM purchase_order")
        item_codes = [r[0] for r in cur.fetchall()]
        cur.execute("SELECT file_name FROM design")
        names = UsedNames(item_codes, [r[0] for r in cur.fetchall()])
    plans: dict[date, DayPlan] = {}
    slot_start = clock.simulated_now
    while slot_start < end:
        slot_end = min(end, slot_start.replace(minute=0, second=0, microsecond=0) + SLOT)
        day = slot_start.date()
        if day not in plans:
            plans.clear()
            plans[day] = plan_day(seed, day, clock.scale)
        start_ms, end_ms = to_ms(slot_start), to_ms(slot_end)
        part = window(plans[day], start_ms, end_ms)
        job = paid_job_ms(seed, day)
        job_due = job is not None and start_ms <= job < end_ms
        if part.order_count or part.designs or part.edits or job_due:
            with conn.cursor() as cur:
                if job_due:
                    summary.paid_flips += _pay_due(cur, day, from_ms(job))
                batch = build_batch(
                    [part], seed=seed, ids=ids, taken=names.checks(), paid_as_of_ms=None
                )
                names.record(batch)
                for table in ORDER_TABLES:
                    copy_frame(cur, table, batch.frames[table])
                    summary.inserted[table] += batch.frames[table].height
                apply_updates(cur, batch.updates)
                for table, n in batch.edited.items():
                    summary.silent_edits[table] += n
                reset_sequences(cur, ORDER_TABLES)
                write_clock(cur, slot_end)
            conn.commit()
        slot_start = slot_end
    with conn.cursor() as cur:
        write_clock(cur, end)
    conn.commit()


def _pay_due(cur, day: date, at: datetime) -> int:
    """The 07:55 weekday job: today's payments become paid, and that is a visible update."""
    cur.execute(
        "UPDATE payment SET paid = true, last_updated = %s"
        " WHERE payment_date = %s AND NOT paid AND created_at < %s",
        (at, day.isoformat(), at),
    )
    return cur.rowcount
