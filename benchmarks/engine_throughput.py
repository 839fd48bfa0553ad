"""Claim: at batch 16 the reference engine's output throughput is >= 2x sequential
`transformers` `generate()` on the same model and prompts (tiny fp32 model, CPU).

For each batch size B, B distinct prompts run (a) through the engine core as one continuous
batch and (b) one after another through `model.generate()` (greedy, EOS ignored, KV cache on),
alternating which goes first, in the same process. Reported: output tokens/s and joules per
output token from the CPU model meter of this process (an estimate: `estimated:cpu-model`,
scope cpu, with its watts per core printed), medians over --repeats runs. Greedy outputs of
the two paths are compared token for token.

    .venv/bin/python benchmarks/engine_throughput.py --batches 1,4,16,64 --repeats 3
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

import torch

from tokenwatt.energy import CpuModelMeter
from tokenwatt.engine.config import EngineConfig
from tokenwatt.engine.core import EngineCore
from tokenwatt.engine.model import LoadedModel, load_model
from tokenwatt.engine.sampling import SamplingParams


def prompts_for(loaded: LoadedModel, batch: int, prompt_tokens: int) -> list[list[int]]:
    """``batch`` distinct prompts of exactly ``prompt_tokens`` tokens."""
    out = []
    for i in range(batch):
        text = f"request {i}: " + "the quick brown fox jumps over the lazy dog " * 64
        out.append(loaded.tokenizer.encode(text)[:prompt_tokens])
    return out


def run_engine(loaded: LoadedModel, prompts: list[list[int]], max_tokens: int) -> list[list[int]]:
    """All prompts as one continuous batch; greedy output ids per prompt."""
    core = EngineCore(loaded, EngineConfig(max_batch=max(64, len(prompts))))
    params = SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True)
    for i, p in enumerate(prompts):
        core.add_request(str(i), p, params)
    outs: dict[str, list[int]] = {str(i): [] for i in range(len(prompts))}
    while core.has_unfinished():
        for o in core.step():
            outs[o.request_id].extend(o.token_ids)
    return [outs[str(i)] for i in range(len(prompts))]


def run_generate(loaded: LoadedModel, prompts: list[list[int]], max_tokens: int) -> list[list[int]]:
    """Each prompt alone through transformers' generate(), one after another."""
    results = []
    with torch.inference_mode():
        for p in prompts:
            ids = torch.tensor([p], device=loaded.device)
            out = loaded.model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=max_tokens,
                min_new_tokens=max_tokens,
                do_sample=False,
                eos_token_id=None,
                pad_token_id=loaded.tokenizer.eos_id,
            )
            results.append(out[0, len(p) :].tolist())
    return results


Runner = Callable[[LoadedModel, list[list[int]], int], list[list[int]]]


def measure(
    fn: Runner, loaded: LoadedModel, prompts: list[list[int]], max_tokens: int, meter: CpuModelMeter
) -> tuple[float, float, list[list[int]]]:
    """(output tokens/s, J per output token, outputs) of one run."""
    before = meter.read().energy_j["cpu"]
    t0 = time.perf_counter()
    outs = fn(loaded, prompts, max_tokens)
    elapsed = time.perf_counter() - t0
    energy_j = meter.read().energy_j["cpu"] - before
    tokens = sum(len(o) for o in outs)
    return tokens / elapsed, energy_j / tokens, outs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="tiny", help="preset or checkpoint dir")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batches", default="1,4,16,64", help="comma list of batch sizes")
    ap.add_argument("--prompt-tokens", type=int, default=64)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--torch-threads", type=int, default=1, help="0 keeps torch's default")
    args = ap.parse_args()
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    loaded = load_model(args.model, device=args.device)
    meter = CpuModelMeter.open("process")
    params = meter.components[0].params
    print(
        f"model {loaded.name} ({loaded.fingerprint}) on {loaded.device}, "
        f"{torch.get_num_threads()} torch thread(s), {platform.machine()}, "
        f"prompt {args.prompt_tokens} tokens, {args.max_tokens} output tokens per request"
    )
    print(
        "energy: estimated:cpu-model, scope cpu, this process "
        f"(active {params['active_w_per_core']} W/core, idle {params['idle_w_per_core']} W/core)"
    )
    warm = prompts_for(loaded, 2, args.prompt_tokens)
    run_engine(loaded, warm, 4)
    run_generate(loaded, warm, 4)
    header = "| batch | engine tok/s | generate tok/s | speed-up | engine J/tok | generate J/tok |"
    print(header + " J/tok ratio | outputs match |")
    print("|---" * 8 + "|")
    for batch in (int(b) for b in args.batches.split(",")):
        prompts = prompts_for(loaded, batch, args.prompt_tokens)
        eng: list[tuple[float, float]] = []
        gen: list[tuple[float, float]] = []
        match = True
        for r in range(args.repeats):
            order = [(run_engine, eng), (run_generate, gen)]
            outs = []
            for fn, sink in order if r % 2 == 0 else reversed(order):
                tps, jpt, o = measure(fn, loaded, prompts, args.max_tokens, meter)
                sink.append((tps, jpt))
                outs.append(o)
            match = match and outs[0] == outs[1]
        e_tps = statistics.median(t for t, _ in eng)
        g_tps = statistics.median(t for t, _ in gen)
        e_j = statistics.median(j for _, j in eng)
        g_j = statistics.median(j for _, j in gen)
        print(
            f"| {batch} | {e_tps:.0f} | {g_tps:.0f} | {e_tps / g_tps:.2f}x | "
            f"{e_j * 1000:.2f} mJ | {g_j * 1000:.2f} mJ | {g_j / e_j:.2f}x less | "
            f"{'yes' if match else 'NO'} |"
        )
    meter.close()


if __name__ == "__main__":
    main()
