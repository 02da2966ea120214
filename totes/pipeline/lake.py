"""The data lake's layout: every key and manifest is defined here and nowhere else.

Two write-once stores (S3 buckets on AWS, folders locally):

ingestion/                                   (extract writes, transform reads)
    <table>/<yyyy>/<mm>/<dd>/<batch_id>.csv  one CSV per ToteSys table per batch, or, for a
                                             table with more rows than a part holds,
    <table>/<yyyy>/<mm>/<dd>/<batch_id>.p00001.csv   one CSV per part (ascending id ranges)
    _manifests/<batch_id>.json               what the batch holds; written LAST
    _checksums/<table>/<yyyy>/<mm>/<dd>/<batch_id>.json
                                             the source's bucket checksums when the batch
                                             reconciled the table (the next pass's baseline)
    _skipped/<batch_id>.json                 an operator's decision (`totes skip`) that the
                                             batch is never delivered; the next extract
                                             delivers its rows again
processed/                                   (transform writes, load reads)
    <table>/<yyyy>/<mm>/<dd>/<batch_id>.parquet   one Parquet per warehouse table per batch
                                             (or per part: <batch_id>.p00001.parquet ...)
    _manifests/<batch_id>.json               written after every Parquet file of the batch
    _units/<batch_id>/<unit>.json            what one unit of a big batch wrote, when the
                                             state machine fans the transform out (Map)
    _quarantine/<source_table>/<yyyy>/<mm>/<dd>/<batch_id>.csv
                                             source rows the transform set aside, each with
                                             its row, column, value and reason

Which batches are in the warehouse is the warehouse's own register (``etl_loaded_batch``),
never something the lake says.

A batch id is a UTC timestamp taken from the SOURCE database's clock when the extract's
snapshot began (``20261127T130501123456Z``), so batch ids sort in snapshot order.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Self
from urllib.parse import urlparse

from totes.pipeline.checksums import BucketChecksums
from totes.pipeline.object_store import LocalStore, ObjectStore, S3Store, StreamedObject

MANIFESTS = "_manifests/"
# How far back the latest manifest is looked for first (see latest_ingestion_manifest).
RECENT_LISTING = timedelta(days=2)
CHECKSUMS = "_checksums/"
SKIPPED = "_skipped/"
QUARANTINE = "_quarantine/"
UNITS = "_units/"
_BATCH_ID = re.compile(r"^\d{8}T\d{12}Z$")


class LakeError(Exception):
    """The lake holds something the pipeline cannot use; the message says which object."""


class DamagedObjectError(LakeError):
    """A manifest, checksum file or skip record that cannot be read: changed or cut after
    it was written (the lake never overwrites one). Not an undeliverable batch: skipping
    its batch does not help, the next extract reads it too; its earlier version does."""


class ObjectExistsError(LakeError):
    """A batch's file is already in the lake: an earlier attempt with the same batch id
    left it (a crash before its manifest). Never taken as this attempt's: it may hold
    older rows than the manifest would say."""


_DAMAGE = (ValueError, KeyError, TypeError, AttributeError)  # JSONDecodeError: a ValueError


def _read[T](store: ObjectStore, key: str, parse: Callable[[bytes], T]) -> T:
    """``parse`` of the object ``key``; DamagedObjectError naming it when it cannot be."""
    data = store.get(key)
    try:
        return parse(data)
    except _DAMAGE as exc:
        raise DamagedObjectError(
            f"{store.location(key)} cannot be read ({type(exc).__name__}: {exc}): it was changed"
            " or cut after it was written. The lake's buckets keep every version: restore the"
            " object's earlier one"
        ) from None


_BATCH_ID_FORMAT = "%Y%m%dT%H%M%S%fZ"


def refuse_unwritten(stream: StreamedObject, location: str) -> None:
    """ObjectExistsError unless ``stream`` (from ``open_new``) became the object."""
    if not stream.written:
        raise ObjectExistsError(
            f"{location} already exists: an earlier extract with this batch id stopped before"
            " its manifest. Nothing of it is used; the next run names its batch anew"
        )


def batch_id_at(snapshot_time: datetime) -> str:
    return snapshot_time.strftime(_BATCH_ID_FORMAT)


def batch_time(batch_id: str) -> datetime:
    """When the batch's extract read ToteSys (the source's clock, UTC)."""
    return datetime.strptime(check_batch_id(batch_id), _BATCH_ID_FORMAT)


def check_batch_id(batch_id: str) -> str:
    """Reject anything that is not a batch id before it is used in a key."""
    if not isinstance(batch_id, str) or not _BATCH_ID.match(batch_id):
        raise LakeError(f"{batch_id!r} is not a batch id (expected like 20261127T130501123456Z)")
    return batch_id


def _dated(table: str, batch_id: str, suffix: str) -> str:
    check_batch_id(batch_id)
    return f"{table}/{batch_id[0:4]}/{batch_id[4:6]}/{batch_id[6:8]}/{batch_id}{suffix}"


def _part(part: int | None) -> str:
    return "" if part is None else f".p{part:05d}"


def csv_key(table: str, batch_id: str, part: int | None = None) -> str:
    """The batch's CSV of ``table``; with ``part`` (1, 2, ...), one part of it."""
    return _dated(table, batch_id, f"{_part(part)}.csv")


