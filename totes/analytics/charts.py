"""The notebook's plots, one function per question, each taking the frame of the view that
answers it (``Warehouse.view(...)``) and returning a matplotlib Figure.

Figures are made with ``matplotlib.figure.Figure``, not pyplot: nothing global, no GUI
backend, and the notebook shows each figure once (the one its cell returns). Sized for a
laptop screen: 11 x 5.5 inches at 100 dpi (11 x 8 where two panels of long names stack).

Money is never added up across currencies (ToteSys has no exchange rates): revenue and
spend are drawn per currency; units and counts may be added up.
"""

from __future__ import annotations

import polars as pl
from matplotlib.axes import Axes
from matplotlib.dates import DateFormatter, MonthLocator
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

FIGSIZE = (11, 5.5)
TALL_FIGSIZE = (11, 8)
TOP = 10
_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")
PAID, OUTSTANDING = "#2ca02c", "#d62728"


def _figure(
    title: str, ncols: int = 1, nrows: int = 1, *, size: tuple[float, float] = FIGSIZE, **kwargs
) -> tuple[Figure, list[Axes]]:
    fig = Figure(figsize=size, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kwargs).flatten().tolist()
    fig.suptitle(title, fontsize=14, fontweight="bold")
    return fig, axes


def _currencies(frame: pl.DataFrame) -> list[str]:
    return sorted(frame["currency_code"].unique().to_list()) if frame.height else []


def _colour(i: int) -> str:
    return _PALETTE[i % len(_PALETTE)]


def _scaled(ax: Axes, axis: str, scale: float, ticks: int = 6) -> None:
    """Tick labels divided by ``scale`` (1e3, 1e6: say which in the axis label)."""
    target = ax.yaxis if axis == "y" else ax.xaxis
    target.set_major_locator(MaxNLocator(ticks))
    target.set_major_formatter(FuncFormatter(lambda value, _: f"{value / scale:,.0f}"))


def _in_millions(ax: Axes, axis: str = "y") -> None:
    _scaled(ax, axis, 1e6)


def _in_thousands(ax: Axes, axis: str = "x") -> None:
    _scaled(ax, axis, 1e3)


def _months(ax: Axes) -> None:
    """Month ticks every half year, labelled like 'Jan 2024'."""
    ax.xaxis.set_major_locator(MonthLocator(bymonth=(1, 7)))
    ax.xaxis.set_major_formatter(DateFormatter("%b %Y"))


def _floats(frame: pl.DataFrame, *columns: str) -> pl.DataFrame:
    """Money columns (exact decimals in the warehouse) as floats, for drawing only."""
    return frame.with_columns(pl.col(c).cast(pl.Float64) for c in columns)


