"""Turn planned days (``activity.DayPlan``) into ToteSys rows with ids, ready for COPY.

Ids are handed out in creation order, continuing from the largest id already stored, so ids
are contiguous and increase with ``created_at``: "the rows created by time t" are then
simply ids 1..n, which is how silent edits and design choices pick among existing rows.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import polars as pl

from totes.totesys import reference_data as ref
from totes.totesys.activity import DayPlan, SilentEdit, date_of, paid_job_ms, reroll

ORDER_TABLES = ("design", "sales_order", "purchase_order", "transaction", "payment")
# Tells which of some candidate values (item codes, file names) are already stored.
TakenCheck = Callable[[list[str]], set[str]]


@dataclass
class Batch:
    """Rows for each table (FK order) and the silent edits to apply after loading them."""

    frames: dict[str, pl.DataFrame]
    updates: list[tuple[str, int, str, object]] = field(default_factory=list)
    edited: dict[str, int] = field(default_factory=dict)

    def rows(self) -> dict[str, int]:
        return {t: f.height for t, f in self.frames.items()}


class UsedNames:
    """Item codes and design file names already stored, which new ones must avoid."""

    def __init__(self, item_codes: Iterable[str] = (), file_names: Iterable[str] = ()) -> None:
        self._used = {"item_code": set(item_codes), "file_name": set(file_names)}

    def checks(self) -> dict[str, TakenCheck]:
        return {kind: used.intersection for kind, used in self._used.items()}

    def record(self, batch: Batch) -> None:
        self._used["file_name"].update(batch.frames["design"]["file_name"].to_list())
        self._used["item_code"].update(batch.frames["purchase_order"]["item_code"].to_list())
        self._used["item_code"].update(
            str(value) for _t, _id, column, value in batch.updates if column == "item_code"
        )


def unique_values(values: Sequence[str], taken: TakenCheck) -> list[str]:
    """``values`` with any already-taken or repeated one deterministically re-drawn."""
    result = list(values)
    for attempt in range(100):
        clash = taken(result)
        seen: set[str] = set()
        bad = []
        for i, value in enumerate(result):
            if value in clash or value in seen:
                bad.append(i)
            seen.add(value)
        if not bad:
            return result
        for i in bad:
            result[i] = reroll(values[i], attempt)
    raise RuntimeError("could not draw unique values")  # pragma: no cover


def _timestamp(column: str) -> pl.Expr:
    return pl.from_epoch(pl.col(column), time_unit="ms")


def _date_text(column: str) -> pl.Expr:
    return pl.col(column).cast(pl.Int32).cast(pl.Date).cast(pl.String)


def _designs(plans: list[DayPlan], first_id: int, taken: TakenCheck) -> pl.DataFrame:
    events = [e for p in plans for e in p.designs]
    names = unique_values([e.file_name for e in events], taken)
    frame = pl.DataFrame(
        {
            "design_id": range(first_id, first_id + len(events)),
            "ms": [e.ms for e in events],
            "design_name": [e.name for e in events],
            "file_location": [e.location for e in events],
            "file_name": names,
        },
        schema_overrides={"design_id": pl.Int64, "ms": pl.Int64},
    )
    return frame.select(
        "design_id",
        _timestamp("ms").alias("created_at"),
        "design_name",
        "file_location",
        "file_name",
        _timestamp("ms").alias("last_updated"),
    )


def _orders(events: list, fields: Sequence[str]) -> pl.DataFrame:
    columns = list(zip(*events, strict=True)) if events else [[] for _ in fields]
    kinds = {"u_design": pl.Float64, "item_code": pl.String}
    return pl.DataFrame(
        {name: list(col) for name, col in zip(fields, columns, strict=True)},
        schema={name: kinds.get(name, pl.Int64) for name in fields},
    )


def _paid(frame: pl.DataFrame, seed: int, paid_as_of_ms: int | None) -> pl.DataFrame:
    """Payments already paid by ``paid_as_of_ms``: the job of their payment day has run,
    after they were created (so same-day payments never are, as in the live data)."""
    if paid_as_of_ms is None or frame.is_empty():
        return frame.with_columns(paid=pl.lit(False), paid_ms=pl.col("ms"))
    days = frame["payment_day"].unique().to_list()
    jobs = pl.DataFrame(
        {"payment_day": days, "job_ms": [_job(seed, d) for d in days]},
        schema={"payment_day": frame.schema["payment_day"], "job_ms": pl.Int64},
    )
    frame = frame.join(jobs, on="payment_day", how="left")
    paid = (
        pl.col("job_ms").is_not_null()
        & (pl.col("job_ms") > pl.col("ms"))
        & (pl.col("job_ms") < paid_as_of_ms)
    )
    return frame.with_columns(paid=paid, paid_ms=pl.when(paid).then("job_ms").otherwise("ms"))


def _job(seed: int, day_number: int) -> int | None:
    return paid_job_ms(seed, date_of(day_number))


def build_batch(
    plans: list[DayPlan],
    *,
    seed: int,
    ids: dict[str, int],
    taken: dict[str, TakenCheck],
    paid_as_of_ms: int | None,
) -> Batch:
    """Rows for ``plans`` (consecutive, in time order); ``ids`` (largest ids) is advanced."""
    designs = _designs(plans, ids["design"] + 1, taken["file_name"])
    design_ms = designs["created_at"].dt.epoch("ms")

    sales = _orders([e for p in plans for e in p.sales], SALE_FIELDS)
    purchases = _orders([e for p in plans for e in p.purchases], PURCHASE_FIELDS)
    purchases = purchases.with_columns(
        item_code=pl.Series(unique_values(purchases["item_code"].to_list(), taken["item_code"]),
                            dtype=pl.String)
    )  # fmt: skip
    sales = sales.with_columns(
        sales_order_id=pl.int_range(pl.len(), dtype=pl.Int64) + ids["sales_order"] + 1,
        n_designs=design_ms.search_sorted(sales["ms"], side="right") + ids["design"],
    )
    purchases = purchases.with_columns(
        purchase_order_id=pl.int_range(pl.len(), dtype=pl.Int64) + ids["purchase_order"] + 1
    )

    # One transaction and one payment per order, numbered in creation order.
    common = ["ms", "counterparty", "currency", "payment_day", "company_ac", "counterparty_ac"]
    ledger = (
        pl.concat(
            [
                sales.select(
                    *common,
                    pl.lit(0).alias("kind"),
                    pl.col("sales_order_id").alias("sales_order_id"),
                    pl.lit(None, pl.Int64).alias("purchase_order_id"),
                    (pl.col("units") * pl.col("price_cents")).alias("amount"),
                ),
                purchases.select(
                    *common,
                    pl.lit(1).alias("kind"),
                    pl.lit(None, pl.Int64).alias("sales_order_id"),
                    pl.col("purchase_order_id").alias("purchase_order_id"),
                    (pl.col("quantity") * pl.col("price_cents")).alias("amount"),
                ),
            ]
        )
        .sort("ms", "kind", "sales_order_id", "purchase_order_id", maintain_order=True)
        .with_columns(txn_id=pl.int_range(pl.len(), dtype=pl.Int64) + ids["transaction"] + 1)
    )
    ledger = _paid(ledger, seed, paid_as_of_ms)

    frames = {
        "design": designs,
        "sales_order": sales.select(
            "sales_order_id",
            _timestamp("ms").alias("created_at"),
            _timestamp("ms").alias("last_updated"),
            (1 + (pl.col("u_design") * pl.col("n_designs")).floor().cast(pl.Int64)).alias(
                "design_id"
            ),
            pl.col("staff").alias("staff_id"),
            pl.col("counterparty").alias("counterparty_id"),
            pl.col("units").alias("units_sold"),
            pl.col("price_cents").alias("unit_price__cents"),
            pl.col("currency").alias("currency_id"),
            _date_text("delivery_day").alias("agreed_delivery_date"),
            _date_text("payment_day").alias("agreed_payment_date"),
            pl.col("location").alias("agreed_delivery_location_id"),
        ),
        "purchase_order": purchases.select(
            "purchase_order_id",
            _timestamp("ms").alias("created_at"),
            _timestamp("ms").alias("last_updated"),
            pl.col("staff").alias("staff_id"),
            pl.col("counterparty").alias("counterparty_id"),
            "item_code",
            pl.col("quantity").alias("item_quantity"),
            pl.col("price_cents").alias("item_unit_price__cents"),
            pl.col("currency").alias("currency_id"),
            _date_text("delivery_day").alias("agreed_delivery_date"),
            _date_text("payment_day").alias("agreed_payment_date"),
            pl.col("location").alias("agreed_delivery_location_id"),
        ),
        "transaction": ledger.select(
            pl.col("txn_id").alias("transaction_id"),
            pl.when(pl.col("kind") == 0)
            .then(pl.lit("SALE"))
            .otherwise(pl.lit("PURCHASE"))
            .alias("transaction_type"),
            "sales_order_id",
            "purchase_order_id",
            _timestamp("ms").alias("created_at"),
            _timestamp("ms").alias("last_updated"),
        ),
        "payment": ledger.select(
            (pl.col("txn_id") - ids["transaction"] + ids["payment"]).alias("payment_id"),
            _timestamp("ms").alias("created_at"),
            _timestamp("paid_ms").alias("last_updated"),
            pl.col("txn_id").alias("transaction_id"),
            pl.col("counterparty").alias("counterparty_id"),
            pl.col("amount").alias("payment_amount__cents"),
            pl.col("currency").alias("currency_id"),
            pl.when(pl.col("kind") == 0)
            .then(ref.SALES_RECEIPT_ID)
            .otherwise(ref.PURCHASE_PAYMENT_ID)
            .alias("payment_type_id"),
            "paid",
            _date_text("payment_day").alias("payment_date"),
            pl.col("company_ac").alias("company_ac_number"),
            pl.col("counterparty_ac").alias("counterparty_ac_number"),
        ),
    }
    before = dict(ids)
    ids["design"] += designs.height
    ids["sales_order"] += sales.height
    ids["purchase_order"] += purchases.height
    ids["transaction"] += ledger.height
    ids["payment"] += ledger.height

    batch = Batch(frames)
    created = {
        "design": design_ms.to_list(),
        "sales_order": sales["ms"].to_list(),
        "purchase_order": purchases["ms"].to_list(),
    }
    edits = [e for p in plans for e in p.edits]
    _resolve_edits(batch, edits, before, created, taken["item_code"])
    return batch


def _resolve_edits(
    batch: Batch,
    edits: list[SilentEdit],
    before: dict[str, int],
    created: dict[str, list[int]],
    item_code_taken: TakenCheck,
) -> None:
    def existing(table: str, ms: int) -> int:
        return before[table] + bisect_right(created[table], ms)

    batch_codes = set(batch.frames["purchase_order"]["item_code"])
    codes = unique_values(
        [str(e.value) for e in edits if e.column == "item_code"],
        lambda vs: item_code_taken(vs) | batch_codes.intersection(vs),
    )
    fresh_codes = iter(codes)
    for edit in edits:
        value = next(fresh_codes) if edit.column == "item_code" else edit.value
        n_rows = existing(edit.table, edit.ms)
        if n_rows == 0:
            continue
        if edit.column == "design_id":
            value = 1 + int(edit.u_value * max(1, existing("design", edit.ms)))
        batch.updates.append((edit.table, 1 + int(edit.u_row * n_rows), edit.column, value))
        batch.edited[edit.table] = batch.edited.get(edit.table, 0) + 1


SALE_FIELDS = (
    "ms", "u_design", "staff", "counterparty", "units", "price_cents", "currency",
    "delivery_day", "payment_day", "location", "company_ac", "counterparty_ac",
)  # fmt: skip
PURCHASE_FIELDS = (
    "ms", "staff", "counterparty", "item_code", "quantity", "price_cents", "currency",
    "delivery_day", "payment_day", "location", "company_ac", "counterparty_ac",
)  # fmt: skip
