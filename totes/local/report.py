"""What one local pipeline execution did, and the readable summary printed at its end."""

from __future__ import annotations

from dataclasses import dataclass, field

from totes.local.psql import open_command
from totes.pipeline.lake import Lake
from totes.schema.source import SOURCE_TABLE_NAMES
from totes.schema.warehouse import WAREHOUSE_TABLE_NAMES


@dataclass
class RunReport:
    """One pipeline execution, as the summary shows it."""

    status: str  # SUCCEEDED or FAILED
    execution_name: str
    extract: dict | None = None
    transform: dict | None = None
    load: dict | None = None
    alerts: list[dict] = field(default_factory=list)  # {"subject", "message"} per email
    started_at: str | None = None  # ISO 8601, UTC
    stopped_at: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.status == "SUCCEEDED"


def _table_lines(
    title: str, names: tuple[str, ...], counts: dict[str, int], second: dict[str, int] | None = None
) -> list[str]:
    """A titled table of counts per table, with a total; optionally a second column."""
    width = max(len(n) for n in names)
    lines = [title]
    for name in names:
        extra = f"  {second.get(name, 0):>10,}" if second is not None else ""
        lines.append(f"  {name:<{width}}  {counts.get(name, 0):>10,}{extra}")
    extra = f"  {sum(second.values()):>10,}" if second is not None else ""
    lines.append(f"  {'total':<{width}}  {sum(counts.values()):>10,}{extra}")
    return lines


def _counts_line(title: str, counts: dict[str, int] | None) -> list[str]:
    if not counts:
        return []
    listed = ", ".join(f"{table} {count:,}" for table, count in sorted(counts.items()))
    return [f"{title}: {listed}"]


def _files_of_run(report: RunReport, lake_uri: str) -> list[str]:
    """The CSV and Parquet files of the run's batches, as paths inside a folder lake."""
    if "://" in lake_uri:
        return []
    lake = Lake.from_uri(lake_uri)
    files: list[str] = []
    batch_id = (report.extract or {}).get("batch_id")
    if batch_id:
        manifest = lake.ingestion_manifest(batch_id)
        files += [f"ingestion/{t.key}" for t in manifest.tables.values() if t.key]
    for batch_id in (report.transform or {}).get("batch_ids", []):
        manifest = lake.processed_manifest(batch_id)
        files += [f"processed/{t.key}" for t in manifest.tables.values() if t.key]
    return files


def format_summary(report: RunReport, lake_uri: str, warehouse_dsn: str) -> str:
    """The readable end-of-run summary."""
    lines = [f"Pipeline run {report.execution_name}: {report.status}"]
    extract = report.extract or {}
    if extract.get("batch_id"):
        lines += ["", f"Batch: {extract['batch_id']}", ""]
        lines += _table_lines(
            "Rows extracted from ToteSys (in the files / of which changed since the last run;"
            " the rest re-read to reconcile)",
            SOURCE_TABLE_NAMES,
            extract["tables"],
            extract.get("changed", {}),
        )
    elif extract:
        lines += ["", "Nothing changed in ToteSys since the last run."]
    transform = report.transform or {}
    lines += _counts_line("Rows set aside (quarantined)", transform.get("quarantined"))
    load = report.load or {}
    if load.get("loaded_batch_ids"):
        lines.append("")
        lines += _table_lines(
            "Rows written to the warehouse (new fact versions, changed dimension rows)",
            WAREHOUSE_TABLE_NAMES,
            load.get("rows", {}),
        )
        lines += ["", _batches_loaded(load)]
    lines += _counts_line("Fact rows waiting for a dimension row", load.get("waiting"))
    lines += _counts_line("Ids marked deleted (gone from ToteSys)", load.get("deleted"))
    lines += ["", f"Lake: {lake_uri}"]
    files = _files_of_run(report, lake_uri)
    if files:
        lines.append(f"Files of this run ({len(files)}), under the lake:")
        lines += [f"  {f}" for f in files]
    lines += [
        "",
        "Open the warehouse:",
        f"  {open_command(warehouse_dsn)}",
    ]
    for alert in report.alerts:
        lines += ["", "Alert email that would have been sent:", f"  Subject: {alert['subject']}"]
        lines += ["  " + line for line in alert["message"].splitlines()]
    return "\n".join(lines)


def _batches_loaded(load: dict) -> str:
    """Every batch loaded, or (a replay of a long history) how many and the latest listed."""
    listed = load["loaded_batch_ids"]
    loaded = load.get("loaded_batches", len(listed))
    if loaded == len(listed):
        return f"Batches loaded: {', '.join(listed)}"
    return (
        f"Batches loaded: {loaded:,}, the latest {len(listed)} of them {listed[0]} to {listed[-1]}"
    )
