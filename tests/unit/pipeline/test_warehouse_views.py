"""The views' SQL text, built from the schema (the integration tests run it)."""

from __future__ import annotations

import dataclasses

import pytest

from totes.pipeline.warehouse_views import VIEWS, current_fact_view
from totes.schema.warehouse import FACTS, warehouse_table


def test_one_current_view_per_fact_ordered_by_batch_then_stamp_then_record():
    by_name = {v.name: v for v in VIEWS}
    for fact in FACTS:
        body = by_name[f"{fact.name}_current"].body
        assert (
            f"ORDER BY f.{fact.key}, f.batch_id DESC, f.last_updated_date DESC,"
            f" f.last_updated_time DESC, f.{fact.record_id} DESC"
        ) in body


def test_changes_compare_every_business_column_but_the_id_and_the_stamps():
    changes = {v.name: v for v in VIEWS}["report_fact_changes"].body
    stamps = {"created_date", "created_time", "last_updated_date", "last_updated_time"}
    for fact in FACTS:
        for column in fact.column_names:
            compared = f"('{column}', v.{column}_before, v.{column})" in changes
            assert compared == (column != fact.key and column not in stamps), column


def test_a_name_that_is_not_a_plain_identifier_is_refused():
    sales = warehouse_table("fact_sales_order")
    with pytest.raises(ValueError, match="plain SQL identifier"):
        current_fact_view(dataclasses.replace(sales, key='sales_order_id"; DROP TABLE x; --'))


def test_the_comment_changes_with_the_definition():
    view = VIEWS[0]
    changed = dataclasses.replace(view, body=view.body + " LIMIT 1")
    assert view.comment != changed.comment
    assert view.comment.startswith(view.description)
