"""The processed lake read in place with polars: the warehouse's tables as the Parquet
holds them, for checking that the lake and the warehouse agree (and, on AWS, what the
Athena tables over the same files return).

Files are found through the processed manifests (``totes.pipeline.lake``), not by
listing folders: a manifest is written after its files, so a half-written batch is never
read.
"""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl

from totes.analytics.warehouse import load_dotenv_file, use_project_state_dir
from totes.pipeline.lake import Lake
from totes.schema.warehouse import TIME_FORMAT, warehouse_table

LAKE = "LAKE"


def local_lake() -> Lake:
    """``$LAKE`` (``.env`` included), else the lake folder that ``make run`` writes."""
    load_dotenv_file()
    return Lake.from_uri(os.environ.get(LAKE) or str(use_project_state_dir() / "lake"))


def scan(lake: Lake, table: str) -> pl.LazyFrame:
    """Every row of ``table`` in every transformed batch, with the batch's id."""
    spec = warehouse_table(table)
    parts = []
    for batch_id in _loadable_batches(lake):
        output = lake.processed_manifest(batch_id).tables.get(table)
        if output is None:
            continue
        for part in output.files:  # every part of a table in parts, not only the first
            path = Path(lake.processed.location(part.key))
            parts.append(
                pl.scan_parquet(path).with_columns(
                    # Files written before times of day became text hold Parquet TIME.
                    pl.col(pl.Time).dt.strftime(TIME_FORMAT),
                    batch_id=pl.lit(batch_id),
                )
            )
    if not parts:
        return pl.LazyFrame(schema={**spec.polars_schema, "batch_id": pl.String})
    return pl.concat(parts, how="vertical")


def current(lake: Lake, table: str) -> pl.LazyFrame:
    """One row per natural id, as the warehouse holds it now.

    Facts: the version with the latest (batch_id, last_updated_date, last_updated_time),
    the order of the warehouse's ``<fact>_current`` views (its ``batch_id`` may be a later
    batch that re-read the same version; the warehouse keeps the first), without the ids
    deleted in ToteSys (``deleted_ids``), as those views leave them out. Dimensions: the
    latest batch's row (the load's upsert never lets an older batch win).
    """
    spec = warehouse_table(table)
    order = ["batch_id"]
    if spec.kind == "fact":
        order = ["batch_id", "last_updated_date", "last_updated_time"]
    latest = (
        scan(lake, table)
        .sort(order, maintain_order=True)
        .unique(subset=spec.key, keep="last", maintain_order=True)
    )
    if spec.kind != "fact":
        return latest
    gone = pl.LazyFrame({spec.key: sorted(deleted_ids(lake, table))}, schema={spec.key: pl.Int32})
    return latest.join(gone, on=spec.key, how="anti", maintain_order="left")


def _loadable_batches(lake: Lake) -> list[str]:
    """The transformed batches the load takes: not those an operator skipped."""
    skipped = lake.skipped_ids()
    return [b for b in lake.transformed_batches() if b not in skipped]


def deleted_ids(lake: Lake, table: str) -> set[int]:
    """Ids of ``table`` gone from ToteSys, as the load marks them: an id a batch holds
    completely (its snapshot: the whole table, or id buckets) but has no row for, and did
    not set aside, is deleted, until a later batch has a row for it again."""
    key = warehouse_table(table).key
    seen: set[int] = set()
    by_bucket: dict[int, dict[int, set[int]]] = {}  # width -> bucket -> ids seen in it
    deleted: set[int] = set()
    for batch_id in _loadable_batches(lake):
        output = lake.processed_manifest(batch_id).tables.get(table)
        if output is None:
            continue
        here: set[int] = set()
        for part in output.files:
            ids = pl.read_parquet(lake.processed.location(part.key), columns=[key])[key]
            here.update(ids.to_list())
        seen |= here
        for width, buckets in by_bucket.items():
            for i in here:
                buckets.setdefault(i // width, set()).add(i)
        deleted -= here  # back again
        snapshot = output.snapshot
        if snapshot is None:
            continue
        if snapshot.full:
            covered = seen
        else:  # a reconciled bucket or two: looked up, not a walk over every id seen
            if snapshot.width not in by_bucket:
                index: dict[int, set[int]] = {}
                for i in seen:
                    index.setdefault(i // snapshot.width, set()).add(i)
                by_bucket[snapshot.width] = index
            index = by_bucket[snapshot.width]
            covered = set().union(*(index.get(b, set()) for b in snapshot.buckets or ()))
        deleted |= covered - here - set(output.quarantined_ids)
    return deleted


def revenue_by_month(lake: Lake) -> pl.DataFrame:
    """``report_revenue_by_month``'s numbers computed from the Parquet alone."""
    sales = current(lake, "fact_sales_order")
    currencies = current(lake, "dim_currency").select("currency_id", "currency_code")
    return (
        sales.join(currencies, on="currency_id", how="left")
        .group_by(pl.col("created_date").dt.truncate("1mo").alias("month"), "currency_code")
        .agg(
            orders=pl.len().cast(pl.Int64),
            units_sold=pl.col("units_sold").cast(pl.Int64).sum(),
            revenue=(pl.col("units_sold").cast(pl.Decimal(38, 0)) * pl.col("unit_price")).sum(),
        )
        .sort("month", "currency_code")
        .collect()
    )