def parquet_key(table: str, batch_id: str, part: int | None = None) -> str:
    return _dated(table, batch_id, f"{_part(part)}.parquet")


def manifest_key(batch_id: str) -> str:
    return f"{MANIFESTS}{check_batch_id(batch_id)}.json"


def checksums_key(table: str, batch_id: str) -> str:
    return CHECKSUMS + _dated(table, batch_id, ".json")


def skip_key(batch_id: str) -> str:
    return f"{SKIPPED}{check_batch_id(batch_id)}.json"


def unit_result_key(batch_id: str, unit: int) -> str:
    return f"{UNITS}{check_batch_id(batch_id)}/{int(unit):05d}.json"


def quarantine_key(source_table: str, batch_id: str) -> str:
    return QUARANTINE + _dated(source_table, batch_id, ".csv")


def batch_id_of(key: str) -> str:
    """The batch id in any data or manifest key."""
    return check_batch_id(key.rsplit("/", 1)[-1].split(".", 1)[0])


@dataclass(frozen=True)
class Snapshot:
    """The primary keys for which a batch's CSV holds exactly the source's rows.

    Rows of the source table whose id falls in the snapshot but that the CSV lacks no
    longer exist in the source: the load marks them deleted. ``buckets`` None means the
    whole table (a full copy); otherwise ids with ``id // width`` in ``buckets``.
    """

    width: int
    buckets: tuple[int, ...] | None = None

    @property
    def full(self) -> bool:
        return self.buckets is None

    def to_dict(self) -> dict:
        return {"width": self.width, "buckets": None if self.full else list(self.buckets)}

    @classmethod
    def from_dict(cls, raw: dict | None) -> Snapshot | None:
        if raw is None:
            return None
        buckets = raw.get("buckets")
        return cls(int(raw["width"]), None if buckets is None else tuple(int(b) for b in buckets))


@dataclass(frozen=True)
class Part:
    """One file of a table's rows in a batch, and how many rows it holds (checked)."""

    key: str
    rows: int


def _parts_from(raw: list | None) -> list[Part]:
    return [Part(p["key"], int(p["rows"])) for p in raw or []]


def _files(key: str | None, rows: int, parts: list[Part]) -> list[Part]:
    if parts:
        return list(parts)
    return [Part(key, rows)] if key is not None else []


class _TableFiles:
    """What a table's entry in either manifest shares: its files (one, or one per part) and
    how its snapshot and parts are written to JSON and read back."""

    key: str | None
    rows: int
    parts: list[Part]
    snapshot: Snapshot | None

    @property
    def files(self) -> list[Part]:
        """Every file of the table in this batch, in id order, with its row count."""
        return _files(self.key, self.rows, self.parts)

    def to_dict(self) -> dict:
        raw = asdict(self)  # type: ignore[call-overload]  (a dataclass's mixin)
        raw["snapshot"] = self.snapshot.to_dict() if self.snapshot else None
        return raw

    @classmethod
    def from_dict(cls, raw: dict) -> Self:
        return cls(
            **{
                **raw,
                "snapshot": Snapshot.from_dict(raw.get("snapshot")),
                "parts": _parts_from(raw.get("parts")),
            }
        )


