"""LocalStore and S3Store (on moto) behave identically: keys, bytes, errors and whole flow runs."""

from __future__ import annotations

import datetime as dt
import os
import pickle
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from lokki_sam import codecs, layout, run_flow, serialization
from lokki_sam.errors import SerializationError, StoreError
from lokki_sam.store import ArtifactStore, LocalStore, S3Store
from tests.flows import shapes
from tests.support.moto_s3 import SharedS3, shared_s3

BUCKET = "lokki-test-bucket"


@pytest.fixture(scope="module")
def _s3() -> Iterator[SharedS3]:
    with shared_s3() as s3:
        yield s3


@pytest.fixture
def s3_client(_s3: SharedS3) -> Any:
    return _s3.fresh(BUCKET)


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    client = request.getfixturevalue("s3_client")
    return S3Store(BUCKET, "lokki/flow", client)


@pytest.fixture
def both(tmp_path: Path, s3_client: Any) -> tuple[LocalStore, S3Store]:
    return LocalStore(tmp_path / "store"), S3Store(BUCKET, "lokki/flow", s3_client)


@pytest.fixture
def same_codec(tmp_path: Path, s3_client: Any) -> tuple[LocalStore, S3Store]:
    """Both backends writing with one codec: the same keys then hold the very same bytes."""
    codec = serialization.CODEC_ZLIB
    return LocalStore(tmp_path / "store", codec=codec), S3Store(BUCKET, "lokki/flow", s3_client, codec=codec)


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


FIRST_FRAME_KIND = serialization.HEADER_SIZE  # offset of the first frame's kind byte


def test_codec_chosen_per_store_and_compression_by_content(store: ArtifactStore) -> None:
    store.put("r/text.pkl", "abc" * 10_000)
    store.put("r/random.pkl", os.urandom(50_000))
    text, noise = store.get_bytes("r/text.pkl"), store.get_bytes("r/random.pkl")
    if isinstance(store, LocalStore):  # a local disk is faster than any codec: never compressed
        assert text[5] == noise[5] == serialization.CODEC_RAW
        assert len(text) > 30_000
    else:  # S3: bytes cost; zstd here (the dev extra installs it), zlib without it
        assert text[5] == noise[5] == serialization.CODEC_ZSTD
        assert text[FIRST_FRAME_KIND] == serialization.KIND_PACKED and len(text) < 2000
        assert noise[FIRST_FRAME_KIND] == serialization.KIND_RAW  # random data: not worth compressing
    assert store.get("r/text.pkl") == "abc" * 10_000


@pytest.mark.parametrize("codec", [serialization.CODEC_RAW, serialization.CODEC_ZLIB, serialization.CODEC_ZSTD])
def test_every_codec_reads_back_in_either_store(both: tuple[LocalStore, S3Store], codec: int) -> None:
    value = {"text": "lokki " * 400_000, "noise": os.urandom(1_500_000), "n": list(range(1000))}  # 3+ frames
    for st in both:
        writer: ArtifactStore
        if isinstance(st, LocalStore):
            writer = LocalStore(st.root, codec=codec)
        else:
            writer = S3Store(BUCKET, "w", st.client, codec=codec)
        writer.put("r/v.pkl", value)
        data = writer.get_bytes("r/v.pkl")
        assert data[4:6] == bytes((serialization.FORMAT_VERSION, codec))
        assert writer.get("r/v.pkl") == value
        assert serialization.loads(data, where="x") == value


# Written by lokki-sam before issue 15 (format version 1), bytes as its dumps produced them.
V1_RAW = bytes.fromhex(
    "4c4f4b4b01008005953f000000000000007d94288c016b945d94284b014740040000000000008c017894658c0164948c0864"
    "61746574696d65948c0464617465949394430407e805069485945294752e"
)
V1_ZLIB = bytes.fromhex(
    "4c4f4b4b01017801edd0b1150011004441891a74a11e291a90491541bfee5d0bd2d9f7838d67c53353f857c6776aeb2240"
    "80000102040810204080000102040810204080000102041e0576be8317fca2"
)


def test_artifacts_of_format_version_1_still_load(store: ArtifactStore) -> None:
    store.put_bytes("old/raw.pkl", V1_RAW)
    store.put_bytes("old/zlib.pkl", V1_ZLIB)
    assert store.get("old/raw.pkl") == {"k": [1, 2.5, "x"], "d": dt.date(2024, 5, 6)}
    assert store.get("old/zlib.pkl") == "abc" * 2000
    store.put_bytes("old/cut.pkl", V1_ZLIB[:-4])
    with pytest.raises(StoreError, match=r"old/cut.pkl: artifact is corrupt or truncated"):
        store.get("old/cut.pkl")


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


def test_same_keys_and_bytes_in_both_backends(same_codec: tuple[LocalStore, S3Store]) -> None:
    local, s3 = same_codec
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


