"""Claim: tokenwatt bench drives >= 2x the request rate of an established harness (GuideLLM) with
stable timings on this machine, and adds < 1 ms of timing error at p99.

Against tests/bench/faulty_server.py in its own process (a no-op streaming server; with
--stamp-text each token's text is the server's perf_counter when it wrote it, a clock every
process on one Linux machine shares):

1. Sustainable rate: open loop at constant rates doubling from --start-rate; a rate is stable
   when every request succeeds, the completed rate is >= 95% of the offered rate, and the p99
   send lag (actual minus scheduled send) is under --max-lag-ms. The figure is the highest
   stable rate, median of --repeats searches.
2. Timing error: --streams concurrent streams of --tokens tokens --itl-ms apart; error = the
   client's chunk timestamp minus the server's send time, p50/p99 over every chunk.

Each harness runs against the same server in the same run: tokenwatt's LoadRunner +
OpenAIClient, a plain httpx + asyncio loop (the floor any Python harness pays), and GuideLLM
installed from PyPI into --guidellm-venv (created on first use). If GuideLLM cannot be installed
or run, the script says exactly why and compares against the plain loop instead.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tokenwatt.bench.client import ClientConfig, OpenAIClient  # noqa: E402
from tokenwatt.bench.load import OpenLoop  # noqa: E402
from tokenwatt.bench.metrics import percentile  # noqa: E402
from tokenwatt.bench.record import Chunk  # noqa: E402
from tokenwatt.bench.runner import LoadRunner, RunLimits  # noqa: E402
from tokenwatt.workload.types import Request  # noqa: E402

SERVER = REPO / "tests" / "bench" / "faulty_server.py"
GUIDELLM_VERSION = "0.8.1"


class Server:
    """The faulty server in a child process (so it does not share the harness's core)."""

    def __init__(self, port: int, itl_ms: float = 0.0) -> None:
        self.url = f"http://127.0.0.1:{port}"
        args = [sys.executable, str(SERVER), "--port", str(port), "--itl-ms", str(itl_ms)]
        self.proc = subprocess.Popen([*args, "--stamp-text"], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if "listening" not in line:
            raise RuntimeError(f"server did not start: {line!r}")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


# -- one rate point per harness: returns (completed/s, p99 send lag s, errors) ----------------

RatePoint = tuple[float, float, int]


async def tokenwatt_point(url: str, rate: float, duration_s: float, tokens: int) -> RatePoint:
    reqs = (Request(f"r{i}", input_tokens=8, output_tokens=tokens) for i in range(10**9))
    client = OpenAIClient(ClientConfig(base_url=url, timeout_s=30))
    shape = OpenLoop(rate, "constant")
    runner = LoadRunner(client, reqs, shape, RunLimits(duration_s=duration_s, drain_timeout_s=10))
    try:
        records = await runner.run()
    finally:
        await client.aclose()
    ok = [r for r in records if r.ok]
    lags = [r.start_s - r.scheduled_s for r in records] or [0.0]
    span = max((r.end_s for r in records), default=0.0)
    return len(ok) / max(span, duration_s), percentile(lags, 99), len(records) - len(ok)


async def plain_point(url: str, rate: float, duration_s: float, tokens: int) -> RatePoint:
    """The baseline: httpx streaming requests launched on a constant schedule, nothing else."""
    body = {"model": "m", "prompt": "hi", "max_tokens": tokens, "stream": True}
    lags: list[float] = []
    done = 0
    errors = 0
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=4096)) as http:

        async def one() -> None:
            nonlocal done, errors
            try:
                async with http.stream("POST", url + "/v1/completions", json=body) as resp:
                    async for _line in resp.aiter_lines():
                        pass
                done += 1
            except httpx.HTTPError:
                errors += 1

        t0 = time.perf_counter()
        tasks = []
        i = 0
        while (at := i / rate) < duration_s:
            delay = at - (time.perf_counter() - t0)
            if delay > 0:
                await asyncio.sleep(delay)
            lags.append(time.perf_counter() - t0 - at)
            tasks.append(asyncio.create_task(one()))
            i += 1
        await asyncio.gather(*tasks)
        span = time.perf_counter() - t0
    return done / max(span, duration_s), percentile(lags or [0.0], 99), errors


