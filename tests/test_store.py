"""LocalStore and S3Store (on moto) behave identically: keys, bytes, errors and whole flow runs."""

from __future__ import annotations

import datetime as dt
import os
import pickle
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from lokki_sam import layout, run_flow, serialization
from lokki_sam.errors import SerializationError, StoreError
from lokki_sam.store import ArtifactStore, LocalStore, S3Store
from tests.flows import shapes

BUCKET = "lokki-test-bucket"


@pytest.fixture
def s3_client() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    client = request.getfixturevalue("s3_client")
    return S3Store(BUCKET, "lokki/flow", client)


@pytest.fixture
def both(tmp_path: Path, s3_client: Any) -> tuple[LocalStore, S3Store]:
    return LocalStore(tmp_path / "store"), S3Store(BUCKET, "lokki/flow", s3_client)


VALUES: list[Any] = [
    b"\x00\xffraw",
    (1, "t"),
    dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC),
    Decimal("3.14"),
    {1, 2},
    frozenset({"a"}),
    None,
    {"nested": [1, 2.5, {"x": (None,)}]},
    "x" * 100_000,  # compressible: stored with zlib
]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_round_trip_keeps_type_and_value(store: ArtifactStore, value: Any) -> None:
    store.put("run/a/output.pkl", value)
    back = store.get("run/a/output.pkl")
    assert back == value and type(back) is type(value)


def test_compression_chosen_by_content(store: ArtifactStore) -> None:
    store.put("r/text.pkl", "abc" * 10_000)
    store.put("r/random.pkl", os.urandom(50_000))
    assert store.get_bytes("r/text.pkl")[5] == serialization.CODEC_ZLIB
    assert store.get_bytes("r/random.pkl")[5] == serialization.CODEC_RAW
    assert len(store.get_bytes("r/text.pkl")) < 2000


def test_many_json_exists_and_list(store: ArtifactStore) -> None:
    pairs = [(f"run/m/items/{i:08d}.pkl", [i, str(i)]) for i in range(50)]
    store.put_many(pairs)
    assert store.get_many([k for k, _ in pairs]) == [v for _, v in pairs]
    store.put_json("run/m/manifest.json", [{"i": 0, "c": 0}])
    assert store.get_json("run/m/manifest.json") == [{"i": 0, "c": 0}]
    assert store.exists("run/m/manifest.json") and not store.exists("run/m/nope.json")
    listed = store.list_keys("run/m/")
    assert listed == sorted([k for k, _ in pairs] + ["run/m/manifest.json"])
    assert store.list_keys("run/m/items/")[:2] == ["run/m/items/00000000.pkl", "run/m/items/00000001.pkl"]
    assert store.list_keys("elsewhere/") == []


def test_same_keys_and_bytes_in_both_backends(both: tuple[LocalStore, S3Store]) -> None:
    local, s3 = both
    for st in (local, s3):
        st.put("r1/step/output.pkl", {"k": [1, 2, 3]})
        st.put_json("r1/run.json", {"flow": "f"})
        st.put_many([(f"r1/map-x/items/{i:08d}.pkl", [i]) for i in range(3)])
    assert local.list_keys("r1/") == s3.list_keys("r1/")
    for key in local.list_keys("r1/"):
        assert local.get_bytes(key) == s3.get_bytes(key), key
    assert s3.describe("r1/run.json") == f"s3://{BUCKET}/lokki/flow/r1/run.json"
    assert local.describe("r1/run.json").endswith("store/r1/run.json")


@pytest.mark.parametrize("key", ["../escape", "a/../../b", "/abs/key", "a//b", "a/./b", "", "a\\b", "a\x00b"])
def test_foreign_keys_refused(store: ArtifactStore, key: str) -> None:
    with pytest.raises(StoreError, match="refusing store key"):
        store.put_bytes(key, b"x")
    with pytest.raises(StoreError, match="refusing store key"):
        store.get_bytes(key)


def test_missing_artifact_is_a_clear_error(store: ArtifactStore) -> None:
    with pytest.raises(StoreError, match=r"artifact not found") as info:
        store.get("run/none/output.pkl")
    assert "run/none/output.pkl" in str(info.value)


