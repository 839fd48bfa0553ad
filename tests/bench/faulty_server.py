"""A tiny OpenAI-style streaming server on raw asyncio that emits tokens on a known schedule and
injects faults: refuse, reset mid-stream, 429, 500, malformed SSE, truncated SSE, stall.

A fault applies to every request (``fault=``) or to one request whose prompt contains
``[fault:NAME]``. Each chunk carries ``t_send`` (the server's ``perf_counter`` when it was
written; the clock is shared by processes on one Linux machine) so a harness's timing error can be
measured. ``/metrics`` exports a tokenwatt-style and a DCGM-style energy counter that grow by
``energy_per_token_j`` per token sent. Run it standalone with ``python faulty_server.py --port N``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

Fault = Literal["refuse", "reset", "429", "500", "malformed", "truncated", "stall"]
FAULTS: tuple[Fault, ...] = ("refuse", "reset", "429", "500", "malformed", "truncated", "stall")
_MARKER = re.compile(r"\[fault:([a-z0-9]+)\]")


@dataclass
class FaultyServer:
    """The server; ``start()`` binds 127.0.0.1 on a free port, ``stop()`` closes everything."""

    ttft_s: float = 0.0
    """Delay from reading a request to its first token."""
    itl_s: float = 0.0
    """Delay between consecutive tokens."""
    fault: Fault | None = None
    """Fault injected into every request (``refuse``: the port is bound but never listens)."""
    energy_per_token_j: float = 0.5
    """Energy the /metrics counters add per token sent."""
    port: int = 0
    """Port to bind (0: pick a free one)."""
    stamp_text: bool = False
    """Send each token's ``t_send`` as its text, so any harness can measure its timing error."""
    max_model_len: int | None = None
    """Context reported by ``/v1/models`` (as tokenwatt serve and vLLM do); None: not reported."""
    labelled_energy: bool = False
    """Report usage energy as tokenwatt serve does (``usage.energy`` with source ``replay`` and
    scope ``node``) instead of a bare ``usage.energy_j``."""
    requests_seen: int = 0
    """Completion requests read so far."""
    tokens_sent: int = 0
    """Tokens written so far."""
    _server: asyncio.Server | None = None
    _refuse_sock: socket.socket | None = None
    _conns: set[asyncio.StreamWriter] = field(default_factory=set)

    @property
    def url(self) -> str:
        """Base URL of the running server."""
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> FaultyServer:
        """Bind and start serving (or, for ``refuse``, bind without listening)."""
        if self.fault == "refuse":
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", self.port))
            self.port = sock.getsockname()[1]
            self._refuse_sock = sock
            return self
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", self.port, backlog=4096
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        """Close the listening socket and every open connection."""
        if self._refuse_sock is not None:
            self._refuse_sock.close()
        if self._server is not None:
            self._server.close()
            for writer in list(self._conns):
                writer.transport.abort()
            await self._server.wait_closed()

    # -- HTTP ---------------------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._conns.add(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                length = 0
                for line in lines[1:]:
                    if line.lower().startswith("content-length:"):
                        length = int(line.split(":", 1)[1])
                body = await reader.readexactly(length) if length else b""
                if not await self._route(method, path, body, writer):
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self._conns.discard(writer)
            writer.close()

    async def _route(
        self, method: str, path: str, body: bytes, writer: asyncio.StreamWriter
    ) -> bool:
        """Answer one request; False when the connection must close."""
        if method == "GET" and path == "/metrics":
            await _respond(writer, 200, self.metrics_text(), "text/plain; version=0.0.4")
            return True
        if method == "GET" and path == "/v1/models":
            entry: dict[str, object] = {"id": "faulty", "object": "model"}
            if self.max_model_len is not None:
                entry["max_model_len"] = self.max_model_len
            models = {"object": "list", "data": [entry]}
            await _respond(writer, 200, json.dumps(models), "application/json")
            return True
        if method == "GET" and path == "/health":
            await _respond(writer, 200, "ok", "text/plain")
            return True
        if method != "POST" or path not in ("/v1/completions", "/v1/chat/completions"):
            await _respond(writer, 404, '{"error": {"message": "not found"}}', "application/json")
            return True
        t_read = time.perf_counter()
        self.requests_seen += 1
        req = json.loads(body)
        prompt = req.get("prompt") or json.dumps(req.get("messages", ""))
        found = _MARKER.search(str(prompt))
        fault = found.group(1) if found else self.fault
        if fault in ("429", "500"):
            err = json.dumps({"error": {"message": f"injected {fault}", "code": int(fault)}})
            await _respond(writer, int(fault), err, "application/json", {"Retry-After": "1"})
            return True
        chat = path.endswith("chat/completions")
        return await self._stream(writer, req, chat, fault, t_read)

    async def _stream(
        self,
        writer: asyncio.StreamWriter,
        req: dict[str, object],
        chat: bool,
        fault: str | None,
        t_read: float,
    ) -> bool:
        n = int(str(req.get("max_tokens", 16)))
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\ncache-control: no-cache\r\n\r\n"
        )
        loop = asyncio.get_running_loop()
        origin = loop.time() - (time.perf_counter() - t_read)
        for i in range(n):
            if fault in ("reset", "truncated", "malformed", "stall") and i == 2:
                break
            delay = origin + self.ttft_s + i * self.itl_s - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            t_send = time.perf_counter()
            text = f" {t_send:.7f}" if self.stamp_text else "tok"
            if chat:
                choice: dict[str, object] = {"index": 0, "delta": {"content": text}}
            else:
                choice = {"index": 0, "text": text, "finish_reason": None}
            event = {"object": "chunk", "choices": [choice], "t_send": t_send, "i": i}
            _chunk(writer, b"data: " + json.dumps(event).encode() + b"\n\n")
            self.tokens_sent += 1
            await writer.drain()
        if fault == "reset":
            sock = writer.get_extra_info("socket")
            # SO_LINGER 0 makes close() send RST: the client sees a reset, not a clean end.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return False
        if fault == "stall":
            await asyncio.sleep(3600)
            return False
        if fault == "malformed":
            _chunk(writer, b'data: {"choices": [not json\n\n')
        if fault != "truncated" and fault != "malformed":
            usage: dict[str, object] = {"prompt_tokens": 8, "completion_tokens": n}
            if self.labelled_energy:
                usage["energy"] = {
                    "energy_j": n * self.energy_per_token_j,
                    "source": "replay",
                    "scope": "node",
                }
            else:
                usage["energy_j"] = n * self.energy_per_token_j
            usage_event = {"object": "chunk", "choices": [], "usage": usage}
            _chunk(writer, b"data: " + json.dumps(usage_event).encode() + b"\n\n")
            _chunk(writer, b"data: [DONE]\n\n")
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True

    def metrics_text(self) -> str:
        """Prometheus text with cumulative energy counters (tokenwatt J and DCGM mJ)."""
        energy_j = self.tokens_sent * self.energy_per_token_j
        return (
            "# TYPE tokenwatt_energy_joules_total counter\n"
            f'tokenwatt_energy_joules_total{{source="replay",scope="node"}} {energy_j}\n'
            "# TYPE DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION counter\n"
            f'DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{{gpu="0",UUID="GPU-x"}} {energy_j * 1000:.0f}\n'
        )


