"""The warehouse's views: current fact versions and the dashboard reports, checked against
independent SQL over ToteSys (not against the warehouse's own tables)."""

from __future__ import annotations

import psycopg2
import pytest

from tests.integration.pipeline.test_pipeline import run_pipeline, source_now
from tests.support.oracle import rows
from tests.support.sql import execute, one, query
from totes.pipeline.lake import Lake
from totes.pipeline.load import ensure_warehouse
from totes.pipeline.warehouse_views import DELETED_ROW_DDL, VIEW_NAMES
from totes.totesys.database import read_only_dsn


@pytest.fixture
def folder_lake(tmp_path) -> Lake:
    return Lake.from_uri(str(tmp_path / "lake"))


@pytest.fixture
def reader_dsn(totesys_dsn: str) -> str:
    return read_only_dsn(totesys_dsn, "t_reader")


@pytest.fixture
def loaded(folder_lake, reader_dsn, warehouse_dsn) -> str:
    """The warehouse after one pipeline run over the small seeded ToteSys."""
    run_pipeline(folder_lake, reader_dsn, warehouse_dsn)
    return warehouse_dsn


def rounded(found: set[tuple] | list[tuple]) -> set[tuple]:
    """Rows with numbers as plain ints and 2-decimal strings, whatever the SQL type."""
    return {tuple(str(round(v, 2)) if hasattr(v, "quantize") else v for v in row) for row in found}


REVENUE_BY_MONTH_FROM_SOURCE = """
    SELECT date_trunc('month', so.created_at)::date, c.currency_code, count(*),
           sum(so.units_sold), sum(so.units_sold * so.unit_price)
      FROM sales_order so JOIN currency c USING (currency_id) GROUP BY 1, 2"""

PAYMENTS_BY_MONTH_FROM_SOURCE = """
    SELECT date_trunc('month', p.payment_date::date)::date, c.currency_code,
           pt.payment_type_name::text,
           coalesce(sum(p.payment_amount) FILTER (WHERE p.paid), 0),
           coalesce(sum(p.payment_amount) FILTER (WHERE NOT p.paid), 0),
           count(*) FILTER (WHERE p.paid), count(*) FILTER (WHERE NOT p.paid)
      FROM payment p JOIN currency c USING (currency_id) JOIN payment_type pt USING
           (payment_type_id)
     GROUP BY 1, 2, 3"""

SPEND_VS_REVENUE_FROM_SOURCE = """
    WITH months AS (
        SELECT date_trunc('month', created_at)::date AS m, currency_id FROM sales_order
        UNION SELECT date_trunc('month', created_at)::date, currency_id FROM purchase_order)
    SELECT months.m, c.currency_code,
           (SELECT count(*) FROM sales_order s WHERE date_trunc('month', s.created_at)::date
              = months.m AND s.currency_id = months.currency_id),
           (SELECT coalesce(sum(units_sold * unit_price), 0) FROM sales_order s
             WHERE date_trunc('month', s.created_at)::date = months.m
               AND s.currency_id = months.currency_id),
           (SELECT count(*) FROM purchase_order p WHERE date_trunc('month', p.created_at)::date
              = months.m AND p.currency_id = months.currency_id),
           (SELECT coalesce(sum(item_quantity * item_unit_price), 0) FROM purchase_order p
             WHERE date_trunc('month', p.created_at)::date = months.m
               AND p.currency_id = months.currency_id)
      FROM months JOIN currency c USING (currency_id)"""

UNITS_BY_DEPARTMENT_FROM_SOURCE = """
    SELECT d.department_name, sum(so.units_sold)
      FROM sales_order so JOIN staff s USING (staff_id) JOIN department d USING (department_id)
     GROUP BY 1"""

UNITS_BY_COUNTRY_FROM_SOURCE = """
    SELECT a.country, sum(so.units_sold) FROM sales_order so
      JOIN address a ON a.address_id = so.agreed_delivery_location_id GROUP BY 1"""


