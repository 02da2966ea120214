"""Where lake objects live: a local folder or an S3 bucket, behind one small interface.

Both stores are write-once: ``put_new`` never replaces an existing object, which is what
keeps the lake immutable even when two runs race to write the same key.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Protocol

import boto3
from botocore.exceptions import ClientError


class ObjectStore(Protocol):
    def put_new(self, key: str, data: bytes) -> bool:
        """Write ``key`` unless it exists; True if this call wrote it."""

    def get(self, key: str) -> bytes: ...

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str = "") -> list[str]:
        """Every key under ``prefix``, sorted."""

    def location(self, key: str = "") -> str:
        """Where a person finds ``key`` (a path or an s3:// URI)."""


class LocalStore:
    """A folder on disk: files a person can open with any CSV or Parquet tool."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError(f"key {key!r} points outside the lake folder {self.root}")
        return path

    def put_new(self, key: str, data: bytes) -> bool:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # A private temporary name: concurrent writers (processes or threads) never share one.
        handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        tmp = Path(name)
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        try:
            # link() fails if the target exists: an atomic, never-overwriting publish.
            os.link(tmp, path)
        except FileExistsError:
            return False
        finally:
            tmp.unlink()
        return True

    def get(self, key: str) -> bytes:
        """The object's bytes; FileNotFoundError when there is none."""
        return self._path(key).read_bytes()

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> list[str]:
        # Walk only the folder the prefix names, not the whole lake.
        folder = self.root / prefix.rsplit("/", 1)[0] if "/" in prefix else self.root
        if not folder.is_dir():
            return []
        keys = (
            p.relative_to(self.root).as_posix()
            for p in folder.rglob("*")
            if p.is_file() and not p.name.startswith(".")
        )
        return sorted(k for k in keys if k.startswith(prefix))

    def location(self, key: str = "") -> str:
        return str(self.root / key)


class S3Store:
    """An S3 bucket (optionally under a prefix); conditional writes keep it write-once."""

    def __init__(self, bucket: str, prefix: str = "", client: object | None = None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.client = client or boto3.client("s3")

    def put_new(self, key: str, data: bytes) -> bool:
        try:
            self.client.put_object(
                Bucket=self.bucket, Key=self.prefix + key, Body=data, IfNoneMatch="*"
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] in (
                "PreconditionFailed",
                "ConditionalRequestConflict",
            ):
                return False
            raise
        return True

    def get(self, key: str) -> bytes:
        """The object's bytes; FileNotFoundError when there is none (as LocalStore)."""
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
                raise FileNotFoundError(self.location(key)) from None
            raise
        return response["Body"].read()

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self.prefix + key)
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def list(self, prefix: str = "") -> list[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        keys: list[str] = []
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
            keys.extend(obj["Key"][len(self.prefix) :] for obj in page.get("Contents", []))
        return sorted(keys)

    def location(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{self.prefix}{key}"
