"""The warehouse's views for analysts and dashboards, created with the schema by the load.

Two kinds, both plain SQL views (always up to date, nothing to refresh):

- ``<fact>_current``: the current version of each fact row. "Current" is the version with
  the greatest ``(batch_id, last_updated_date, last_updated_time, <record id>)`` for its
  natural id. The batch first: a batch holds one version of an id, read from ToteSys after
  every earlier batch's, so its version is the newer even when its ``last_updated`` is
  older (a write that waited on a lock, stamped when its transaction began). Not the
  greatest record id: a version that waited for its dimension row keeps its batch but
  gets its record id when it is delivered. Ids in the deletion register
  ``etl_deleted_row`` (under the source or the fact table's name) are left out.
- ``report_*``: the queries behind the notebook's plots (notebooks/warehouse_tour.ipynb),
  so that the notebook, psql and any BI tool read the same numbers. Money is summed per
  currency only: there are no exchange rates in ToteSys.

Each view is (re)created only when its definition changed (its comment carries a hash of
it), so a load never waits for the exclusive lock ``CREATE OR REPLACE VIEW`` takes while
dashboards are reading. A change that renames or removes a view's columns needs a DROP
first (CREATE OR REPLACE only adds columns): write it as a migration.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from psycopg2 import sql

from totes.schema.warehouse import FACTS, WarehouseTable

# The register of source rows found deleted (reconciliation writes it). Created here when
# missing, in exactly the shape the reconciliation uses, so the current views work before
# and after it exists.
DELETED_ROW_TABLE = "etl_deleted_row"
DELETED_ROW_DDL = (
    "CREATE TABLE IF NOT EXISTS etl_deleted_row (table_name text NOT NULL,"
    " id integer NOT NULL, batch_id text NOT NULL,"
    " detected_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (table_name, id))"
)

_PLAIN_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")

# Columns that say when a version was made, not what it holds: not "changes".
_TIMESTAMP_COLUMNS = ("created_date", "created_time", "last_updated_date", "last_updated_time")


@dataclass(frozen=True)
class View:
    name: str
    description: str  # the view's COMMENT: what psql's \dv+ and BI tools show
    body: str  # the SELECT

    @property
    def create(self) -> str:
        return f"CREATE OR REPLACE VIEW {self.name} AS\n{self.body}"

    @property
    def comment(self) -> str:
        digest = hashlib.sha256(self.create.encode()).hexdigest()[:12]
        return f"{self.description} [totes view {digest}]"


def _check_names(fact: WarehouseTable) -> WarehouseTable:
    """The schema's names go into view text as they are: they must be plain identifiers."""
    for name in (fact.name, fact.key, fact.record_id or "", *fact.column_names):
        if not _PLAIN_IDENTIFIER.match(name):
            raise ValueError(f"{fact.name}: {name!r} is not a plain SQL identifier")
    return fact


def current_view_name(fact: WarehouseTable) -> str:
    return f"{fact.name}_current"


def _version_order(fact: WarehouseTable, alias: str = "") -> list[str]:
    """Oldest to newest version of one id: the order "current" and "changes" both use."""
    columns = ("batch_id", "last_updated_date", "last_updated_time", fact.record_id)
    return [f"{alias}{c}" for c in columns]


def _source_table(fact: WarehouseTable) -> str:
    return fact.name.removeprefix("fact_")


def current_fact_view(fact: WarehouseTable) -> View:
    fact = _check_names(fact)
    columns = (fact.record_id, *fact.column_names, "version_hash", "batch_id")
    newest_first = ", ".join(f"{c} DESC" for c in _version_order(fact, "f."))
    body = (
        f"SELECT DISTINCT ON (f.{fact.key}) {', '.join('f.' + c for c in columns)}\n"
        f"  FROM {fact.name} f\n"
        f" WHERE NOT EXISTS (SELECT 1 FROM {DELETED_ROW_TABLE} d\n"
        f"                    WHERE d.table_name IN ('{_source_table(fact)}', '{fact.name}')\n"
        f"                      AND d.id = f.{fact.key})\n"
        f" ORDER BY f.{fact.key}, {newest_first}"
    )
    return View(
        current_view_name(fact),
        f"The current version of each {_source_table(fact)} (from the latest batch, then "
        "the latest last_updated), without rows deleted in ToteSys.",
        body,
    )


