"""The engine as a service: ``EngineCore`` stepped by one background thread, with thread-safe
submit/abort, a blocking ``generate`` and an asyncio ``stream`` for the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from tokenwatt.energy.meter import Meter

from .config import EngineConfig
from .core import EngineCore
from .kv import KVUsage, PrefixProvider
from .model import LoadedModel
from .request import (
    EnergyShare,
    EngineOverloadedError,
    FinishReason,
    RequestOutput,
)
from .sampling import SamplingParams

__all__ = ["Completion", "Engine", "EngineStats", "OutputCallback", "OutputStream"]

log = logging.getLogger(__name__)

OutputCallback = Callable[[RequestOutput], None]
"""Called on the engine thread with each output of a request; must not block."""

Prompt = str | Sequence[int]


@dataclass(frozen=True)
class EngineStats:
    """A snapshot of the engine (refreshed after every step)."""

    waiting: int = 0
    """Requests queued, not yet admitted."""
    running: int = 0
    """Requests in the running batch."""
    steps: int = 0
    """Steps executed since start."""
    kv: KVUsage = field(default_factory=KVUsage)
    """KV memory."""


@dataclass(frozen=True)
class Completion:
    """A finished request, all outputs joined."""

    request_id: str = ""
    """The request."""
    text: str = ""
    """Generated text (stop strings removed)."""
    token_ids: tuple[int, ...] = ()
    """Generated token ids."""
    finish_reason: FinishReason | None = None
    """stop, length, abort or error."""
    prompt_tokens: int = 0
    """Prompt length in tokens."""
    completion_tokens: int = 0
    """Tokens generated."""
    cached_tokens: int = 0
    """Prompt tokens supplied by the prefix provider."""
    energy: EnergyShare | None = None
    """Energy attributed to the request (None without a meter)."""
    error: str | None = None
    """What went wrong when finish_reason is error."""

    @staticmethod
    def join(outputs: Sequence[RequestOutput]) -> Completion:
        """Fold a request's outputs (the last one finished) into one completion."""
        last = outputs[-1]
        return Completion(
            request_id=last.request_id,
            text="".join(o.text for o in outputs),
            token_ids=tuple(t for o in outputs for t in o.token_ids),
            finish_reason=last.finish_reason,
            prompt_tokens=last.prompt_tokens,
            completion_tokens=last.completion_tokens,
            cached_tokens=last.cached_tokens,
            energy=last.energy,
            error=last.error,
        )


class OutputStream:
    """Outputs of one submitted request, as an async iterator (see ``Engine.open_stream``)."""

    def __init__(
        self,
        engine: Engine,
        loop: asyncio.AbstractEventLoop,
        observer: OutputCallback | None = None,
    ) -> None:
        self.request_id = ""
        self._engine = engine
        self._loop = loop
        self._observer = observer
        self._queue: asyncio.Queue[RequestOutput] = asyncio.Queue()
        self._done = False

    def deliver(self, out: RequestOutput) -> None:
        """Engine-thread callback: show ``out`` to the observer, then hand it to the loop."""
        if self._observer is not None:
            # Called even after the consumer left, so accounting sees aborted requests too.
            try:
                self._observer(out)
            except Exception:
                log.warning("output observer for %s failed", out.request_id, exc_info=True)
        # RuntimeError: the event loop is gone, so nobody is listening any more.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._queue.put_nowait, out)

    def __aiter__(self) -> OutputStream:
        return self

    async def __anext__(self) -> RequestOutput:
        if self._done:
            raise StopAsyncIteration
        out = await self._queue.get()
        self._done = out.finished
        return out

    async def aclose(self) -> None:
        """Abort the request if it has not finished; its slot and cache are freed at once."""
        if not self._done:
            self._done = True
            self._engine.abort(self.request_id)


