"""The engine on a CUDA GPU (skipped without one)."""

from __future__ import annotations

import pytest

from tokenwatt.engine.config import EngineConfig
from tokenwatt.engine.core import EngineCore
from tokenwatt.engine.engine import Completion
from tokenwatt.engine.model import load_model
from tokenwatt.engine.request import RequestOutput
from tokenwatt.engine.sampling import SamplingParams

pytestmark = pytest.mark.gpu

GREEDY = SamplingParams(max_tokens=16, temperature=0.0, ignore_eos=True)


def _run(core: EngineCore) -> dict[str, Completion]:
    outs: dict[str, list[RequestOutput]] = {}
    while core.has_unfinished():
        for o in core.step():
            outs.setdefault(o.request_id, []).append(o)
    return {rid: Completion.join(o) for rid, o in outs.items()}


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_cuda_batched_equals_alone(dtype: str) -> None:
    """On CUDA, 8 requests batched emit the tokens each emits alone (fp32 and bf16)."""
    loaded = load_model("tiny", device="cuda", dtype=dtype)
    prompts = [loaded.tokenizer.encode(f"gpu request {i} " * (i + 1)) for i in range(8)]
    batched = EngineCore(loaded, EngineConfig(max_step_tokens=64))
    for i, p in enumerate(prompts):
        batched.add_request(str(i), p, GREEDY)
    together = _run(batched)
    for i, p in enumerate(prompts):
        alone = EngineCore(loaded)
        alone.add_request("a", p, GREEDY)
        assert _run(alone)["a"].token_ids == together[str(i)].token_ids