def test_every_view_exists_after_a_load_and_answers(loaded):
    for view in VIEW_NAMES:
        one(loaded, f"SELECT count(*) FROM {view}")  # raises if missing or broken
    described = rows(
        loaded,
        "SELECT c.relname FROM pg_class c WHERE c.relkind = 'v'"
        " AND obj_description(c.oid, 'pg_class') LIKE '%[totes view %'",
    )
    assert described == {(v,) for v in VIEW_NAMES}


def test_reports_give_the_same_numbers_as_totesys(loaded, totesys_dsn):
    assert rounded(query(loaded, "SELECT * FROM report_revenue_by_month")) == rounded(
        query(totesys_dsn, REVENUE_BY_MONTH_FROM_SOURCE)
    )
    assert rounded(query(loaded, "SELECT * FROM report_payments_by_month")) == rounded(
        query(totesys_dsn, PAYMENTS_BY_MONTH_FROM_SOURCE)
    )
    assert rounded(query(loaded, "SELECT * FROM report_spend_vs_revenue")) == rounded(
        query(totesys_dsn, SPEND_VS_REVENUE_FROM_SOURCE)
    )
    assert rows(
        loaded,
        "SELECT department_name, sum(units_sold) FROM report_staff_performance GROUP BY 1",
    ) == rows(totesys_dsn, UNITS_BY_DEPARTMENT_FROM_SOURCE)
    assert rows(
        loaded,
        "SELECT country, sum(units_sold) FROM report_sales_by_delivery_location GROUP BY 1",
    ) == rows(totesys_dsn, UNITS_BY_COUNTRY_FROM_SOURCE)
    for view in ("report_sales_by_design", "report_sales_by_counterparty"):
        assert one(loaded, f"SELECT sum(orders) FROM {view}") == one(
            totesys_dsn, "SELECT count(*) FROM sales_order"
        )


def test_changes_are_listed_column_by_column_and_reports_follow_them(
    folder_lake, reader_dsn, totesys_dsn, loaded
):
    now = source_now(totesys_dsn)
    order_id, units, delivery = query(
        totesys_dsn,
        "SELECT sales_order_id, units_sold, agreed_delivery_date FROM sales_order"
        " ORDER BY sales_order_id LIMIT 1",
    )[0]
    execute(
        totesys_dsn,
        "UPDATE sales_order SET units_sold = units_sold + 7, agreed_delivery_date = '2031-05-06',"
        " last_updated = %s WHERE sales_order_id = %s",
        (now, order_id),
    )
    execute(
        totesys_dsn,
        "UPDATE payment SET paid = true, last_updated = %s WHERE payment_id IN"
        " (SELECT payment_id FROM payment WHERE NOT paid ORDER BY payment_id LIMIT 3)",
        (now,),
    )

    run_pipeline(folder_lake, reader_dsn, loaded)

    changes = query(
        loaded,
        "SELECT fact_table, id, version, column_name, old_value, new_value"
        " FROM report_fact_changes ORDER BY 1, 2, 4",
    )
    order_changes = [c for c in changes if c[0] == "fact_sales_order"]
    assert order_changes == [
        ("fact_sales_order", order_id, 2, "agreed_delivery_date", delivery, "2031-05-06"),
        ("fact_sales_order", order_id, 2, "units_sold", str(units), str(units + 7)),
    ]
    paid = [c for c in changes if c[0] == "fact_payment"]
    assert [c[3:] for c in paid] == [("paid", "false", "true")] * 3
    assert one(
        loaded, "SELECT units_sold FROM fact_sales_order_current WHERE sales_order_id = %s",
        (order_id,),
    ) == units + 7  # fmt: skip
    assert rounded(query(loaded, "SELECT * FROM report_revenue_by_month")) == rounded(
        query(totesys_dsn, REVENUE_BY_MONTH_FROM_SOURCE)
    )
    assert rounded(query(loaded, "SELECT * FROM report_payments_by_month")) == rounded(
        query(totesys_dsn, PAYMENTS_BY_MONTH_FROM_SOURCE)
    )


