"""``make pictures``: the README's plots, drawn from a generated warehouse.

    python -m totes.analytics.pictures [--out docs/images] [--days 7]

A throw-away embedded PostgreSQL and lake (in a temporary folder) hold a ToteSys seeded
with the default seed, loaded and then moved on ``--days`` days; the same chart functions
as the notebook's draw from the same views, so the pictures are what the notebook shows.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from totes.analytics import charts
from totes.analytics.sample_warehouse import fill
from totes.analytics.warehouse import Warehouse
from totes.local.embedded_postgres import EmbeddedPostgres
from totes.pipeline.lake import Lake
from totes.totesys.seed import seed_totesys

# file name -> (chart, the view it draws)
PICTURES = {
    "revenue_by_month.png": (charts.revenue_by_month, "report_revenue_by_month"),
    "payments_paid_vs_outstanding.png": (charts.payments_over_time, "report_payments_by_month"),
}
DPI = 100


def render(warehouse: Warehouse, out: Path) -> list[Path]:
    """Draw every picture from ``warehouse`` into ``out``; the files written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (chart, view) in PICTURES.items():
        path = out / name
        chart(warehouse.view(view)).savefig(path, dpi=DPI)
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Draw the README's pictures.")
    parser.add_argument("--out", type=Path, default=Path("docs/images"))
    parser.add_argument("--days", type=int, default=7, help="simulated days after the seed")
    parser.add_argument("--scale", type=float, default=1.0, help="ToteSys scale (default 1)")
    args = parser.parse_args(argv)

    root = Path(tempfile.mkdtemp(prefix="totes-pictures-"))
    root.chmod(0o755)  # as root, the embedded PostgreSQL runs as the user 'pgserver'
    server = EmbeddedPostgres(root / "pgdata", delete_on_exit=True)
    try:
        source = server.ensure_database("totesys")
        warehouse = server.ensure_database("warehouse")
        print("Seeding ToteSys and running the pipeline ...", file=sys.stderr)
        seed_totesys(source, scale=args.scale)
        fill(source, warehouse, Lake.from_uri(str(root / "lake")), days=args.days)
        for path in render(Warehouse(warehouse), args.out):
            print(path)
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
