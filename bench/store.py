"""Artifact store throughput, and the serialization codec comparison behind lokki_sam/serialization.py.

    python bench/store.py [--skip-s3] [--repeat 3]

Store: write + read (put_many / get_many, as the runner uses them) of 10 x 10 MB and
10,000 x 100 B objects on LocalStore (a temp directory) and S3Store against a moto server on
127.0.0.1 (an in-memory HTTP emulator: its figures measure lokki-sam + boto3 + moto, not S3).
Target (issue 2): large-object round trip at 200 MB/s or better.

Codecs: raw pickle vs zlib level 1 (what lokki-sam uses when a sample compresses well) vs
gzip level 9 (what upstream lokki uses) on compressible and on random data.
"""

from __future__ import annotations

import argparse
import gzip
import os
import pickle
import random
import socket
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from typing import Any

from lokki_sam.store import ArtifactStore, LocalStore, S3Store

MB = 1 << 20


def best(fn: Callable[[], Any], repeat: int) -> float:
    """Fastest of `repeat` runs: the least disturbed by other processes on a shared machine."""
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return min(times)


def compressible(size: int) -> list[dict[str, Any]]:
    """Records like a data pipeline moves: repetitive keys, small numbers, short strings."""
    rng = random.Random(1)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta"]
    rows, total = [], 0
    while total < size:
        row = {"id": len(rows), "name": rng.choice(words), "score": round(rng.random(), 3), "ok": rng.random() < 0.5}
        rows.append(row)
        total += 60
    return rows


def bench_store(name: str, make: Callable[[], ArtifactStore], repeat: int, small_repeat: int | None = None) -> None:
    """Write, then read back, each set; the round trip is write time + read time."""
    store = make()
    sets = {
        "10 x 10 MB": [(f"bench/big/{i:08d}.pkl", os.urandom(10 * MB)) for i in range(10)],
        "10,000 x 100 B": [(f"bench/small/{i:08d}.pkl", os.urandom(100)) for i in range(10_000)],
    }
    for label, objects in sets.items():
        keys = [k for k, _ in objects]
        times = repeat if len(objects) < 1000 or small_repeat is None else small_repeat
        write = best(lambda objects=objects: store.put_many(objects), times)
        read = best(lambda keys=keys: store.get_many(keys), times)
        mb = sum(len(v) for _, v in objects) / MB
        print(
            f"{name:<22} {label:<15} write {mb / write:6.0f} MB/s {len(objects) / write:7.0f} obj/s | "
            f"read {mb / read:6.0f} MB/s {len(objects) / read:7.0f} obj/s | "
            f"round trip {mb / (write + read):6.1f} MB/s in {write + read:.2f} s"
        )


def bench_plain_files(root: str, repeat: int) -> None:
    """The file system's own speed for the same 10 x 10 MB (open/write/read, no lokki-sam): the ceiling."""
    blobs = [os.urandom(10 * MB) for _ in range(10)]
    paths = [os.path.join(root, f"plain-{i}") for i in range(10)]

    def write() -> None:
        for path, blob in zip(paths, blobs, strict=True):
            with open(path, "wb") as fh:
                fh.write(blob)

    def read() -> None:
        for path in paths:
            with open(path, "rb") as fh:
                fh.read()

    w, r = best(write, repeat), best(read, repeat)
    print(
        f"{'plain files (no lokki)':<22} {'10 x 10 MB':<15} write {100 / w:6.0f} MB/s {'':>13} | "
        f"read {100 / r:6.0f} MB/s {'':>13} | round trip {100 / (w + r):6.0f} MB/s"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bench_s3(repeat: int) -> None:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request

    from lokki_sam.store import s3_client

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        client = s3_client(endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1")
        client.create_bucket(Bucket="bench")
        # 10,000 requests to moto take minutes: the small set runs once.
        bench_store("S3Store (moto server)", lambda: S3Store("bench", "lokki/bench", client), repeat, small_repeat=1)
    finally:
        server.stop()


def bench_codecs(repeat: int) -> None:
    data = {
        "compressible 10 MB": pickle.dumps(compressible(10 * MB), protocol=5),
        "random 10 MB": pickle.dumps(os.urandom(10 * MB), protocol=5),
    }
    codecs: dict[str, tuple[Callable[[bytes], bytes], Callable[[bytes], bytes]]] = {
        "raw": (lambda b: b, lambda b: b),
        "zlib-1": (lambda b: zlib.compress(b, 1), zlib.decompress),
        "gzip-9": (lambda b: gzip.compress(b, 9), gzip.decompress),
    }
    print(f"\n{'payload':<20} {'codec':<7} {'ratio':>6} {'compress':>12} {'decompress':>12}")
    for label, payload in data.items():
        size_mb = len(payload) / MB
        for codec, (comp, decomp) in codecs.items():
            if codec == "raw":
                print(f"{label:<20} {codec:<7} {1:6.2f} {'(no work)':>12} {'(no work)':>12}")
                continue
            packed = comp(payload)
            c = best(lambda comp=comp, payload=payload: comp(payload), repeat)
            d = best(lambda decomp=decomp, packed=packed: decomp(packed), repeat)
            print(
                f"{label:<20} {codec:<7} {len(packed) / len(payload):6.2f} "
                f"{size_mb / c if c else float('inf'):8.0f} MB/s {size_mb / d if d else float('inf'):8.0f} MB/s"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-s3", action="store_true")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPU(s), Python {sys.version.split()[0]}; best of {args.repeat} runs\n")
    with tempfile.TemporaryDirectory() as tmp:
        bench_plain_files(tmp, args.repeat)
        bench_store("LocalStore (temp dir)", lambda: LocalStore(tmp), args.repeat)
    if os.path.isdir("/dev/shm"):  # tmpfs: lokki-sam's own cost, without the disk
        with tempfile.TemporaryDirectory(dir="/dev/shm") as tmp:
            bench_store("LocalStore (tmpfs)", lambda: LocalStore(tmp), args.repeat)
    if not args.skip_s3:
        bench_s3(args.repeat)
    bench_codecs(args.repeat)


if __name__ == "__main__":
    main()
