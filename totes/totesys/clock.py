"""The simulator's clock: the simulated "now" ToteSys has reached, and when it was moved.

It lives in a schema of its own (``simulator.clock``) so that nothing that lists or
extracts ToteSys's tables ever sees it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from psycopg2 import sql
from psycopg2.extensions import cursor as Cursor

from totes.totesys.errors import ToteSysStateError

CLOCK_SCHEMA = "simulator"
CLOCK_TABLE = "clock"

CLOCK_DDL = (
    sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(CLOCK_SCHEMA)),
    sql.SQL(
        """CREATE TABLE IF NOT EXISTS {}.{} (
            only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
            simulated_now timestamp(3) NOT NULL,
            wallclock timestamptz NOT NULL DEFAULT now(),
            seed bigint NOT NULL,
            scale double precision NOT NULL
        )"""
    ).format(sql.Identifier(CLOCK_SCHEMA), sql.Identifier(CLOCK_TABLE)),
)


@dataclass(frozen=True)
class Clock:
    """The simulated time, and what the database was seeded with (rates scale with it)."""

    simulated_now: datetime
    wallclock: datetime
    seed: int
    scale: float


def _clock_name() -> sql.Composable:
    return sql.SQL("{}.{}").format(sql.Identifier(CLOCK_SCHEMA), sql.Identifier(CLOCK_TABLE))


def read_clock(cur: Cursor) -> Clock:
    cur.execute("SELECT to_regclass(%s)", (f"{CLOCK_SCHEMA}.{CLOCK_TABLE}",))
    row = None
    if cur.fetchone()[0] is not None:
        cur.execute(
            sql.SQL("SELECT simulated_now, wallclock, seed, scale FROM {}").format(_clock_name())
        )
        row = cur.fetchone()
    if row is None:
        raise ToteSysStateError("ToteSys has no simulated clock yet: run `totes seed` first")
    return Clock(*row)


def write_clock(
    cur: Cursor, simulated_now: datetime, *, seed: int | None = None, scale: float | None = None
) -> None:
    """Set the simulated time and stamp the real time; seed and scale only when seeding."""
    if seed is not None and scale is not None:
        cur.execute(
            sql.SQL(
                "INSERT INTO {} (simulated_now, wallclock, seed, scale)"
                " VALUES (%s, clock_timestamp(), %s, %s)"
                " ON CONFLICT (only_row) DO UPDATE SET simulated_now = EXCLUDED.simulated_now,"
                " wallclock = clock_timestamp(), seed = EXCLUDED.seed, scale = EXCLUDED.scale"
            ).format(_clock_name()),
            (simulated_now, seed, scale),
        )
    else:
        cur.execute(
            sql.SQL("UPDATE {} SET simulated_now = %s, wallclock = clock_timestamp()").format(
                _clock_name()
            ),
            (simulated_now,),
        )


def real_time_since_clock_write(cur: Cursor) -> timedelta:
    cur.execute(sql.SQL("SELECT clock_timestamp() - wallclock FROM {}").format(_clock_name()))
    row = cur.fetchone()
    if row is None:
        raise ToteSysStateError("ToteSys has no simulated clock yet: run `totes seed` first")
    return row[0]
