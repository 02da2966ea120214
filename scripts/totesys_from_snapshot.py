"""Build a ToteSys database from a folder of Parquet snapshots (one file per table).

For trying the pipeline on real data nobody on the team generated, e.g. the public
2024-11-15 snapshot: ``python scripts/totesys_from_snapshot.py SNAPSHOT_DIR DSN``.
Money arrives as float64 and nullable ids as float64 in those files: both are converted
back to the live types (numeric(10,2), integer) before COPY.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import polars as pl
import psycopg2
from psycopg2 import sql

from totes.schema.source import SOURCE_TABLES
from totes.totesys.database import create_totesys, reset_sequences, table_counts


def _typed(frame: pl.DataFrame, table) -> pl.DataFrame:
    casts = []
    for col in table.columns:
        if col.pg_type.startswith("numeric"):
            casts.append(pl.col(col.name).round(2).cast(pl.Decimal(10, 2)))
        elif col.pg_type in ("integer", "serial"):
            casts.append(pl.col(col.name).cast(pl.Int64, strict=True))
    return frame.with_columns(casts).select(table.column_names)


def load_snapshot(folder: Path, dsn: str) -> dict[str, int]:
    create_totesys(dsn)
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            for table in SOURCE_TABLES:
                frame = _typed(pl.read_parquet(folder / f"{table.name}.parquet"), table)
                buffer = io.BytesIO()
                frame.write_csv(buffer, datetime_format="%Y-%m-%d %H:%M:%S%.3f")
                buffer.seek(0)
                cur.copy_expert(
                    sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv, HEADER true)").format(
                        sql.Identifier(table.name),
                        sql.SQL(", ").join(sql.Identifier(c) for c in table.column_names),
                    ),
                    buffer,
                )
            reset_sequences(cur)
    finally:
        conn.close()
    return table_counts(dsn)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: totesys_from_snapshot.py SNAPSHOT_DIR DSN")
    for name, rows in load_snapshot(Path(sys.argv[1]), sys.argv[2]).items():
        print(f"{name:<16}{rows:>8,}")