@pytest.mark.parametrize("same_last_updated", [False, True], ids=["newer-stamp", "silent-edit"])
def test_current_is_the_latest_version_even_when_an_older_one_has_the_higher_record_id(
    folder_lake, reader_dsn, totesys_dsn, warehouse_dsn, same_last_updated
):
    """Three versions in three batches; then the middle one gets the highest record id, as
    a version loaded late does (a fact row that waited for its dimension row, a replay).
    The third version stays current: a later last_updated, or the same one (a silent edit)
    and a later batch."""
    (payment_id,) = query(totesys_dsn, "SELECT min(payment_id) FROM payment WHERE NOT paid")[0]
    run_pipeline(folder_lake, reader_dsn, warehouse_dsn)
    second = source_now(totesys_dsn)
    batches = []
    for amount in ("1111.11", "2222.22"):
        stamp = second if same_last_updated else source_now(totesys_dsn)
        execute(
            totesys_dsn,
            "UPDATE payment SET payment_amount = %s, last_updated = %s WHERE payment_id = %s",
            (amount, stamp, payment_id),
        )
        batches.append(run_pipeline(folder_lake, reader_dsn, warehouse_dsn)["extract"]["batch_id"])
    assert all(batches) and batches[0] < batches[1]
    execute(
        warehouse_dsn,
        "UPDATE fact_payment SET payment_record_id ="
        " (SELECT max(payment_record_id) + 1000 FROM fact_payment)"
        " WHERE payment_id = %s AND batch_id = %s",
        (payment_id, batches[0]),
    )

    versions = query(
        warehouse_dsn,
        "SELECT payment_amount::text FROM fact_payment WHERE payment_id = %s"
        " ORDER BY payment_record_id",
        (payment_id,),
    )
    assert [v[0] for v in versions][-2:] == ["2222.22", "1111.11"]  # the older one last
    current = one(
        warehouse_dsn,
        "SELECT payment_amount::text FROM fact_payment_current WHERE payment_id = %s",
        (payment_id,),
    )
    assert current == "2222.22"
    assert one(warehouse_dsn, "SELECT count(*) FROM fact_payment_current") == one(
        totesys_dsn, "SELECT count(*) FROM payment"
    )


def test_rows_in_the_deletion_register_are_not_current(loaded):
    sales_id = one(loaded, "SELECT min(sales_order_id) FROM fact_sales_order")
    payment_id = one(loaded, "SELECT min(payment_id) FROM fact_payment")
    orders = one(loaded, "SELECT count(*) FROM fact_sales_order_current")
    payments = one(loaded, "SELECT count(*) FROM fact_payment_current")
    # Under the source table's name or the fact table's: both are honoured.
    execute(
        loaded,
        "INSERT INTO etl_deleted_row (table_name, id, batch_id) VALUES"
        " ('sales_order', %s, 'b'), ('fact_payment', %s, 'b'), ('purchase_order', %s, 'b')",
        (sales_id, payment_id, sales_id),
    )

    assert one(loaded, "SELECT count(*) FROM fact_sales_order_current") == orders - 1
    assert one(loaded, "SELECT count(*) FROM fact_payment_current") == payments - 1
    assert (
        one(loaded, "SELECT count(*) FROM fact_sales_order_current WHERE sales_order_id = %s",
            (sales_id,))
        == 0
    )  # fmt: skip
    assert one(loaded, "SELECT sum(orders) FROM report_revenue_by_month") == orders - 1


def test_views_are_created_once_and_replaced_only_when_their_definition_changes(empty_db):
    # The deletion register may already exist, made by the reconciliation: same shape.
    execute(empty_db, DELETED_ROW_DDL)
    conn = psycopg2.connect(empty_db)
    try:
        ensure_warehouse(conn)
        identity = "SELECT xmin::text FROM pg_class WHERE relname = 'report_revenue_by_month'"
        created = one(empty_db, identity)
        ensure_warehouse(conn)
        assert one(empty_db, identity) == created  # untouched: no lock taken on it

        execute(empty_db, "COMMENT ON VIEW report_revenue_by_month IS 'an older definition'")
        ensure_warehouse(conn)
        assert one(empty_db, identity) != created
        assert "[totes view " in one(
            empty_db, "SELECT obj_description('report_revenue_by_month'::regclass, 'pg_class')"
        )
    finally:
        conn.close()
