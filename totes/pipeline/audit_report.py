"""What an audit found: per table, counts by kind of difference and a few examples.

Memory stays bounded however much differs: every difference is counted, but only the
first ``max_examples`` per table are kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Kinds of difference, in report order, with what each means.
KINDS: dict[str, str] = {
    "missing": "in ToteSys, not in the warehouse",
    "differing": "in both, with different values",
    "unmarked_deletion": "in the warehouse, gone from ToteSys, and not in etl_deleted_row",
    "marked_but_present": "in etl_deleted_row, but still in ToteSys",
    "duplicate_version": "a fact version that repeats the version before it",
}
# Not a difference: a row that changed in ToteSys after what the warehouse has loaded
# (the next pipeline run delivers it).
PENDING = "pending"


@dataclass(frozen=True)
class Example:
    kind: str
    id: int | str
    column: str | None = None
    source: str | None = None  # ToteSys's value (or what it derives), as text
    warehouse: str | None = None  # the warehouse's value, as text

    def to_dict(self, *, with_values: bool = True) -> dict[str, Any]:
        found = {"kind": self.kind, "id": self.id, "column": self.column}
        if with_values:
            found.update(source=self.source, warehouse=self.warehouse)
        return found


@dataclass
class TableAudit:
    table: str
    max_examples: int = 5
    source_rows: int = 0
    warehouse_rows: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys([*KINDS, PENDING], 0))
    differing_columns: dict[str, int] = field(default_factory=dict)
    examples: list[Example] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, kind: str, *examples: Example) -> None:
        """Count one difference (or pending row) of ``kind``; keep its examples if room."""
        self.counts[kind] += 1
        for example in examples:
            if len(self.examples) < self.max_examples:
                self.examples.append(example)

    def add_differing_columns(self, columns: list[str]) -> None:
        for column in columns:
            self.differing_columns[column] = self.differing_columns.get(column, 0) + 1

    @property
    def differences(self) -> int:
        return sum(self.counts[kind] for kind in KINDS)

    def to_dict(self, *, with_values: bool = True) -> dict[str, Any]:
        return {
            "source_rows": self.source_rows,
            "warehouse_rows": self.warehouse_rows,
            "differences": self.differences,
            **self.counts,
            "differing_columns": dict(sorted(self.differing_columns.items())),
            "examples": [e.to_dict(with_values=with_values) for e in self.examples],
            "seconds": round(self.seconds, 3),
        }


@dataclass
class AuditReport:
    tables: list[TableAudit]
    # Source changes after this time (the newest loaded fact change, less the extract's
    # overlap) that the warehouse lacks count as pending, not as differences.
    loaded_until: str | None
    seconds: float = 0.0

    @property
    def differences(self) -> int:
        return sum(t.differences for t in self.tables)

    @property
    def equal(self) -> bool:
        return self.differences == 0

    def to_dict(self, *, with_values: bool = True) -> dict[str, Any]:
        return {
            "equal": self.equal,
            "differences": self.differences,
            "loaded_until": self.loaded_until,
            "seconds": round(self.seconds, 3),
            "by_table": {t.table: t.to_dict(with_values=with_values) for t in self.tables},
        }
