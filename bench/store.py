"""Artifact store throughput and memory, before and after issue 15, and the codec comparison behind
lokki_sam/serialization.py.

    python bench/store.py [--sizes 10,100,1000] [--skip-s3] [--repeat 3]

Large artifacts: `put` then `get` of one bytes object of 10 MB, 100 MB and 1 GB (MB = 2**20),
random (incompressible) and compressible (CSV-like text), on LocalStore (a temp dir on disk) and
S3Store against a moto server in its own process on 127.0.0.1 (an in-memory HTTP emulator: its
figures measure lokki-sam + boto3 + moto, not S3). Each case runs in a fresh process, so its peak
RSS (VmHWM, printed as MB and as a multiple of the artifact's size) is its own. Rows:

  before      the pre-issue-15 path (bench/baseline.py): format 1, zlib 1 when a sample compresses,
              one write/put_object and one read/get_object of the whole byte string
  after       the store's own path and codec (local: raw; S3: zstd 1, else zlib 1; multipart)
  after raw   S3 with the raw codec: the parallel transfer alone, against before's single request

Ceilings printed beside: memcpy and plain file write+read of 100 MB. Then 100 MB through a proxy
capping each connection at --cap MB/s (a model of S3's per-connection throughput: simulated), small
objects (10,000 x 100 B with put_many/get_many) and the codec table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

MB = 1 << 20


def best(fn: Callable[[], Any], repeat: int) -> float:
    """Fastest of `repeat` runs: the least disturbed by other processes on a shared machine."""
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return min(times)


def csv_block(size: int, seed: int = 1) -> bytes:
    rng = random.Random(seed)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    lines, total = [], 0
    while total < size:
        line = f"{len(lines)},{rng.choice(words)},{rng.random():.4f},{rng.randint(0, 10**6)},{rng.random() < 0.5}\n"
        lines.append(line)
        total += len(line)
    return "".join(lines).encode()[:size]


def make(kind: str, size: int) -> bytes:
    if kind == "random":
        return os.urandom(size)
    block = csv_block(8 * MB)  # tiled: 8 MiB apart, beyond zlib's and zstd 1's window, so no free wins
    whole, rest = divmod(size, len(block))
    return b"".join([block] * whole + [block[:rest]])  # one allocation of `size`


# ------------------------------------------------------------------- one case, in its own process


def vm_hwm() -> int:
    """This process's peak RSS. Not ru_maxrss: Linux carries that across exec from the parent."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def worker(case: dict[str, Any]) -> dict[str, Any]:
    from lokki_sam import serialization
    from lokki_sam.store import ArtifactStore, LocalStore, S3Store, s3_client

    if case["impl"] == "before":
        import baseline

        baseline.use_baseline()
    store: ArtifactStore
    if case["store"] == "local":
        store = LocalStore(case["root"])
    else:
        client = s3_client(endpoint_url=case["endpoint"], region_name="us-east-1")
        codec = serialization.CODEC_RAW if case["impl"] == "after raw" else None
        store = S3Store("bench", "lokki/bench", client, codec=codec)
        store.exists("warm-up")  # imports and the connection, outside the timings
    size, repeat = case["mb"] * MB, case["repeat"]
    value: Any = make(case["kind"], size)
    writes, reads = [], []
    for _ in range(repeat):
        began = time.perf_counter()
        store.put("big.pkl", value)
        writes.append(time.perf_counter() - began)
        value = None  # the read builds its own copy: do not count the original twice
        began = time.perf_counter()
        value = store.get("big.pkl")
        reads.append(time.perf_counter() - began)
    assert len(value) == size
    peak = vm_hwm()
    if isinstance(store, S3Store):
        stored = store.client.head_object(Bucket=store.bucket, Key=store.full_key("big.pkl"))["ContentLength"]
        store.client.delete_object(Bucket=store.bucket, Key=store.full_key("big.pkl"))  # moto keeps it in memory
    else:
        stored = os.path.getsize(store.describe("big.pkl"))
    return {"write": min(writes), "read": min(reads), "peak": peak, "stored": stored}


# ----------------------------------------------------------------------------------- the parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, endpoint
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("moto server did not start")


