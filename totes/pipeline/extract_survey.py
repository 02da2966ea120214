"""A whole table surveyed in one scan of ToteSys: each reconciliation bucket's rows and
checksum, the table's parts cut at bucket edges, its latest last_updated and its rows
dated after the clock."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg2
from psycopg2 import sql
from psycopg2.extensions import connection as Connection

from totes.pipeline.checksums import BucketChecksums
from totes.pipeline.source_sql import as_text, bucket
from totes.schema.source import SourceTable

# Memory for a survey's buckets (about 250 bytes each) in one of our sessions, for the rest
# of the extract's transaction: 64 MB holds a 25-million-row table's without spilling to
# disk (PostgreSQL's default, 4 MB, about 3 million rows').
SURVEY_WORK_MEM = "64MB"


@dataclass(frozen=True)
class Survey:
    """A whole table in one scan: each bucket's rows and checksum, the table's parts cut at
    bucket edges, its largest last_updated and how many rows are dated after the clock."""

    checksums: BucketChecksums
    parts: list[tuple[int, int, int]]  # (first id, last id, rows), in id order
    max_last_updated: str | None
    future_rows: int

    @property
    def rows(self) -> int:
        return sum(count for *_, count in self.parts)


def add_bucket(
    parts: list[tuple[int, int, int]], first: int, last: int, rows: int, part_rows: int
) -> None:
    """Add the next bucket (in id order) to the last part (first id, last id, rows) if it
    still fits in ``part_rows``, else start a part with it."""
    if parts and parts[-1][2] + rows <= part_rows:
        parts[-1] = (parts[-1][0], last, parts[-1][2] + rows)
    else:
        parts.append((first, last, rows))


class _SurveyStream:
    """Takes the survey's COPY output as it arrives (tab-separated lines, in bucket order),
    so memory holds a chunk of it, never a large table's tens of thousands of buckets at
    once (a plain query's result is held whole by the client library)."""

    def __init__(self, part_rows: int) -> None:
        self.checksums = BucketChecksums()
        self.parts: list[tuple[int, int, int]] = []
        self.latest: str | None = None
        self.future = 0
        self._part_rows = part_rows
        self._tail = b""

    def write(self, chunk: bytes) -> int:
        lines = (self._tail + chunk).split(b"\n")
        self._tail = lines.pop()
        for line in lines:
            bucket, rows, total, first, last, updated, dated_later = line.split(b"\t")
            self.checksums.add(int(bucket), int(rows), int(total))
            add_bucket(self.parts, int(first), int(last), int(rows), self._part_rows)
            if updated != b"\\N" and (self.latest is None or updated.decode() > self.latest):
                self.latest = updated.decode()
            self.future += int(dated_later)
        return len(chunk)

    def survey(self) -> Survey:
        if self._tail:  # COPY ends every line: a fragment means the output was cut short
            raise psycopg2.DatabaseError(f"the survey's output ended mid-line: {self._tail!r:.80}")
        return Survey(self.checksums, self.parts, self.latest, self.future)


def survey(conn: Connection, table: SourceTable, now: str, part_rows: int) -> Survey:
    """Per bucket: rows, sum of 64-bit row hashes, first and last id; and the table's largest
    last_updated and its rows dated after ``now``; one scan, in the source database. Parts
    are runs of whole buckets of at most ``part_rows`` rows (at least one bucket each): exact,
    and no query of their own.

    ``hash_record_extended`` (PostgreSQL 14+) hashes the row's values without rendering them
    as text: three times faster than an md5 of the text. Its enum hashes depend on the
    database's own type ids, which only a dump and restore of ToteSys changes: the next pass
    then re-reads every bucket once, and nothing is duplicated. It is a weighted sum of the
    column values' hashes, so a bucket's sum of them would not change when rows of the
    bucket swap a column's values (silent edits); each row's is hashed again
    (``hashint8extended``) before it is summed, which no such exchange survives.

    The rows are hashed in a subquery that the planner may not flatten (``OFFSET 0``): it
    then hashes each row once as it scans and aggregates by hash (a bucket's count is not
    known to it), instead of sorting every row with all its columns first. A third less
    time, on one core, while the extract's other session copies on the other. The result
    streams through COPY: memory holds a chunk of it at a time.
    """
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in table.column_names)
    pk = sql.Identifier(table.primary_key)
    query = sql.SQL(
        "COPY (SELECT bucket, count(*), sum(row_hash), min(id), max(id),"
        " {latest},"
        " count(*) FILTER (WHERE last_updated > {now}::timestamp)"
        " FROM (SELECT {bucket} AS bucket,"
        " hashint8extended(hash_record_extended(ROW({columns}), 0), 0) AS row_hash,"
        " {pk} AS id, last_updated"
        " FROM {t} OFFSET 0) AS hashed"
        " GROUP BY bucket ORDER BY bucket) TO STDOUT"
    ).format(
        pk=pk,
        bucket=bucket(table),
        columns=columns,
        latest=as_text(sql.SQL("max(last_updated)")),
        now=sql.Literal(now),  # COPY takes no parameters; a literal, never text
        t=sql.Identifier(table.name),
    )
    stream = _SurveyStream(part_rows)
    with conn.cursor() as cur:
        cur.execute("SET LOCAL work_mem = %s", (SURVEY_WORK_MEM,))
        cur.copy_expert(query, stream, size=1 << 16)
    return stream.survey()
