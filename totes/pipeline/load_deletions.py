"""Ids a batch holds completely (its snapshot) but without a row: marked deleted in
``etl_deleted_row``; an id that comes back is unmarked."""

from __future__ import annotations

from psycopg2 import sql
from psycopg2.extensions import cursor as Cursor

from totes.pipeline.db import bucket_of
from totes.pipeline.lake import TableOutput
from totes.pipeline.registers import DELETION_TABLE, WAITING_TABLE
from totes.schema.warehouse import WarehouseTable

# A snapshot of up to this many buckets finds its ids by a range scan of the key's index
# per bucket; of more (a pass that found most buckets changed), by one scan of the table
# with a hashed bucket lookup: the planner guesses a range's rows from the whole table
# (175,000 a bucket for 100), and past a few hundred buckets its plans took minutes.
RANGE_SCANNED_BUCKETS = 200


def mark_deletions(
    cur: Cursor,
    table: WarehouseTable,
    output: TableOutput,
    staging: sql.Identifier | None,
    batch_id: str,
) -> int:
    """Ids the batch holds completely (its snapshot) but without a row are marked deleted;
    ids it has rows for are unmarked. Rows it set aside (quarantined) or that wait for
    their dimension rows exist: never deleted."""
    if table.source is None:  # dim_date: generated, not a copy of source rows
        return 0
    key, register = sql.Identifier(table.key), sql.Identifier(DELETION_TABLE)
    absent = sql.SQL("true")
    if staging is not None:
        # Ids the batch has a row for are back, whether the row went in or waits for its
        # dimension row (it left the staging table for the waiting register).
        # Two statements: under one OR, PostgreSQL scanned the staging table once for each
        # id in the register (20 s for 100 ids beside 1.4 M staged rows).
        cur.execute(
            sql.SQL(
                "DELETE FROM {register} r WHERE r.table_name = %s"
                " AND EXISTS (SELECT 1 FROM {staging} s WHERE s.{key} = r.id)"
            ).format(register=register, staging=staging, key=key),
            (table.name,),
        )
        cur.execute(
            sql.SQL(
                "DELETE FROM {register} r WHERE r.table_name = %s"
                " AND EXISTS (SELECT 1 FROM {waiting} w WHERE w.table_name = r.table_name"
                " AND w.id = r.id AND w.batch_id = %s)"
            ).format(register=register, waiting=sql.Identifier(WAITING_TABLE)),
            (table.name, batch_id),
        )
        absent = sql.SQL("NOT EXISTS (SELECT 1 FROM {} s WHERE s.{} = t.{})").format(
            staging, key, key
        )
    # A row of this batch waiting for its dimension row exists too. Not an earlier batch's:
    # an id the source has is in this batch's snapshot, so one with only an older version
    # waiting is gone from the source.
    absent = sql.SQL(
        "{} AND NOT EXISTS (SELECT 1 FROM {} w WHERE w.table_name = {} AND w.id = t.{}"
        " AND w.batch_id = %(batch)s)"
    ).format(absent, sql.Identifier(WAITING_TABLE), sql.Literal(table.name), key)
    snapshot = output.snapshot
    if snapshot is None:
        return 0
    in_snapshot, in_buckets = sql.SQL("{} t").format(sql.Identifier(table.name)), sql.SQL("")
    params = {
        "table": table.name,
        "batch": batch_id,
        "buckets": list(snapshot.buckets or ()),
        "width": snapshot.width,
        "quarantined": output.quarantined_ids,
    }
    if not snapshot.full and len(snapshot.buckets) <= RANGE_SCANNED_BUCKETS:
        # Driven by the buckets: a range scan of the key's index per bucket, not a scan of
        # the whole table (a reconciled bucket or two in a table of millions of rows).
        in_snapshot = sql.SQL(
            "unnest(%(buckets)s::bigint[]) AS b(bucket) JOIN {} t"
            " ON t.{key} >= b.bucket * %(width)s AND t.{key} < (b.bucket + 1) * %(width)s"
        ).format(sql.Identifier(table.name), key=key)
    elif not snapshot.full:
        # bigint on both sides, so the array is hashed.
        in_buckets = sql.SQL(" AND {} = ANY(%(buckets)s::bigint[])").format(
            bucket_of(sql.SQL("t.{}").format(key), sql.Literal(snapshot.width))
        )
    cur.execute(
        sql.SQL(
            "INSERT INTO {register} (table_name, id, batch_id)"
            " SELECT DISTINCT %(table)s, t.{key}, %(batch)s FROM {in_snapshot}"
            " WHERE {absent}{in_buckets}"
            # bigint: a set-aside id may have outgrown integer (a retyped ToteSys key). Not
            # <> ALL: integer against bigint[] walks the array for every row.
            " AND NOT EXISTS (SELECT 1 FROM unnest(%(quarantined)s::bigint[]) AS q(id)"
            " WHERE q.id = t.{key})"
            " AND NOT EXISTS (SELECT 1 FROM {register} r"
            " WHERE r.table_name = %(table)s AND r.id = t.{key})"
        ).format(
            register=register,
            key=key,
            in_snapshot=in_snapshot,
            in_buckets=in_buckets,
            absent=absent,
        ),
        params,
    )
    return cur.rowcount
