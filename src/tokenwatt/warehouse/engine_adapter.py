"""The engine's ``PrefixProvider`` over a :class:`TieredStore`: cached prefixes in, new blocks out.

``lookup`` runs on the engine thread and loads only verified blocks; ``on_blocks_ready`` copies
the new blocks and hands them to a background writer through a bounded queue that drops (and
counts) on overflow, so storing never delays a step. Prefill cost for the load-or-recompute
decision (and, with a meter, for the joules-saved estimate) is measured from admission
(``lookup``) to prompt completion (``on_blocks_ready``); when requests overlap, those windows
include the others' work too, so the estimates lean high under load.

Isolation: with ``isolation="tenant"`` (the default) each request's blocks are keyed by a
hasher salted by the request's tenant as well as the server-wide ``tenant`` (the outer salt),
so one tenant can neither read another's blocks nor learn from ``cached_tokens`` that another
sent the same prefix. ``isolation="shared"`` keys every request with the server-wide salt only:
one cache for all clients, for single-tenant deployments that want cross-user reuse.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from prometheus_client.registry import CollectorRegistry

from tokenwatt.energy.meter import Meter
from tokenwatt.engine.kv import KVLayout, PrefixKV
from tokenwatt.engine.model import LoadedModel
from tokenwatt.errors import ConfigError

from .codec import DecodedBlock
from .config import WarehouseConfig, build_store, parse_warehouse_spec
from .keys import BlockHasher
from .stats import WarehouseCollector, register_collector
from .store import TieredStore

__all__ = ["ISOLATIONS", "AdapterConfig", "WarehousePrefixProvider", "build_prefix_provider"]

log = logging.getLogger(__name__)

# numpy has no bfloat16: such tensors travel as their raw 16-bit patterns.
_RAW_VIEWS = {torch.bfloat16: torch.int16}

ISOLATIONS = ("tenant", "shared")
"""Values of ``AdapterConfig.isolation`` (and of the ``isolation=`` warehouse option)."""


@dataclass(frozen=True)
class AdapterConfig:
    """Background writing and measurement of the engine adapter."""

    write_queue_blocks: int = 4096
    """Most blocks waiting to be written; beyond it new blocks are dropped (and counted)."""
    remember_written: int = 100_000
    """Keys remembered as already written, so re-published blocks are not copied again."""
    tenant: str | None = None
    """Server-wide tenant salt of every key (outer to any per-request tenant)."""
    isolation: str = "tenant"
    """``tenant``: each request's tenant salts its keys too; ``shared``: one cache for all."""
    remember_tenants: int = 1024
    """Per-tenant hashers kept; the least recently used one is rebuilt when needed again."""

    def __post_init__(self) -> None:
        if self.write_queue_blocks < 1 or self.remember_written < 1 or self.remember_tenants < 1:
            raise ConfigError(
                "write_queue_blocks, remember_written and remember_tenants must be >= 1"
            )
        if self.isolation not in ISOLATIONS:
            raise ConfigError(
                f"isolation must be tenant or shared, got {self.isolation!r} "
                "(tenant keeps each client's cache apart; shared lets clients reuse each other's)"
            )


@dataclass
class _Pending:
    start_s: float
    position: int
    tokens: int
    energy_start: dict[str, float] | None


