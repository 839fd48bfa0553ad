"""Claim: tokenwatt's block keys hash faster than vLLM's default (sha256 over a pickled tuple).

Both sides key the same token sequence into chained 256-token block hashes, in the same run;
prints tokens per second for each (median of --repeats) and the ratio.

    .venv/bin/python benchmarks/warehouse_keys.py --tokens 32768 --repeats 15
"""

from __future__ import annotations

import argparse
import hashlib
import pickle
import random
import statistics
import time
from collections.abc import Callable, Sequence

from tokenwatt.warehouse.keys import BlockHasher


def vllm_style_keys(tokens: Sequence[int], block_tokens: int) -> list[bytes]:
    """vLLM's default prefix-cache hash: sha256(pickle((parent, tuple(block), extra)))."""
    parent: bytes | None = None
    out: list[bytes] = []
    for start in range(0, len(tokens) - block_tokens + 1, block_tokens):
        block = tuple(tokens[start : start + block_tokens])
        digest = hashlib.sha256(pickle.dumps((parent, block, None), protocol=5)).digest()
        out.append(digest)
        parent = digest
    return out


def _median_s(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=32768, help="sequence length")
    parser.add_argument("--block-tokens", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    rng = random.Random(0)
    tokens = [rng.randrange(128_000) for _ in range(args.tokens)]
    hasher = BlockHasher("bench-model", block_tokens=args.block_tokens, tenant="t")
    assert len(hasher.digests(tokens)) == len(vllm_style_keys(tokens, args.block_tokens))
    ours_s = _median_s(lambda: hasher.digests(tokens), args.repeats)
    base_s = _median_s(lambda: vllm_style_keys(tokens, args.block_tokens), args.repeats)
    print(f"tokens={args.tokens} block_tokens={args.block_tokens} repeats={args.repeats}")
    print(
        f"tokenwatt BlockHasher (blake2b, uint32 LE): {args.tokens / ours_s / 1e6:8.2f} M tokens/s"
    )
    print(
        f"baseline sha256(pickle(tuple))           : {args.tokens / base_s / 1e6:8.2f} M tokens/s"
    )
    print(f"ratio tokenwatt / baseline: {base_s / ours_s:.2f}x")


if __name__ == "__main__":
    main()
