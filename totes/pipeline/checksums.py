"""A table's reconciliation checksums, held compactly: per id bucket, its rows and the sum
of its rows' 64-bit hashes, in three arrays of 64-bit integers (24 bytes a bucket, where a
dict of tuples took about 200: a large table has tens of thousands of buckets).

Sums are kept modulo 2**64 (as signed 64-bit values). That loses nothing for finding a
change: two different row hashes, both 64-bit, never differ by a multiple of 2**64, so a
bucket whose one row changed always gets another sum. Files written before hold the full
sum; it is reduced the same way when read, so they compare equal to today's.
"""

from __future__ import annotations

import json
from array import array
from collections.abc import Iterator
from itertools import islice
from typing import BinaryIO, Self

_BUCKETS_WRITTEN_AT_ONCE = 1_000
_MOD = 1 << 64
_HALF = 1 << 63


def _int64(total: int) -> int:
    """``total`` modulo 2**64, as a signed 64-bit value."""
    return (int(total) + _HALF) % _MOD - _HALF


class BucketChecksums:
    """bucket -> (rows, checksum), buckets added in ascending order."""

    def __init__(self) -> None:
        self._buckets = array("q")
        self._rows = array("q")
        self._sums = array("q")

    def add(self, bucket: int, rows: int, total: int) -> None:
        """The next bucket (greater than every one added so far)."""
        if self._buckets and bucket <= self._buckets[-1]:
            raise ValueError(f"bucket {bucket} after bucket {self._buckets[-1]}: not ascending")
        self._buckets.append(int(bucket))
        self._rows.append(int(rows))
        self._sums.append(_int64(total))

    @classmethod
    def of(cls, buckets: dict[int, tuple[int, int]]) -> Self:
        checksums = cls()
        for bucket in sorted(buckets):
            checksums.add(bucket, *buckets[bucket])
        return checksums

    def items(self) -> Iterator[tuple[int, tuple[int, int]]]:
        return zip(self._buckets, zip(self._rows, self._sums, strict=True), strict=True)

    def __len__(self) -> int:
        return len(self._buckets)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BucketChecksums):
            return NotImplemented
        return (self._buckets, self._rows, self._sums) == (
            other._buckets,
            other._rows,
            other._sums,
        )

    @property
    def rows(self) -> int:
        return sum(self._rows)

    def changed_since(self, before: BucketChecksums) -> list[int]:
        """Buckets whose rows or checksum differ from ``before`` (or that only one has),
        ascending: a walk over both sorted arrays."""
        changed: list[int] = []
        mine, theirs = self.items(), before.items()
        a, b = next(mine, None), next(theirs, None)
        while a is not None or b is not None:
            if b is None or (a is not None and a[0] < b[0]):
                changed.append(a[0])
                a = next(mine, None)
            elif a is None or b[0] < a[0]:
                changed.append(b[0])
                b = next(theirs, None)
            else:
                if a[1] != b[1]:
                    changed.append(a[0])
                a, b = next(mine, None), next(theirs, None)
        return changed

    def write_json(self, stream: BinaryIO, table: str, width: int) -> None:
        """As JSON into ``stream``, a slice of buckets at a time (a large table's whole text
        at once would take tens of MiB)."""
        stream.write(b'{"buckets": {')
        items, separator = self.items(), ""
        while chunk := list(islice(items, _BUCKETS_WRITTEN_AT_ONCE)):
            text = ", ".join(f'"{b}": [{n}, {s}]' for b, (n, s) in chunk)
            stream.write((separator + text).encode())
            separator = ", "
        stream.write(f'}}, "table": {json.dumps(table)}, "width": {width}}}'.encode())

    @classmethod
    def from_json(cls, raw: bytes) -> Self:
        buckets = json.loads(raw)["buckets"]
        return cls.of({int(b): (int(n), int(total)) for b, (n, total) in buckets.items()})
