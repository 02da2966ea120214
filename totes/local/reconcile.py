"""``totes reconcile``: compare the warehouse with ToteSys and show every difference.

Exit status: 0 when they are equal, 1 when there are differences, 2 when the comparison
itself failed (a database unreachable, a table missing ...).
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from totes.pipeline.audit import run_audit
from totes.pipeline.audit_model import AUDITED_TABLE_NAMES
from totes.pipeline.audit_report import KINDS, PENDING, AuditReport, TableAudit
from totes.pipeline.observability import SERVICE

EQUAL, DIFFERENT, FAILED = 0, 1, 2

# Column headings of the summary, per kind of difference.
_HEADINGS = {
    "missing": "missing",
    "differing": "differing",
    "unmarked_deletion": "unmarked",
    "marked_but_present": "marked",
    "duplicate_version": "duplicate",
    PENDING: "pending",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--warehouse-dsn", help="warehouse database; default: the embedded one")
    parser.add_argument(
        "--table",
        action="append",
        choices=AUDITED_TABLE_NAMES,
        metavar="TABLE",
        help="compare only this warehouse table (repeat for more); default: all 11",
    )
    parser.add_argument(
        "--examples", type=int, default=5, help="differences shown per table (default 5)"
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def command(
    args: argparse.Namespace,
    *,
    source_dsn: Callable[[], str],
    warehouse_dsn: Callable[[], str],
    say: Callable[[str], None],
) -> int:
    """Run the comparison and print it; the exit status says equal, different or failed."""
    try:
        with _log_level(logging.INFO if args.verbose else logging.WARNING):
            report = run_audit(
                source_dsn(),
                warehouse_dsn(),
                tables=args.table,
                max_examples=max(args.examples, 0),
                progress=say,
            )
    except Exception as exc:
        if args.verbose:
            raise
        say(f"error: {type(exc).__name__}: {exc}")
        say("(run again with --verbose for the full trace)")
        return FAILED
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        print(format_report(report))
    return EQUAL if report.equal else DIFFERENT


@contextmanager
def _log_level(level: int) -> Iterator[None]:
    """The pipeline's JSON logs (stderr) only with --verbose: progress lines say enough."""
    service_logger = logging.getLogger(SERVICE)
    old_level = service_logger.level
    service_logger.setLevel(level)
    try:
        yield
    finally:
        service_logger.setLevel(old_level)


def format_report(report: AuditReport) -> str:
    """The summary table, then a few examples per table with differences, then a legend."""
    different = [t for t in report.tables if t.differences]
    if report.equal:
        headline = "The warehouse matches ToteSys: no differences"
    else:
        headline = (
            f"The warehouse differs from ToteSys: {_count(report.differences, 'difference')}"
            f" in {len(different)} of {len(report.tables)} tables"
        )
    lines = [f"{headline} ({report.seconds:.1f} s)."]
    if report.loaded_until:
        lines.append(
            f"Rows changed in ToteSys after {report.loaded_until} that the warehouse lacks"
            " count as pending (the next run loads them), not as differences."
        )
    lines += ["", *_summary(report)]
    for table in different:
        lines += ["", f"{table.table}: {_count(table.differences, 'difference')}"]
        if table.differing_columns:
            columns = ", ".join(f"{c} {n:,}" for c, n in sorted(table.differing_columns.items()))
            lines.append(f"  differing columns: {columns}")
        lines += [f"  {line}" for line in _examples(table)]
        shown = len(table.examples)
        if shown < table.differences:
            lines.append(f"  ... (first {shown} shown; --examples N or --json for more)")
    kinds = {kind for t in report.tables for kind in KINDS if t.counts[kind]}
    if kinds:
        lines += ["", "Kinds:"] + [f"  {k}: {text}" for k, text in KINDS.items() if k in kinds]
    return "\n".join(lines)


def _summary(report: AuditReport) -> list[str]:
    width = max(len(t.table) for t in report.tables)
    headings = ["ToteSys", "warehouse", *_HEADINGS.values()]
    rows = [
        [t.table, t.source_rows, t.warehouse_rows, *(t.counts[k] for k in _HEADINGS)]
        for t in report.tables
    ]
    totals = [sum(row[i] for row in rows) for i in range(1, len(headings) + 1)]
    lines = [f"{'table':<{width}}" + "".join(f"  {h:>9}" for h in headings)]
    for row in [*rows, ["total", *totals]]:
        lines.append(f"{row[0]:<{width}}" + "".join(f"  {n:>9,}" for n in row[1:]))
    return lines


def _examples(table: TableAudit) -> list[str]:
    lines = []
    for example in table.examples:
        where = f"id {example.id}" + (f", {example.column}" if example.column else "")
        # Differing rows show both values; the other kinds say what is where.
        show = _show if example.kind == "differing" else str
        lines.append(
            f"{example.kind:<19} {where}: ToteSys {show(example.source)},"
            f" warehouse {show(example.warehouse)}"
        )
    return lines


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


def _show(value: str | None) -> str:
    """NULL, or the value quoted (so that '' and trailing spaces are visible)."""
    return "NULL" if value is None else repr(value)
