"""The audit on the embedded PostgreSQL: zero differences after a clean run, then each kind
of damage, in either database, found and named (table, id, column, both values)."""

from __future__ import annotations

from datetime import timedelta
from unittest.mock import ANY

import psycopg2
import pytest

from tests.support.oracle import differences
from tests.support.sql import execute, one, query
from totes.pipeline.audit import AuditError, run_audit
from totes.pipeline.audit_model import AUDITED_TABLE_NAMES, UnknownTableError
from totes.pipeline.extract import run_extract
from totes.pipeline.lake import Lake
from totes.pipeline.load import run_load
from totes.pipeline.registers import DELETION_REGISTER_DDL
from totes.pipeline.transform import run_transform
from totes.totesys.database import read_only_dsn


class Pipeline:
    """One ToteSys, one lake, one warehouse: run the three stages, audit, tamper."""

    def __init__(self, lake: Lake, totesys: str, warehouse: str):
        self.lake, self.totesys, self.warehouse = lake, totesys, warehouse
        self.reader = read_only_dsn(totesys, "t_reader")

    def run(self) -> None:
        extracted = run_extract(self.lake, self.reader)
        # The batch ids when the extract names them; else each stage takes what is pending.
        pending = extracted.get("pending_batch_ids")
        if pending == []:
            return
        transformed = run_transform(self.lake, pending)
        run_load(self.lake, self.warehouse, transformed["batch_ids"] if pending else None)

    def audit(self, **options):
        return run_audit(self.reader, self.warehouse, **options)

    def later(self, minutes: int = 1) -> str:
        """A last_updated after the newest one in ToteSys (the business's own clock)."""
        latest = one(self.totesys, "SELECT max(last_updated) FROM payment")
        return (latest + timedelta(minutes=minutes)).isoformat(sep=" ")

    def pay(self, payment_id: int, at: str) -> None:
        """The 07:55 job: the payment is marked paid and its last_updated bumped."""
        execute(
            self.totesys,
            "UPDATE payment SET paid = true, last_updated = %s WHERE payment_id = %s",
            (at, payment_id),
        )

    def unpaid(self, offset: int = 0) -> int:
        return one(
            self.totesys,
            "SELECT payment_id FROM payment WHERE NOT paid ORDER BY payment_id OFFSET %s LIMIT 1",
            (offset,),
        )


@pytest.fixture
def pipeline(tmp_path, totesys_dsn, warehouse_dsn) -> Pipeline:
    loaded = Pipeline(Lake.from_uri(str(tmp_path / "lake")), totesys_dsn, warehouse_dsn)
    loaded.run()
    return loaded


def counts(report, table: str) -> dict:
    found = report.to_dict()["by_table"][table]
    return {
        kind: n
        for kind, n in found.items()
        if kind
        in {"missing", "differing", "unmarked_deletion", "marked_but_present",
            "duplicate_version", "pending"}
        and n
    }  # fmt: skip


def examples(report, table: str) -> list[tuple]:
    found = report.to_dict()["by_table"][table]["examples"]
    return [(e["kind"], e["id"], e["column"], e["source"], e["warehouse"]) for e in found]


def only_differences(report) -> dict[str, int]:
    return {t.table: t.differences for t in report.tables if t.differences}


def test_after_a_clean_run_there_are_no_differences(pipeline):
    report = pipeline.audit()

    assert report.equal and report.differences == 0
    assert [t.table for t in report.tables] == list(AUDITED_TABLE_NAMES)
    for table in report.tables:
        assert table.source_rows > 0, table.table
        assert table.counts["pending"] == 0
        if table.table != "dim_date":  # dim_date: every referenced date, and possibly more
            assert table.source_rows == table.warehouse_rows, table.table
    # The tests' own oracle, an independent statement of the same thing, agrees.
    assert differences(pipeline.totesys, pipeline.warehouse) == {}


def test_a_changed_dimension_value_is_named_with_both_values(pipeline):
    design = one(pipeline.totesys, "SELECT min(design_id) FROM design")
    before = one(
        pipeline.totesys, "SELECT file_location FROM design WHERE design_id = %s", (design,)
    )
    execute(
        pipeline.warehouse,
        "UPDATE dim_design SET file_location = '/tampered' WHERE design_id = %s",
        (design,),
    )

    report = pipeline.audit()

    assert only_differences(report) == {"dim_design": 1}
    assert counts(report, "dim_design") == {"differing": 1}
    assert examples(report, "dim_design") == [
        ("differing", design, "file_location", before, "/tampered")
    ]
    assert report.tables[AUDITED_TABLE_NAMES.index("dim_design")].differing_columns == {
        "file_location": 1
    }


