"""Reading a batch's Parquet parts and COPYing them into a table: what every way of loading
shares (the batch's own transaction, the parallel build of a new warehouse, the staging of
a fan-out's parts)."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from itertools import accumulate

import polars as pl
from psycopg2 import sql
from psycopg2.extensions import cursor as Cursor

from totes.pipeline.copy_payload import COPY_CHUNK_BYTES, CopyPayload, copy_payload
from totes.pipeline.errors import UndeliverableBatchError
from totes.pipeline.lake import Lake, Part, TableOutput
from totes.schema.warehouse import TIME_FORMAT, WarehouseTable


class LoadError(Exception):
    """A batch could not be loaded; nothing of it was written."""


class ProcessedFileError(UndeliverableBatchError):
    """A processed Parquet file is missing, unreadable or holds other rows than its manifest
    says."""


def read_parquet(lake: Lake, output: Part, table: WarehouseTable) -> pl.DataFrame:
    """One Parquet file (a table's, or one part of it), its columns and count checked."""
    where = f"{table.name} ({lake.processed.location(output.key)})"
    try:
        frame = pl.read_parquet(io.BytesIO(lake.processed.get(output.key)))
    except FileNotFoundError:
        raise ProcessedFileError(f"{where}: the file is missing from the lake") from None
    except pl.exceptions.PolarsError as exc:
        raise ProcessedFileError(f"{where}: not a readable Parquet file: {exc}") from None
    # Lakes written before times of day became text hold Parquet TIME columns: same values.
    frame = frame.with_columns(pl.col(pl.Time).dt.strftime(TIME_FORMAT))
    if frame.schema != table.polars_schema:
        raise ProcessedFileError(
            f"{where}: columns/types {dict(frame.schema)} do not match the warehouse "
            f"{dict(table.polars_schema)}"
        )
    if frame.height != output.rows:
        raise ProcessedFileError(
            f"{where}: {frame.height} rows, but the processed manifest says {output.rows}"
        )
    return frame


def copy_parts(
    cur: Cursor,
    lake: Lake,
    output: TableOutput,
    table: WarehouseTable,
    into: sql.Identifier,
    batch_id: str | None = None,
    *,
    freeze: bool = False,
    record_ids: bool = False,
) -> int:
    """COPY each Parquet part of the table's rows into ``into`` in turn, each part's count
    checked; with ``batch_id``, as the rows' batch_id column; with ``record_ids``, a fact's
    rows numbered 1, 2, ... in the parts' order. The next part is read and encoded while
    the server takes this one; it goes through a temporary file (Lambda's /tmp), so memory
    holds a part's frame, not its encoding."""
    constants = {"batch_id": batch_id} if batch_id else {}
    # Each part's first record id, from the manifest's counts (read_parquet checks them).
    firsts = list(accumulate((part.rows for part in output.files), initial=1))

    def prepare(index: int) -> CopyPayload:
        frame = read_parquet(lake, output.files[index], table)
        first = firsts[index] if record_ids else None
        return copy_payload(frame, table, into, constants, freeze=freeze, first_record_id=first)

    with ThreadPoolExecutor(1, thread_name_prefix="load-read") as reader:
        upcoming = reader.submit(prepare, 0) if output.files else None
        for index, part in enumerate(output.files):
            payload = upcoming.result()
            if index + 1 < len(output.files):
                upcoming = reader.submit(prepare, index + 1)
            with payload.file:
                cur.copy_expert(payload.statement, payload.file, size=COPY_CHUNK_BYTES)
            if cur.rowcount != payload.rows:  # the last hop's count: what the warehouse got
                raise LoadError(
                    f"{table.name} ({lake.processed.location(part.key)}): COPY wrote"
                    f" {cur.rowcount} rows of {payload.rows}"
                )
    return output.rows
