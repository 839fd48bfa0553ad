"""One simulated replica: lifecycle, iteration-level continuous batching, and its energy.

Each iteration is a prefill of newly admitted requests or a decode step of the running batch
(prefill first, as vLLM V0), or with chunked prefill a fused step of prompt chunks and decodes
(vLLM V1). In fast mode one scheduled "iteration end" covers every decode step until the next
request finishes; an arrival that can join earlier shortens it to the first iteration boundary
after the arrival, so both modes agree.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass

from tokenwatt.plan.execution import ExecutionModel, decode_steps_until
from tokenwatt.plan.hardware import PowerModel
from tokenwatt.plan.metrics import Metrics, Timeline
from tokenwatt.plan.warehouse_model import PrefixCache, Warehouse
from tokenwatt.workload.types import Request

__all__ = ["ENERGY_CATEGORIES", "Replica", "ReplicaEnv", "SimRequest"]

ENERGY_CATEGORIES = ("prefill", "decode", "load", "idle", "cold_start")
"""Where replica energy goes; prefill, decode and load are busy."""
_PREFILL, _DECODE, _LOAD, _IDLE, _COLD = range(5)


class SimRequest:
    """A request's state inside the simulator."""

    __slots__ = (
        "arrival_s",
        "block_tokens",
        "blocks",
        "cached_tokens",
        "finish_step",
        "first_token_s",
        "input_tokens",
        "output_tokens",
        "prefilled",
        "request_id",
    )

    def __init__(self, req: Request) -> None:
        self.request_id = req.request_id
        self.arrival_s = req.arrival_s
        self.input_tokens = req.input_tokens
        self.output_tokens = req.output_tokens
        self.blocks = req.prefix_block_ids
        self.block_tokens = req.block_tokens
        self.first_token_s = 0.0
        self.finish_step = 0
        self.cached_tokens = 0
        self.prefilled = 0

    @classmethod
    def from_counts(
        cls, request_id: str, arrival_s: float, input_tokens: int, output_tokens: int
    ) -> SimRequest:
        """A request known only by its counts (the columnar trace path: no Request object)."""
        r = cls.__new__(cls)
        r.request_id = request_id
        r.arrival_s = arrival_s
        r.input_tokens = input_tokens
        r.output_tokens = output_tokens
        r.blocks = ()
        r.block_tokens = 512
        r.first_token_s = 0.0
        r.finish_step = 0
        r.cached_tokens = 0
        r.prefilled = 0
        return r


@dataclass
class ReplicaEnv:
    """What every replica of a fleet shares: models, sinks and switches."""

    execution: ExecutionModel
    """Step times."""
    power: PowerModel
    """Per-accelerator power."""
    devices: int
    """Accelerators per replica (power scales with it)."""
    metrics: Metrics
    """Where completions and drops are counted."""
    timeline: Timeline
    """Where energy and completions are bucketed."""
    kv_capacity_tokens: int
    """KV tokens a replica can reserve."""
    max_batch: int
    """Most running requests."""
    max_prefill_tokens: int
    """Most new tokens per prefill iteration."""
    prefix_cache_tokens: int
    """Capacity of each replica's own prefix cache, in tokens."""
    fast: bool
    """Jump over decode iterations (True) or schedule each one."""
    warehouse: Warehouse | None = None
    """The shared token warehouse, if any."""
    drop_after_s: float | None = None
    """Drop a request reaching admission after waiting this long."""
    record_power: bool = False
    """Keep every (time, power) change per replica (tests)."""
    chunked_prefill: bool = False
    """Fuse prompt chunks with the running batch's decodes in one iteration (vLLM V1 style)."""


