"""Stage configuration from environment variables: the same code on AWS and on a laptop.

| variable | used by | meaning |
|---|---|---|
| LAKE | all | a folder or s3://bucket[/prefix] holding ingestion/ and processed/ (local runs) |
| INGESTION_BUCKET, PROCESSED_BUCKET | all | the two buckets (AWS; instead of LAKE) |
| SOURCE_DSN / SOURCE_DB_SECRET_ARN | extract | ToteSys: a DSN (local) or a secret (AWS) |
| WAREHOUSE_DSN / WAREHOUSE_DB_SECRET_ARN | load | the warehouse, likewise |
| RECONCILE_INTERVAL_MINUTES | extract | reconcile a large table at most this often (default 20) |
| RECONCILE_EVERY_RUN_ROWS | extract | a table this small: every run (default 100000) |
| PART_ROWS | extract | rows per CSV part (default 50000): bounds memory and the work of one call |
"""

from __future__ import annotations

import os
from datetime import timedelta

from totes.pipeline.lake import Lake
from totes.pipeline.secrets import dsn_from_secret


class ConfigurationError(Exception):
    """A required setting is missing; the message names the environment variables."""


def lake_from_env() -> Lake:
    if uri := os.environ.get("LAKE"):
        return Lake.from_uri(uri)
    ingestion, processed = os.environ.get("INGESTION_BUCKET"), os.environ.get("PROCESSED_BUCKET")
    if ingestion and processed:
        return Lake.from_buckets(ingestion, processed)
    raise ConfigurationError("set LAKE, or both INGESTION_BUCKET and PROCESSED_BUCKET")


def _dsn_from_env(prefix: str) -> str:
    if dsn := os.environ.get(f"{prefix}_DSN"):
        return dsn
    if secret := os.environ.get(f"{prefix}_DB_SECRET_ARN"):
        return dsn_from_secret(secret)
    raise ConfigurationError(f"set {prefix}_DSN or {prefix}_DB_SECRET_ARN")


def source_dsn_from_env() -> str:
    return _dsn_from_env("SOURCE")


def warehouse_dsn_from_env() -> str:
    return _dsn_from_env("WAREHOUSE")


def _whole_number(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit():
        raise ConfigurationError(f"{name} must be a whole number, got {raw!r}")
    return int(raw)


def reconcile_interval_from_env(default: timedelta) -> timedelta:
    return timedelta(
        minutes=_whole_number("RECONCILE_INTERVAL_MINUTES", default // timedelta(minutes=1))
    )


def every_run_rows_from_env(default: int) -> int:
    return _whole_number("RECONCILE_EVERY_RUN_ROWS", default)


def part_rows_from_env(default: int) -> int:
    rows = _whole_number("PART_ROWS", default)
    if rows < 1:
        raise ConfigurationError(f"PART_ROWS must be a positive whole number of rows, got {rows}")
    return rows
