"""``totes status`` as text: the sections in the order an on-call person reads them."""

from __future__ import annotations

import textwrap
from datetime import datetime

from totes.local.status import Execution, Status

RUNBOOKS = "docs/runbooks.md"


def _when(iso: str | None) -> str:
    if not iso:
        return "-"
    return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M:%S")


def _span(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _rows(counts: dict[str, int]) -> str:
    return ", ".join(f"{t} {n:,}" for t, n in sorted(counts.items(), key=lambda i: -i[1])) or "-"


def _freshness(status: Status) -> list[str]:
    f = status.freshness
    promise = _span(f.promise_seconds)
    if f.last_success_at is None:
        return [f"Freshness: BROKEN: no successful run recorded (promise: {promise})"]
    verdict = "within the promise" if f.kept else f"BROKEN (promise: {promise})"
    return [
        f"Freshness: last successful run {_when(f.last_success_at)} UTC, "
        f"{_span(f.age_seconds)} ago: {verdict}"
    ]


def _executions(executions: list[Execution]) -> list[str]:
    if not executions:
        return ["Recent executions: none recorded"]
    lines = [
        "Recent executions (newest first)",
        f"  {'started (UTC)':<19}  {'result':<9}  {'duration':>8}  {'batch':<23}  "
        f"{'extracted':>9}  {'loaded':>9}",
    ]
    for e in executions:
        lines.append(
            f"  {_when(e.started_at):<19}  {e.status:<9}  {_span(e.duration_seconds):>8}  "
            f"{e.batch_id or '(nothing new)':<23}  {sum(e.extracted.values()):>9,}  "
            f"{sum(e.loaded.values()):>9,}"
        )
        if e.error:
            lines.append(f"      {e.error}")
    latest = next((e for e in executions if e.extracted or e.loaded), None)
    if latest:
        lines.append(f"  Rows per table of {latest.name}:")
        for label, counts in (("extracted", latest.extracted), ("loaded", latest.loaded)):
            lines += textwrap.wrap(
                _rows(counts),
                width=96,
                initial_indent=f"    {label + ':':<11}",
                subsequent_indent=" " * 15,
            )
    return lines


def _tables(status: Status) -> list[str]:
    if not status.tables:
        return []
    width = max(len(t.table) for t in status.tables)
    lines = [
        "Tables: watermark (latest manifest) and lag behind ToteSys",
        f"  {'table':<{width}}  {'watermark':<23}  {'ToteSys latest':<23}  lag",
    ]
    for t in status.tables:
        lag = _span(t.lag_seconds) if t.lag_seconds else "up to date"
        if t.source_latest is None:
            lag = "-"
        elif t.watermark is None:
            lag = "never extracted"
        lines.append(
            f"  {t.table:<{width}}  {(t.watermark or '-').replace('T', ' '):<23}  "
            f"{(t.source_latest or '-').replace('T', ' '):<23}  {lag}"
        )
    return lines


def _pending(status: Status) -> list[str]:
    if not status.pending_known:
        lines = ["Pending batches: UNKNOWN (the lake or the warehouse could not be read: below)"]
        if status.pending:
            lines.append(f"  at least these {len(status.pending)}, not transformed yet:")
            lines += [f"  {b.batch_id}  {b.stage}" for b in status.pending]
        return lines
    if not status.pending:
        return ["Pending batches: none (the warehouse holds every batch in the lake)"]
    lines = [f"Pending batches (in the lake, not in the warehouse): {len(status.pending)}"]
    lines += [f"  {b.batch_id}  {b.stage}" for b in status.pending]
    lines.append(
        "  The next run delivers them; if one keeps failing, see "
        f"{RUNBOOKS}#skip-or-quarantine-a-batch"
    )
    return lines


def _waiting(status: Status) -> list[str]:
    if not status.waiting:
        return []
    lines = ["Fact rows waiting for a dimension row (etl_waiting_row):"]
    lines += [f"  {w.table}  {w.rows:,}  since {_when(w.oldest_since)} UTC" for w in status.waiting]
    lines.append(
        "  They load with the batch that brings their dimension row. One that never comes"
        " was set aside (the run's warnings named it) or is missing in ToteSys."
    )
    return lines


def _held_back(status: Status) -> list[str]:
    # Quarantined and skipped batches (totes.local.status.held_back_batches).
    if not status.held_back:
        return []
    lines = [f"Skipped batches, and batches with rows set aside: {len(status.held_back)}"]
    lines += [f"  {b.batch_id}  {b.state}  {b.reason or ''}".rstrip() for b in status.held_back]
    return lines


def _alerts(status: Status) -> list[str]:
    lines = []
    if status.alarms_firing:
        lines += ["Alarms firing now:"] + [f"  {name}" for name in status.alarms_firing]
    alert = status.last_alert
    if alert is None:
        lines.append("Last alert: none recorded")
    else:
        lines += [
            f"Last alert: {_when(alert.at)} UTC, execution {alert.execution}",
            f"  Subject: {alert.subject}",
        ]
    return lines


def format_status(status: Status) -> str:
    """The readable report; ``--json`` prints ``Status.to_json()`` instead."""
    sections = [
        [f"Terrific Totes status ({status.mode}), checked {_when(status.checked_at)} UTC"],
        _freshness(status),
        _executions(status.executions),
        _tables(status),
        _pending(status),
        _waiting(status),
        _held_back(status),
        _alerts(status),
    ]
    if status.notes:
        sections.append(["Could not read:"] + [f"  {note}" for note in status.notes])
    return "\n\n".join("\n".join(lines) for lines in sections if lines)
