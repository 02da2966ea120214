"""The audit of dim_date, which is generated rather than extracted.

- Every date a current ToteSys fact row references must be in dim_date (older versions'
  dates are there too, by the foreign keys, so more dates than that are fine).
- Every dim_date row's calendar fields must be those of its date.

Both sets are bounded by the calendar (a few thousand days), not by the data.
"""

from __future__ import annotations

from datetime import datetime

from psycopg2 import sql
from psycopg2.extensions import cursor as Cursor

from totes.pipeline.audit_model import DATE_TABLE, FACTS, SOURCE_PARAMS
from totes.pipeline.audit_report import PENDING, Example, TableAudit

# dim_date's calendar fields, and their derivation from date_id.
CALENDAR: dict[str, str] = {
    "year": "extract(year FROM date_id)::int",
    "month": "extract(month FROM date_id)::int",
    "day": "extract(day FROM date_id)::int",
    "day_of_week": "extract(isodow FROM date_id)::int",
    "day_name": "to_char(date_id, 'FMDay')",
    "month_name": "to_char(date_id, 'FMMonth')",
    "quarter": "extract(quarter FROM date_id)::int",
}


def referenced_dates() -> sql.Composable:
    """(date, earliest change of a row referencing it) over every fact's ToteSys table."""
    parts = []
    for table in FACTS:
        dates = [sql.SQL("({})::date").format(sql.SQL(c.source)) for c in table.columns
                 if c.pg_type == "date"]  # fmt: skip
        changed = sql.SQL(", ").join(
            sql.SQL("{}.last_updated").format(sql.Identifier(a)) for a in table.changed_by
        )
        parts.append(
            sql.SQL("SELECT unnest(ARRAY[{}]) AS d, greatest({}) AS changed_at FROM {}").format(
                sql.SQL(", ").join(dates), changed, sql.SQL(table.source_from)
            )
        )
    # As text: a BC date (a timestamp(3) may hold one) has no Python date.
    return sql.SQL(
        "SELECT d::text, min(changed_at) FROM ({}) x WHERE d IS NOT NULL GROUP BY d"
    ).format(sql.SQL(" UNION ALL ").join(parts))


def wrong_calendar_fields() -> sql.Composable:
    """(date, [actual field texts], [derived field texts]) of each row whose fields are off."""
    actual = [sql.SQL("{}::text").format(sql.Identifier(name)) for name in CALENDAR]
    derived = [sql.SQL("({})::text").format(sql.SQL(expr)) for expr in CALENDAR.values()]
    return sql.SQL(
        "SELECT date_id::text, ARRAY[{actual}], ARRAY[{derived}] FROM {table}"
        " WHERE ({actual_row}) IS DISTINCT FROM ({derived_row}) ORDER BY date_id"
    ).format(
        actual=sql.SQL(", ").join(actual),
        derived=sql.SQL(", ").join(derived),
        table=sql.Identifier(DATE_TABLE),
        actual_row=sql.SQL(", ").join(sql.Identifier(name) for name in CALENDAR),
        derived_row=sql.SQL(", ").join(sql.SQL(expr) for expr in CALENDAR.values()),
    )


def audit_dates(
    source: Cursor, warehouse: Cursor, found: TableAudit, loaded_until: datetime | None
) -> None:
    """Count dim_date's missing dates and wrong calendar fields into ``found``."""
    source.execute(referenced_dates(), SOURCE_PARAMS)
    expected = dict(source.fetchall())
    table = sql.Identifier(DATE_TABLE)
    warehouse.execute(sql.SQL("SELECT date_id::text FROM {}").format(table))
    present = {row[0] for row in warehouse.fetchall()}
    found.source_rows, found.warehouse_rows = len(expected), len(present)
    for day in sorted(set(expected) - present):
        if loaded_until is not None and expected[day] > loaded_until:
            found.add(PENDING)
        else:
            found.add("missing", Example("missing", day, None, "referenced", "absent"))
    warehouse.execute(wrong_calendar_fields())
    for day, actual, derived in warehouse.fetchall():
        columns = [
            name for name, have, want in zip(CALENDAR, actual, derived, strict=True) if have != want
        ]
        found.add_differing_columns(columns)
        found.add(
            "differing",
            *(
                Example("differing", day, name, want, have)
                for name, have, want in zip(CALENDAR, actual, derived, strict=True)
                if have != want
            ),
        )
