"""The lake's layout and its write-once stores."""

from __future__ import annotations

from datetime import datetime, timedelta

import boto3
import pytest
from moto import mock_aws

from totes.pipeline.checksums import BucketChecksums
from totes.pipeline.errors import UndeliverableBatchError
from totes.pipeline.lake import (
    DamagedObjectError,
    IngestionManifest,
    Lake,
    LakeError,
    Snapshot,
    TableExtract,
    batch_id_at,
    batch_id_of,
    checksums_key,
    csv_key,
    manifest_key,
    parquet_key,
    quarantine_key,
    skip_key,
)
from totes.pipeline.object_store import LocalStore, S3Store


def test_keys_sort_by_time_and_name_table_and_batch():
    early = batch_id_at(datetime(2026, 1, 2, 3, 4, 5, 6))
    late = batch_id_at(datetime(2026, 11, 27, 13, 0, 0, 0))
    assert early == "20260102T030405000006Z"
    assert csv_key("sales_order", early) == "sales_order/2026/01/02/20260102T030405000006Z.csv"
    assert parquet_key("dim_date", late).startswith("dim_date/2026/11/27/")
    assert sorted([csv_key("x", late), csv_key("x", early)])[0] == csv_key("x", early)
    assert batch_id_of(csv_key("x", early)) == early
    assert batch_id_of(manifest_key(late)) == late == batch_id_of(checksums_key("x", late))
    assert skip_key(late) == f"_skipped/{late}.json"
    assert quarantine_key("payment", late).startswith("_quarantine/payment/2026/11/27/")


@pytest.mark.parametrize("bad", ["", "../x", "2026-01-01", "20260102T030405000006Z/../../x", None])
def test_anything_but_a_batch_id_is_refused_before_it_becomes_a_key(bad):
    with pytest.raises(LakeError):
        csv_key("sales_order", bad)


def test_local_store_never_overwrites(tmp_path):
    store = LocalStore(tmp_path)
    assert store.put_new("a/b.csv", b"first") is True
    assert store.put_new("a/b.csv", b"second") is False
    assert store.get("a/b.csv") == b"first"
    assert store.list() == ["a/b.csv"]
    assert store.exists("a/b.csv") and not store.exists("a/c.csv")


def test_local_store_refuses_keys_outside_its_folder(tmp_path):
    with pytest.raises(ValueError, match="outside"):
        LocalStore(tmp_path / "lake").put_new("../escape.csv", b"x")


def test_lake_uri_chooses_the_store():
    local = Lake.from_uri("/tmp/somewhere")
    assert isinstance(local.ingestion, LocalStore)
    assert local.processed.location("k") == "/tmp/somewhere/processed/k"
    s3 = Lake.from_uri("s3://bucket/pre/fix")
    assert isinstance(s3.ingestion, S3Store)
    assert s3.ingestion.location("k") == "s3://bucket/pre/fix/ingestion/k"
    with pytest.raises(LakeError, match="expected a folder path"):
        Lake.from_uri("ftp://nope")


def test_manifest_round_trips_and_untransformed_batches_exclude_skipped_ones(tmp_path):
    lake = Lake.from_uri(str(tmp_path))
    ids = [batch_id_at(datetime(2026, 1, d)) for d in (1, 2, 3)]
    for i, batch_id in enumerate(ids):
        manifest = IngestionManifest(
            batch_id=batch_id,
            previous_batch_id=ids[i - 1] if i else None,
            tables={
                "payment": TableExtract(
                    rows=2,
                    key=csv_key("payment", batch_id),
                    watermark="w",
                    future_rows=1,
                    snapshot=Snapshot(100, (0, 3)),
                )
            },
            recent={"payment": {"1": "abc"}},
        )
        lake.ingestion.put_new(manifest_key(batch_id), manifest.to_json())
    assert lake.ingestion_manifest(ids[1]) == IngestionManifest.from_json(
        lake.ingestion.get(manifest_key(ids[1]))
    )
    assert lake.latest_ingestion_manifest().batch_id == ids[2]
    assert lake.latest_ingestion_manifest().rows == 2
    assert lake.ingestion_manifest(ids[0]).tables["payment"].snapshot == Snapshot(100, (0, 3))
    lake.processed.put_new(manifest_key(ids[0]), b"{}")
    lake.record_skip(ids[1], "truncated CSV", by="ops", at="2026-01-04T00:00:00")
    assert lake.untransformed_batches() == ids[2:]
    assert lake.skipped()[ids[1]].reason == "truncated CSV"
    with pytest.raises(LakeError, match="already skipped"):
        lake.record_skip(ids[1], "again", by="ops", at="2026-01-04T00:00:00")
    with pytest.raises(LakeError, match="needs a reason"):
        lake.record_skip(ids[2], "  ", by="ops", at="2026-01-04T00:00:00")
    with pytest.raises(LakeError, match="no extracted batch"):
        lake.record_skip(batch_id_at(datetime(2027, 1, 1)), "x", by="ops", at="now")


