"""The synchronous engine core: the ``schedule() -> execute() -> update_from_output()`` loop,
energy attribution per request, and the prefix provider's block hand-off. No threads here.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import torch

from tokenwatt.energy.meter import Meter, Reading

from .config import EngineConfig
from .kv import KVCacheManager, NullPrefixProvider, PrefixProvider, publish_blocks
from .model import LoadedModel
from .request import (
    EnergyShare,
    InvalidRequestError,
    RequestOutput,
    RequestState,
    RequestStatus,
)
from .runner import ModelRunner, StepItem
from .sampling import SamplingParams, sample_token
from .scheduler import Scheduler, SchedulerOutput

__all__ = ["EngineCore"]

log = logging.getLogger(__name__)


def _span(req: RequestState, start: int, num_tokens: int) -> tuple[int, ...]:
    """Tokens ``[start, start+num_tokens)`` of prompt + output, without joining the two lists
    (a decode step needs one token; joining costs a copy of the whole context per step)."""
    prompt = req.prompt_ids
    end = start + num_tokens
    if end <= len(prompt):
        return tuple(prompt[start:end])
    if start >= len(prompt):
        return tuple(req.output_ids[start - len(prompt) : end - len(prompt)])
    return tuple(req.all_ids[start:end])


class EngineCore:
    """Runs requests to completion one step at a time; call ``step()`` in a loop.

    Energy: when a ``meter`` is given, each step's energy (meter difference across the step)
    is split between the step's requests in proportion to the tokens each processed. Time
    between steps (idle) is charged to nobody.
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
        self.meter = meter
        self.provider = prefix_provider or NullPrefixProvider()
        self.runner = ModelRunner(loaded)
        self.layout = self.runner.layout(self.config.block_tokens)
        self.kv = KVCacheManager(self.layout, self.config.kv_capacity_tokens)
        self.scheduler = Scheduler(
            self.kv,
            self.provider,
            max_batch=self.config.max_batch,
            max_step_tokens=self.config.max_step_tokens,
        )
        self.requests: dict[str, RequestState] = {}
        self.steps = 0
        self.last_step_tokens = 0

    # -- requests -------------------------------------------------------------------------

    def validate(self, prompt_ids: Sequence[int], params: SamplingParams) -> None:
        """Raise InvalidRequestError when the request can never run on this engine."""
        if not prompt_ids:
            raise InvalidRequestError("the prompt is empty; send at least one token of text")
        vocab = self.loaded.vocab_size
        bad = [t for t in prompt_ids if not 0 <= t < vocab]
        if bad:
            raise InvalidRequestError(
                f"token id {bad[0]} is outside the vocabulary (0..{vocab - 1})"
            )
        total = len(prompt_ids) + params.max_tokens
        if total > self.loaded.max_context:
            raise InvalidRequestError(
                f"prompt ({len(prompt_ids)} tokens) + max_tokens ({params.max_tokens}) = {total} "
                f"exceeds the model's context of {self.loaded.max_context} tokens; "
                "shorten the prompt or lower max_tokens"
            )
        if total > self.config.kv_capacity_tokens:
            raise InvalidRequestError(
                f"the request needs {total} KV positions but the engine has "
                f"{self.config.kv_capacity_tokens}; lower max_tokens or raise kv_capacity_tokens"
            )

    def add_request(
        self,
        request_id: str,
        prompt_ids: Sequence[int],
        params: SamplingParams,
        *,
        tenant: str | None = None,
    ) -> None:
        """Validate and queue a request; ``tenant`` is passed to the prefix provider."""
        if request_id in self.requests:
            raise InvalidRequestError(f"request id {request_id!r} is already in use")
        self.validate(prompt_ids, params)
        req = RequestState(request_id, prompt_ids, params, self.loaded.tokenizer, tenant=tenant)
        self.requests[request_id] = req
        self.scheduler.add(req)

    def abort_request(self, request_id: str) -> RequestOutput | None:
        """Drop a request and free its cache now; its final output, or None if unknown."""
        req = self.scheduler.remove(request_id)
        if req is None:
            return None
        req.finish_reason = "abort"
        return self._finish(req)

    def fail_all(self, message: str) -> list[RequestOutput]:
        """Finish every request with ``error`` (after an unexpected engine fault)."""
        outputs = []
        for rid in list(self.requests):
            req = self.scheduler.remove(rid) or self.requests[rid]
            req.finish_reason = "error"
            req.status = RequestStatus.WAITING  # its cache is suspect: do not publish it
            outputs.append(self._finish(req, error=message))
        return outputs

    def has_unfinished(self) -> bool:
        """True while any request waits or runs."""
        return self.scheduler.has_work()

    @property
    def num_waiting(self) -> int:
        """Requests queued, not yet admitted."""
        return len(self.scheduler.waiting)

    @property
    def num_running(self) -> int:
        """Requests in the running batch."""
        return len(self.scheduler.running)

    # -- the loop -------------------------------------------------------------------------

    def step(self) -> list[RequestOutput]:
        """Schedule, execute and update once; outputs of requests that progressed."""
        sched = self.scheduler.schedule()
        if not sched.items:
            return []
        before = self._read_meter()
        try:
            logits = self.execute(sched)
            sampled = self._sample(sched, logits)
        except Exception as exc:  # a failed step fails its requests, never the engine
            log.exception("engine step failed")
            return self._fail(sched, f"{type(exc).__name__}: {exc}")
        energy = self._step_energy(before)
        self.steps += 1
        self.last_step_tokens = sched.num_tokens
        return self.update_from_output(sched, sampled, energy)

    def execute(self, sched: SchedulerOutput) -> torch.Tensor:
        """Run the model over the scheduled tokens; logits of items that need them."""
        items: list[StepItem] = []
        caches = []
        for s in sched.items:
            req = self.requests[s.request_id]
            ids = _span(req, s.start, s.num_tokens)
            wants = s.start + s.num_tokens >= len(req.prompt_ids)
            items.append(StepItem(s.request_id, ids, s.start, wants))
            caches.append(self.kv.get(s.request_id))
        return self.runner.execute(items, caches)

    def _sample(self, sched: SchedulerOutput, logits: torch.Tensor) -> dict[str, int]:
        wanting = [
            s
            for s in sched.items
            if s.start + s.num_tokens >= len(self.requests[s.request_id].prompt_ids)
        ]
        greedy = torch.argmax(logits, dim=-1).tolist() if len(wanting) else []
        out: dict[str, int] = {}
        for row, s in enumerate(wanting):
            req = self.requests[s.request_id]
            if req.params.greedy:
                out[s.request_id] = int(greedy[row])
            else:
                out[s.request_id] = sample_token(logits[row], req.params, req.generator)
        return out

    def update_from_output(
        self,
        sched: SchedulerOutput,
        sampled: Mapping[str, int],
        step_energy_j: Mapping[str, float] | None,
    ) -> list[RequestOutput]:
        """Advance request states with the sampled tokens; emit outputs; free finished ones."""
        total = sched.num_tokens
        outputs: list[RequestOutput] = []
        for s in sched.items:
            req = self.requests[s.request_id]
            req.num_computed += s.num_tokens
            if step_energy_j:
                share = s.num_tokens / total
                for name, joules in step_energy_j.items():
                    req.energy_j[name] = req.energy_j.get(name, 0.0) + joules * share
            if s.request_id not in sampled:
                continue  # a non-final prefill chunk: nothing to say yet
            if not req.output_ids:
                self._publish_blocks(req)  # the prompt is complete in the cache
            req.append_token(sampled[s.request_id])
            text = req.take_text()
            if req.finish_reason is not None:
                outputs.append(self._finish(req, text))
            else:
                outputs.append(self._output(req, text))
        return outputs

    # -- helpers --------------------------------------------------------------------------

    def _read_meter(self) -> Reading | None:
        if self.meter is None:
            return None
        try:
            return self.meter.read()
        except Exception:  # a meter glitch loses one step's figure, never a request
            log.warning("meter read failed; this step's energy is not attributed", exc_info=True)
            return None

    def _step_energy(self, before: Reading | None) -> dict[str, float] | None:
        after = self._read_meter() if before is not None else None
        if before is None or after is None:
            return None
        start = before.energy_j
        return {n: max(0.0, j - start.get(n, 0.0)) for n, j in after.energy_j.items()}

    def _energy(self, req: RequestState) -> EnergyShare | None:
        if self.meter is None:
            return None
        return EnergyShare.build(req.energy_j, self.meter.components)

    def _output(self, req: RequestState, text: str) -> RequestOutput:
        return RequestOutput(
            request_id=req.request_id,
            text=text,
            token_ids=req.take_new_tokens(),
            prompt_tokens=len(req.prompt_ids),
            completion_tokens=len(req.output_ids),
            cached_tokens=req.cached_tokens,
            energy=self._energy(req),
        )

    def _finish(self, req: RequestState, text: str = "", error: str | None = None) -> RequestOutput:
        if req.status is RequestStatus.RUNNING:
            self._publish_blocks(req)
            self.scheduler.remove(req.request_id)
        self.kv.release(req.request_id)
        req.status = RequestStatus.FINISHED
        self.requests.pop(req.request_id, None)
        out = self._output(req, text)
        return RequestOutput(
            **{**out.__dict__, "finished": True, "finish_reason": req.finish_reason, "error": error}
        )

    def _fail(self, sched: SchedulerOutput, message: str) -> list[RequestOutput]:
        outputs = []
        for s in sched.items:
            req = self.requests.get(s.request_id)
            if req is not None:
                req.finish_reason = "error"
                req.status = RequestStatus.WAITING  # its cache is suspect: do not publish it
                self.scheduler.remove(req.request_id)
                outputs.append(self._finish(req, error=message))
        return outputs

    def _publish_blocks(self, req: RequestState) -> None:
        """Hand whole blocks of computed KV to the provider (guarded)."""
        try:
            cache = self.kv.get(req.request_id)
        except KeyError:
            return
        block = self.layout.block_tokens
        n_blocks = cache.length // block
        if n_blocks <= max(req.blocks_published, req.cached_tokens // block):
            return
        req.blocks_published = n_blocks
        n = n_blocks * block
        try:
            publish_blocks(self.provider, req.all_ids[:n], cache.prefix(n), req.tenant)
        except Exception:  # the warehouse path can never fail a request
            log.warning("on_blocks_ready failed for %s", req.request_id, exc_info=True)