class Replica:
    """A model server: off -> starting -> ready -> draining -> off."""

    def __init__(self, index: int, env: ReplicaEnv) -> None:
        self.index = index
        self.env = env
        self.state = "off"
        self.waiting: deque[SimRequest] = deque()
        self.running: list[tuple[int, int, SimRequest]] = []
        self.prefill_batch: list[SimRequest] = []
        self.prefilling: list[SimRequest] = []
        self.chunks: list[tuple[SimRequest, int]] = []
        self.outstanding = 0
        self.kv_used = 0
        self.ctx_tokens = 0
        self.steps_done = 0
        self.phase = 0  # 0 idle, 1 prefill, 2 decode, 3 fused prefill chunks + decodes
        self.seg_start_s = 0.0
        self.seg_steps = 0
        self.version = 0
        self.cache = PrefixCache(env.prefix_cache_tokens)
        self.on_s = 0.0
        self._on_since = 0.0
        self.energy_j = [0.0] * len(ENERGY_CATEGORIES)
        self.power_w = 0.0
        self._cat = _IDLE
        self._since_s = 0.0
        self.power_log: list[tuple[float, float]] = []
        self._seq = 0

    # energy -------------------------------------------------------------------------------
    def _set_power(self, now: float, power_w: float, cat: int) -> None:
        """Close the current power interval at ``now`` and open one at ``power_w``."""
        since = self._since_s
        if now > since and self.power_w:
            self.energy_j[self._cat] += self.power_w * (now - since)
            self.env.timeline.energy(since, now, self.power_w)
        self.power_w = power_w
        self._cat = cat
        self._since_s = now
        if self.env.record_power:
            self.power_log.append((now, power_w))

    def close(self, now: float) -> None:
        """Account energy and on-time up to ``now`` (end of the simulation)."""
        self._set_power(now, self.power_w, self._cat)
        if self.state != "off":
            self.on_s += now - self._on_since
            self._on_since = now

    # lifecycle ----------------------------------------------------------------------------
    def start(self, now: float) -> None:
        """Begin a cold start (the fleet schedules ``become_ready``)."""
        self.state = "starting"
        self.version += 1
        self._on_since = now
        self._set_power(now, self.env.power.cold_start_w * self.env.devices, _COLD)

    def become_ready(self, now: float) -> float | None:
        """Finish the cold start; returns the end of the first iteration if work is queued."""
        self.state = "ready"
        return self._next(now)

    def drain(self, now: float) -> None:
        """Take no new work; switch off once the queue is empty."""
        if self.state == "starting":
            self.version += 1
            self._off(now)
            return
        self.state = "draining"
        if self.phase == 0 and not self.waiting:
            self._off(now)

    def _off(self, now: float) -> None:
        self.state = "off"
        self.on_s += now - self._on_since
        self._set_power(now, 0.0, _IDLE)

    # work ---------------------------------------------------------------------------------
    def enqueue(self, req: SimRequest, now: float) -> float | None:
        """Queue ``req``; returns a new iteration-end time when this replica reschedules."""
        was_empty = not self.waiting
        self.waiting.append(req)
        self.outstanding += 1
        if self.state not in ("ready", "draining"):
            return None
        if self.phase == 0:
            return self._next(now)
        if self.phase == 2 and self.env.fast and was_empty and self._fits(req):
            return self._interrupt(now)
        return None

    def _fits(self, req: SimRequest) -> bool:
        env = self.env
        return (
            self.kv_used + req.input_tokens + req.output_tokens <= env.kv_capacity_tokens
            and len(self.running) + len(self.prefilling) < env.max_batch
        )

    def _interrupt(self, now: float) -> float | None:
        """Cut the decode run at the first iteration boundary at or after ``now``."""
        ex = self.env.execution
        batch = len(self.running)
        j = decode_steps_until(ex, batch, self.ctx_tokens, now - self.seg_start_s, self.seg_steps)
        if j >= self.seg_steps:
            return None
        self.seg_steps = j
        self.version += 1
        return self.seg_start_s + ex.decode_s(batch, self.ctx_tokens, j)

    def end_iteration(self, now: float) -> float | None:
        """Apply the iteration (or decode run) ending at ``now``; returns the next end time."""
        if self.phase == 1:
            self._end_prefill(now)
        elif self.phase == 2:
            self._end_decode(now)
        elif self.phase == 3:
            self._end_fused(now)
        return self._next(now)

    def _end_prefill(self, now: float) -> None:
        for r in self.prefill_batch:
            self._first_token(r, now)
        self.prefill_batch = []

    def _first_token(self, r: SimRequest, now: float) -> None:
        """The prompt is in the cache and the first token out: keep the prefix, join decode."""
        env = self.env
        r.first_token_s = now
        if r.blocks:
            self.cache.touch(r.blocks, r.block_tokens)
            if env.warehouse is not None:
                env.warehouse.store(r.blocks, r.block_tokens)
        if r.output_tokens == 1:
            self._finish(r, now)
        else:
            self.ctx_tokens += r.input_tokens + 1
            r.finish_step = self.steps_done + r.output_tokens - 1
            self._seq += 1
            heapq.heappush(self.running, (r.finish_step, self._seq, r))

    def _end_fused(self, now: float) -> None:
        # the running batch decoded one token first; requests whose prompt completed join after
        if self.running:
            self.seg_steps = 1
            self._end_decode(now)
        for r, chunk in self.chunks:
            r.prefilled += chunk
            if r.prefilled >= r.input_tokens:
                self.prefilling.remove(r)
                self._first_token(r, now)
        self.chunks = []

    def _end_decode(self, now: float) -> None:
        k = self.seg_steps
        running = self.running
        self.ctx_tokens += len(running) * k
        self.steps_done += k
        done = self.steps_done
        while running and running[0][0] <= done:
            r = heapq.heappop(running)[2]
            self.ctx_tokens -= r.input_tokens + r.output_tokens
            self._finish(r, now)

    def _finish(self, r: SimRequest, now: float) -> None:
        env = self.env
        self.kv_used -= r.input_tokens + r.output_tokens
        self.outstanding -= 1
        env.metrics.complete(r.arrival_s, r.first_token_s, now, r.input_tokens, r.output_tokens)
        env.timeline.completion(now)

    def _admit(self, now: float) -> tuple[int, int, float]:
        """Move fitting requests from the queue into a prefill batch; returns the new tokens,
        their attention pairs and the warehouse load seconds."""
        env = self.env
        waiting = self.waiting
        batch = self.prefill_batch
        tokens = 0
        pairs = 0
        load_s = 0.0
        drop_after = env.drop_after_s
        while waiting:
            r = waiting[0]
            need = r.input_tokens + r.output_tokens
            if self.kv_used + need > env.kv_capacity_tokens:
                break
            if len(self.running) + len(batch) >= env.max_batch:
                break
            if drop_after is not None and now - r.arrival_s > drop_after:
                waiting.popleft()
                self.outstanding -= 1
                env.metrics.drop("queue_timeout")
                continue
            new_tokens, r_load_s = self._reuse(r)
            if batch and tokens + new_tokens > env.max_prefill_tokens:
                break
            waiting.popleft()
            batch.append(r)
            self.kv_used += need
            tokens += new_tokens
            # each new token attends to the cached prefix and to the new tokens before it
            pairs += new_tokens * (r.input_tokens - new_tokens) + new_tokens * (new_tokens + 1) // 2
            load_s += r_load_s
        return tokens, pairs, load_s

    def _plan_chunks(self, now: float) -> tuple[int, int, float]:
        """Fill one fused iteration's token budget (decodes count one each) with prompt chunks:
        started prompts first, then newly admitted ones; returns tokens, pairs, load seconds.

        As in the engine's scheduler, decodes take the budget first; when they fill it, no
        prompt token runs (prompts wait for a decode to finish). Each prompt that completes
        took at least one token of what the decodes left, so decoding requests never outnumber
        the budget and the engine's round robin (budget below the decoding batch) never arises.
        """
        env = self.env
        budget = env.max_prefill_tokens - len(self.running)
        tokens = pairs = 0
        load_s = 0.0
        chunks = self.chunks
        for r in self.prefilling:
            if budget <= 0:
                break
            chunk = min(r.input_tokens - r.prefilled, budget)
            chunks.append((r, chunk))
            pairs += chunk * r.prefilled + chunk * (chunk + 1) // 2
            tokens += chunk
            budget -= chunk
        waiting = self.waiting
        drop_after = env.drop_after_s
        while waiting and budget > 0:
            r = waiting[0]
            if not self._fits(r):
                break
            waiting.popleft()
            if drop_after is not None and now - r.arrival_s > drop_after:
                self.outstanding -= 1
                env.metrics.drop("queue_timeout")
                continue
            new_tokens, r_load_s = self._reuse(r)
            r.prefilled = r.input_tokens - new_tokens
            self.kv_used += r.input_tokens + r.output_tokens
            self.prefilling.append(r)
            chunk = min(new_tokens, budget)
            chunks.append((r, chunk))
            pairs += chunk * r.prefilled + chunk * (chunk + 1) // 2
            tokens += chunk
            budget -= chunk
            load_s += r_load_s
        return tokens, pairs, load_s

    def _fused(self, now: float) -> float | None:
        """Start a fused iteration if any prompt work exists; returns its end time."""
        tokens, pairs, load_s = self._plan_chunks(now)
        if not self.chunks:
            return None
        env = self.env
        self.phase = 3
        dev = env.devices
        if load_s > 0:
            self._set_power(now, env.power.load_w * dev, _LOAD)
        self._set_power(now + load_s, env.power.prefill_w * dev, _PREFILL)
        env.metrics.prefill_tokens += tokens
        ex = env.execution
        dec = len(self.running)
        # all of the step's tokens go through the dense layers; the decodes also read their KV
        step = ex.prefill_s(tokens + dec, len(self.chunks) + dec, pairs)
        if dec:
            step = max(step, ex.decode_s(dec, self.ctx_tokens, 1))
        return now + load_s + step

    def _reuse(self, r: SimRequest) -> tuple[int, float]:
        """Prompt tokens to compute and warehouse load seconds, after prefix reuse."""
        if not r.blocks:
            return r.input_tokens, 0.0
        local = self.cache.leading_hits(r.blocks)
        stored, load_s = 0, 0.0
        wh = self.env.warehouse
        if wh is not None and local < len(r.blocks):
            stored, load_s = wh.lookup(r.blocks[local:], r.block_tokens)
        cached = min((local + stored) * r.block_tokens, r.input_tokens - 1)
        r.cached_tokens = cached
        return r.input_tokens - cached, load_s

    def _next(self, now: float) -> float | None:
        """Choose the iteration starting at ``now``; returns its end time (None: idle)."""
        env = self.env
        self.seg_start_s = now
        self.version += 1
        if env.chunked_prefill:
            if self.prefilling or self.waiting:
                end = self._fused(now)
                if end is not None:
                    return end
        elif self.waiting:
            tokens, pairs, load_s = self._admit(now)
            if self.prefill_batch:
                self.phase = 1
                dev = env.devices
                if load_s > 0:
                    self._set_power(now, env.power.load_w * dev, _LOAD)
                self._set_power(now + load_s, env.power.prefill_w * dev, _PREFILL)
                env.metrics.prefill_tokens += tokens
                batch = len(self.prefill_batch)
                return now + load_s + env.execution.prefill_s(tokens, batch, pairs)
        running = self.running
        if running:
            self.phase = 2
            batch = len(running)
            steps = running[0][0] - self.steps_done if env.fast else 1
            self.seg_steps = steps
            power = env.power.decode_w(batch) * env.devices
            if power != self.power_w or self._cat != _DECODE:
                self._set_power(now, power, _DECODE)
            return now + env.execution.decode_s(batch, self.ctx_tokens, steps)
        self.phase = 0
        if self.state == "draining" and not self.waiting:
            self._off(now)
        elif self._cat != _IDLE or self.power_w != env.power.idle_w * env.devices:
            self._set_power(now, env.power.idle_w * env.devices, _IDLE)
        return None