class CappedProxy:
    """A TCP proxy on 127.0.0.1 to the moto server that caps each connection at `rate` bytes/s in
    each direction: a model of S3, where one connection carries ~50-90 MB/s and throughput comes from
    parallel connections. On bare loopback nothing limits a single connection, so moto alone cannot
    show what parallel transfers buy (simulated: say so wherever its figures are quoted)."""

    def __init__(self, target_port: int, rate: float) -> None:
        import threading

        self.target_port, self.rate = target_port, rate
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.threads = threading
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            for src, dst in ((client, upstream), (upstream, client)):
                self.threads.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        began, sent = time.perf_counter(), 0
        try:
            while data := src.recv(256 * 1024):
                dst.sendall(data)
                sent += len(data)
                ahead = sent / self.rate - (time.perf_counter() - began)
                if ahead > 0:
                    time.sleep(ahead)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.listener.close()


def run_case(case: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(case)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"case {case} failed:\n{done.stderr}")
    return dict(json.loads(done.stdout.splitlines()[-1]))


def bench_large(sizes: list[int], stores: list[str], repeat: int, endpoint: str | None, root: str) -> None:
    print(
        f"{'store':<6} {'impl':<10} {'data':<12} {'size':>7} | {'write':>9} {'read':>9} {'round trip':>10} | "
        f"{'peak RSS':>9} {'x size':>6} | {'stored':>7}"
    )
    for store in stores:
        impls = ["before", "after"] + (["after raw"] if store == "s3" else [])
        for mb in sizes:
            for kind in ("random", "compressible"):
                for impl in impls:
                    case = {
                        "store": store,
                        "impl": impl,
                        "kind": kind,
                        "mb": mb,
                        "root": root,
                        "endpoint": endpoint,
                        "repeat": 1 if mb >= 1000 else repeat,
                    }
                    r = run_case(case)
                    rt = mb / (r["write"] + r["read"])
                    stored = f"{r['stored'] / (mb * MB):6.2f}x"
                    print(
                        f"{store:<6} {impl:<10} {kind:<12} {mb:>4} MB | {mb / r['write']:5.0f} MB/s "
                        f"{mb / r['read']:5.0f} MB/s {rt:5.0f} MB/s | {r['peak'] / MB:6.0f} MB "
                        f"{r['peak'] / (mb * MB):5.2f}x | {stored}",
                        flush=True,
                    )


def bench_capped(endpoint: str, root: str, rate_mb: int) -> None:
    """Single request (before) vs parallel parts and ranges (after, raw codec) when each connection
    is capped at `rate_mb` MB/s (CappedProxy: simulated)."""
    proxy = CappedProxy(int(endpoint.rsplit(":", 1)[1]), rate_mb * MB)
    print(f"\nS3 (moto) behind a {rate_mb} MB/s-per-connection cap (simulated, see CappedProxy):")
    try:
        for mb in (100,):
            for impl in ("before", "after raw"):
                case = {
                    "store": "s3",
                    "impl": impl,
                    "kind": "random",
                    "mb": mb,
                    "root": root,
                    "endpoint": f"http://127.0.0.1:{proxy.port}",
                    "repeat": 1,
                }
                r = run_case(case)
                rt = mb / (r["write"] + r["read"])
                print(
                    f"s3 capped {impl:<10} random {mb:>4} MB | write {mb / r['write']:5.0f} MB/s, "
                    f"read {mb / r['read']:5.0f} MB/s, round trip {rt:5.0f} MB/s",
                    flush=True,
                )
    finally:
        proxy.close()


def bench_ceilings(root: str, repeat: int) -> None:
    blob = os.urandom(100 * MB)
    copy = best(lambda: bytearray(blob), repeat)
    path = os.path.join(root, "plain")

    def write() -> None:
        with open(path, "wb") as fh:
            fh.write(blob)

    def read() -> None:
        with open(path, "rb") as fh:
            fh.read()

    w, r = best(write, repeat), best(read, repeat)
    os.unlink(path)
    print(
        f"ceilings, 100 MB: memcpy {100 / copy:.0f} MB/s; plain file write {100 / w:.0f} MB/s, "
        f"read {100 / r:.0f} MB/s, write+read {100 / (w + r):.0f} MB/s (page cache)\n"
    )


