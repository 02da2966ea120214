"""A seeded, bounded, reproducible soak: the business moves on (orders, the 07:55 paid job,
ToteSys's silent edits), extra silent edits and deletions, and runs of the real state
machine with random injected failures. At the end the warehouse equals ToteSys, and each
fact's history is exactly the sequence of versions the source went through at the moments
the pipeline read it.

``make test`` runs a short soak; ``make soak`` a long one (TOTES_SOAK_CYCLES, _SEED,
_PART_ROWS).
"""

from __future__ import annotations

import dataclasses
import os
import random
from collections import Counter

from tests.support.oracle import CURRENT_STATE_FROM_SOURCE, PUBLISHED_COLUMNS, differences, rows
from tests.support.sql import execute, one
from totes.local.runner import RunSettings, execute_pipeline
from totes.pipeline.audit import run_audit
from totes.totesys.simulate import simulate

CYCLES = int(os.environ.get("TOTES_SOAK_CYCLES", "6"))
SEED = int(os.environ.get("TOTES_SOAK_SEED", "2026"))
# Small parts, so that big runs (the first, long catch-ups) take the fan-out (both Maps),
# faults included, and small ones the short path.
PART_ROWS = os.environ.get("TOTES_SOAK_PART_ROWS", "60")
FACTS = ("fact_sales_order", "fact_purchase_order", "fact_payment")
FAULTS = (None, None, "extract", "transform", "load")


def _silent_edit(dsn: str, rng: random.Random) -> str:
    """An edit ToteSys makes without touching last_updated."""
    table, column, value = rng.choice(
        [
            ("sales_order", "design_id", "(SELECT min(design_id) FROM design)"),
            ("sales_order", "agreed_delivery_date", "'2031-01-01'"),
            ("purchase_order", "item_code", "'SOAK' || purchase_order_id"),
            ("design", "file_location", "'/soak'"),
        ]
    )
    pk = f"{table}_id"
    row = one(dsn, f"SELECT {pk} FROM {table} ORDER BY random() LIMIT 1")
    execute(dsn, f"UPDATE {table} SET {column} = {value} WHERE {pk} = %s", (row,))
    return f"silent edit {table}.{column}"


def _delete_a_payment(dsn: str, rng: random.Random) -> str:
    payment = one(dsn, "SELECT payment_id FROM payment ORDER BY random() LIMIT 1")
    execute(dsn, "DELETE FROM payment WHERE payment_id = %s", (payment,))
    return "deletion"


def test_soak_ends_equal_with_the_whole_history(totesys_dsn, warehouse_dsn, tmp_path) -> None:
    rng = random.Random(SEED)
    execute(totesys_dsn, "SELECT setseed(%s)", (rng.random(),))
    settings = RunSettings(
        source_dsn=totesys_dsn,
        warehouse_dsn=warehouse_dsn,
        lake=str(tmp_path / "lake"),
        retry_interval_seconds=1,
        stage_settings={"PART_ROWS": PART_ROWS},
    )
    history: dict[str, set] = {fact: set() for fact in FACTS}
    events: Counter[str] = Counter()

    def read_by_pipeline(fault: str | None) -> None:
        """Run once; remember what the source held if the extract read it."""
        seen = {fact: rows(totesys_dsn, CURRENT_STATE_FROM_SOURCE[fact]) for fact in FACTS}
        report = execute_pipeline(dataclasses.replace(settings, fail_at=fault))
        assert report.status == ("FAILED" if fault else "SUCCEEDED"), report
        if fault != "extract":
            for fact in FACTS:
                history[fact] |= seen[fact]

    read_by_pipeline(None)
    for cycle in range(CYCLES):
        simulate(totesys_dsn, minutes=rng.randint(60, 36 * 60), seed=SEED + cycle)
        for _ in range(rng.randint(0, 3)):
            events[_silent_edit(totesys_dsn, rng)] += 1
        if rng.random() < 0.3:
            events[_delete_a_payment(totesys_dsn, rng)] += 1
        fault = rng.choice(FAULTS)
        events[f"fault at {fault}" if fault else "clean run"] += 1
        read_by_pipeline(fault)
    read_by_pipeline(None)  # heals whatever the last fault left pending

    print(f"soak: {CYCLES} cycles, seed {SEED}: {dict(sorted(events.items()))}")
    assert differences(totesys_dsn, warehouse_dsn) == {}
    assert run_audit(totesys_dsn, warehouse_dsn).differences == 0  # `totes reconcile`
    for fact in FACTS:
        versions = rows(warehouse_dsn, f"SELECT {PUBLISHED_COLUMNS[fact]} FROM {fact}")
        assert versions == history[fact], fact
    assert one(warehouse_dsn, "SELECT count(*) FROM etl_waiting_row") == 0
