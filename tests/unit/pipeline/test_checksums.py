"""Reconciliation checksums held in arrays: what changed, files of before, 64-bit sums."""

from __future__ import annotations

import io
import json

import pytest

from totes.pipeline.checksums import BucketChecksums


def test_changed_buckets_are_those_that_differ_or_that_only_one_side_has():
    before = BucketChecksums.of({1: (100, 5), 2: (100, 6), 3: (100, 7), 7: (2, 1)})
    now = BucketChecksums.of({1: (100, 5), 2: (100, 9), 3: (99, 7), 4: (1, 1), 8: (3, 3)})

    assert now.changed_since(before) == [2, 3, 4, 7, 8]
    assert now.changed_since(now) == []
    assert now.changed_since(BucketChecksums()) == [1, 2, 3, 4, 8]
    assert BucketChecksums().changed_since(before) == [1, 2, 3, 7]


def test_a_file_of_before_with_full_sums_compares_equal_to_the_same_sums_kept_in_64_bits():
    full = 100 * (2**63 - 1)  # a bucket of 100 rows with the largest hash: beyond 64 bits
    old_file = json.dumps({"table": "payment", "width": 100, "buckets": {"5": [100, full]}})
    now = BucketChecksums()
    now.add(5, 100, full)

    assert BucketChecksums.from_json(old_file.encode()) == now
    assert now.changed_since(BucketChecksums.from_json(old_file.encode())) == []
    assert BucketChecksums.from_json(_json(now)) == now
    (bucket, (rows, total)), *_ = now.items()
    assert (bucket, rows) == (5, 100) and -(2**63) <= total < 2**63


def test_one_row_changing_always_changes_its_bucket():
    # Two different 64-bit hashes never differ by a multiple of 2**64.
    others = 37 * (2**63 - 5)
    before, after = BucketChecksums(), BucketChecksums()
    before.add(0, 38, others + (2**63 - 1))
    after.add(0, 38, others + -(2**63))
    assert after.changed_since(before) == [0]


def test_buckets_must_come_in_ascending_order():
    checksums = BucketChecksums()
    checksums.add(3, 1, 1)
    with pytest.raises(ValueError, match="not ascending"):
        checksums.add(3, 1, 1)


def _json(checksums: BucketChecksums, table: str = "payment") -> bytes:
    stream = io.BytesIO()
    checksums.write_json(stream, table, 100)
    return stream.getvalue()


@pytest.mark.parametrize("buckets", [0, 1, 10_000, 25_001])
def test_the_file_written_slice_by_slice_is_one_json_document(buckets):
    checksums = BucketChecksums.of({b * 3: (b % 100 + 1, b * 7 - 5) for b in range(buckets)})
    document = json.loads(_json(checksums, 'pay"ment'))
    assert document["table"] == 'pay"ment' and document["width"] == 100
    assert len(document["buckets"]) == buckets
    assert BucketChecksums.from_json(_json(checksums)) == checksums