def test_foreign_object_refused_without_unpickling(store: ArtifactStore) -> None:
    store.put_bytes("r/foreign.pkl", pickle.dumps({"a": 1}))
    with pytest.raises(StoreError, match=r"not a lokki-sam artifact \(missing header\); refusing to unpickle"):
        store.get("r/foreign.pkl")


def test_truncated_object_refused(store: ArtifactStore) -> None:
    data = serialization.dumps(list(range(1000)))
    store.put_bytes("r/cut.pkl", data[: len(data) // 2])
    with pytest.raises(StoreError, match=r"artifact is corrupt or truncated"):
        store.get("r/cut.pkl")
    store.put_bytes("r/header-only.pkl", data[:3])
    with pytest.raises(StoreError, match=r"missing header"):
        store.get("r/header-only.pkl")


def test_truncated_compressed_object_refused(store: ArtifactStore) -> None:
    data = serialization.dumps("abc" * 10_000)
    assert data[5] == serialization.CODEC_ZLIB
    store.put_bytes("r/cutz.pkl", data[:-10])
    with pytest.raises(StoreError, match=r"corrupt or truncated"):
        store.get("r/cutz.pkl")


def test_newer_format_version_refused(store: ArtifactStore) -> None:
    data = bytearray(serialization.dumps([1]))
    data[4] = serialization.FORMAT_VERSION + 1
    store.put_bytes("r/new.pkl", bytes(data))
    with pytest.raises(StoreError, match=r"format version 2 is newer than this lokki-sam understands[\s\S]*upgrade"):
        store.get("r/new.pkl")
    data[4] = serialization.FORMAT_VERSION
    data[5] = 9
    store.put_bytes("r/codec.pkl", bytes(data))
    with pytest.raises(StoreError, match=r"unknown codec 9"):
        store.get("r/codec.pkl")


def test_bad_json_refused(store: ArtifactStore) -> None:
    store.put_bytes("r/bad.json", b"{not json")
    with pytest.raises(StoreError, match=r"not valid JSON"):
        store.get_json("r/bad.json")


def test_unserializable_value_names_what() -> None:
    with pytest.raises(SerializationError, match=r"result of step 'x' of type generator cannot be serialized"):
        serialization.dumps((i for i in range(3)), what="result of step 'x'")


def test_invalid_bucket_and_prefix(s3_client: Any) -> None:
    with pytest.raises(StoreError, match="invalid bucket name"):
        S3Store("a/b", client=s3_client)
    with pytest.raises(StoreError, match="refusing store key"):
        S3Store(BUCKET, "lokki/../x", client=s3_client)


def test_s3_keys_stay_under_prefix(s3_client: Any) -> None:
    s3 = S3Store(BUCKET, "lokki/flow", s3_client)
    s3.put("r/x.pkl", 1)
    s3_client.put_object(Bucket=BUCKET, Key="lokki/other/r/y.pkl", Body=b"x")
    keys = [o["Key"] for o in s3_client.list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert "lokki/flow/r/x.pkl" in keys
    assert s3.list_keys("r/") == ["r/x.pkl"]


@pytest.mark.parametrize("name", ["map_agg", "inner_chain", "after_agg", "batched", "passthrough", "open_map_chain"])
def test_flow_runs_identically_on_both_stores(both: tuple[LocalStore, S3Store], name: str) -> None:
    local, s3 = both
    flow_obj, params, expected = shapes.SHAPES[name]
    a = run_flow(flow_obj, params, store=local, run_id="same-run")
    b = run_flow(flow_obj, params, store=s3, run_id="same-run")
    assert a.result == b.result == expected
    keys = [k for k in local.list_keys("same-run/") if k != layout.run_lock("same-run")]  # the lock: local only
    assert keys == s3.list_keys("same-run/")
    for key in keys:
        if key != "same-run/run.json":  # holds timestamps
            assert local.get_bytes(key) == s3.get_bytes(key), key


def test_resume_works_on_s3(both: tuple[LocalStore, S3Store]) -> None:
    _, s3 = both
    flow_obj, params, expected = shapes.SHAPES["map_agg"]
    run_flow(flow_obj, params, store=s3, run_id="r-s3")
    again = run_flow(flow_obj, None, store=s3, resume="r-s3")
    assert again.result == expected
