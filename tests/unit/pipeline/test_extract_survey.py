"""Parts of a whole table, cut from its survey's buckets: exact counts, id order, bounded."""

from __future__ import annotations

from totes.pipeline.extract import Bucket, Survey


def _survey(rows_by_bucket: dict[int, int], width: int = 100) -> Survey:
    buckets = {
        b: Bucket(rows=n, checksum=0, first_id=b * width, last_id=b * width + n - 1)
        for b, n in rows_by_bucket.items()
    }
    return Survey(buckets=buckets, max_last_updated="2026-01-01T00:00:00.000", future_rows=0)


def test_parts_are_runs_of_whole_buckets_within_the_part_size():
    survey = _survey({0: 100, 1: 100, 2: 50, 5: 100, 6: 100})

    assert survey.part_ranges(250) == [(0, 249, 250), (500, 699, 200)]
    assert survey.rows == 450


def test_a_bucket_larger_than_a_part_is_a_part_of_its_own():
    survey = _survey({3: 100, 4: 100})

    assert survey.part_ranges(60) == [(300, 399, 100), (400, 499, 100)]


def test_parts_follow_id_order_whatever_order_the_buckets_came_in():
    # PostgreSQL's integer division puts ids -99..99 in bucket 0: ranges use the ids found.
    buckets = {
        0: Bucket(rows=3, checksum=0, first_id=-5, last_id=40),
        -1: Bucket(rows=2, checksum=0, first_id=-150, last_id=-120),
        1: Bucket(rows=4, checksum=0, first_id=100, last_id=180),
    }
    survey = Survey(buckets=buckets, max_last_updated=None, future_rows=0)

    assert survey.part_ranges(5) == [(-150, 40, 5), (100, 180, 4)]
    assert [count for *_, count in survey.part_ranges(1)] == [2, 3, 4]
