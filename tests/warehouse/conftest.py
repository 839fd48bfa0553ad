"""Warehouse fixtures: real redis-server processes on loopback (single server and a 3-node cluster).

Without a redis-server binary the Redis tests skip, except under CI (env CI set), where they fail.
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _require_redis() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        reason = "redis-server not on PATH (install it with `make redis`)"
        if os.environ.get("CI"):
            pytest.fail(reason + ": CI must run the Redis tests")
        pytest.skip(reason)
    return binary


@dataclass
class RedisProcess:
    """A redis-server child process on 127.0.0.1."""

    port: int
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def _start(binary: str, workdir: Path, *extra: str) -> RedisProcess:
    workdir.mkdir(parents=True, exist_ok=True)
    for _ in range(5):  # a free port can be taken between probing and binding; retry
        port = _free_port()
        args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir)]
        args += ["--save", "", "--appendonly", "no", "--protected-mode", "no", *extra]
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return RedisProcess(port, proc)
            except OSError:
                time.sleep(0.05)
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    pytest.fail("redis-server did not start on a free loopback port")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    """One redis-server for the session (tests flush it through ``redis_url``)."""
    binary = _require_redis()
    server = _start(binary, tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisProcess) -> str:
    """URL of the shared redis-server, emptied before the test."""
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    """A redis-server of the test's own (the test may kill it)."""
    server = _start(_require_redis(), tmp_path / "redis")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A 3-node Redis Cluster on loopback (no replicas); yields a startup-node URL."""
    binary = _require_redis()
    cli = shutil.which("redis-cli")
    if cli is None:
        pytest.skip("redis-cli not on PATH (needed to create a cluster)")
    root = tmp_path_factory.mktemp("redis-cluster")
    nodes = [
        _start(binary, root / f"n{i}", "--cluster-enabled", "yes", "--cluster-config-file",
               str(root / f"n{i}" / "nodes.conf"), "--cluster-node-timeout", "2000")
        for i in range(3)
    ]  # fmt: skip
    try:
        addrs = [f"127.0.0.1:{n.port}" for n in nodes]
        subprocess.run(
            [cli, "--cluster", "create", *addrs, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        _wait_cluster_ok(cli, nodes)
        yield nodes[0].url
    finally:
        for n in nodes:
            n.stop()


def _wait_cluster_ok(cli: str, nodes: list[RedisProcess]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        states = [
            subprocess.run(
                [cli, "-p", str(n.port), "cluster", "info"], capture_output=True, timeout=5
            ).stdout
            for n in nodes
        ]
        if all(b"cluster_state:ok" in s for s in states):
            return
        time.sleep(0.2)
    pytest.fail("the 3-node Redis Cluster did not reach cluster_state:ok in 30s")


def as_version_1(block: bytes) -> bytes:
    """``block`` (format 2) re-encoded in format version 1: a CRC-32 payload checksum in a
    16-byte tail instead of XXH3-64 in a 20-byte one, header CRC-32 recomputed."""
    header_len = struct.unpack_from("<I", block, 6)[0]
    payload = block[header_len:]
    head = struct.pack("<4sHI", b"TWKV", 1, header_len - 4) + block[10 : header_len - 20]
    head += struct.pack("<QI", len(payload), zlib.crc32(payload))
    return head + struct.pack("<I", zlib.crc32(head)) + payload


def _kv_arrays(seed: int, tokens: int = 4) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((2, tokens, 8)).astype(np.float32) for _ in range(4)]


@pytest.fixture
def make_kv() -> Callable[..., list[np.ndarray]]:
    """``make_kv(seed, tokens=4)``: deterministic fake KV tensors of one block (2 layers x K, V)."""
    return _kv_arrays


@pytest.fixture(scope="session")
def tiny_model() -> Any:
    """The engine's `tiny` preset on CPU, fp32, seed 0 (built once per session)."""
    from tokenwatt.engine.model import load_model

    return load_model("tiny", device="cpu")