def _nothing_yet(ax: Axes, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=12, transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def revenue_by_month(frame: pl.DataFrame) -> Figure:
    """``report_revenue_by_month``: one line per currency."""
    fig, (ax,) = _figure("Sales revenue by month and currency")
    frame = _floats(frame, "revenue").sort("month")
    for i, code in enumerate(_currencies(frame)):
        rows = frame.filter(pl.col("currency_code") == code)
        ax.plot(rows["month"], rows["revenue"], marker="o", label=code, color=_colour(i))
    ax.set_xlabel("Month the order was created (the last month: up to the last load)")
    ax.set_ylabel("Revenue (millions, in the order's currency)")
    ax.set_ylim(bottom=0)
    _in_millions(ax)
    _months(ax)
    ax.legend(title="Currency")
    ax.grid(alpha=0.3)
    return fig


def _top_units(
    frame: pl.DataFrame, key: str, name: str, title: str, n: int, *, with_id: bool = False
) -> Figure:
    """Horizontal bars of units sold for the top ``n`` by ``key`` (largest at the top), each
    bar split by order currency. Bars are labelled by ``name``, with the id when asked or
    where two of those shown share a name."""
    fig, (ax,) = _figure(title)
    totals = (
        frame.group_by(key)
        .agg(pl.col(name).first(), pl.col("units_sold").sum().alias("total"))
        .sort("total", key)
        .tail(n)
    )
    ids = totals[key].to_list()
    names = totals[name].to_list()
    labels = [
        f"{label} (#{id_})" if with_id or names.count(label) > 1 else label
        for id_, label in zip(ids, names, strict=True)
    ]
    left = [0.0] * len(ids)
    for i, code in enumerate(_currencies(frame)):
        units = dict(
            frame.filter(pl.col("currency_code") == code)
            .group_by(key)
            .agg(pl.col("units_sold").sum())
            .iter_rows()
        )
        widths = [float(units.get(id_, 0)) for id_ in ids]
        ax.barh(range(len(ids)), widths, left=left, label=code, color=_colour(i))
        left = [a + b for a, b in zip(left, widths, strict=True)]
    ax.set_yticks(range(len(ids)), labels)
    ax.set_xlabel("Units sold (thousands)")
    ax.set_ylabel(name.replace("_", " ").capitalize())
    _in_thousands(ax)
    ax.legend(title="Order currency", loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.grid(axis="x", alpha=0.3)
    return fig


def top_designs(frame: pl.DataFrame, n: int = TOP) -> Figure:
    """``report_sales_by_design``: design names repeat (a name is a style), so ids show."""
    title = f"Top {n} designs by units sold"
    return _top_units(frame, "design_id", "design_name", title, n, with_id=True)


def top_counterparties(frame: pl.DataFrame, n: int = TOP) -> Figure:
    """``report_sales_by_counterparty``."""
    frame = frame.rename({"counterparty_legal_name": "customer"})
    return _top_units(frame, "counterparty_id", "customer", f"Top {n} customers by units sold", n)


def sales_by_delivery_location(frame: pl.DataFrame, n: int = TOP) -> Figure:
    """``report_sales_by_delivery_location``: top countries and top cities."""
    # One above the other: country and city names are long.
    fig, axes = _figure("Where sales are delivered: units sold", nrows=2, size=TALL_FIGSIZE)
    # A city is named with its country: the same city name can be in two countries.
    places = frame.with_columns(place=pl.col("city") + " (" + pl.col("country") + ")")
    for ax, by in zip(axes, ("country", "place"), strict=True):
        top = places.group_by(by).agg(pl.col("units_sold").sum()).sort("units_sold", by)
        top = top.tail(n)
        ax.barh(top[by].to_list(), top["units_sold"].cast(pl.Float64).to_list(), color=_colour(0))
        ax.set_title(f"Top {n} delivery {'countries' if by == 'country' else 'cities'}")
        ax.set_xlabel("Units sold (thousands)")
        ax.set_ylabel("Country" if by == "country" else "City (country)")
        _in_thousands(ax)
        ax.grid(axis="x", alpha=0.3)
    return fig


def staff_performance(frame: pl.DataFrame) -> Figure:
    """``report_staff_performance``: units by department, and by person within it."""
    fig, (by_department, by_person) = _figure("Sales staff performance by department", ncols=2)
    people = (
        frame.group_by("staff_id", "first_name", "last_name", "department_name")
        .agg(pl.col("units_sold").sum(), pl.col("orders").sum())
        .sort("department_name", "units_sold")
    )
    departments = (
        people.group_by("department_name")
        .agg(pl.col("units_sold").sum(), pl.len().alias("staff"))
        .sort("units_sold")
    )
    colours = {d: _colour(i) for i, d in enumerate(sorted(departments["department_name"]))}
    by_department.barh(
        [f"{d} ({s} staff)" for d, s in departments.select("department_name", "staff").rows()],
        departments["units_sold"].cast(pl.Float64).to_list(),
        color=[colours[d] for d in departments["department_name"]],
    )
    by_department.set_title("Units sold per department")
    by_department.set_xlabel("Units sold (millions)")
    by_department.set_ylabel("Department (number of staff who sold)")
    _scaled(by_department, "x", 1e6, ticks=5)
    by_person.barh(
        [f"{f} {last}" for f, last in people.select("first_name", "last_name").rows()],
        people["units_sold"].cast(pl.Float64).to_list(),
        color=[colours[d] for d in people["department_name"]],
    )
    by_person.set_title("Per staff member (colours as on the left)")
    by_person.set_xlabel("Units sold (thousands)")
    by_person.set_ylabel("Staff member")
    by_person.tick_params(axis="y", labelsize=8)
    _in_thousands(by_person)
    for ax in (by_department, by_person):
        ax.grid(axis="x", alpha=0.3)
    return fig


def payments_over_time(frame: pl.DataFrame) -> Figure:
    """``report_payments_by_month``: paid and outstanding amounts, one panel per currency."""
    codes = _currencies(frame) or ["-"]
    fig, axes = _figure("Payments by month due: paid vs outstanding", ncols=len(codes), sharey=True)
    monthly = (
        _floats(frame, "paid_amount", "outstanding_amount")
        .group_by("month", "currency_code")
        .agg(pl.col("paid_amount").sum(), pl.col("outstanding_amount").sum())
        .sort("month")
    )
    for ax, code in zip(axes, codes, strict=True):
        rows = monthly.filter(pl.col("currency_code") == code)
        months = rows["month"].to_list()
        ax.bar(months, rows["paid_amount"].to_list(), width=25, color=PAID, label="Paid")
        ax.bar(
            months,
            rows["outstanding_amount"].to_list(),
            bottom=rows["paid_amount"].to_list(),
            width=25,
            color=OUTSTANDING,
            label="Outstanding",
        )
        ax.set_title(code)
        ax.set_xlabel("Month the payment is due")
        ax.tick_params(axis="x", labelrotation=45)
        _in_millions(ax)
        _months(ax)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("Amount (millions, in the payment's currency)")
    axes[0].legend()
    return fig


def spend_vs_revenue(frame: pl.DataFrame) -> Figure:
    """``report_spend_vs_revenue``: sales revenue and purchase spend, one panel per currency."""
    codes = _currencies(frame) or ["-"]
    fig, axes = _figure("Purchase spend vs sales revenue by month", ncols=len(codes), sharey=True)
    frame = _floats(frame, "sales_revenue", "purchase_spend").sort("month")
    for ax, code in zip(axes, codes, strict=True):
        rows = frame.filter(pl.col("currency_code") == code)
        ax.plot(rows["month"], rows["sales_revenue"], color=_colour(2), label="Sales revenue")
        ax.plot(rows["month"], rows["purchase_spend"], color=_colour(3), label="Purchase spend")
        ax.set_title(code)
        ax.set_xlabel("Month the order was created")
        ax.tick_params(axis="x", labelrotation=45)
        ax.set_ylim(bottom=0)
        _in_millions(ax)
        _months(ax)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("Amount (millions, in the order's currency)")
    axes[0].legend()
    return fig


def fact_changes(frame: pl.DataFrame) -> Figure:
    """``report_fact_changes``: what changed after a row was first recorded, and when."""
    fig, (what, when) = _figure("How orders and payments changed after they were recorded", 2)
    if not frame.height:
        _nothing_yet(what, "No order or payment has changed\nsince it was first loaded.")
        _nothing_yet(when, "Run the pipeline again after\nthe business moves on.")
        return fig
    named = frame.with_columns(
        what=pl.col("fact_table").str.strip_prefix("fact_") + ": " + pl.col("column_name")
    )
    counts = named.group_by("what").len().sort("len")
    what.barh(counts["what"].to_list(), counts["len"].to_list(), color=_colour(0), height=0.5)
    what.set_ylim(-1, max(counts.height, 3))  # a lone bar stays a bar, not a block
    what.set_title("Which column changed")
    what.set_xlabel("Changes (versions that changed the column)")
    what.set_ylabel("Table: column")
    what.xaxis.set_major_locator(MaxNLocator(integer=True))
    per_day = named.group_by("changed_date", "fact_table").len().sort("changed_date")
    bottom: dict = {}
    for i, table in enumerate(sorted(per_day["fact_table"].unique())):
        rows = per_day.filter(pl.col("fact_table") == table)
        days = rows["changed_date"].to_list()
        when.bar(
            days,
            rows["len"].to_list(),
            bottom=[bottom.get(d, 0) for d in days],
            color=_colour(i),
            label=table,
        )
        for day, n in zip(days, rows["len"].to_list(), strict=True):
            bottom[day] = bottom.get(day, 0) + n
    when.xaxis.set_major_formatter(DateFormatter("%d %b %Y"))
    when.yaxis.set_major_locator(MaxNLocator(integer=True))
    when.set_title("When rows changed")
    when.set_xlabel("Date of the new version (last_updated)")
    when.set_ylabel("Changed columns per day")
    when.tick_params(axis="x", labelrotation=45)
    when.legend(title="Table")
    for ax in (what, when):
        ax.grid(alpha=0.3)
    return fig