def _changes_of(fact: WarehouseTable) -> str:
    """Every business column that differs from the previous version, one row per column."""
    fact = _check_names(fact)
    compared = [c for c in fact.column_names if c != fact.key and c not in _TIMESTAMP_COLUMNS]
    window = ", ".join(_version_order(fact))
    pairs = ",\n         ".join(
        f"{c}::text AS {c}, lag({c}::text) OVER w AS {c}_before" for c in compared
    )
    values = ",\n               ".join(f"('{c}', v.{c}_before, v.{c})" for c in compared)
    return (
        f"SELECT '{fact.name}'::text AS fact_table, v.{fact.key} AS id, v.version,\n"
        "       v.last_updated_date AS changed_date, v.last_updated_time AS changed_time,\n"
        "       v.batch_id, c.column_name, c.old_value, c.new_value\n"
        f"  FROM (SELECT {fact.key}, last_updated_date, last_updated_time, batch_id,\n"
        "               row_number() OVER w AS version,\n"
        f"         {pairs}\n"
        f"          FROM {fact.name}\n"
        f"        WINDOW w AS (PARTITION BY {fact.key} ORDER BY {window})) v\n"
        "  CROSS JOIN LATERAL (\n"
        f"        VALUES {values}\n"
        "       ) AS c(column_name, old_value, new_value)\n"
        " WHERE v.version > 1 AND c.old_value IS DISTINCT FROM c.new_value"
    )


_SALES = "fact_sales_order_current"
_PURCHASES = "fact_purchase_order_current"
_PAYMENTS = "fact_payment_current"
_REVENUE = "sum(s.units_sold * s.unit_price) AS revenue"
_SALES_MEASURES = f"count(*) AS orders, sum(s.units_sold) AS units_sold, {_REVENUE}"


def _sales_by(columns: str, joins: str, group: str) -> str:
    return (
        f"SELECT {columns}, cur.currency_code, {_SALES_MEASURES}\n"
        f"  FROM {_SALES} s\n"
        "  JOIN dim_currency cur ON cur.currency_id = s.currency_id\n"
        f"{joins}"
        f" GROUP BY {group}, cur.currency_code"
    )