@pytest.mark.parametrize("codec", [serialization.CODEC_ZLIB, serialization.CODEC_ZSTD])
def test_truncated_compressed_object_refused(store: ArtifactStore, codec: int) -> None:
    data = serialization.dumps("abc" * 10_000, codec=codec)
    assert data[5] == codec and data[FIRST_FRAME_KIND] == serialization.KIND_PACKED
    store.put_bytes("r/cutz.pkl", data[:-10])
    with pytest.raises(StoreError, match=r"corrupt or truncated"):
        store.get("r/cutz.pkl")


def big_artifact(codec: int = serialization.CODEC_RAW) -> bytes:
    """Several frames: one that compresses, one that does not, many small objects."""
    value = ["lokki " * 300_000, os.urandom(1_200_000), list(range(200_000))]
    data = serialization.dumps(value, codec=codec)
    total, frames = serialization.END.unpack(data[-serialization.END.size :])
    assert frames >= 3 and total > 2 * serialization.FRAME_BYTES
    return data


@pytest.mark.parametrize("codec", [serialization.CODEC_RAW, serialization.CODEC_ZSTD])
@pytest.mark.parametrize("where", ["first frame", "middle", "end frame", "frame header"])
def test_a_flipped_byte_anywhere_is_detected_never_a_wrong_value(store: ArtifactStore, codec: int, where: str) -> None:
    data = bytearray(big_artifact(codec))
    offset = {
        "first frame": serialization.HEADER_SIZE + serialization.FRAME.size + 100,
        "middle": len(data) // 2,
        "end frame": len(data) - 5,
        "frame header": serialization.HEADER_SIZE + 2,
    }[where]
    data[offset] ^= 0x40
    store.put_bytes("r/flipped.pkl", bytes(data))
    with pytest.raises(StoreError, match=r"corrupt or truncated \((frame \d+|\d+ frame|it ends|bytes after)") as info:
        store.get("r/flipped.pkl")
    assert "r/flipped.pkl" in str(info.value)


@pytest.mark.parametrize("cut", [1, 13, 1000, serialization.FRAME_BYTES + 7])
def test_a_multi_frame_artifact_cut_anywhere_is_refused(store: ArtifactStore, cut: int) -> None:
    data = big_artifact()
    store.put_bytes("r/cut.pkl", data[:-cut])
    with pytest.raises(StoreError, match=r"corrupt or truncated \((it ends|frame)"):
        store.get("r/cut.pkl")
    store.put_bytes("r/longer.pkl", data + b"\x00")
    with pytest.raises(StoreError, match=r"bytes after the end frame"):
        store.get("r/longer.pkl")


def test_a_failed_write_leaves_nothing_and_the_old_object_intact(store: ArtifactStore) -> None:
    store.put("r/x.pkl", "old")
    with pytest.raises(SerializationError, match="cannot be serialized"):
        store.put("r/x.pkl", ["a" * 5_000_000, (i for i in range(3))])  # fails after megabytes are written
    with pytest.raises(SerializationError):
        store.put("r/new.pkl", ["a" * 5_000_000, (i for i in range(3))])
    assert store.get("r/x.pkl") == "old"
    assert not store.exists("r/new.pkl")
    assert store.list_keys("r/") == ["r/x.pkl"]
    if isinstance(store, LocalStore):
        assert sorted(p.name for p in (store.root / "r").iterdir()) == ["x.pkl"]  # no temp file left


def test_without_zstd_s3_falls_back_to_zlib_and_zstd_artifacts_name_the_fix(
    s3_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3 = S3Store(BUCKET, "lokki/flow", s3_client)
    s3.put("r/z.pkl", "abc" * 10_000)
    assert s3.get_bytes("r/z.pkl")[5] == serialization.CODEC_ZSTD
    zstd_header_raw_frames = serialization.dumps(os.urandom(9000), codec=serialization.CODEC_ZSTD)
    monkeypatch.setattr(codecs, "zstd_module", lambda: None)  # as on Python < 3.14 without backports.zstd
    plain = S3Store(BUCKET, "lokki/flow", s3_client)
    plain.put("r/zl.pkl", "abc" * 10_000)
    assert plain.get_bytes("r/zl.pkl")[5] == serialization.CODEC_ZLIB
    assert plain.get("r/zl.pkl") == "abc" * 10_000
    with pytest.raises(StoreError, match=r"compressed with zstd[\s\S]*pip install backports.zstd") as info:
        plain.get("r/z.pkl")
    assert f"s3://{BUCKET}/lokki/flow/r/z.pkl" in str(info.value)
    s3_client.put_object(Bucket=BUCKET, Key="lokki/flow/r/zr.pkl", Body=zstd_header_raw_frames)
    assert len(plain.get("r/zr.pkl")) == 9000  # zstd in the header, but no frame compressed: readable


def test_newer_format_version_refused(store: ArtifactStore) -> None:
    data = bytearray(serialization.dumps([1]))
    data[4] = serialization.FORMAT_VERSION + 1
    store.put_bytes("r/new.pkl", bytes(data))
    with pytest.raises(StoreError, match=r"format version 3 is newer than this lokki-sam understands[\s\S]*upgrade"):
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
def test_flow_runs_identically_on_both_stores(same_codec: tuple[LocalStore, S3Store], name: str) -> None:
    local, s3 = same_codec
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