@pytest.mark.parametrize(
    ("table", "pick", "tamper", "column", "source", "warehouse"),
    [
        # NULL and '' are different values.
        (
            "dim_location",
            "SELECT min(address_id) FROM address WHERE address_line_2 IS NULL",
            "UPDATE dim_location SET address_line_2 = '' WHERE location_id = %s",
            "address_line_2",
            None,
            "",
        ),
        # A department's values must be on every staff row.
        (
            "dim_staff",
            "SELECT min(staff_id) FROM staff JOIN department USING (department_id)"
            " WHERE department_name <> 'Sales'",
            "UPDATE dim_staff SET department_name = 'Sales' WHERE staff_id = %s",
            "department_name",
            ANY,
            "Sales",
        ),
        # ISO 4217 names come from totes/schema/currencies.py.
        (
            "dim_currency",
            "SELECT currency_id FROM currency WHERE currency_code = 'GBP'",
            "UPDATE dim_currency SET currency_name = 'Pound' WHERE currency_id = %s",
            "currency_name",
            "Pound Sterling",
            "Pound",
        ),
        (
            "dim_counterparty",
            "SELECT min(counterparty_id) FROM counterparty",
            "UPDATE dim_counterparty SET counterparty_legal_phone_number = '0'"
            " WHERE counterparty_id = %s",
            "counterparty_legal_phone_number",
            ANY,
            "0",
        ),
        (
            "dim_transaction",
            "SELECT min(transaction_id) FROM transaction WHERE sales_order_id IS NOT NULL",
            "UPDATE dim_transaction SET sales_order_id = NULL WHERE transaction_id = %s",
            "sales_order_id",
            ANY,
            None,
        ),
        # One millisecond off, in a fact's current version.
        (
            "fact_payment",
            "SELECT min(payment_id) FROM payment",
            "UPDATE fact_payment SET created_time = created_time + interval '1 millisecond'"
            " WHERE payment_id = %s",
            "created_time",
            ANY,
            ANY,
        ),
        (
            "fact_purchase_order",
            "SELECT min(purchase_order_id) FROM purchase_order",
            "UPDATE fact_purchase_order SET item_unit_price = item_unit_price + 0.01"
            " WHERE purchase_order_id = %s",
            "item_unit_price",
            ANY,
            ANY,
        ),
        (
            "dim_date",
            "SELECT min(created_at)::date FROM sales_order",
            "UPDATE dim_date SET day_name = 'Funday' WHERE date_id = %s",
            "day_name",
            ANY,
            "Funday",
        ),
    ],
)
def test_every_kind_of_value_is_compared_exactly(
    pipeline, table, pick, tamper, column, source, warehouse
):
    id_ = one(pipeline.totesys, pick)
    execute(pipeline.warehouse, tamper, (id_,))

    report = pipeline.audit()

    assert only_differences(report) == {table: 1}
    ((kind, found_id, named, have, want),) = examples(report, table)
    assert (kind, found_id, named) == (
        "differing",
        str(id_) if table == "dim_date" else id_,
        column,
    )
    assert (have, want) == (source, warehouse)
    assert have != want


def test_a_silent_edit_in_totesys_not_yet_extracted_is_found(pipeline):
    ((order, staff),) = query(
        pipeline.totesys,
        "SELECT sales_order_id, staff_id FROM sales_order ORDER BY sales_order_id LIMIT 1",
    )
    other = one(pipeline.totesys, "SELECT min(staff_id) FROM staff WHERE staff_id <> %s", (staff,))
    # ToteSys edits some orders without touching last_updated; a later date for dim_date too.
    execute(
        pipeline.totesys,
        "UPDATE sales_order SET staff_id = %s, agreed_delivery_date = '2031-02-03'"
        " WHERE sales_order_id = %s",
        (other, order),
    )

    report = pipeline.audit()

    assert only_differences(report) == {"fact_sales_order": 1, "dim_date": 1}
    assert sorted(examples(report, "fact_sales_order")) == [
        ("differing", order, "agreed_delivery_date", "2031-02-03", ANY),
        ("differing", order, "sales_staff_id", str(other), str(staff)),
    ]
    assert examples(report, "dim_date") == [("missing", "2031-02-03", None, "referenced", "absent")]


def test_a_lost_newest_version_leaves_a_stale_current_row(pipeline):
    payment = pipeline.unpaid()
    pipeline.pay(payment, pipeline.later(minutes=1))
    pipeline.run()
    # The business moves on, so the warehouse has loaded well past that change.
    pipeline.pay(pipeline.unpaid(), pipeline.later(minutes=60))
    pipeline.run()
    assert pipeline.audit().equal
    execute(
        pipeline.warehouse,
        "DELETE FROM fact_payment WHERE payment_id = %s AND paid",
        (payment,),
    )

    report = pipeline.audit()

    assert only_differences(report) == {"fact_payment": 1}
    found = report.tables[AUDITED_TABLE_NAMES.index("fact_payment")]
    # The stale row is the unpaid version: paid differs, and when it was last updated.
    assert {"paid", "last_updated_time"} <= set(found.differing_columns)
    assert set(found.differing_columns) <= {"paid", "last_updated_date", "last_updated_time"}
    assert ("differing", payment, "paid", "true", "false") in examples(report, "fact_payment")


