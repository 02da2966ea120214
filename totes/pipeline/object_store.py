"""Where lake objects live: a local folder or an S3 bucket, behind one small interface.

Both stores are write-once: ``put_new`` never replaces an existing object, which is what
keeps the lake immutable even when two runs race to write the same key. ``open_new``
writes an object as a stream, holding at most one upload part in memory: a multipart
upload on S3, completed with ``If-None-Match: *`` (so it stays write-once), and a private
temporary file published with an atomic link in a folder.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from pathlib import Path
from typing import Protocol

from botocore.exceptions import ClientError


class ObjectStore(Protocol):
    def put_new(self, key: str, data: bytes) -> bool:
        """Write ``key`` unless it exists; True if this call wrote it."""

    def open_new(self, key: str) -> AbstractContextManager[StreamedObject]:
        """A stream that becomes ``key`` when the block ends without an error, unless the
        key exists (``written`` is then False); an error leaves nothing behind."""

    def get(self, key: str) -> bytes: ...

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str = "", start_after: str | None = None) -> list[str]:
        """Every key under ``prefix`` (after ``start_after``, when given), sorted."""

    def location(self, key: str = "") -> str:
        """Where a person finds ``key`` (a path or an s3:// URI)."""


# S3's smallest part but the last is 5 MiB; 8 MiB bounds a stream's memory.
UPLOAD_PART_BYTES = 8 * 1024 * 1024


class StreamedObject:
    """What ``open_new`` yields: ``write`` bytes; ``written`` is set when the block ends."""

    def __init__(self) -> None:
        self.written = False
        self.size = 0

    def write(self, data: bytes) -> int:
        raise NotImplementedError


class _LocalFile(io.BufferedWriter):
    """A buffered file whose ``write`` stays in C: COPY calls it once per row."""

    written = False

    @property
    def size(self) -> int:
        return self.tell()


class LocalStore:
    """A folder on disk: files a person can open with any CSV or Parquet tool."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._resolved_root = self.root.resolve()

    def _path(self, key: str) -> Path:
        path = (self._resolved_root / key).resolve()
        if not path.is_relative_to(self._resolved_root):
            raise ValueError(f"key {key!r} points outside the lake folder {self.root}")
        return path

    def put_new(self, key: str, data: bytes) -> bool:
        with self.open_new(key) as stream:
            stream.write(data)
        return stream.written

    @contextmanager
    def open_new(self, key: str) -> Iterator[_LocalFile]:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # A private temporary name: concurrent writers (processes or threads) never share one.
        handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        tmp = Path(name)
        try:
            with _LocalFile(io.FileIO(handle, "wb"), buffer_size=1 << 20) as stream:
                yield stream
            try:
                # link() fails if the target exists: an atomic, never-overwriting publish.
                os.link(tmp, path)
                stream.written = True
            except FileExistsError:
                stream.written = False
        finally:
            tmp.unlink()

    def get(self, key: str) -> bytes:
        """The object's bytes; FileNotFoundError when there is none."""
        return self._path(key).read_bytes()

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "", start_after: str | None = None) -> list[str]:
        # Walk only the folder the prefix names, not the whole lake.
        folder = self.root / prefix.rsplit("/", 1)[0] if "/" in prefix else self.root
        if not folder.is_dir():
            return []
        keys = (
            p.relative_to(self.root).as_posix()
            for p in folder.rglob("*")
            if p.is_file() and not p.name.startswith(".")
        )
        return sorted(k for k in keys if k.startswith(prefix) and k > (start_after or ""))

    def location(self, key: str = "") -> str:
        return str(self.root / key)


class S3Store:
    """An S3 bucket (optionally under a prefix); conditional writes keep it write-once."""

    def __init__(self, bucket: str, prefix: str = "", client: object | None = None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        if client is None:
            # Here, not at the top: boto3 takes 0.2 s to import, which a lake in a folder
            # (a laptop run, each stage's process) need not pay.
            import boto3

            client = boto3.client("s3")
        self.client = client

    def put_new(self, key: str, data: bytes) -> bool:
        try:
            self.client.put_object(
                Bucket=self.bucket, Key=self.prefix + key, Body=data, IfNoneMatch="*"
            )
        except ClientError as exc:
            if _exists_already(exc):
                return False
            raise
        return True

    @contextmanager
    def open_new(self, key: str) -> Iterator[StreamedObject]:
        stream = _MultipartObject(self, key)
        try:
            yield stream
        except BaseException:
            stream.abort()
            raise
        stream.finish()

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

    def list(self, prefix: str = "", start_after: str | None = None) -> list[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        after = {"StartAfter": self.prefix + start_after} if start_after else {}
        keys: list[str] = []
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix, **after):
            keys.extend(obj["Key"][len(self.prefix) :] for obj in page.get("Contents", []))
        return sorted(keys)

    def location(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{self.prefix}{key}"


def _exists_already(exc: ClientError) -> bool:
    return exc.response["Error"]["Code"] in ("PreconditionFailed", "ConditionalRequestConflict")


class _MultipartObject(StreamedObject):
    """Up to one part in memory; a small object is one conditional PutObject, a large one a
    multipart upload whose CompleteMultipartUpload carries ``If-None-Match: *``."""

    def __init__(self, store: S3Store, key: str) -> None:
        super().__init__()
        self._store, self._key = store, key
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict] = []

    def write(self, data: bytes) -> int:
        self._buffer += data
        self.size += len(data)
        if len(self._buffer) >= UPLOAD_PART_BYTES:
            self._upload_part()
        return len(data)

    def _upload_part(self) -> None:
        client, bucket, key = self._store.client, self._store.bucket, self._store.prefix + self._key
        if self._upload_id is None:
            self._upload_id = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        number = len(self._parts) + 1
        etag = client.upload_part(
            Bucket=bucket,
            Key=key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=bytes(self._buffer),
        )["ETag"]
        self._parts.append({"ETag": etag, "PartNumber": number})
        self._buffer.clear()

    def finish(self) -> None:
        if self._upload_id is None:
            self.written = self._store.put_new(self._key, bytes(self._buffer))
            return
        if self._buffer:
            self._upload_part()
        try:
            self._store.client.complete_multipart_upload(
                Bucket=self._store.bucket,
                Key=self._store.prefix + self._key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},
                IfNoneMatch="*",
            )
        except ClientError as exc:
            self.abort()
            if _exists_already(exc):
                return
            raise
        self.written = True

    def abort(self) -> None:
        if self._upload_id is not None:
            # If this fails too, the bucket's lifecycle rule removes the incomplete upload.
            with suppress(ClientError):
                self._store.client.abort_multipart_upload(
                    Bucket=self._store.bucket,
                    Key=self._store.prefix + self._key,
                    UploadId=self._upload_id,
                )