class WarehousePrefixProvider:
    """Implements the engine's ``PrefixProvider`` on ``store`` for a model of ``layout``."""

    def __init__(
        self,
        store: TieredStore,
        layout: KVLayout,
        config: AdapterConfig | None = None,
        *,
        meter: Meter | None = None,
    ) -> None:
        if store.fingerprint != layout.fingerprint:
            raise ConfigError("the store and the engine layout name different model fingerprints")
        self.store = store
        self.layout = layout
        self.config = config if config is not None else AdapterConfig()
        self.meter = meter
        self.hasher = BlockHasher(
            layout.fingerprint, block_tokens=layout.block_tokens, tenant=self.config.tenant
        )
        self._hashers: OrderedDict[str, BlockHasher] = OrderedDict()
        self._raw_dtype = _RAW_VIEWS.get(layout.dtype, layout.dtype)
        self._queue: queue.Queue[tuple[str, int, list[np.ndarray]] | None] = queue.Queue(
            self.config.write_queue_blocks
        )
        self._written: OrderedDict[str, None] = OrderedDict()
        self._pending: OrderedDict[str, _Pending] = OrderedDict()
        self._lock = threading.Lock()
        self._writer: threading.Thread | None = None
        self._closed = False

    # -- PrefixProvider ---------------------------------------------------------------------

    def hasher_for(self, tenant: str | None) -> BlockHasher:
        """The hasher keying ``tenant``'s requests (the server-wide one when shared or None)."""
        if tenant is None or self.config.isolation == "shared":
            return self.hasher
        with self._lock:
            hasher = self._hashers.get(tenant)
            if hasher is not None:
                self._hashers.move_to_end(tenant)
                return hasher
        # The NUL-led, JSON-encoded pair cannot equal a server-wide salt typed in a spec, and
        # the server salt stays outside, so two servers with different salts never collide.
        salt = "\x00request-tenant:" + json.dumps([self.config.tenant, tenant])
        hasher = BlockHasher(
            self.layout.fingerprint, block_tokens=self.layout.block_tokens, tenant=salt
        )
        with self._lock:
            self._hashers[tenant] = hasher
            while len(self._hashers) > self.config.remember_tenants:
                self._hashers.popitem(last=False)
        return hasher

    def lookup(self, token_ids: Sequence[int], *, tenant: str | None = None) -> PrefixKV | None:
        """The longest verified prefix of ``token_ids`` cached for ``tenant`` worth loading."""
        keys = self.hasher_for(tenant).keys(token_ids)
        if not keys:
            return None
        loaded = self.store.load(keys, block_tokens=self.layout.block_tokens)
        cached = min(loaded.tokens, len(token_ids) - 1)
        if len(keys) > len(loaded.blocks):  # new blocks will be published: time the prefill
            self._expect(keys[-1], cached, len(token_ids) - cached)
        if not loaded.blocks:
            return None
        return self._assemble(loaded.blocks)

    def on_blocks_ready(
        self, token_ids: Sequence[int], kv: PrefixKV, *, tenant: str | None = None
    ) -> None:
        """Copy ``tenant``'s blocks not yet written and queue them for the background writer."""
        keys = self.hasher_for(tenant).keys(token_ids)
        if not keys:
            return
        self._observe_prefill(keys[-1])
        with self._lock:
            new = [i for i, k in enumerate(keys) if k not in self._written]
        if not new:
            return
        self._ensure_writer()
        bt = self.layout.block_tokens
        for i in new:
            arrays = [
                self._to_numpy(t[:, i * bt : (i + 1) * bt])
                for pair in zip(kv.keys, kv.values, strict=True)
                for t in pair
            ]
            try:
                self._queue.put_nowait((keys[i], i, arrays))
            except queue.Full:
                self.store.stats.record_dropped_writes(1)
                continue
            with self._lock:
                self._written[keys[i]] = None
                if len(self._written) > self.config.remember_written:
                    self._written.popitem(last=False)

    def register_metrics(self, registry: CollectorRegistry) -> WarehouseCollector:
        """Export the warehouse stats (``tokenwatt_warehouse_*``) on ``registry``."""
        return register_collector(self.store.stats, registry)

    # -- measurement ------------------------------------------------------------------------

    def _expect(self, last_key: str, start: int, tokens: int) -> None:
        energy = self._read_meter()
        with self._lock:
            self._pending[last_key] = _Pending(time.perf_counter(), start, tokens, energy)
            while len(self._pending) > 1024:
                self._pending.popitem(last=False)

    def _observe_prefill(self, last_key: str) -> None:
        with self._lock:
            pending = self._pending.pop(last_key, None)
        if pending is None or pending.tokens <= 0:
            return
        seconds = time.perf_counter() - pending.start_s
        energy_j = None
        end = self._read_meter()
        if pending.energy_start is not None and end is not None:
            energy_j = sum(max(0.0, end[n] - pending.energy_start.get(n, 0.0)) for n in end)
        self.store.decider.observe_prefill(
            pending.tokens, seconds, energy_j, self._energy_source(), start=pending.position
        )

    def _read_meter(self) -> dict[str, float] | None:
        if self.meter is None:
            return None
        try:
            return dict(self.meter.read().energy_j)
        except Exception:  # a meter glitch loses one sample, never a request
            log.debug("meter read failed", exc_info=True)
            return None

    def _energy_source(self) -> str:
        if self.meter is None:
            return ""
        parts = sorted({f"{c.source}/{c.scope}" for c in self.meter.components})
        return "+".join(parts) + " over admission-to-prompt-done windows"

    # -- tensors ----------------------------------------------------------------------------

    def _to_numpy(self, t: torch.Tensor) -> np.ndarray:
        t = t.detach().to("cpu")
        if self._raw_dtype is not t.dtype:
            t = t.view(self._raw_dtype)
        return np.array(t.numpy(), order="C", copy=True)

    def _assemble(self, blocks: Sequence[DecodedBlock]) -> PrefixKV:
        n_layers = self.layout.num_layers
        per_tensor = [
            np.concatenate([b.arrays[j] for b in blocks], axis=1) for j in range(2 * n_layers)
        ]
        tensors = [torch.from_numpy(a) for a in per_tensor]
        if self._raw_dtype is not self.layout.dtype:
            tensors = [t.view(self.layout.dtype) for t in tensors]
        return PrefixKV(keys=tuple(tensors[0::2]), values=tuple(tensors[1::2]))

    # -- background writer ------------------------------------------------------------------

    def _ensure_writer(self) -> None:
        with self._lock:
            if self._writer is None and not self._closed:
                self._writer = threading.Thread(
                    target=self._write_loop, name="tw-warehouse-writer", daemon=True
                )
                self._writer.start()

    def _write_loop(self) -> None:
        bt = self.layout.block_tokens
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                key, index, arrays = item
                # What recomputing this block would cost, for cost-aware eviction.
                cost_s = self.store.decider.recompute_s(index * bt, bt) or 0.0
                self.store.put([(key, arrays)], block_tokens=bt, cost_s=cost_s)
            except Exception:  # storing is best effort: log and keep the writer alive
                log.warning("warehouse write failed", exc_info=True)
            finally:
                self._queue.task_done()

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until every queued block is written; False if ``timeout_s`` passed first."""
        deadline = time.monotonic() + timeout_s
        while self._queue.unfinished_tasks:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        return True

    def close(self, timeout_s: float = 5.0) -> None:
        """Write what is queued (up to ``timeout_s``), stop the writer, close the store."""
        with self._lock:
            self._closed = True
            writer = self._writer
        if writer is not None:
            self.flush(timeout_s)
            with contextlib.suppress(queue.Full):
                self._queue.put(None, timeout=timeout_s)
            writer.join(timeout_s)
        self.store.close()


def build_prefix_provider(
    spec: str | WarehouseConfig,
    loaded: LoadedModel,
    *,
    block_tokens: int,
    meter: Meter | None = None,
) -> WarehousePrefixProvider:
    """The provider ``tokenwatt serve --warehouse SPEC`` hands the engine (no I/O until used).

    ``spec`` is a :func:`parse_warehouse_spec` string (``dram=2GiB,disk=/tmp/tw``) or a config;
    ``block_tokens`` must equal the engine's ``EngineConfig.block_tokens``.
    """
    config = parse_warehouse_spec(spec) if isinstance(spec, str) else spec
    layout = KVLayout(
        num_layers=loaded.num_layers,
        num_kv_heads=loaded.num_kv_heads,
        head_dim=loaded.head_dim,
        dtype=loaded.dtype,
        device=loaded.device,
        block_tokens=block_tokens,
        fingerprint=loaded.fingerprint,
    )
    store = build_store(config, fingerprint=loaded.fingerprint)
    adapter = AdapterConfig(tenant=config.tenant, isolation=config.isolation)
    return WarehousePrefixProvider(store, layout, adapter, meter=meter)
