"""Compare a freshly seeded ToteSys with the real 2024-11-15 snapshot (for our notes only).

Usage: .venv/bin/python scripts/compare_with_reference.py [--seed 42] [--scale 1]
       [--reference /work/shared/reference/totesys-public/2024-11-15]

Seeds a throwaway embedded PostgreSQL, reads both sides with polars and prints the
distributions side by side. Not a test: the tests must not read /work/shared.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import polars as pl
import psycopg2
from psycopg2 import sql

from totes.local.embedded_postgres import EmbeddedPostgres
from totes.schema.source import SOURCE_TABLE_NAMES
from totes.totesys.seed import seed_totesys

DEFAULT_REFERENCE = Path("/work/shared/reference/totesys-public/2024-11-15")


def _read_db(dsn: str) -> dict[str, pl.DataFrame]:
    frames = {}
    with psycopg2.connect(dsn) as conn:
        for table in SOURCE_TABLE_NAMES:
            query = sql.SQL("SELECT * FROM {}").format(sql.Identifier(table)).as_string(conn)
            frames[table] = pl.read_database(query, conn)
    return {t: f.with_columns(pl.col(pl.Decimal).cast(pl.Float64)) for t, f in frames.items()}


def _read_reference(folder: Path) -> dict[str, pl.DataFrame]:
    return {t: pl.read_parquet(folder / f"{t}.parquet") for t in SOURCE_TABLE_NAMES}


def _offsets(frame: pl.DataFrame, column: str) -> dict[int, float]:
    days = (pl.col(column).str.to_date() - pl.col("created_at").dt.date()).dt.total_days()
    counts = frame.select(days.alias("d"))["d"].value_counts().sort("d")
    total = frame.height
    return {d: round(100 * n / total, 1) for d, n in counts.iter_rows() if d <= 7}


def _stats(frames: dict[str, pl.DataFrame]) -> dict[str, object]:
    so, po, pay, design = (
        frames[t] for t in ("sales_order", "purchase_order", "payment", "design")
    )
    address = frames["address"]
    pay_days = pay.with_columns(pd=pl.col("payment_date").str.to_date())
    weekday_orders = so.group_by(pl.col("created_at").dt.date()).len()
    return {
        "rows": {t: f.height for t, f in frames.items()},
        "address NULL line_2 / district": (
            address["address_line_2"].null_count(),
            address["district"].null_count(),
        ),
        "units_sold min/mean/max": (so["units_sold"].min(), round(so["units_sold"].mean()),
                                    so["units_sold"].max()),
        "unit_price min/mean/max": (so["unit_price"].min(), round(so["unit_price"].mean(), 3),
                                    so["unit_price"].max()),
        "item_quantity min/mean/max": (po["item_quantity"].min(),
                                       round(po["item_quantity"].mean(), 1),
                                       po["item_quantity"].max()),
        "item_unit_price min/mean/max": (po["item_unit_price"].min(),
                                         round(po["item_unit_price"].mean(), 1),
                                         po["item_unit_price"].max()),
        "payment_amount mean": round(pay["payment_amount"].mean()),
        "paid share %": round(100 * pay["paid"].mean(), 1),
        "paid with weekend payment_date": pay_days.filter(
            pl.col("paid") & (pl.col("pd").dt.weekday() > 5)
        ).height,
        "payment_date offset % (days)": _offsets(pay, "payment_date"),
        "delivery offset % (days 0-7)": _offsets(so, "agreed_delivery_date"),
        "delivery > 7 days after order": so.filter(
            (pl.col("agreed_delivery_date").str.to_date() - pl.col("created_at").dt.date())
            .dt.total_days() > 7
        ).height,
        "sales orders per day mean/std": (round(weekday_orders["len"].mean(), 1),
                                          round(weekday_orders["len"].std(), 1)),
        "sales orders before 2023-11-15": so.filter(
            pl.col("created_at") < pl.datetime(2023, 11, 15)
        ).height,
        "weekend orders": so.filter(pl.col("created_at").dt.weekday() > 5).height,
        "design names / file_locations": (design["design_name"].n_unique(),
                                          design["file_location"].n_unique()),
        "designs per name min/max": (
            design["design_name"].value_counts()["count"].min(),
            design["design_name"].value_counts()["count"].max(),
        ),
        "sales pointing at a later design": so.join(
            design.select("design_id", pl.col("created_at").alias("design_at")), on="design_id"
        ).filter(pl.col("design_at") > pl.col("created_at")).height,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--reference", type=Path, default=DEFAULT_REFERENCE)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="totes-compare-"))
    root.chmod(0o755)
    server = EmbeddedPostgres(root / "pgdata", delete_on_exit=True)
    try:
        dsn = server.ensure_database("compare")
        seed_totesys(dsn, seed=args.seed, scale=args.scale)
        ours, real = _stats(_read_db(dsn)), _stats(_read_reference(args.reference))
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
    width = max(len(k) for k in ours)
    print(f"{'':<{width}}  generated (seed {args.seed}, scale {args.scale:g})  |  real 2024-11-15")
    for key in ours:
        if key == "rows":
            for table in SOURCE_TABLE_NAMES:
                print(f"{'rows ' + table:<{width}}  {ours[key][table]!s:<30} |  {real[key][table]}")
        else:
            print(f"{key:<{width}}  {ours[key]!s:<30} |  {real[key]!s}")


if __name__ == "__main__":
    main()