def _chunk(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")


async def _respond(
    writer: asyncio.StreamWriter,
    status: int,
    text: str,
    content_type: str,
    extra: dict[str, str] | None = None,
) -> None:
    body = text.encode()
    headers = "".join(f"{k}: {v}\r\n" for k, v in (extra or {}).items())
    writer.write(
        f"HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\n"
        f"content-length: {len(body)}\r\n{headers}\r\n".encode()
        + body
    )
    await writer.drain()


async def _main(args: argparse.Namespace) -> None:
    server = FaultyServer(
        ttft_s=args.ttft_ms / 1000,
        itl_s=args.itl_ms / 1000,
        port=args.port,
        stamp_text=args.stamp_text,
    )
    await server.start()
    print(f"listening {server.url}", flush=True)
    await asyncio.Event().wait()


@contextlib.contextmanager
def silent_endpoint() -> Iterator[str]:
    """The URL of a loopback port that accepts connections (kernel backlog) but never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


@contextlib.contextmanager
def serve_in_thread(**kwargs: Any) -> Iterator[FaultyServer]:
    """Run a FaultyServer on its own event loop in a daemon thread (for sync callers: the CLI)."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    server = FaultyServer(**kwargs)

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ttft-ms", type=float, default=0.0)
    parser.add_argument("--itl-ms", type=float, default=0.0)
    parser.add_argument("--stamp-text", action="store_true", help="token text = send time")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(parser.parse_args()))
