"""Claim: the reference engine's batch-1 decode step is cheaper than the model's own
transformers forward with its DynamicCache, at every context length (tiny fp32 model, CPU).

For each context length N, a random N-token prompt is prefilled and then ``--steps`` tokens are
decoded one at a time, greedily, by each path in turn: (a) ``ModelRunner.execute`` over a
``KVCacheManager`` cache (the engine's step), (b) ``model(...)`` with a ``DynamicCache``
(transformers), and (c) with ``--baseline-runner FILE``, another version of ``runner.py`` (for
example ``git show <commit>:src/tokenwatt/engine/runner.py > /tmp/old_runner.py``) on the same
model and cache type. The order of the paths rotates each repeat; the figure per path is the
median over repeats of the median step time of a repeat. Greedy tokens of all paths are compared.

    .venv/bin/python benchmarks/engine_decode.py --contexts 100,1000,4900,8000 --repeats 5
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from tokenwatt.engine.kv import KVCacheManager
from tokenwatt.engine.model import LoadedModel, load_model
from tokenwatt.engine.runner import ModelRunner

# One decode run: prompt ids, number of steps -> (median seconds per step, greedy tokens).
DecodeRun = Callable[[list[int], int], tuple[float, list[int]]]


def load_runner_module(path: Path) -> ModuleType:
    """``path`` (a runner.py) as a sibling of ``tokenwatt.engine.runner`` (its ``.kv`` and
    ``.model`` imports resolve to today's modules)."""
    name = "tokenwatt.engine._baseline_runner"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path} as a module; pass a runner.py file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def engine_path(loaded: LoadedModel, runner: Any) -> DecodeRun:
    """Decode through a ``ModelRunner``-like ``runner`` (``execute(items, caches)``)."""
    step_item = sys.modules[type(runner).__module__].StepItem

    def run(prompt: list[int], steps: int) -> tuple[float, list[int]]:
        kv = KVCacheManager(runner.layout(), capacity_tokens=1 << 30)
        cache = kv.allocate("r", len(prompt) + steps)
        logits = runner.execute([step_item("r", tuple(prompt), 0)], [cache])
        token = int(logits[0].argmax())
        tokens, times = [token], []
        for i in range(steps):
            t0 = time.perf_counter()
            logits = runner.execute([step_item("r", (token,), len(prompt) + i)], [cache])
            token = int(logits[0].argmax())
            times.append(time.perf_counter() - t0)
            tokens.append(token)
        return statistics.median(times), tokens

    return run


def transformers_path(loaded: LoadedModel) -> DecodeRun:
    """Decode through the model's own forward with a ``DynamicCache`` (last logits only)."""
    from transformers import DynamicCache

    model = loaded.model

    @torch.inference_mode()
    def run(prompt: list[int], steps: int) -> tuple[float, list[int]]:
        cache: Any = DynamicCache(config=model.config)
        ids = torch.tensor([prompt], device=loaded.device)
        out = model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
        token = int(out.logits[0, -1].argmax())
        tokens, times = [token], []
        for _ in range(steps):
            t0 = time.perf_counter()
            ids = torch.tensor([[token]], device=loaded.device)
            out = model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
            token = int(out.logits[0, -1].argmax())
            times.append(time.perf_counter() - t0)
            tokens.append(token)
        return statistics.median(times), tokens

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="tiny", help="preset or checkpoint dir")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--contexts", default="100,1000,4900,8000", help="comma list of lengths")
    ap.add_argument("--steps", type=int, default=100, help="decode steps timed per repeat")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--torch-threads", type=int, default=1, help="0 keeps torch's default")
    ap.add_argument("--baseline-runner", type=Path, help="another runner.py to compare with")
    args = ap.parse_args()
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    loaded = load_model(args.model, device=args.device)
    contexts = [int(c) for c in args.contexts.split(",")]
    longest = max(contexts) + args.steps + 1
    if longest > loaded.max_context:
        raise SystemExit(
            f"context {max(contexts)} + {args.steps} steps exceeds the model's "
            f"{loaded.max_context} tokens; lower --contexts or --steps"
        )
    paths: dict[str, DecodeRun] = {
        "engine": engine_path(loaded, ModelRunner(loaded)),
        "transformers": transformers_path(loaded),
    }
    if args.baseline_runner is not None:
        module = load_runner_module(args.baseline_runner)
        paths["baseline"] = engine_path(loaded, module.ModelRunner(loaded))
    load = os.getloadavg()
    print(
        f"model {loaded.name} ({loaded.fingerprint}) on {loaded.device}, "
        f"{torch.get_num_threads()} torch thread(s), {platform.machine()}, torch "
        f"{torch.__version__}; {args.steps} decode steps x {args.repeats} repeats per context; "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    gen = torch.Generator().manual_seed(0)
    for run in paths.values():  # warm-up: first calls allocate and build tables
        run(torch.randint(32, 127, (64,), generator=gen).tolist(), 4)
    names = list(paths)
    header = "| context | " + " | ".join(f"{n} ms/step" for n in names)
    ratios = [f"engine / {n}" for n in names[1:]]
    print(header + " | " + " | ".join(ratios) + " | greedy tokens match |")
    print("|---" * (1 + len(names) + len(ratios) + 1) + "|")
    for context in contexts:
        prompt = torch.randint(32, 127, (context,), generator=gen).tolist()
        medians: dict[str, list[float]] = {n: [] for n in names}
        match = True
        for r in range(args.repeats):
            order = names[r % len(names) :] + names[: r % len(names)]
            tokens = {}
            for name in order:
                step_s, tokens[name] = paths[name](prompt, args.steps)
                medians[name].append(step_s)
            match = match and all(t == tokens["engine"] for t in tokens.values())
        ms = {n: statistics.median(v) * 1000 for n, v in medians.items()}
        cells = [f"{ms[n]:.3f}" for n in names]
        cells += [f"{ms['engine'] / ms[n]:.2f}x" for n in names[1:]]
        print(f"| {context} | " + " | ".join(cells) + f" | {'yes' if match else 'NO'} |")
    load = os.getloadavg()
    print(f"load average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