def test_a_missing_manifest_is_a_lake_error_naming_the_batch(tmp_path):
    lake = Lake.from_uri(str(tmp_path))
    batch_id = batch_id_at(datetime(2026, 1, 1))
    with pytest.raises(LakeError, match=f"batch {batch_id} has no ingestion manifest"):
        lake.ingestion_manifest(batch_id)
    with pytest.raises(LakeError, match="not transformed"):
        lake.processed_manifest(batch_id)


def test_snapshot_and_checksums_round_trip(tmp_path):
    lake = Lake.from_uri(str(tmp_path))
    batch_id = batch_id_at(datetime(2026, 1, 1))
    checksums = BucketChecksums.of({0: (99, 12345678901234567), 4: (1, -7)})
    key = lake.put_checksums("design", batch_id, 100, checksums)
    assert lake.checksums(key) == checksums
    assert dict(lake.checksums(key).items()) == {0: (99, 12345678901234567), 4: (1, -7)}
    assert Snapshot.from_dict(Snapshot(100, None).to_dict()) == Snapshot(100, None)
    assert Snapshot(100, None).full and not Snapshot(100, (1,)).full


def test_local_store_concurrent_writers_of_one_key_leave_one_intact_file(tmp_path):
    import threading

    store = LocalStore(tmp_path)
    results: list[bool] = []
    payloads = [bytes([i]) * 100_000 for i in range(8)]
    threads = [
        threading.Thread(target=lambda p=p: results.append(store.put_new("k/x.parquet", p)))
        for p in payloads
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 7 + [True]
    assert store.get("k/x.parquet") in payloads
    assert store.list() == ["k/x.parquet"]  # no temporary files left behind


@pytest.mark.parametrize(
    "damage", [b'{"batch_id": "2026', b'{"batch_id": 1}', b"[]"], ids=["cut", "fields", "shape"]
)
def test_a_damaged_manifest_names_its_file_and_how_to_restore_it(tmp_path, damage):
    lake = Lake(LocalStore(tmp_path / "ingestion"), LocalStore(tmp_path / "processed"))
    batch_id = batch_id_at(datetime(2026, 11, 27, 13, 0, 0, 0))
    lake.ingestion.put_new(manifest_key(batch_id), damage)
    with pytest.raises(DamagedObjectError) as caught:
        lake.latest_ingestion_manifest()
    # Not the advice to skip its batch: the next extract would read it again.
    assert not isinstance(caught.value, UndeliverableBatchError)
    assert str(caught.value).startswith(f"{lake.ingestion.location(manifest_key(batch_id))}")
    assert str(caught.value).endswith("restore the object's earlier one")


def _manifests(lake: Lake, moments: list[datetime]) -> list[str]:
    ids = [batch_id_at(moment) for moment in moments]
    for i, batch_id in enumerate(ids):
        manifest = IngestionManifest(batch_id, ids[i - 1] if i else None, tables={})
        lake.ingestion.put_new(manifest_key(batch_id), manifest.to_json())
    return ids


@pytest.mark.parametrize("store", ["folder", "s3"])
def test_the_latest_manifest_is_found_among_the_last_days_keys_or_else_among_all(
    store, tmp_path, monkeypatch
):
    """A year of 10-minute batches is 52,560 manifests: a run lists the last two days'."""
    with mock_aws():
        if store == "s3":
            boto3.client("s3", region_name="eu-west-2").create_bucket(
                Bucket="lake", CreateBucketConfiguration={"LocationConstraint": "eu-west-2"}
            )
            lake = Lake(S3Store("lake", "ingestion/"), S3Store("lake", "processed/"))
        else:
            lake = Lake.from_uri(str(tmp_path))
        old = _manifests(lake, [datetime(2025, 6, 1), datetime(2026, 1, 1)])
        listed: list[str | None] = []
        real_list = type(lake.ingestion).list

        def watched(self, prefix="", start_after=None):
            keys = real_list(self, prefix, start_after)
            listed.append(len(keys))
            return keys

        monkeypatch.setattr(type(lake.ingestion), "list", watched)
        now = datetime(2026, 3, 1)
        # Nothing in the last two days: every manifest is looked at.
        assert lake.latest_ingestion_manifest(now).batch_id == old[-1]
        assert listed == [0, 2]
        recent = _manifests(lake, [now - timedelta(days=1, hours=23), now - timedelta(hours=1)])
        listed.clear()
        assert lake.latest_ingestion_manifest(now).batch_id == recent[-1]
        assert listed == [2]  # the last two days' keys only
        # A batch named after the caller's clock (the source's clock ran ahead) is newest.
        ahead = _manifests(lake, [now + timedelta(days=3)])
        assert lake.latest_ingestion_manifest(now).batch_id == ahead[-1]
