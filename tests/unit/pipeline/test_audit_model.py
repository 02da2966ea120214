"""The audit's own statement of the warehouse stays in step with the schema, and its
bookkeeping (bucket runs, examples) is bounded."""

from __future__ import annotations

import pytest

from totes.pipeline.audit import _runs
from totes.pipeline.audit_model import (
    AUDIT_TABLES,
    AUDITED_TABLE_NAMES,
    TYPES,
    UnknownTableError,
    check_table_names,
)
from totes.pipeline.audit_report import Example, TableAudit
from totes.schema.warehouse import WAREHOUSE_TABLE_NAMES, warehouse_table


def test_every_warehouse_table_is_audited_in_load_order():
    assert AUDITED_TABLE_NAMES == WAREHOUSE_TABLE_NAMES


@pytest.mark.parametrize("audited", AUDIT_TABLES, ids=lambda t: t.name)
def test_the_audit_declares_each_table_as_the_schema_does(audited):
    # The audit cannot import the schema (polars, which its Lambda does not ship): this
    # keeps its declarations equal to it, column for column.
    table = warehouse_table(audited.name)
    assert (audited.kind, audited.key, audited.record_id) == (
        table.kind,
        table.key,
        table.record_id,
    )
    assert [(c.name, c.pg_type) for c in audited.columns] == [
        (c.name, c.pg_type) for c in table.columns
    ]
    assert {c.pg_type for c in audited.columns} <= TYPES


def test_table_names_are_checked_and_put_in_load_order():
    assert check_table_names(["fact_payment", "dim_date", "dim_staff"]) == (
        "dim_date",
        "dim_staff",
        "fact_payment",
    )
    with pytest.raises(UnknownTableError, match="'staff' is not an audited warehouse table"):
        check_table_names(["staff"])


@pytest.mark.parametrize(
    ("buckets", "longest", "runs"),
    [
        ([], 4, []),
        ([7], 4, [(7, 7)]),
        ([1, 2, 3, 7, 8, 10], 4, [(1, 3), (7, 8), (10, 10)]),
        ([0, 1, 2, 3, 4, 5], 4, [(0, 3), (4, 5)]),
        ([-2, -1, 0, 1], 16, [(-2, 1)]),
    ],
)
def test_adjacent_mismatching_buckets_are_fetched_together_up_to_a_limit(buckets, longest, runs):
    assert list(_runs(buckets, longest)) == runs


def test_every_difference_is_counted_but_only_a_few_kept():
    found = TableAudit("dim_design", max_examples=2)
    for i in range(5):
        found.add("differing", Example("differing", i, "file_location", "a", "b"))
    found.add("pending")

    assert found.differences == 5 and found.counts["pending"] == 1
    assert [e.id for e in found.examples] == [0, 1]
    assert found.to_dict(with_values=False)["examples"][0] == {
        "kind": "differing",
        "id": 0,
        "column": "file_location",
    }