class Engine:
    """Continuous-batching engine on a background thread. ``start()`` before submitting.

    Thread-safe: ``submit``, ``abort``, ``generate``, ``stream``, ``stats`` may be called
    from any thread; the model runs only on the engine thread.
    """

    def __init__(
        self,
        loaded: LoadedModel,
        config: EngineConfig | None = None,
        *,
        meter: Meter | None = None,
        prefix_provider: PrefixProvider | None = None,
    ) -> None:
        self.loaded = loaded
        self.config = config or EngineConfig()
        self.core = EngineCore(loaded, self.config, meter=meter, prefix_provider=prefix_provider)
        self._cond = threading.Condition()
        self._inbox: list[tuple[str, str, Any, Any, str | None]] = []
        self._callbacks: dict[str, OutputCallback] = {}
        self._stats = EngineStats(kv=self.core.kv.usage())
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._ids = itertools.count()

    @property
    def meter(self) -> Meter | None:
        """The meter whose energy is attributed to requests."""
        return self.core.meter

    # -- life -------------------------------------------------------------------------------

    def start(self) -> Engine:
        """Start the engine thread (idempotent)."""
        if self.config.torch_threads is not None:
            torch.set_num_threads(self.config.torch_threads)
        with self._cond:
            if self._thread is None:
                self._stopping = False
                self._thread = threading.Thread(
                    target=self._run, name="tokenwatt-engine", daemon=True
                )
                self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the thread; requests still queued or running finish with ``abort``."""
        with self._cond:
            thread, self._stopping = self._thread, True
            self._cond.notify_all()
        if thread is not None:
            thread.join(timeout_s)
        with self._cond:
            self._thread = None

    def __enter__(self) -> Engine:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """True while the engine thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    # -- requests ---------------------------------------------------------------------------

    def encode(self, prompt: Prompt) -> list[int]:
        """Token ids of a text prompt (ids pass through)."""
        if isinstance(prompt, str):
            return self.loaded.tokenizer.encode(prompt)
        return [int(t) for t in prompt]

    def encode_chat(self, messages: Sequence[Mapping[str, str]]) -> list[int]:
        """Token ids of a chat, ready for the assistant's reply."""
        return self.loaded.tokenizer.apply_chat(messages)

    def submit(
        self,
        prompt: Prompt,
        params: SamplingParams,
        on_output: OutputCallback,
        *,
        request_id: str | None = None,
        tenant: str | None = None,
    ) -> str:
        """Queue a request; ``on_output`` receives its outputs on the engine thread.

        ``tenant`` (None: none) reaches the prefix provider, which keeps tenants' caches apart.

        Raises InvalidRequestError (never runnable) or EngineOverloadedError (queue full).
        """
        ids = self.encode(prompt)
        self.core.validate(ids, params)
        rid = request_id or f"req-{next(self._ids)}"
        with self._cond:
            if not self.running or self._stopping:
                raise EngineOverloadedError("the engine is not running", retry_after_s=5.0)
            queued = self._stats.waiting + sum(1 for c in self._inbox if c[0] == "add")
            if queued >= self.config.max_queue:
                raise EngineOverloadedError(
                    f"{queued} requests are waiting (max_queue={self.config.max_queue}); "
                    "retry later"
                )
            if rid in self._callbacks:
                raise EngineOverloadedError(f"request id {rid!r} is already in flight")
            self._callbacks[rid] = on_output
            self._inbox.append(("add", rid, ids, params, tenant))
            self._cond.notify_all()
        return rid

    def abort(self, request_id: str) -> None:
        """Drop a request at the next step boundary and free its cache (no-op if finished)."""
        with self._cond:
            self._inbox.append(("abort", request_id, None, None, None))
            self._cond.notify_all()

    def generate(
        self,
        prompt: Prompt,
        params: SamplingParams,
        *,
        timeout_s: float | None = None,
        tenant: str | None = None,
    ) -> Completion:
        """Run one request to completion (blocking); ``tenant`` as in ``submit``."""
        done = threading.Event()
        outputs: list[RequestOutput] = []

        def collect(out: RequestOutput) -> None:
            outputs.append(out)
            if out.finished:
                done.set()

        rid = self.submit(prompt, params, collect, tenant=tenant)
        if not done.wait(timeout_s):
            self.abort(rid)
            raise TimeoutError(f"request {rid} did not finish within {timeout_s} s")
        return Completion.join(outputs)

    def open_stream(
        self,
        prompt: Prompt,
        params: SamplingParams,
        *,
        request_id: str | None = None,
        observer: OutputCallback | None = None,
        tenant: str | None = None,
    ) -> OutputStream:
        """Submit now (errors raise here) and return an async iterator over the outputs.

        Call from a running event loop; ``aclose()`` the stream to abort an unfinished request.
        ``observer`` sees every output on the engine thread, including the final one of a
        request aborted after its consumer left (accounting, metrics).
        """
        stream = OutputStream(self, asyncio.get_running_loop(), observer)
        stream.request_id = self.submit(
            prompt, params, stream.deliver, request_id=request_id, tenant=tenant
        )
        return stream

    async def stream(
        self,
        prompt: Prompt,
        params: SamplingParams,
        *,
        request_id: str | None = None,
        tenant: str | None = None,
    ) -> AsyncIterator[RequestOutput]:
        """Outputs of one request as they come; leaving the loop early aborts it."""
        stream = self.open_stream(prompt, params, request_id=request_id, tenant=tenant)
        try:
            async for out in stream:
                yield out
        finally:
            await stream.aclose()

    def stats(self) -> EngineStats:
        """The latest snapshot."""
        with self._cond:
            return self._stats

    # -- the engine thread ------------------------------------------------------------------

    def _run(self) -> None:
        core = self.core
        while True:
            with self._cond:
                while not self._inbox and not core.has_unfinished() and not self._stopping:
                    self._cond.wait()
                commands, self._inbox = self._inbox, []
                stopping = self._stopping
            outputs: list[RequestOutput] = []
            for kind, rid, ids, params, tenant in commands:
                if kind == "add":
                    try:
                        core.add_request(rid, ids, params, tenant=tenant)
                    except Exception as exc:
                        outputs.append(
                            RequestOutput(rid, finished=True, finish_reason="error", error=str(exc))
                        )
                else:
                    out = core.abort_request(rid)
                    if out is not None:
                        outputs.append(out)
            if stopping:
                for rid in list(core.requests):
                    out = core.abort_request(rid)
                    if out is not None:
                        outputs.append(out)
            else:
                try:
                    outputs.extend(core.step())
                except Exception as exc:  # a bug must fail requests, never hang them
                    log.exception("engine step raised; failing all requests")
                    outputs.extend(core.fail_all(f"{type(exc).__name__}: {exc}"))
            # Refresh the snapshot first: whoever sees an output also sees the state after it.
            with self._cond:
                self._stats = EngineStats(
                    waiting=core.num_waiting,
                    running=core.num_running,
                    steps=core.steps,
                    kv=core.kv.usage(),
                )
            self._dispatch(outputs)
            if stopping:
                return

    def _dispatch(self, outputs: Sequence[RequestOutput]) -> None:
        for out in outputs:
            with self._cond:
                callback = (
                    self._callbacks.pop(out.request_id, None)
                    if out.finished
                    else self._callbacks.get(out.request_id)
                )
            if callback is None:
                continue
            try:
                callback(out)
            except Exception:  # a broken listener must not stop the engine
                log.warning("output callback for %s failed", out.request_id, exc_info=True)