def guidellm_point(
    exe: Path, url: str, rate: float, duration_s: float, tokens: int, workdir: Path
) -> RatePoint:
    out = workdir / f"gl-{rate:g}.json"
    cmd = [
        str(exe),
        "benchmark",
        "run",
        "--target",
        url,
        "--profile",
        "constant",
        "--rate",
        f"{rate:g}",
        "--max-seconds",
        f"{duration_s:g}",
        "--data",
        f"prompt_tokens=8,output_tokens={tokens}",
        "--processor",
        str(workdir / "tokenizer"),
        "--output-path",
        str(out),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration_s * 10 + 120)
    if proc.returncode != 0:
        raise RuntimeError(f"guidellm exited {proc.returncode}: {proc.stderr[-600:]}")
    report = json.loads(out.read_text())
    bench = report["benchmarks"][0]
    totals = bench["metrics"]["request_totals"]
    rps = bench["metrics"]["requests_per_second"]["successful"]["mean"]
    return float(rps), float("nan"), int(totals.get("errored", 0))


def stable(point: RatePoint, rate: float, max_lag_s: float) -> bool:
    done_rps, lag_p99, errors = point
    lag_ok = lag_p99 != lag_p99 or lag_p99 <= max_lag_s  # NaN: the harness does not report it
    return errors == 0 and done_rps >= 0.95 * rate and lag_ok


def sustainable_rate(
    run_point: Callable[[float], RatePoint], start: float, max_rate: float, max_lag_s: float
) -> float:
    """Highest stable rate: double until unstable, then bisect once between the last two."""
    best = 0.0
    rate = start
    while rate <= max_rate:
        point = run_point(rate)
        ok = stable(point, rate, max_lag_s)
        print(
            f"    {rate:8.0f}/s -> {point[0]:8.1f}/s done, lag p99 "
            f"{point[1] * 1e3:7.2f} ms, errors {point[2]}: {'stable' if ok else 'UNSTABLE'}",
            flush=True,
        )
        if not ok:
            mid = (best + rate) / 2 if best else rate / 2
            if best and stable(run_point(mid), mid, max_lag_s):
                best = mid
            break
        best = rate
        rate *= 2
    return best


# -- timing error ------------------------------------------------------------------------------


async def tokenwatt_errors(url: str, streams: int, tokens: int, stagger_s: float) -> list[float]:
    client = OpenAIClient(ClientConfig(base_url=url, timeout_s=60))
    errs: list[float] = []

    async def one(i: int) -> None:
        await asyncio.sleep(i * stagger_s)
        async for ev in client.stream(Request(f"e{i}", input_tokens=8, output_tokens=tokens)):
            if isinstance(ev, Chunk):
                errs.append(ev.time_s - float(ev.text))

    try:
        await asyncio.gather(*(one(i) for i in range(streams)))
    finally:
        await client.aclose()
    return errs


async def plain_errors(url: str, streams: int, tokens: int, stagger_s: float) -> list[float]:
    body = {"model": "m", "prompt": "hi", "max_tokens": tokens, "stream": True}
    errs: list[float] = []
    async with httpx.AsyncClient(timeout=60) as http:

        async def one(i: int) -> None:
            await asyncio.sleep(i * stagger_s)
            async with http.stream("POST", url + "/v1/completions", json=body) as resp:
                async for line in resp.aiter_lines():
                    now = time.perf_counter()
                    if line.startswith("data: {"):
                        text = json.loads(line[6:])["choices"]
                        if text:
                            errs.append(now - float(text[0]["text"]))

        await asyncio.gather(*(one(i) for i in range(streams)))
    return errs


# -- GuideLLM install --------------------------------------------------------------------------


def ensure_guidellm(venv: Path) -> Path:
    """The guidellm executable in ``venv``, installing it there from PyPI on first use."""
    exe = venv / "bin" / "guidellm"
    if exe.exists():
        return exe
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    # torch first and pinned, so pip takes the CPU wheel instead of multi-GB CUDA wheels.
    subprocess.run([*pip, "torch==2.13.0"], check=True, timeout=1800)
    subprocess.run([*pip, f"guidellm=={GUIDELLM_VERSION}"], check=True, timeout=1800)
    return exe