@dataclass
class TableExtract(_TableFiles):
    """What one batch holds for one ToteSys table."""

    rows: int
    key: str | None  # the CSV (the first part's); None when the batch has no rows for it
    watermark: str | None  # largest last_updated seen so far (ISO, ms), from the data
    # Of ``rows``, those found by their last_updated; the rest were re-read whole (a first
    # extract, a full copy, a reconciled bucket) and are mostly unchanged.
    changed_rows: int = 0
    future_rows: int = 0  # rows whose last_updated was after the source's clock
    snapshot: Snapshot | None = None  # id ranges this CSV holds completely (see Snapshot)
    # The latest bucket checksums of the source (a reconciliation's baseline), carried
    # forward from batch to batch: the key of the checksum file, or None before the first.
    checksums: str | None = None
    reconciled_rows: int | None = None  # the table's rows at that pass (sets its cadence)
    # Buckets of rows found by their last_updated since those checksums were taken, carried
    # forward until the next pass, which re-reads them too: a row inserted and deleted
    # again in between leaves its bucket's checksum as it was, but the warehouse has it.
    delivered_buckets: list[int] = field(default_factory=list)
    # The batch whose CSV is the latest full copy of the table (tables the transform needs
    # whole), carried forward like ``checksums``.
    full_copy: str | None = None
    # More rows than one part holds: one CSV per id range, in id order ([] : one file).
    parts: list[Part] = field(default_factory=list)


