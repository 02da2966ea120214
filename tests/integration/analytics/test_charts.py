"""Every chart, drawn from its view on the generated warehouse: a title, labelled axes, and
the data it claims (checked against the view, not against the chart's own arithmetic)."""

from __future__ import annotations

import polars as pl
import pytest

from totes.analytics import charts
from totes.analytics.warehouse import Warehouse

CHARTS = {
    "report_revenue_by_month": charts.revenue_by_month,
    "report_sales_by_design": charts.top_designs,
    "report_sales_by_counterparty": charts.top_counterparties,
    "report_sales_by_delivery_location": charts.sales_by_delivery_location,
    "report_staff_performance": charts.staff_performance,
    "report_payments_by_month": charts.payments_over_time,
    "report_spend_vs_revenue": charts.spend_vs_revenue,
    "report_fact_changes": charts.fact_changes,
}


@pytest.fixture(scope="module")
def warehouse(generated) -> Warehouse:
    return Warehouse(generated.warehouse_dsn)


@pytest.mark.parametrize("view", sorted(CHARTS))
def test_every_chart_has_a_title_and_labelled_axes_with_units(warehouse, view):
    frame = warehouse.view(view)
    assert frame.height > 0, view  # the generated warehouse has something to draw

    figure = CHARTS[view](frame)

    assert figure.get_suptitle()
    assert tuple(figure.get_size_inches()) in {charts.FIGSIZE, charts.TALL_FIGSIZE}
    for ax in figure.axes:
        assert ax.get_xlabel(), (view, ax.get_title())
        assert ax.get_ylabel() or ax.get_shared_y_axes().get_siblings(ax) != [ax], view
    money_or_units = " ".join(a.get_xlabel() + a.get_ylabel() for a in figure.axes)
    assert any(unit in money_or_units for unit in ("millions", "thousands", "Changes", "per day"))


def test_revenue_lines_are_the_views_numbers(warehouse):
    frame = warehouse.view("report_revenue_by_month")
    (ax,) = charts.revenue_by_month(frame).axes
    # One line per currency the view has, none missing (else the loop below checks nothing).
    assert {line.get_label() for line in ax.get_lines()} == set(frame["currency_code"]) != set()
    for line in ax.get_lines():
        code = line.get_label()
        expected = frame.filter(pl.col("currency_code") == code).sort("month")["revenue"]
        assert list(line.get_ydata()) == [float(v) for v in expected]


def test_top_designs_are_the_ten_designs_with_most_units_largest_on_top(warehouse):
    frame = warehouse.view("report_sales_by_design")
    (ax,) = charts.top_designs(frame).axes
    totals = frame.group_by("design_id").agg(pl.col("units_sold").sum()).sort("units_sold")
    top = totals.tail(charts.TOP)
    # Stacked by currency: each bar's segments add up to the design's units sold.
    ends: dict[float, float] = {}
    for bar in ax.patches:
        y = bar.get_y() + bar.get_height() / 2
        ends[y] = max(ends.get(y, 0.0), bar.get_x() + bar.get_width())
    assert len(ends) == charts.TOP  # ten bars, even where designs share a name
    assert [ends[y] for y in sorted(ends)] == [float(v) for v in top["units_sold"]]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert len(set(labels)) == charts.TOP  # each bar named apart (an id where names repeat)


def test_no_changes_yet_is_said_in_words():
    empty = pl.DataFrame(schema={"fact_table": pl.String, "column_name": pl.String})
    figure = charts.fact_changes(empty)
    assert "No order or payment has changed" in figure.axes[0].texts[0].get_text()