REPORT_VIEWS: tuple[View, ...] = (
    View(
        "report_revenue_by_month",
        "Sales orders (current versions) by month created and currency: orders, units, "
        "revenue (units_sold * unit_price, in that currency).",
        "SELECT date_trunc('month', s.created_date)::date AS month, cur.currency_code,\n"
        f"       {_SALES_MEASURES}\n"
        f"  FROM {_SALES} s\n"
        "  JOIN dim_currency cur ON cur.currency_id = s.currency_id\n"
        " GROUP BY 1, 2",
    ),
    View(
        "report_sales_by_design",
        "Sales orders (current versions) by design and currency.",
        _sales_by(
            "s.design_id, d.design_name",
            "  JOIN dim_design d ON d.design_id = s.design_id\n",
            "s.design_id, d.design_name",
        ),
    ),
    View(
        "report_sales_by_counterparty",
        "Sales orders (current versions) by counterparty (customer) and currency.",
        _sales_by(
            "s.counterparty_id, cp.counterparty_legal_name, cp.counterparty_legal_country",
            "  JOIN dim_counterparty cp ON cp.counterparty_id = s.counterparty_id\n",
            "s.counterparty_id, cp.counterparty_legal_name, cp.counterparty_legal_country",
        ),
    ),
    View(
        "report_sales_by_delivery_location",
        "Sales orders (current versions) by agreed delivery country and city, and currency.",
        _sales_by(
            "l.country, l.city",
            "  JOIN dim_location l ON l.location_id = s.agreed_delivery_location_id\n",
            "l.country, l.city",
        ),
    ),
    View(
        "report_staff_performance",
        "Sales orders (current versions) by the staff member who made them, with their "
        "department, and currency.",
        _sales_by(
            "s.sales_staff_id AS staff_id, st.first_name, st.last_name, st.department_name,"
            " st.location",
            "  JOIN dim_staff st ON st.staff_id = s.sales_staff_id\n",
            "s.sales_staff_id, st.first_name, st.last_name, st.department_name, st.location",
        ),
    ),
    View(
        "report_payments_by_month",
        "Payments (current versions) by month of payment_date, currency and payment type: "
        "amounts and counts paid and still outstanding.",
        "SELECT date_trunc('month', p.payment_date)::date AS month, cur.currency_code,\n"
        "       pt.payment_type_name,\n"
        "       coalesce(sum(p.payment_amount) FILTER (WHERE p.paid), 0) AS paid_amount,\n"
        "       coalesce(sum(p.payment_amount) FILTER (WHERE NOT p.paid), 0)"
        " AS outstanding_amount,\n"
        "       count(*) FILTER (WHERE p.paid) AS paid_payments,\n"
        "       count(*) FILTER (WHERE NOT p.paid) AS outstanding_payments\n"
        f"  FROM {_PAYMENTS} p\n"
        "  JOIN dim_currency cur ON cur.currency_id = p.currency_id\n"
        "  JOIN dim_payment_type pt ON pt.payment_type_id = p.payment_type_id\n"
        " GROUP BY 1, 2, 3",
    ),
    View(
        "report_spend_vs_revenue",
        "By month created and currency: sales revenue (units_sold * unit_price) against "
        "purchase spend (item_quantity * item_unit_price), current versions.",
        "WITH sales AS (\n"
        "  SELECT date_trunc('month', s.created_date)::date AS month, s.currency_id,\n"
        f"         count(*) AS sales_orders, {_REVENUE}\n"
        f"    FROM {_SALES} s GROUP BY 1, 2),\n"
        "purchases AS (\n"
        "  SELECT date_trunc('month', p.created_date)::date AS month, p.currency_id,\n"
        "         count(*) AS purchase_orders,\n"
        "         sum(p.item_quantity * p.item_unit_price) AS spend\n"
        f"    FROM {_PURCHASES} p GROUP BY 1, 2)\n"
        "SELECT month, cur.currency_code,\n"
        "       coalesce(s.sales_orders, 0) AS sales_orders,\n"
        "       coalesce(s.revenue, 0) AS sales_revenue,\n"
        "       coalesce(p.purchase_orders, 0) AS purchase_orders,\n"
        "       coalesce(p.spend, 0) AS purchase_spend\n"
        "  FROM sales s FULL JOIN purchases p USING (month, currency_id)\n"
        "  JOIN dim_currency cur USING (currency_id)",
    ),
    View(
        "report_fact_changes",
        "Every change to a fact row after its first version: one row per changed column, "
        "with the values before and after (as text). Timestamps alone are not changes.",
        "\nUNION ALL\n".join(_changes_of(fact) for fact in FACTS),
    ),
)

VIEWS: tuple[View, ...] = (*(current_fact_view(f) for f in FACTS), *REPORT_VIEWS)
VIEW_NAMES: tuple[str, ...] = tuple(v.name for v in VIEWS)


def _create_if_changed(view: View) -> sql.Composable:
    """A statement that creates or replaces ``view`` only if its comment (and so its
    definition) differs from the one in the database."""
    return sql.SQL(
        "DO $totes_views$ BEGIN\n"
        "  IF obj_description(to_regclass({name}), 'pg_class') IS DISTINCT FROM {comment} THEN\n"
        "    EXECUTE {create};\n"
        "    EXECUTE {comment_on};\n"
        "  END IF;\n"
        "END $totes_views$"
    ).format(
        name=sql.Literal(view.name),
        comment=sql.Literal(view.comment),
        create=sql.Literal(view.create),
        comment_on=sql.Literal(f"COMMENT ON VIEW {view.name} IS " + _quoted(view.comment)),
    )


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def view_ddl() -> list[sql.Composable]:
    """The deletion register (when missing) and every view, in dependency order."""
    return [sql.SQL(DELETED_ROW_DDL), *(_create_if_changed(v) for v in VIEWS)]
