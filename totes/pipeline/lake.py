"""The data lake's layout: every key and manifest is defined here and nowhere else.

Two write-once stores (S3 buckets on AWS, folders locally):

ingestion/                                   (extract writes, transform reads)
    <table>/<yyyy>/<mm>/<dd>/<batch_id>.csv  one CSV per ToteSys table per batch
    _manifests/<batch_id>.json               what the batch holds; written LAST
processed/                                   (transform writes, load reads)
    <table>/<yyyy>/<mm>/<dd>/<batch_id>.parquet   one Parquet per warehouse table per batch
    _manifests/<batch_id>.json               written after every Parquet file of the batch
    _loaded/<batch_id>.json                  a hint that the batch is in the warehouse (the
                                             warehouse's own batch table is the truth)

A batch id is a UTC timestamp taken from the SOURCE database's clock when the extract's
snapshot began (``20261127T130501123456Z``), so batch ids sort in snapshot order.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import urlparse

from totes.pipeline.object_store import LocalStore, ObjectStore, S3Store

MANIFESTS = "_manifests/"
LOADED = "_loaded/"
_BATCH_ID = re.compile(r"^\d{8}T\d{12}Z$")


class LakeError(Exception):
    """The lake holds something the pipeline cannot use; the message says which object."""


def batch_id_at(snapshot_time: datetime) -> str:
    return snapshot_time.strftime("%Y%m%dT%H%M%S%fZ")


def check_batch_id(batch_id: str) -> str:
    """Reject anything that is not a batch id before it is used in a key."""
    if not isinstance(batch_id, str) or not _BATCH_ID.match(batch_id):
        raise LakeError(f"{batch_id!r} is not a batch id (expected like 20261127T130501123456Z)")
    return batch_id


def _dated(table: str, batch_id: str, suffix: str) -> str:
    check_batch_id(batch_id)
    return f"{table}/{batch_id[0:4]}/{batch_id[4:6]}/{batch_id[6:8]}/{batch_id}{suffix}"


def csv_key(table: str, batch_id: str) -> str:
    return _dated(table, batch_id, ".csv")


def parquet_key(table: str, batch_id: str) -> str:
    return _dated(table, batch_id, ".parquet")


def manifest_key(batch_id: str) -> str:
    return f"{MANIFESTS}{check_batch_id(batch_id)}.json"


def loaded_key(batch_id: str) -> str:
    return f"{LOADED}{check_batch_id(batch_id)}.json"


def batch_id_of(key: str) -> str:
    """The batch id in any data or manifest key."""
    return check_batch_id(key.rsplit("/", 1)[-1].split(".", 1)[0])


@dataclass
class TableExtract:
    """What one batch holds for one ToteSys table."""

    rows: int
    key: str | None  # the CSV; None when the batch has no rows for the table
    watermark: str | None  # largest last_updated seen so far (ISO, ms), from the data


@dataclass
class IngestionManifest:
    """Written last by the extract; it alone makes a batch visible to the next stages.

    ``recent`` holds, per table, the content hash of every row whose ``last_updated`` lies
    within the overlap window below the watermark: the next extract re-reads that window
    (so late commits are not lost) and drops rows whose hash it has already seen.
    """

    batch_id: str
    previous_batch_id: str | None
    tables: dict[str, TableExtract]
    recent: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tables.values())

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> IngestionManifest:
        raw = json.loads(data)
        raw["tables"] = {name: TableExtract(**t) for name, t in raw["tables"].items()}
        return cls(**raw)


@dataclass
class TableOutput:
    rows: int
    key: str | None


@dataclass
class ProcessedManifest:
    """Written by the transform after every Parquet file of the batch."""

    batch_id: str
    tables: dict[str, TableOutput]

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> ProcessedManifest:
        raw = json.loads(data)
        raw["tables"] = {name: TableOutput(**t) for name, t in raw["tables"].items()}
        return cls(**raw)


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
        return [batch_id_of(k) for k in self.ingestion.list(MANIFESTS) if k.endswith(".json")]

    def ingestion_manifest(self, batch_id: str) -> IngestionManifest:
        return IngestionManifest.from_json(self.ingestion.get(manifest_key(batch_id)))

    def latest_ingestion_manifest(self) -> IngestionManifest | None:
        batches = self.extracted_batches()
        return self.ingestion_manifest(batches[-1]) if batches else None

    # processed side
    def transformed_batches(self) -> list[str]:
        return [batch_id_of(k) for k in self.processed.list(MANIFESTS) if k.endswith(".json")]

    def processed_manifest(self, batch_id: str) -> ProcessedManifest:
        return ProcessedManifest.from_json(self.processed.get(manifest_key(batch_id)))

    def loaded_batches(self) -> list[str]:
        return [batch_id_of(k) for k in self.processed.list(LOADED) if k.endswith(".json")]

    def pending_batches(self) -> list[str]:
        """Extracted batches not yet known to be loaded, oldest first."""
        loaded = set(self.loaded_batches())
        return [b for b in self.extracted_batches() if b not in loaded]
