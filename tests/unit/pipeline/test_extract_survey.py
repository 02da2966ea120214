"""Parts of a whole table, cut from its survey's buckets: exact counts, id order, bounded."""

from __future__ import annotations

import psycopg2
import pytest

from totes.pipeline.extract_survey import _SurveyStream, add_bucket


def _cut(buckets: list[tuple[int, int, int]], part_rows: int) -> list[tuple[int, int, int]]:
    parts: list[tuple[int, int, int]] = []
    for first, last, rows in buckets:
        add_bucket(parts, first, last, rows, part_rows)
    return parts


def test_parts_are_runs_of_whole_buckets_within_the_part_size():
    buckets = [(1, 99, 99), (100, 199, 100), (200, 249, 50), (500, 599, 100), (600, 699, 100)]

    assert _cut(buckets, 250) == [(1, 249, 249), (500, 699, 200)]
    assert sum(rows for *_, rows in _cut(buckets, 250)) == 449


def test_a_bucket_larger_than_a_part_is_a_part_of_its_own():
    assert _cut([(300, 399, 100), (400, 499, 100)], 60) == [(300, 399, 100), (400, 499, 100)]


def test_ids_of_any_sign_keep_their_order():
    # PostgreSQL's integer division puts ids -99..99 in bucket 0: ranges use the ids found.
    buckets = [(-150, -120, 2), (-5, 40, 3), (100, 180, 4)]

    assert _cut(buckets, 5) == [(-150, 40, 5), (100, 180, 4)]
    assert [rows for *_, rows in _cut(buckets, 1)] == [2, 3, 4]


def test_survey_output_is_read_across_chunks_and_a_cut_line_is_an_error():
    stream = _SurveyStream(part_rows=250)
    for chunk in (
        b"0\t100\t-5\t1\t100\t2022-11-03T14:20:52.186\t0\n1\t10",
        b"0\t7\t101\t200\t\\N\t2\n",
    ):
        stream.write(chunk)
    found = stream.survey()
    assert found.parts == [(1, 200, 200)]
    assert (found.max_last_updated, found.future_rows) == ("2022-11-03T14:20:52.186", 2)
    assert list(found.checksums.items()) == [(0, (100, -5)), (1, (100, 7))]
    stream.write(b"2\t100\t1\t201")  # the output stops mid-line
    with pytest.raises(psycopg2.DatabaseError, match="mid-line"):
        stream.survey()
