"""``totes status``: what a person on call wants to know first, in one screen.

- recent executions: when, which batch, rows per table, how long, and how each ended;
- each ToteSys table's watermark (latest ingestion manifest) and its lag behind ToteSys
  (the source's ``max(last_updated)``);
- freshness against the 30-minute promise: the age of the last successful run;
- pending batches: extracted (or transformed) but not in the warehouse's ``etl_loaded_batch``;
- skipped batches and batches with rows set aside (``held_back_batches``);
- the last alert, and (on AWS) the alarms firing now.

Locally the executions are the reports ``totes run`` and ``make run`` keep in
``<state>/runs/`` (moto's executions vanish with the process); on AWS (``--aws``) they are
the state machine's execution history. Each section is read on its own: one that cannot be
read (a database out of reach from a laptop) becomes a note, and the rest is still shown.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from psycopg2 import sql

from totes.contract import Names
from totes.local.runner import history, stage_outputs
from totes.pipeline.db import connect
from totes.pipeline.lake import QUARANTINE, Lake, batch_id_of
from totes.pipeline.redact import redact
from totes.pipeline.registers import batch_statuses, waiting_by_table
from totes.schema.source import SOURCE_TABLE_NAMES

# The promise made to the business: the warehouse is never more than 30 minutes behind.
FRESHNESS_PROMISE = timedelta(minutes=30)
DEFAULT_LIMIT = 10


@dataclass
class Execution:
    """One pipeline execution, as the on-call person reads it."""

    name: str
    status: str  # SUCCEEDED, FAILED, TIMED_OUT, ABORTED, RUNNING
    started_at: str | None
    stopped_at: str | None
    duration_seconds: float | None
    batch_id: str | None  # the batch this run extracted (None: nothing new, or it failed)
    extracted: dict[str, int] = field(default_factory=dict)  # rows per ToteSys table
    loaded: dict[str, int] = field(default_factory=dict)  # rows per warehouse table
    loaded_batch_ids: list[str] = field(default_factory=list)
    error: str | None = None  # the alert's subject, or the execution's own error


@dataclass
class TableLag:
    table: str
    watermark: str | None  # the latest ingestion manifest's (from the data: last_updated)
    source_latest: str | None  # max(last_updated) in ToteSys now
    lag_seconds: float | None


@dataclass
class PendingBatch:
    batch_id: str
    stage: str  # "extracted" (waits for the transform) or "transformed" (for the load)


@dataclass
class WaitingRows:
    """Fact rows of one table waiting for their dimension rows (``etl_waiting_row``)."""

    table: str
    rows: int
    oldest_since: str  # when the longest-waiting one was set aside (ISO, UTC)


@dataclass
class HeldBackBatch:
    """A batch kept out of the warehouse on purpose (quarantined, or skipped by a person)."""

    batch_id: str
    state: str  # "quarantined" or "skipped"
    reason: str | None = None


@dataclass
class Alert:
    at: str | None
    execution: str
    subject: str
    message: str


@dataclass
class Freshness:
    last_success_at: str | None
    age_seconds: float | None
    promise_seconds: float
    kept: bool  # a run succeeded within the promise


@dataclass
class Status:
    mode: str  # "local" or "aws"
    checked_at: str
    freshness: Freshness
    executions: list[Execution]
    tables: list[TableLag]
    pending: list[PendingBatch]
    held_back: list[HeldBackBatch]
    last_alert: Alert | None
    alarms_firing: list[str] = field(default_factory=list)
    waiting: list[WaitingRows] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what could not be read, and why
    # False when the warehouse's register (or the lake) could not be read: ``pending`` then
    # lists only what is known to be pending, not every batch that is.
    pending_known: bool = True

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True, default=str)


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds") if moment else None


def _seconds_between(start: str | None, stop: str | None) -> float | None:
    if not (start and stop):
        return None
    return (datetime.fromisoformat(stop) - datetime.fromisoformat(start)).total_seconds()


def _execution(
    name: str,
    status: str,
    started: str | None,
    stopped: str | None,
    outputs: dict,
    error: str | None,
) -> Execution:
    extract, load = outputs.get("extract") or {}, outputs.get("load") or {}
    return Execution(
        name=name,
        status=status,
        started_at=started,
        stopped_at=stopped,
        duration_seconds=_seconds_between(started, stopped),
        batch_id=extract.get("batch_id"),
        extracted=dict(extract.get("tables") or {}),
        loaded=dict(load.get("rows") or {}),
        loaded_batch_ids=list(load.get("loaded_batch_ids") or []),
        error=error,
    )


# ---- executions: the local run reports ---------------------------------------------------


def local_executions(runs_dir: Path, limit: int) -> tuple[list[Execution], Alert | None]:
    """The newest ``limit`` reports kept by local runs, newest first, and the last alert."""
    reports = []
    for path in runs_dir.glob("*.json") if runs_dir.is_dir() else []:
        report = json.loads(path.read_text())
        reports.append(report)
    reports.sort(key=lambda r: (r.get("started_at") or "", r["execution_name"]), reverse=True)
    executions, last_alert = [], None
    for report in reports:
        alerts = report.get("alerts") or []
        if alerts and last_alert is None:
            last_alert = Alert(
                at=report.get("stopped_at"),
                execution=report["execution_name"],
                subject=alerts[-1]["subject"],
                message=alerts[-1]["message"],
            )
        if len(executions) < limit:
            executions.append(
                _execution(
                    report["execution_name"],
                    report["status"],
                    report.get("started_at"),
                    report.get("stopped_at"),
                    report,
                    alerts[0]["subject"] if alerts else None,
                )
            )
    return executions, last_alert


# ---- executions: the state machine on AWS ------------------------------------------------


class StateMachineNotFoundError(LookupError):
    """No state machine of that name in the account and region of the credentials."""


def find_state_machine(sfn: Any, name: str) -> str:
    """The ARN of the state machine called ``name``."""
    for page in sfn.get_paginator("list_state_machines").paginate():
        for machine in page["stateMachines"]:
            if machine["name"] == name:
                return machine["stateMachineArn"]
    raise StateMachineNotFoundError(
        f"no state machine {name!r} in {sfn.meta.region_name}: is the stack deployed there, "
        "and is --environment right?"
    )


def _alert_of(events: Iterable[dict]) -> tuple[str, str, datetime | None] | None:
    """The alert an execution published (its SNS task's Subject and Message), if any."""
    for event in events:
        details = event.get("taskScheduledEventDetails") or {}
        if details.get("resourceType") == "sns":
            parameters = json.loads(details.get("parameters") or "{}")
            return (
                parameters.get("Subject", ""),
                parameters.get("Message", ""),
                event.get("timestamp"),
            )
    return None


def aws_executions(
    sfn: Any, state_machine_arn: str, limit: int
) -> tuple[list[Execution], Alert | None]:
    """The newest ``limit`` executions, newest first, and the last alert among them."""
    listed = sfn.list_executions(stateMachineArn=state_machine_arn, maxResults=limit)["executions"]
    executions, last_alert = [], None
    for item in listed:
        described = sfn.describe_execution(executionArn=item["executionArn"])
        outputs = stage_outputs(sfn, item["executionArn"], described)
        error = None
        if described["status"] != "SUCCEEDED":
            alert = _alert_of(history(sfn, item["executionArn"]))
            if alert:
                subject, message, at = alert
                error = subject
                if last_alert is None:
                    last_alert = Alert(_iso(at), item["name"], subject, message)
            else:
                error = described.get("error") or described["status"]
        executions.append(
            _execution(
                item["name"],
                described["status"],
                _iso(described.get("startDate")),
                _iso(described.get("stopDate")),
                outputs,
                error,
            )
        )
    return executions, last_alert


def alarms_firing(cloudwatch: Any, names: Names) -> list[str]:
    """This deployment's alarms in the ALARM state now."""
    found = []
    for page in cloudwatch.get_paginator("describe_alarms").paginate(
        AlarmNamePrefix=names.alarm(""), StateValue="ALARM"
    ):
        found += [alarm["AlarmName"] for alarm in page["MetricAlarms"]]
    return found


# ---- the lake and the databases ----------------------------------------------------------


def table_lags(lake: Lake, source_dsn: str | None) -> tuple[list[TableLag], list[str]]:
    """Each ToteSys table's watermark and how far ToteSys is ahead of it."""
    manifest = lake.latest_ingestion_manifest()
    watermarks = {t: e.watermark for t, e in manifest.tables.items()} if manifest else {}
    latest: dict[str, datetime | None] = {}
    notes = []
    if source_dsn is None:
        notes.append("ToteSys: not configured (SOURCE_DSN or SOURCE_DB_SECRET_ARN): no lag")
    else:
        try:
            with connect(source_dsn, application_name="totes-status") as conn:
                conn.set_session(readonly=True)
                with conn.cursor() as cur:
                    for table in SOURCE_TABLE_NAMES:
                        cur.execute(
                            sql.SQL("SELECT max(last_updated) FROM {}").format(
                                sql.Identifier(table)
                            )
                        )
                        latest[table] = cur.fetchone()[0]
        except Exception as exc:
            notes.append(f"ToteSys: {type(exc).__name__}: {redact(str(exc))}")
    lags = []
    for table in SOURCE_TABLE_NAMES:
        watermark, source = watermarks.get(table), latest.get(table)
        lag = None
        if source is not None:
            lag = (
                max((source - datetime.fromisoformat(watermark)).total_seconds(), 0.0)
                if watermark
                else None
            )
        shown = source.isoformat(timespec="milliseconds") if source else None
        lags.append(TableLag(table, watermark, shown, lag))
    return lags, notes


def _loaded_in_warehouse(warehouse_dsn: str) -> set[str]:
    with connect(warehouse_dsn, application_name="totes-status") as conn:
        conn.set_session(readonly=True)
        with conn.cursor() as cur:
            return set(batch_statuses(cur))  # loaded or skipped: in the warehouse's register


def waiting_rows(warehouse_dsn: str | None) -> list[WaitingRows]:
    """What waits in the warehouse for a dimension row, by table (a load warns only once,
    when a row starts waiting: this is where it stays in sight)."""
    if warehouse_dsn is None:
        return []
    with connect(warehouse_dsn, application_name="totes-status") as conn:
        conn.set_session(readonly=True)
        with conn.cursor() as cur:
            return [WaitingRows(t, n, _iso(since) or "") for t, n, since in waiting_by_table(cur)]


def pending_batches(lake: Lake, warehouse_dsn: str | None) -> tuple[list[PendingBatch], list[str]]:
    """Batches in the lake that the warehouse does not hold yet, oldest first.

    The warehouse's own register (``etl_loaded_batch``) is the truth; when it cannot be read,
    only the batches not yet transformed are known to be pending, and a note says so.
    """
    notes = []
    loaded: set[str] | None = None
    if warehouse_dsn is None:
        notes.append("warehouse: not configured (WAREHOUSE_DSN or WAREHOUSE_DB_SECRET_ARN)")
    else:
        try:
            loaded = _loaded_in_warehouse(warehouse_dsn)
        except Exception as exc:
            notes.append(f"warehouse: {type(exc).__name__}: {redact(str(exc))}")
    skipped = lake.skipped_ids()
    if loaded is None:
        notes.append("pending batches: only those not transformed yet (the warehouse is unread)")
        return [PendingBatch(b, "extracted") for b in lake.untransformed_batches()], notes
    transformed = set(lake.transformed_batches())
    return [
        PendingBatch(b, "transformed" if b in transformed else "extracted")
        for b in lake.extracted_batches()
        if b not in loaded and b not in skipped
    ], notes


def held_back_batches(lake: Lake) -> list[HeldBackBatch]:
    """Batches a person skipped (with the reason), and batches whose transform set rows
    aside (quarantined, with the tables), oldest first."""
    held = [
        HeldBackBatch(batch_id, "skipped", f"{skip.reason} ({skip.by}, {skip.skipped_at})")
        for batch_id, skip in lake.skipped().items()
    ]
    quarantined: dict[str, list[str]] = {}
    for key in lake.processed.list(QUARANTINE):
        if key.endswith(".csv"):
            quarantined.setdefault(batch_id_of(key), []).append(key.split("/")[1])
    held += [
        HeldBackBatch(batch_id, "rows set aside", f"in {', '.join(sorted(tables))}")
        for batch_id, tables in quarantined.items()
    ]
    return sorted(held, key=lambda batch: batch.batch_id)


# ---- putting it together -----------------------------------------------------------------


def freshness(executions: list[Execution], now: datetime) -> Freshness:
    """The age of the newest successful run against the 30-minute promise."""
    successes = [e.stopped_at for e in executions if e.status == "SUCCEEDED" and e.stopped_at]
    last = max(successes, default=None)
    age = (now - datetime.fromisoformat(last)).total_seconds() if last else None
    return Freshness(
        last_success_at=last,
        age_seconds=age,
        promise_seconds=FRESHNESS_PROMISE.total_seconds(),
        kept=age is not None and age <= FRESHNESS_PROMISE.total_seconds(),
    )


def _guarded(notes: list[str], what: str, read: Callable[[], Any], default: Any) -> Any:
    """``read()``, or ``default`` with a note: one unreadable part never hides the rest."""
    try:
        return read()
    except Exception as exc:
        notes.append(f"{what}: {type(exc).__name__}: {redact(str(exc))}")
        return default


def collect(
    *,
    mode: str,
    read_executions: Callable[[], tuple[list[Execution], Alert | None]],
    lake: Lake | None,
    source_dsn: str | None,
    warehouse_dsn: str | None,
    read_alarms: Callable[[], list[str]] | None = None,
    now: datetime | None = None,
) -> Status:
    """Read every section; what cannot be read becomes a note."""
    now = now or datetime.now(UTC)
    notes: list[str] = []
    executions, last_alert = _guarded(notes, "executions", read_executions, ([], None))
    tables: list[TableLag] = []
    pending: list[PendingBatch] = []
    held_back: list[HeldBackBatch] = []
    pending_known = False
    if lake is None:
        notes.append("lake: not configured (LAKE, or INGESTION_BUCKET and PROCESSED_BUCKET)")
    else:
        tables, more = _guarded(notes, "lake", lambda: table_lags(lake, source_dsn), ([], []))
        notes += more
        read = _guarded(notes, "lake", lambda: pending_batches(lake, warehouse_dsn), None)
        if read is not None:
            pending, more = read
            notes += more
            pending_known = not any(note.startswith("pending batches:") for note in more)
        held_back = _guarded(notes, "held-back batches", lambda: held_back_batches(lake), [])
    waiting = _guarded(notes, "waiting rows", lambda: waiting_rows(warehouse_dsn), [])
    alarms = _guarded(notes, "alarms", read_alarms, []) if read_alarms else []
    return Status(
        mode=mode,
        checked_at=_iso(now) or "",
        freshness=freshness(executions, now),
        executions=executions,
        tables=tables,
        pending=pending,
        held_back=held_back,
        last_alert=last_alert,
        alarms_firing=alarms,
        waiting=waiting,
        notes=notes,
        pending_known=pending_known,
    )
