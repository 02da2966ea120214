"""Streamed writes stay write-once: a multipart upload on S3 (moto), a linked temp file in
a folder; an error while streaming leaves nothing behind."""

from __future__ import annotations

import boto3
import moto.s3.models
import pytest
from moto import mock_aws

import totes.pipeline.object_store
from totes.pipeline.object_store import LocalStore, S3Store

# Parts of 64 KiB here (S3 and moto insist on 5 MiB; both lowered for the test's speed).
PART = 64 * 1024
BIG = b"0123456789abcdef" * (PART // 16) + b"tail\n"  # two parts, the last one small


@pytest.fixture(autouse=True)
def small_parts(monkeypatch):
    monkeypatch.setattr(totes.pipeline.object_store, "UPLOAD_PART_BYTES", PART)
    monkeypatch.setattr(moto.s3.models, "S3_UPLOAD_PART_MIN_SIZE", 1024)


@pytest.fixture
def s3_store(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-2")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        client = boto3.client("s3", region_name="eu-west-2")
        client.create_bucket(
            Bucket="lake", CreateBucketConfiguration={"LocationConstraint": "eu-west-2"}
        )
        yield S3Store("lake", "ingestion", client=client)


def _stream(store, key: str, data: bytes, chunk: int = 4096):
    with store.open_new(key) as stream:
        for start in range(0, len(data), chunk):
            stream.write(data[start : start + chunk])
    return stream


def test_a_big_stream_is_a_multipart_upload_and_stays_write_once(s3_store):
    stream = _stream(s3_store, "t/a.csv", BIG)
    assert stream.written and stream.size == len(BIG)
    assert s3_store.get("t/a.csv") == BIG
    head = s3_store.client.head_object(Bucket="lake", Key="ingestion/t/a.csv")
    assert head["ETag"].endswith('-2"')  # completed from two parts
    again = _stream(s3_store, "t/a.csv", BIG[::-1])  # If-None-Match: * refuses it
    assert not again.written
    assert s3_store.get("t/a.csv") == BIG
    uploads = s3_store.client.list_multipart_uploads(Bucket="lake")
    assert not uploads.get("Uploads")  # the refused upload was aborted


def test_a_small_stream_is_one_conditional_put(s3_store):
    assert _stream(s3_store, "t/b.csv", b"id\n1\n").written
    assert not _stream(s3_store, "t/b.csv", b"id\n2\n").written
    assert s3_store.get("t/b.csv") == b"id\n1\n"


@pytest.mark.parametrize("store_kind", ["s3", "folder"])
def test_an_error_while_streaming_leaves_nothing(store_kind, s3_store, tmp_path):
    store = s3_store if store_kind == "s3" else LocalStore(tmp_path)
    with pytest.raises(RuntimeError), store.open_new("t/c.csv") as stream:
        stream.write(BIG)
        raise RuntimeError("the database went away mid-COPY")
    assert not store.exists("t/c.csv")
    assert store.list() == []
    if store_kind == "s3":
        assert not store.client.list_multipart_uploads(Bucket="lake").get("Uploads")


def test_a_folder_stream_is_published_whole_and_write_once(tmp_path):
    store = LocalStore(tmp_path)
    assert _stream(store, "t/d.csv", BIG).written
    assert not _stream(store, "t/d.csv", b"other").written
    assert store.get("t/d.csv") == BIG
    assert store.list() == ["t/d.csv"]
