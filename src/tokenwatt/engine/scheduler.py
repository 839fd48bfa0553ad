"""Continuous batching: which requests run in the next step and with how many tokens.

Each step first gives every decoding request its one token, then continues unfinished
(chunked) prefills, then admits waiting requests first-come first-served while batch slots,
the per-step token budget and the KV budget allow. Requests join and leave only here, at step
boundaries.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass

from .kv import KVCacheManager, PrefixKV, PrefixProvider, lookup_prefix
from .request import RequestState, RequestStatus

__all__ = ["ScheduledItem", "Scheduler", "SchedulerOutput"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScheduledItem:
    """One request's share of a step (plain data)."""

    request_id: str
    """Which request."""
    start: int
    """Absolute position of the first token to run (the cache's valid length)."""
    num_tokens: int
    """How many tokens run (1 for a decode, a chunk for a prefill)."""


@dataclass(frozen=True)
class SchedulerOutput:
    """The plan of one step."""

    items: tuple[ScheduledItem, ...] = ()
    """Requests in the step, in execution order."""
    admitted: tuple[str, ...] = ()
    """Requests that joined the running batch in this step."""

    @property
    def num_tokens(self) -> int:
        """Tokens the step processes."""
        return sum(i.num_tokens for i in self.items)


class Scheduler:
    """Owns the waiting queue and running batch; admits against batch, token and KV limits."""

    def __init__(
        self,
        kv: KVCacheManager,
        provider: PrefixProvider,
        *,
        max_batch: int,
        max_step_tokens: int,
    ) -> None:
        self.kv = kv
        self.provider = provider
        self.max_batch = max_batch
        self.max_step_tokens = max_step_tokens
        self.waiting: deque[RequestState] = deque()
        self.running: list[RequestState] = []

    def add(self, req: RequestState) -> None:
        """Queue a request (FCFS)."""
        self.waiting.append(req)

    def remove(self, request_id: str) -> RequestState | None:
        """Take a request out of the queue or batch and free its cache; None if unknown."""
        for req in self.waiting:
            if req.request_id == request_id:
                self.waiting.remove(req)
                return req
        for req in self.running:
            if req.request_id == request_id:
                self.running.remove(req)
                self.kv.release(request_id)
                return req
        return None

    def has_work(self) -> bool:
        """True while any request waits or runs."""
        return bool(self.waiting or self.running)

    def schedule(self) -> SchedulerOutput:
        """Plan the next step."""
        budget = self.max_step_tokens
        items: list[ScheduledItem] = []
        decoding = [r for r in self.running if r.prefill_done]
        served = decoding[:budget]
        for req in served:
            items.append(ScheduledItem(req.request_id, req.num_computed, 1))
        budget -= len(served)
        if len(served) < len(decoding):
            # Budget smaller than the batch: who decoded goes to the back (round robin).
            done = {id(r) for r in served}
            self.running = [r for r in self.running if id(r) not in done] + served
        for req in self.running:
            if not req.prefill_done and budget > 0:
                n = min(len(req.prompt_ids) - req.num_computed, budget)
                items.append(ScheduledItem(req.request_id, req.num_computed, n))
                budget -= n
        admitted: list[str] = []
        while self.waiting and budget > 0 and len(self.running) < self.max_batch:
            req = self.waiting[0]
            if not self.kv.can_allocate(req.reserve_tokens):
                break  # FCFS: the head waits for memory rather than being overtaken
            self.waiting.popleft()
            self._admit(req)
            admitted.append(req.request_id)
            n = min(len(req.prompt_ids) - req.num_computed, budget)
            items.append(ScheduledItem(req.request_id, req.num_computed, n))
            budget -= n
        return SchedulerOutput(tuple(items), tuple(admitted))

    def _admit(self, req: RequestState) -> None:
        prefix = self._lookup(req)
        self.kv.allocate(req.request_id, req.reserve_tokens, prefix)
        req.num_computed = req.cached_tokens = prefix.num_tokens if prefix else 0
        req.status = RequestStatus.RUNNING
        self.running.append(req)

    def _lookup(self, req: RequestState) -> PrefixKV | None:
        """The provider's prefix, trimmed so the last prompt token is computed; None on miss."""
        try:
            prefix = lookup_prefix(self.provider, req.prompt_ids, req.tenant)
        except Exception:  # a broken tier must never fail a request
            log.warning(
                "prefix lookup failed for %s; treating as a miss", req.request_id, exc_info=True
            )
            return None
        if prefix is None or prefix.num_tokens == 0:
            return None
        problem = prefix.problem(self.kv.layout)
        if problem is not None:
            log.warning("prefix for %s does not fit the model (%s); miss", req.request_id, problem)
            return None
        keep = min(prefix.num_tokens, len(req.prompt_ids) - 1)
        return prefix.truncate(keep) if keep > 0 else None