@dataclass
class IngestionManifest:
    """Written last by the extract; it alone makes a batch visible to the next stages.

    ``recent`` holds, per table, the content hash of every row whose ``last_updated`` lies
    within the overlap window below the watermark: the next extract re-reads that window
    (so late commits are not lost) and drops rows whose hash it has already seen.
    ``repairs`` names skipped batches whose rows this batch delivers again; ``repaired``
    carries forward every skip repaired so far.
    """

    batch_id: str
    previous_batch_id: str | None
    tables: dict[str, TableExtract]
    recent: dict[str, dict[str, str]] = field(default_factory=dict)
    repairs: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)  # every skip repaired so far
    warnings: list[str] = field(default_factory=list)  # what this batch reported
    schema_warnings: list[str] = field(default_factory=list)  # the source schema's state

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tables.values())

    def to_json(self) -> bytes:
        raw = asdict(self)
        raw["tables"] = {name: t.to_dict() for name, t in self.tables.items()}
        return json.dumps(raw, indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> IngestionManifest:
        raw = json.loads(data)
        raw["tables"] = {name: TableExtract.from_dict(t) for name, t in raw["tables"].items()}
        return cls(**raw)


@dataclass
class TableOutput(_TableFiles):
    """One warehouse table of a transformed batch."""

    rows: int
    key: str | None
    snapshot: Snapshot | None = None  # from the source table the rows' ids come from
    # Ids of source rows set aside (quarantined): they exist, so they are never "deleted".
    quarantined_ids: list[int] = field(default_factory=list)
    parts: list[Part] = field(default_factory=list)  # one Parquet per part ([]: one file)


@dataclass
class QuarantineFile:
    """Rows of one source table that the transform set aside, and why."""

    key: str
    rows: int


@dataclass
class ProcessedManifest:
    """Written by the transform after every Parquet file of the batch."""

    batch_id: str
    tables: dict[str, TableOutput]
    previous_batch_id: str | None = None  # the chain, as the ingestion manifest has it
    quarantine: dict[str, QuarantineFile] = field(default_factory=dict)  # by source table
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> bytes:
        raw = asdict(self)
        raw["tables"] = {name: t.to_dict() for name, t in self.tables.items()}
        return json.dumps(raw, indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> ProcessedManifest:
        raw = json.loads(data)
        raw["tables"] = {name: TableOutput.from_dict(t) for name, t in raw["tables"].items()}
        raw["quarantine"] = {
            name: QuarantineFile(**q) for name, q in raw.get("quarantine", {}).items()
        }
        return cls(**raw)


@dataclass
class SkipRecord:
    """An operator's recorded decision that a batch will never be delivered as it is."""

    batch_id: str
    reason: str
    skipped_at: str  # ISO, UTC
    by: str

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> SkipRecord:
        return cls(**json.loads(data))


class Lake:
    """The two stores, and the questions the stages ask of them."""

    def __init__(self, ingestion: ObjectStore, processed: ObjectStore) -> None:
        self.ingestion = ingestion
        self.processed = processed

    @classmethod
    def from_uri(cls, uri: str) -> Lake:
        """A local folder (``ingestion/`` and ``processed/`` inside) or ``s3://bucket/prefix``."""
        parsed = urlparse(uri)
        if parsed.scheme == "s3":
            prefix = parsed.path.strip("/")
            join = (prefix + "/") if prefix else ""
            return cls(
                S3Store(parsed.netloc, join + "ingestion"),
                S3Store(parsed.netloc, join + "processed"),
            )
        if parsed.scheme not in ("", "file"):
            raise LakeError(f"lake {uri!r}: expected a folder path or an s3:// URI")
        root = Path(parsed.path if parsed.scheme == "file" else uri)
        return cls(LocalStore(root / "ingestion"), LocalStore(root / "processed"))

    @classmethod
    def from_buckets(cls, ingestion_bucket: str, processed_bucket: str) -> Lake:
        return cls(S3Store(ingestion_bucket), S3Store(processed_bucket))

    # ingestion side
    def extracted_batches(self) -> list[str]:
        """Batch ids with an ingestion manifest, oldest first."""
        return _batch_ids(self.ingestion.list(MANIFESTS))

    def ingestion_manifest(self, batch_id: str) -> IngestionManifest:
        try:
            return _read(self.ingestion, manifest_key(batch_id), IngestionManifest.from_json)
        except FileNotFoundError:
            raise LakeError(
                f"batch {batch_id} has no ingestion manifest "
                f"({self.ingestion.location(manifest_key(batch_id))})"
            ) from None

    def latest_ingestion_manifest(self, now: datetime | None = None) -> IngestionManifest | None:
        """The newest batch's manifest. Manifest keys sort as their batch ids, by time: the
        keys of the last two days (before ``now``, the caller's clock) hold the newest when
        there are any, so every run lists those, not a year of 10-minute batches; the whole
        prefix only when there are none."""
        since = batch_id_at((now or datetime.now(UTC).replace(tzinfo=None)) - RECENT_LISTING)
        recent = _batch_ids(self.ingestion.list(MANIFESTS, start_after=f"{MANIFESTS}{since}"))
        batches = recent or self.extracted_batches()
        return self.ingestion_manifest(batches[-1]) if batches else None

    def checksums(self, key: str) -> BucketChecksums:
        """A checksum file: bucket -> (rows, checksum)."""
        return _read(self.ingestion, key, BucketChecksums.from_json)

    def put_checksums(
        self, table: str, batch_id: str, width: int, checksums: BucketChecksums
    ) -> str:
        key = checksums_key(table, batch_id)
        with self.ingestion.open_new(key) as stream:  # write-once: an existing file stays
            checksums.write_json(stream, table, width)
        refuse_unwritten(stream, self.ingestion.location(key))
        return key

    # operator decisions
    def skipped(self) -> dict[str, SkipRecord]:
        """Every skipped batch, by id, with its record (a read of each)."""
        return {batch_id: self.skip_record(batch_id) for batch_id in self.skipped_ids()}

    def skipped_ids(self) -> set[str]:
        """Every skipped batch's id, from the keys alone (no record is read)."""
        return {batch_id_of(key) for key in self.ingestion.list(SKIPPED) if key.endswith(".json")}

    def skip_record(self, batch_id: str) -> SkipRecord:
        return _read(self.ingestion, skip_key(batch_id), SkipRecord.from_json)

    def record_skip(self, batch_id: str, reason: str, by: str, at: str) -> SkipRecord:
        """Record that ``batch_id`` is never delivered; refuses an unknown batch or no reason."""
        if not reason.strip():
            raise LakeError("a skip needs a reason: say why the batch cannot be delivered")
        if batch_id not in self.extracted_batches():
            raise LakeError(f"no extracted batch {batch_id} in the lake: nothing to skip")
        record = SkipRecord(batch_id=batch_id, reason=reason.strip(), skipped_at=at, by=by)
        if not self.ingestion.put_new(skip_key(batch_id), record.to_json()):
            raise LakeError(f"batch {batch_id} is already skipped")
        return record

    # processed side
    def transformed_batches(self) -> list[str]:
        return _batch_ids(self.processed.list(MANIFESTS))

    def processed_manifest(self, batch_id: str) -> ProcessedManifest:
        try:
            return _read(self.processed, manifest_key(batch_id), ProcessedManifest.from_json)
        except FileNotFoundError:
            raise LakeError(
                f"batch {batch_id} has no processed manifest "
                f"({self.processed.location(manifest_key(batch_id))}): not transformed"
            ) from None

    def untransformed_batches(self) -> list[str]:
        """Extracted batches neither transformed nor skipped, oldest first."""
        done = set(self.transformed_batches()) | self.skipped_ids()
        return [b for b in self.extracted_batches() if b not in done]


def _batch_ids(keys: list[str]) -> list[str]:
    return [batch_id_of(k) for k in keys if k.endswith(".json")]