def bench_small(stores: list[str], endpoint: str | None, root: str, repeat: int) -> None:
    """10,000 x 100 B (map items, small outputs): one request/file each; before vs after."""
    import baseline

    from lokki_sam.store import ArtifactStore, LocalStore, S3Store, s3_client

    new_put, new_get = ArtifactStore.put, ArtifactStore.get
    print()
    for store_name in stores:
        count = 10_000 if store_name == "local" else 1_000  # moto: ~10 ms a request
        objects = [(f"small/{i:08d}.pkl", os.urandom(100)) for i in range(count)]
        for impl in ("before", "after"):
            if impl == "before":
                ArtifactStore.put, ArtifactStore.get = baseline.put, baseline.get  # type: ignore[method-assign]
            store: ArtifactStore = (  # each impl its own fresh place: creating files is not replacing them
                LocalStore(os.path.join(root, f"small-{impl}"))
                if store_name == "local"
                else S3Store("bench", f"small-{impl}", s3_client(endpoint_url=endpoint, region_name="us-east-1"))
            )
            times = repeat if store_name == "local" else 1
            keys = [k for k, _ in objects]
            w = best(lambda store=store, objects=objects: store.put_many(objects), times)
            r = best(lambda store=store, keys=keys: store.get_many(keys), times)
            ArtifactStore.put, ArtifactStore.get = new_put, new_get  # type: ignore[method-assign]
            print(
                f"{store_name:<6} {impl:<10} {count} x 100 B: write {count / w:6.0f} obj/s, read {count / r:6.0f} obj/s"
            )


def bench_codecs(repeat: int) -> None:
    """Each codec alone (one thread), then serialization.dumps + loads of the same bytes object
    (frames compressed on all cores; what a store pays)."""
    from lokki_sam import codecs, serialization

    zstd = codecs.zstd_module()
    size = 20 * MB
    data = {
        "compressible": make("compressible", size),
        "hex text": os.urandom(size // 2).hex().encode(),
        "random": os.urandom(size),
    }
    table: dict[str, tuple[Callable[[bytes], bytes], Callable[[bytes], bytes]]] = {
        "zlib-1": (lambda b: zlib.compress(b, 1), zlib.decompress),
        "zlib-6": (lambda b: zlib.compress(b, 6), zlib.decompress),
    }
    if zstd is not None:
        table["zstd-1"] = (lambda b: zstd.compress(b, 1), zstd.decompress)
        table["zstd-3"] = (lambda b: zstd.compress(b, 3), zstd.decompress)
    print(f"\n{'payload (20 MB)':<16} {'codec':<22} {'ratio':>6} {'compress':>12} {'decompress':>12}")
    for label, payload in data.items():
        for name, (comp, decomp) in table.items():
            packed = comp(payload)
            c = best(lambda comp=comp, payload=payload: comp(payload), repeat)
            d = best(lambda decomp=decomp, packed=packed: decomp(packed), repeat)
            row = f"{label:<16} {name + ' (1 thread)':<22} {len(packed) / size:6.2f}"
            print(f"{row} {20 / c:7.0f} MB/s {20 / d:7.0f} MB/s")
        for codec_id, name in codecs.NAMES.items():
            if codec_id == codecs.ZSTD and zstd is None:
                continue
            art = serialization.dumps(payload, codec=codec_id)
            c = best(lambda codec_id=codec_id, payload=payload: serialization.dumps(payload, codec=codec_id), repeat)
            d = best(lambda art=art: serialization.loads(art, where="bench"), repeat)
            row = f"{label:<16} {'dumps/loads ' + name:<22} {len(art) / size:6.2f}"
            print(f"{row} {20 / c:7.0f} MB/s {20 / d:7.0f} MB/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sizes", default="10,100,1000", help="artifact sizes in MB, comma-separated")
    parser.add_argument("--skip-s3", action="store_true")
    parser.add_argument("--cap", type=int, default=50, help="MB/s per connection for the capped S3 rows (0: skip)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    sizes = [int(s) for s in args.sizes.split(",")]
    print(
        f"machine: {os.cpu_count()} CPU(s), Python {sys.version.split()[0]}; best of {args.repeat} "
        f"(1 GB: one run); load average {os.getloadavg()[0]:.1f}\n"
    )
    stores = ["local"] if args.skip_s3 else ["local", "s3"]
    moto, endpoint = (None, None) if args.skip_s3 else start_moto()
    try:
        if endpoint:
            from lokki_sam.store import s3_client

            s3_client(endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="bench")
        with tempfile.TemporaryDirectory() as root:
            bench_ceilings(root, args.repeat)
            bench_large(sizes, stores, args.repeat, endpoint, root)
            if endpoint and args.cap:
                bench_capped(endpoint, root, args.cap)
            bench_small(stores, endpoint, root, args.repeat)
    finally:
        if moto is not None:
            moto.terminate()
            moto.wait()
    bench_codecs(args.repeat)


if __name__ == "__main__":
    main()