def write_local_tokenizer(path: Path, venv: Path) -> None:
    """A word-level HF tokenizer directory (no hub access) for GuideLLM's synthetic prompts."""
    code = f"""
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast
vocab = {{"[UNK]": 0, **{{f"w{{i}}": i + 1 for i in range(5000)}}}}
tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
tok.pre_tokenizer = pre_tokenizers.Whitespace()
PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]").save_pretrained({str(path)!r})
"""
    subprocess.run([str(venv / "bin" / "python"), "-c", code], check=True, timeout=300)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--port", type=int, default=18931)
    ap.add_argument("--duration", type=float, default=3.0, help="seconds per rate point")
    ap.add_argument("--start-rate", type=float, default=50.0)
    ap.add_argument("--max-rate", type=float, default=6400.0)
    ap.add_argument("--max-lag-ms", type=float, default=10.0)
    ap.add_argument("--tokens", type=int, default=8, help="output tokens per request (rate test)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--streams", type=int, default=16, help="concurrent streams (timing test)")
    ap.add_argument("--error-tokens", type=int, default=100)
    ap.add_argument("--itl-ms", type=float, default=5.0)
    ap.add_argument("--guidellm-venv", type=Path, default=Path("/tmp/tokenwatt-guidellm-venv"))
    ap.add_argument("--skip-guidellm", action="store_true")
    ap.add_argument("--skip-rate", action="store_true", help="only measure the timing error")
    args = ap.parse_args()
    max_lag = args.max_lag_ms / 1e3

    guidellm: Path | None = None
    why_not = ""
    workdir = Path(tempfile.mkdtemp(prefix="tw-overhead-"))
    if args.skip_guidellm:
        why_not = "skipped (--skip-guidellm)"
    else:
        try:
            guidellm = ensure_guidellm(args.guidellm_venv)
            write_local_tokenizer(workdir / "tokenizer", args.guidellm_venv)
        except (subprocess.SubprocessError, OSError) as exc:
            why_not = f"install failed: {exc}"
            guidellm = None

    server = Server(args.port)
    try:

        def ours(rate: float) -> RatePoint:
            return asyncio.run(tokenwatt_point(server.url, rate, args.duration, args.tokens))

        def plain(rate: float) -> RatePoint:
            return asyncio.run(plain_point(server.url, rate, args.duration, args.tokens))

        harnesses: dict[str, Callable[[float], RatePoint]] = {"tokenwatt": ours, "plain": plain}
        if guidellm is not None:
            exe = guidellm

            def gl(rate: float) -> RatePoint:
                return guidellm_point(exe, server.url, rate, args.duration, args.tokens, workdir)

            try:
                gl(args.start_rate)
                harnesses["guidellm"] = gl
            except (RuntimeError, subprocess.SubprocessError, KeyError, ValueError) as exc:
                why_not = f"run failed: {str(exc)[:500]}"
        rates: dict[str, list[float]] = {name: [] for name in harnesses}
        for rep in range(0 if args.skip_rate else args.repeats):
            for name, fn in harnesses.items():
                print(f"[{rep + 1}/{args.repeats}] {name}: sustainable rate search", flush=True)
                rates[name].append(sustainable_rate(fn, args.start_rate, args.max_rate, max_lag))
    finally:
        server.stop()

    server = Server(args.port, itl_ms=args.itl_ms)
    try:
        errors: dict[str, list[float]] = {"tokenwatt": [], "plain": []}
        # Streams start itl/streams apart so their tokens interleave instead of arriving in
        # bursts of `streams` at once (a burst measures queueing, not the harness's clock).
        stagger = args.itl_ms / 1e3 / args.streams
        fns: dict[str, Callable[[], Awaitable[list[float]]]] = {
            "tokenwatt": lambda: tokenwatt_errors(
                server.url, args.streams, args.error_tokens, stagger
            ),
            "plain": lambda: plain_errors(server.url, args.streams, args.error_tokens, stagger),
        }
        for _ in range(args.repeats):
            for name, fn in fns.items():
                errors[name].extend(asyncio.run(fn()))
    finally:
        server.stop()
    shutil.rmtree(workdir, ignore_errors=True)

    print("\nmachine: 2 CPU cores (shared), no GPU; server in its own process")
    print(f"sustainable request rate ({args.tokens} tokens/request, median of {args.repeats}):")
    med = {name: statistics.median(v) if v else 0.0 for name, v in rates.items()}
    for name, value in med.items():
        print(
            f"  {name:10s} {value:8.0f} req/s   runs: {', '.join(f'{v:.0f}' for v in rates[name])}"
        )
    baseline = "guidellm" if "guidellm" in med else "plain"
    if baseline != "guidellm":
        print(f"  GuideLLM not compared: {why_not}")
    if med[baseline] > 0:
        print(f"  ratio tokenwatt / {baseline}: {med['tokenwatt'] / med[baseline]:.2f}x")
    print(
        f"timing error (client stamp - server send), {args.streams} streams x "
        f"{args.error_tokens} tokens, {args.itl_ms} ms apart, x{args.repeats}:"
    )
    for name, errs in errors.items():
        print(
            f"  {name:10s} p50 {percentile(errs, 50) * 1e3:.3f} ms  "
            f"p99 {percentile(errs, 99) * 1e3:.3f} ms  max {max(errs) * 1e3:.3f} ms  "
            f"(n={len(errs)})"
        )


if __name__ == "__main__":
    main()