def test_the_current_version_is_the_latest_change_not_the_latest_record(pipeline):
    payment = pipeline.unpaid()
    pipeline.pay(payment, pipeline.later(minutes=1))
    pipeline.run()
    # In one batch, the old version (unpaid, a minute earlier) with the higher record id:
    # possible only without the (id, batch) index, but the audit trusts no index.
    execute(pipeline.warehouse, "DROP INDEX fact_payment_id_batch_key")
    execute(
        pipeline.warehouse,
        "INSERT INTO fact_payment (payment_id, created_date, created_time, last_updated_date,"
        " last_updated_time, transaction_id, counterparty_id, payment_amount, currency_id,"
        " payment_type_id, paid, payment_date, batch_id)"
        " SELECT payment_id, created_date, created_time, last_updated_date,"
        " last_updated_time - interval '1 minute', transaction_id, counterparty_id,"
        " payment_amount, currency_id, payment_type_id, false, payment_date, batch_id"
        " FROM fact_payment WHERE payment_id = %s AND NOT paid",
        (payment,),
    )

    assert pipeline.audit().equal


def test_a_duplicated_fact_version_is_found(pipeline):
    order = one(pipeline.totesys, "SELECT min(sales_order_id) FROM sales_order")
    columns = (
        "sales_order_id, created_date, created_time, last_updated_date, last_updated_time,"
        " sales_staff_id, counterparty_id, units_sold, unit_price, currency_id, design_id,"
        " agreed_payment_date, agreed_delivery_date, agreed_delivery_location_id, batch_id"
    )
    # The same business content twice: possible only without the version index.
    execute(pipeline.warehouse, "DROP INDEX fact_sales_order_id_batch_key")
    execute(
        pipeline.warehouse,
        f"INSERT INTO fact_sales_order ({columns})"
        f" SELECT {columns} FROM fact_sales_order WHERE sales_order_id = %s",
        (order,),
    )

    report = pipeline.audit()

    assert only_differences(report) == {"fact_sales_order": 1}
    assert counts(report, "fact_sales_order") == {"duplicate_version": 1}
    ((kind, found, _, _, copies),) = examples(report, "fact_sales_order")
    assert (kind, found) == ("duplicate_version", order) and copies.startswith("2 copies")


def test_a_deleted_source_row_must_be_in_the_register(pipeline):
    payment = one(pipeline.totesys, "SELECT max(payment_id) FROM payment")
    execute(pipeline.totesys, "DELETE FROM payment WHERE payment_id = %s", (payment,))

    report = pipeline.audit()

    assert only_differences(report) == {"fact_payment": 1}
    assert examples(report, "fact_payment") == [
        ("unmarked_deletion", payment, None, "absent", "present")
    ]

    with_register(pipeline.warehouse, ("fact_payment", payment))
    assert pipeline.audit().equal


def test_a_register_entry_for_a_row_that_still_exists_is_found(pipeline):
    order = one(pipeline.totesys, "SELECT min(purchase_order_id) FROM purchase_order")
    with_register(pipeline.warehouse, ("fact_purchase_order", order))

    report = pipeline.audit()

    assert only_differences(report) == {"fact_purchase_order": 1}
    assert examples(report, "fact_purchase_order") == [
        ("marked_but_present", order, None, "present", "deleted (batch b1)")
    ]


def test_a_row_missing_from_the_warehouse_is_found(pipeline):
    order = one(pipeline.totesys, "SELECT min(purchase_order_id) FROM purchase_order")
    execute(
        pipeline.warehouse, "DELETE FROM fact_purchase_order WHERE purchase_order_id = %s", (order,)
    )

    report = pipeline.audit()

    assert only_differences(report) == {"fact_purchase_order": 1}
    assert examples(report, "fact_purchase_order") == [
        ("missing", order, None, "present", "absent")
    ]


