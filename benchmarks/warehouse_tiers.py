"""Claim: warehouse tier gets run at >= 70% of the raw medium (DRAM, disk), measured side by side.

For each tier, the same encoded blocks are read through the tier and through the raw medium in
alternating rounds; prints median throughput (GB/s) of each and the ratio:
- DRAM: MemoryTier.get_many + header check + copying the tensors out vs a plain memory copy of
  the same bytes into preallocated buffers (also: the get alone, which hands out the stored
  immutable bytes without a copy, and the get with the payload CRC that DRAM reads skip);
- disk: DiskTier.get_many (+ full verified decode; + the store's whole load) vs a plain
  sequential read of the same files;
- Redis: RedisTier.get_many vs raw redis-py MGET of the same values; that MGET with hiredis vs
  redis-py's pure-Python parser; the tier's verified get and the store's load (one MGET) vs the
  same MGET read raw off a socket into one buffer (a redis-server is started on a free loopback
  port unless --redis URL is given);
- checksums (--checksums): payload checksum candidates on blocks of this size: zlib CRC-32 (the
  codec's format 1), XXH3-64 (format 2), XXH3-128, XXH64 and CRC32C (google-crc32c, when
  installed), as throughput and ratio to CRC-32.

    .venv/bin/python benchmarks/warehouse_tiers.py --block-mib 1 --blocks 64 --repeats 9
    .venv/bin/python benchmarks/warehouse_tiers.py --block-mib 0.03125 --blocks 400 --checksums
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import xxhash
from redis.utils import HIREDIS_AVAILABLE

from tokenwatt.warehouse.codec import decode_block, encode_block
from tokenwatt.warehouse.disk import DiskTier
from tokenwatt.warehouse.keys import BlockHasher, fingerprint_digest
from tokenwatt.warehouse.memory import MemoryTier
from tokenwatt.warehouse.redis_tier import RedisTier
from tokenwatt.warehouse.store import TierConfig, TieredStore

FP = "bench-model"


def _make_blocks(n: int, block_bytes: int) -> tuple[list[str], list[bytes]]:
    keys = BlockHasher(FP, block_tokens=16).keys(range(16 * n))
    rng = np.random.default_rng(0)
    floats = block_bytes // 4 // 4
    blocks = [
        encode_block(
            k,
            fingerprint_digest(FP),
            16,
            [rng.standard_normal(floats).astype(np.float32) for _ in range(4)],
        )
        for k in keys
    ]
    return keys, blocks


def _side_by_side(
    ours: Callable[[], object], raw: Callable[[], object], repeats: int
) -> tuple[float, float]:
    """Median seconds of each, alternating which goes first (shared, noisy machine)."""
    a: list[float] = []
    b: list[float] = []
    for i in range(repeats):
        order = [(ours, a), (raw, b)] if i % 2 == 0 else [(raw, b), (ours, a)]
        for fn, sink in order:
            start = time.perf_counter()
            fn()
            sink.append(time.perf_counter() - start)
    return statistics.median(a), statistics.median(b)


def _report(label: str, total_bytes: int, ours_s: float, raw_s: float, raw_label: str) -> None:
    ours = total_bytes / ours_s / 1e9
    raw = total_bytes / raw_s / 1e9
    print(
        f"{label:<44} {ours:7.2f} GB/s | {raw_label:<28} {raw:7.2f} GB/s | ratio {ours / raw:6.1%}"
    )


def bench_dram(keys: list[str], blocks: list[bytes], repeats: int) -> None:
    total = sum(map(len, blocks))
    tier = MemoryTier(2 * total)
    tier.put_many([(k, b, 0.0) for k, b in zip(keys, blocks, strict=True)])

    def tier_get(verify_payload: bool) -> Callable[[], object]:
        def run() -> object:
            got = tier.get_many(keys)
            return [
                decode_block(d, key=k, verify_payload=verify_payload)
                for k, d in zip(keys, got, strict=True)
                if d is not None
            ]

        return run

    # Destination buffers allocated once, so the copies measure memory bandwidth, not page faults.
    dest = [bytearray(len(b)) for b in blocks]

    def raw_copy() -> object:
        for d, b in zip(dest, blocks, strict=True):
            d[:] = b
        return dest

    def tier_get_into_buffers() -> object:
        # What the engine does with a hit: verify the header, then copy the tensors out.
        got = tier.get_many(keys)
        for d, k, data in zip(dest, keys, got, strict=True):
            assert data is not None
            block = decode_block(data, key=k, verify_payload=False)
            start = block.header.header_bytes
            d[start:] = memoryview(data)[start:]
        return dest

    ours_s, raw_s = _side_by_side(tier_get_into_buffers, raw_copy, repeats)
    _report("DRAM tier get + header check + copy out", total, ours_s, raw_s, "memory copy")
    ours_s, raw_s = _side_by_side(tier_get(False), raw_copy, repeats)
    _report("DRAM tier get + header check (no copy)", total, ours_s, raw_s, "memory copy")
    ours_s, raw_s = _side_by_side(tier_get(True), raw_copy, repeats)
    _report("DRAM tier get + decode with payload XXH3", total, ours_s, raw_s, "memory copy")


def bench_disk(keys: list[str], blocks: list[bytes], repeats: int, root: Path) -> None:
    total = sum(map(len, blocks))
    tier = DiskTier(root, 2 * total)
    tier.put_many([(k, b, 0.0) for k, b in zip(keys, blocks, strict=True)])
    paths = [tier.path_of(k) for k in keys]

    def tier_get() -> object:
        return tier.get_many(keys)

    def tier_get_verified() -> object:
        got = tier.get_many(keys)
        return [decode_block(d, key=k) for k, d in zip(keys, got, strict=True) if d is not None]

    def raw_read() -> object:
        out = []
        for p in paths:
            with open(p, "rb") as f:
                out.append(f.read())
        return out

    raw_read()  # warm the page cache for both sides alike
    ours_s, raw_s = _side_by_side(tier_get, raw_read, repeats)
    _report("disk tier get", total, ours_s, raw_s, "sequential file read")
    ours_s, raw_s = _side_by_side(tier_get_verified, raw_read, repeats)
    _report("disk tier get + verified decode (XXH3)", total, ours_s, raw_s, "sequential file read")
    store = TieredStore([tier], fingerprint=FP)

    def store_load() -> object:
        loaded = store.load(keys, block_tokens=16, decide=False)
        assert len(loaded.blocks) == len(keys)
        return loaded

    ours_s, raw_s = _side_by_side(store_load, raw_read, repeats)
    _report("disk store load (probe, get, verify)", total, ours_s, raw_s, "sequential file read")


def _start_redis(workdir: Path) -> tuple[subprocess.Popen[bytes], str] | None:
    binary = shutil.which("redis-server")
    if binary is None:
        return None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir)]
    proc = subprocess.Popen(
        [*args, "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    return None


def _raw_socket_mget(url: str, names: list[str], sizes: list[int]) -> Callable[[], object]:
    """MGET over a plain socket, the reply read into one preallocated buffer and not parsed:
    the floor of what any client can take from the server."""
    host, port = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=10.0)
    args = [b"MGET", *(n.encode() for n in names)]
    request = b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)
    reply_bytes = len(b"*%d\r\n" % len(names)) + sum(len(b"$%d\r\n" % n) + n + 2 for n in sizes)
    buffer = memoryview(bytearray(reply_bytes))

    def run() -> object:
        sock.sendall(request)
        got = 0
        while got < reply_bytes:
            n = sock.recv_into(buffer[got:])
            if n == 0:
                raise SystemExit(f"Redis closed the connection after {got} of {reply_bytes} bytes")
            got += n
        return buffer

    return run


def bench_redis(keys: list[str], blocks: list[bytes], repeats: int, url: str) -> None:
    import redis
    from redis._parsers import _RESP2Parser

    total = sum(map(len, blocks))
    tier = RedisTier(url, socket_timeout_s=10.0)
    tier.put_many([(k, b, 0.0) for k, b in zip(keys, blocks, strict=True)])
    raw_client = redis.Redis.from_url(url, socket_timeout=10.0)
    python_client = redis.Redis.from_url(url, socket_timeout=10.0, parser_class=_RESP2Parser)
    names = [tier.key_prefix + k for k in keys]
    raw_socket = _raw_socket_mget(url, names, [len(b) for b in blocks])
    store = TieredStore([TierConfig(tier, fetch_on_probe=True)], fingerprint=FP)

    def tier_get_verified() -> object:
        got = tier.get_many(keys)
        return [decode_block(d, key=k) for k, d in zip(keys, got, strict=True) if d is not None]

    def store_load() -> object:
        loaded = store.load(keys, block_tokens=16, decide=False)
        assert len(loaded.blocks) == len(keys)
        return loaded

    parser = "hiredis" if HIREDIS_AVAILABLE else "pure-Python parser"
    ours_s, raw_s = _side_by_side(
        lambda: tier.get_many(keys), lambda: raw_client.mget(names), repeats
    )
    _report("Redis tier get", total, ours_s, raw_s, f"raw redis-py MGET ({parser})")
    ours_s, raw_s = _side_by_side(
        lambda: raw_client.mget(names), lambda: python_client.mget(names), repeats
    )
    _report(f"raw redis-py MGET ({parser})", total, ours_s, raw_s, "MGET, pure-Python parser")
    ours_s, raw_s = _side_by_side(tier_get_verified, raw_socket, repeats)
    _report("Redis tier get + verified decode (XXH3)", total, ours_s, raw_s, "MGET on a raw socket")
    ours_s, raw_s = _side_by_side(store_load, raw_socket, repeats)
    _report("Redis store load (one MGET, verified)", total, ours_s, raw_s, "MGET on a raw socket")
    tier.clear()
    store.close()
    raw_client.close()
    python_client.close()


def bench_checksums(blocks: list[bytes], repeats: int) -> None:
    """Median throughput of each checksum over the blocks' payloads, as the codec hashes them
    (a memoryview past the header), rotating which candidate goes first in each round."""
    payloads = [memoryview(b)[256:] for b in blocks]
    total = sum(map(len, payloads))
    candidates: dict[str, Callable[[memoryview], object]] = {
        "CRC-32 (zlib; format 1)": zlib.crc32,
        "XXH3-64 (xxhash; format 2)": xxhash.xxh3_64_intdigest,
        "XXH3-128 (xxhash)": xxhash.xxh3_128_intdigest,
        "XXH64 (xxhash)": xxhash.xxh64_intdigest,
    }
    try:
        import google_crc32c  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        print("CRC32C: skipped (pip install google-crc32c to compare it)")
    else:
        # Its value() takes bytes only, so the codec would have to copy the payload first.
        impl = google_crc32c.implementation
        candidates[f"CRC32C (google-crc32c {impl}, + copy)"] = lambda v: google_crc32c.value(
            bytes(v)
        )
    seconds: dict[str, list[float]] = {name: [] for name in candidates}
    names = list(candidates)
    for i in range(repeats):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            fn = candidates[name]
            start = time.perf_counter()
            for p in payloads:
                fn(p)
            seconds[name].append(time.perf_counter() - start)
    crc_s = statistics.median(seconds["CRC-32 (zlib; format 1)"])
    for name, runs in seconds.items():
        s = statistics.median(runs)
        print(f"checksum {name:<42} {total / s / 1e9:7.2f} GB/s | {crc_s / s:5.1f}x CRC-32")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--block-mib", type=float, default=1.0, help="payload size of one block")
    parser.add_argument("--blocks", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--redis", default=None, help="Redis URL (default: start a local server)")
    parser.add_argument(
        "--checksums", action="store_true", help="only compare payload checksums, no tiers"
    )
    args = parser.parse_args()
    keys, blocks = _make_blocks(args.blocks, int(args.block_mib * (1 << 20)))
    total = sum(map(len, blocks))
    print(
        f"{args.blocks} blocks x {len(blocks[0]):,} bytes = {total / 1e6:.1f} MB, median of "
        f"{args.repeats} alternating rounds"
    )
    if args.checksums:
        bench_checksums(blocks, args.repeats)
        return
    bench_dram(keys, blocks, args.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        bench_disk(keys, blocks, args.repeats, Path(tmp) / "disk")
        server = None
        url = args.redis
        if url is None:
            server = _start_redis(Path(tmp))
            url = server[1] if server else None
        if url is None:
            print("Redis: skipped (no redis-server on PATH and no --redis URL)")
        else:
            try:
                bench_redis(keys, blocks, args.repeats, url)
            finally:
                if server is not None:
                    server[0].kill()
                    server[0].wait()


if __name__ == "__main__":
    main()