def test_values_the_transform_sets_aside_are_differences_not_an_audit_failure(pipeline):
    """Text dates that are no day (or that only PostgreSQL would read), a BC timestamp: the
    transform sets such rows aside, so the warehouse keeps their older versions."""
    orders = [
        r[0] for r in query(pipeline.totesys, "SELECT sales_order_id FROM sales_order LIMIT 3")
    ]
    for order, text in zip(orders, ["2024-02-30", "0000-01-01", "2024-1-5"], strict=True):
        execute(
            pipeline.totesys,
            "UPDATE sales_order SET agreed_delivery_date = %s, last_updated = %s"
            " WHERE sales_order_id = %s",
            (text, pipeline.later(), order),
        )
    purchase = one(pipeline.totesys, "SELECT min(purchase_order_id) FROM purchase_order")
    execute(
        pipeline.totesys,
        "UPDATE purchase_order SET created_at = '0050-01-01 00:00:00 BC', last_updated = %s"
        " WHERE purchase_order_id = %s",
        (pipeline.later(), purchase),
    )
    pipeline.run()

    report = pipeline.audit()

    # Newer than anything loaded: pending, until later changes load (then differences).
    assert only_differences(report) == {}
    assert counts(report, "fact_sales_order") == {"pending": 3}
    assert counts(report, "fact_purchase_order") == {"pending": 1}
    assert counts(report, "dim_date") == {"pending": 1}  # 0050-01-01 BC


def test_a_change_the_pipeline_has_not_loaded_yet_is_pending_not_a_difference(pipeline):
    pipeline.pay(pipeline.unpaid(), pipeline.later(minutes=1))
    execute(
        pipeline.totesys,
        "UPDATE design SET design_name = 'Velvet', last_updated = %s WHERE design_id ="
        " (SELECT min(design_id) FROM design)",
        (pipeline.later(minutes=2),),
    )

    report = pipeline.audit()

    assert report.equal
    assert counts(report, "fact_payment") == {"pending": 1}
    assert counts(report, "dim_design") == {"pending": 1}
    pipeline.run()
    assert [t.counts["pending"] for t in pipeline.audit().tables] == [0] * len(report.tables)


def test_a_row_dated_in_the_future_does_not_turn_pending_changes_into_differences(pipeline):
    execute(
        pipeline.totesys,
        "UPDATE sales_order SET last_updated = now() AT TIME ZONE 'UTC' + interval '30 days'"
        " WHERE sales_order_id = (SELECT min(sales_order_id) FROM sales_order)",
    )
    pipeline.run()  # delivered, and reported as a future row
    # The business goes on, by the source's clock; the pipeline has not run since.
    execute(
        pipeline.totesys,
        "UPDATE payment SET paid = true, last_updated = now() AT TIME ZONE 'UTC'"
        " WHERE payment_id = %s",
        (pipeline.unpaid(),),
    )

    report = pipeline.audit()

    assert report.equal
    assert counts(report, "fact_payment") == {"pending": 1}


def test_small_buckets_and_many_differences_give_the_same_counts(pipeline):
    execute(pipeline.warehouse, "UPDATE dim_transaction SET purchase_order_id = NULL")
    purchases = one(
        pipeline.totesys, "SELECT count(*) FROM transaction WHERE purchase_order_id IS NOT NULL"
    )

    for bits in (0, 3, 10, 20):
        report = pipeline.audit(tables=["dim_transaction"], bucket_bits=bits, max_examples=2)
        assert only_differences(report) == {"dim_transaction": purchases}, bits
        (found,) = report.tables
        assert found.differing_columns == {"purchase_order_id": purchases}
        assert len(found.examples) == 2


def test_tables_are_audited_in_load_order_and_checked_against_the_allow_list(pipeline):
    report = pipeline.audit(tables=["fact_payment", "dim_date"])
    assert [t.table for t in report.tables] == ["dim_date", "fact_payment"]
    with pytest.raises(UnknownTableError, match="'payment; DROP TABLE x' is not an audited"):
        pipeline.audit(tables=["payment; DROP TABLE x"])


def test_a_warehouse_never_loaded_is_an_error_naming_the_tables(totesys_dsn, empty_db):
    with pytest.raises(
        AuditError,
        match=r"the warehouse has no table dim_counterparty, .*, fact_sales_order: has the",
    ):
        run_audit(totesys_dsn, empty_db)


def test_the_audit_needs_only_select_on_both_databases(pipeline):
    from psycopg2.extensions import make_dsn

    execute(
        pipeline.warehouse,
        "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 't_wh_reader')"
        " THEN CREATE ROLE t_wh_reader LOGIN; END IF; END $$",
    )
    with_register(pipeline.warehouse)
    execute(pipeline.warehouse, "GRANT SELECT ON ALL TABLES IN SCHEMA public TO t_wh_reader")
    warehouse_reader = make_dsn(pipeline.warehouse, user="t_wh_reader")

    report = run_audit(pipeline.reader, warehouse_reader)

    assert report.equal


def with_register(dsn: str, *entries: tuple[str, int]) -> None:
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(DELETION_REGISTER_DDL)
            for table, id_ in entries:
                cur.execute(
                    "INSERT INTO etl_deleted_row (table_name, id, batch_id) VALUES (%s, %s, 'b1')",
                    (table, id_),
                )
    finally:
        conn.close()
