"""Calibration: measure step times (and power, with a meter) of an engine into a profile file.

The profile holds prefill times over prompt lengths, decode-iteration times over batch sizes, the
extra decode time per token of context, and optionally power per phase; ``ProfileModel`` and
``power_from_profile`` load it for the simulator. ``EngineTarget`` adapts tokenwatt's engine.

``calibrate`` times isolated steps in process. ``profile_from_steps`` instead fits a profile to
steps observed while the engine served traffic (``StepRecord``), with the spread of prefill steps,
one busy power from a metered window (``EnergyWindow``) and the serving overhead per request: on a
CPU the serving stack shares the interpreter and the cores, and isolated steps miss that.
Profiles load from a path or by the name of one shipped in ``tokenwatt/data/profiles``.
"""

from __future__ import annotations

import itertools
import json
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tokenwatt.energy.meter import Meter
from tokenwatt.errors import ConfigError
from tokenwatt.plan.execution import ProfileModel, resolve_profile
from tokenwatt.plan.hardware import PowerModel
from tokenwatt.plan.ingress import overhead_quantiles

__all__ = [
    "CalibrationSpec",
    "EnergyWindow",
    "EngineTarget",
    "StepRecord",
    "StepTarget",
    "calibrate",
    "monotone",
    "overhead_from_profile",
    "power_from_profile",
    "profile_from_steps",
    "write_profile",
]


class StepTarget(Protocol):
    """An engine driven one scheduler step at a time (a fresh one per measurement)."""

    def add(self, prompt_tokens: int, max_tokens: int) -> None:
        """Queue a request with a prompt of ``prompt_tokens`` tokens."""
        ...

    def step(self) -> int:
        """Run one step; returns the tokens it processed (decodes count 1 each)."""
        ...

    def has_work(self) -> bool:
        """True while any request waits or runs."""
        ...


class EngineTarget:
    """``StepTarget`` over ``tokenwatt.engine.EngineCore`` (greedy, EOS ignored)."""

    def __init__(self, core: Any) -> None:
        self.core = core
        self._n = 0

    def add(self, prompt_tokens: int, max_tokens: int) -> None:
        """Queue a request of ``prompt_tokens`` fixed token ids."""
        from tokenwatt.engine import SamplingParams

        vocab = int(self.core.loaded.vocab_size)
        ids = [(i * 7 + self._n) % (vocab - 3) + 3 for i in range(prompt_tokens)]
        params = SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True)
        self.core.add_request(f"calibrate-{self._n}", ids, params)
        self._n += 1

    def step(self) -> int:
        """One engine step."""
        self.core.step()
        return int(self.core.last_step_tokens)

    def has_work(self) -> bool:
        """Whether requests remain."""
        return bool(self.core.has_unfinished())


@dataclass(frozen=True)
class CalibrationSpec:
    """What to measure."""

    prefill_tokens: tuple[int, ...] = (16, 64, 256, 1024)
    """Prompt lengths whose prefill step is timed."""
    decode_batches: tuple[int, ...] = (1, 2, 4, 8, 16)
    """Batch sizes whose decode iteration is timed."""
    short_context: int = 16
    """Prompt length of the decode measurements."""
    long_context: int = 512
    """Prompt length of the second decode measurement (the context slope)."""
    decode_steps: int = 6
    """Timed decode iterations per measurement (the median is kept)."""
    repeats: int = 3
    """Repeats of each prefill measurement (the median is kept)."""
    idle_s: float = 0.2
    """Seconds of idle power measured (only with a meter)."""
    rounds: int = 1
    """Full passes over every point; each keeps its median across passes, which rides out
    bursts of load from other processes on a shared machine."""

    def __post_init__(self) -> None:
        if not self.prefill_tokens or not self.decode_batches:
            raise ConfigError("calibration needs at least one prefill length and one batch size")
        if min(self.prefill_tokens) < 1 or min(self.decode_batches) < 1:
            raise ConfigError("calibration sizes must be >= 1")
        if any(b2 <= b1 for b1, b2 in itertools.pairwise(self.decode_batches)):
            raise ConfigError("calibration: decode_batches must increase, e.g. (1, 2, 4, 8)")
        if not 1 <= self.short_context < self.long_context:
            raise ConfigError("calibration: need 1 <= short_context < long_context")
        if self.decode_steps < 1 or self.repeats < 1 or self.rounds < 1:
            raise ConfigError("calibration: decode_steps, repeats and rounds must be >= 1")


class _Probe:
    """Times (and meters) single steps."""

    def __init__(self, meter: Meter | None, clock: Callable[[], float]) -> None:
        self.meter = meter
        self.clock = clock

    def energy(self) -> float:
        """Cumulative joules of every meter component (0 without a meter)."""
        return sum(self.meter.read().energy_j.values()) if self.meter else 0.0

    def step(self, target: StepTarget) -> tuple[int, float, float]:
        e0 = self.energy()
        t0 = self.clock()
        tokens = target.step()
        dt = self.clock() - t0
        return tokens, dt, self.energy() - e0


def _prefill(
    make: Callable[[], StepTarget], probe: _Probe, tokens: int, repeats: int
) -> tuple[float, float, float]:
    """Median prefill seconds, and the joules and seconds of all repeats together."""
    times: list[float] = []
    all_j = 0.0
    for _ in range(repeats):
        target = make()
        target.add(tokens, 1)
        total_s = total_j = 0.0
        while target.has_work():
            _, dt, ej = probe.step(target)
            total_s += dt
            total_j += ej
        times.append(total_s)
        all_j += total_j
    return statistics.median(times), all_j, sum(times)


def _decode(
    make: Callable[[], StepTarget], probe: _Probe, batch: int, context: int, steps: int
) -> tuple[float, float, float, float]:
    """Median decode-iteration seconds, the per-request context it was measured at (prompt +
    first token + half the timed iterations: the median's position), and the joules and
    seconds of all timed iterations together."""
    target = make()
    for _ in range(batch):
        target.add(context, steps + 4)
    times: list[float] = []
    joules = 0.0
    guard = 0
    while target.has_work() and len(times) < steps:
        tokens, dt, ej = probe.step(target)
        guard += 1
        if guard > 10_000:
            raise ConfigError("calibration: the engine never reached a pure decode step")
        if tokens == batch and guard > 1:  # every request decoding one token: a decode step
            times.append(dt)
            joules += ej
    if not times:
        raise ConfigError(
            f"calibration: no pure decode step at batch {batch}; raise the engine's max_batch"
        )
    mid_context = context + 1 + (len(times) - 1) / 2
    return statistics.median(times), mid_context, joules, sum(times)


def monotone(values: list[float], weights: list[float] | None = None) -> list[float]:
    """The non-decreasing sequence nearest ``values`` in weighted least squares (pool adjacent
    violators): a bigger batch or step never runs faster, whatever one noisy median said."""
    w = weights or [1.0] * len(values)
    blocks: list[list[float]] = []  # [mean, weight, count]
    for v, wi in zip(values, w, strict=True):
        blocks.append([v, wi, 1.0])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            m2, w2, n2 = blocks.pop()
            m1, w1, n1 = blocks.pop()
            blocks.append([(m1 * w1 + m2 * w2) / (w1 + w2), w1 + w2, n1 + n2])
    return [m for m, _, n in blocks for _ in range(int(n))]


def _ratio(joules: float, seconds: float) -> float:
    return joules / seconds if seconds > 0 else 0.0


@dataclass
class _Round:
    """One pass over every measurement point."""

    prefill_s: list[float]
    prefill_j: float
    prefill_t: float
    decode_s: list[float]
    decode_ctx: list[float]
    decode_j: list[float]
    decode_t: list[float]
    long_s: float
    long_ctx: float


def _round(make: Callable[[], StepTarget], probe: _Probe, spec: CalibrationSpec) -> _Round:
    r = _Round([], 0.0, 0.0, [], [], [], [], 0.0, 0.0)
    for n in spec.prefill_tokens:
        t, ej, es = _prefill(make, probe, n, spec.repeats)
        r.prefill_s.append(t)
        r.prefill_j += ej
        r.prefill_t += es
    for b in spec.decode_batches:
        t, ctx, ej, es = _decode(make, probe, b, spec.short_context, spec.decode_steps)
        r.decode_s.append(t)
        r.decode_ctx.append(ctx)
        r.decode_j.append(ej)
        r.decode_t.append(es)
    b_ref = spec.decode_batches[len(spec.decode_batches) // 2]
    r.long_s, r.long_ctx, _, _ = _decode(make, probe, b_ref, spec.long_context, spec.decode_steps)
    return r


def calibrate(
    make_target: Callable[[], StepTarget],
    spec: CalibrationSpec | None = None,
    meter: Meter | None = None,
    name: str = "engine",
    clock: Callable[[], float] = time.perf_counter,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Measure a profile (the JSON-ready dict ``write_profile`` stores)."""
    spec = spec or CalibrationSpec()
    probe = _Probe(meter, clock)
    # one untimed run first: lazy initialisation (allocators, kernels) is not a step cost
    _decode(make_target, _Probe(None, clock), max(spec.decode_batches), spec.short_context, 2)
    rounds = [_round(make_target, probe, spec) for _ in range(spec.rounds)]
    med = statistics.median
    prefill = [
        [float(n), med(r.prefill_s[i] for r in rounds)] for i, n in enumerate(spec.prefill_tokens)
    ]
    short = {
        b: (med(r.decode_s[i] for r in rounds), rounds[0].decode_ctx[i])
        for i, b in enumerate(spec.decode_batches)
    }
    # the context slope from one mid-size batch at two prompt lengths
    b_ref = spec.decode_batches[len(spec.decode_batches) // 2]
    t_long, ctx_long = med(r.long_s for r in rounds), rounds[0].long_ctx
    t_short, ctx_short = short[b_ref]
    slope = max(0.0, (t_long - t_short) / (b_ref * (ctx_long - ctx_short)))
    # A long-context step slowed by load elsewhere inflates the slope, and subtracting it would
    # zero the table: the context term may take at most half of any measured short step.
    slope = min([slope] + [t / (2.0 * b * ctx) for b, (t, ctx) in short.items() if ctx > 0])
    # the table holds times at empty context: the model adds slope x context back
    zero_ctx = [t - slope * b * ctx for b, (t, ctx) in short.items()]
    decode = [[float(b), t] for b, t in zip(short, monotone(zero_ctx), strict=True)]
    profile: dict[str, Any] = {
        "name": name,
        "prefill": prefill,
        "decode": decode,
        "decode_s_per_context_token": slope,
    }
    if meter is not None:
        e0, t0 = probe.energy(), clock()
        sleep(spec.idle_s)
        idle_w = (probe.energy() - e0) / max(clock() - t0, 1e-9)
        sources = sorted({c.source for c in meter.components})
        scopes = sorted({c.scope for c in meter.components})
        # Power is energy over time summed across all measurements of a phase, not a per-step
        # ratio: meters tick coarsely (CPU time in 10 ms ticks) next to millisecond steps.
        prefill_w = _ratio(sum(r.prefill_j for r in rounds), sum(r.prefill_t for r in rounds))
        low_w = _ratio(sum(r.decode_j[0] for r in rounds), sum(r.decode_t[0] for r in rounds))
        high_w = _ratio(sum(r.decode_j[-1] for r in rounds), sum(r.decode_t[-1] for r in rounds))
        profile["power"] = {
            "name": name,
            "kind": "calibrated",
            "scope": scopes[0] if len(scopes) == 1 else "node",
            "idle_w": idle_w,
            "prefill_w": prefill_w,
            "decode_min_w": low_w,
            "decode_max_w": max(high_w, low_w),
            "decode_saturation_batch": max(spec.decode_batches),
            "cold_start_w": idle_w,
            "load_w": idle_w,
            "source": f"calibrated from meters: {', '.join(sources)} (scope {', '.join(scopes)})",
        }
    return profile


def write_profile(profile: dict[str, Any], path: str | Path) -> None:
    """Write a profile to ``path`` as JSON."""
    Path(path).write_text(json.dumps(profile, indent=1))


def power_from_profile(path: str | Path) -> PowerModel | None:
    """The power model a profile file carries, or None if it was measured without a meter."""
    p = resolve_profile(path)
    try:
        data = json.loads(p.read_text())
    except ValueError as exc:
        raise ConfigError(f"profile file {p} is not JSON ({exc})") from None
    power = data.get("power") if isinstance(data, dict) else None
    if power is None:
        return None
    try:
        return PowerModel(**power)
    except TypeError as exc:
        raise ConfigError(f"profile file {p}: bad power section ({exc})") from None


# -- calibration from a served workload -------------------------------------------------------


@dataclass(frozen=True)
class StepRecord:
    """One engine step observed while the engine served traffic over HTTP."""

    seconds: float
    """Start of this step to the start of the next (the loop's dispatch of outputs included)."""
    decodes: int
    """Requests that decoded one token in the step."""
    prefill_tokens: int
    """Prompt tokens (whole prompts or chunks) the step computed."""
    context_tokens: int = 0
    """KV positions the decoding requests held at the step."""

    def __post_init__(self) -> None:
        if not (self.seconds >= 0 and math.isfinite(self.seconds)):
            raise ConfigError(f"step record: seconds must be finite and >= 0, got {self.seconds}")
        if min(self.decodes, self.prefill_tokens, self.context_tokens) < 0:
            raise ConfigError("step record: token counts must be >= 0")
        if self.decodes + self.prefill_tokens == 0:
            raise ConfigError("step record: a step computes at least one token")


@dataclass(frozen=True)
class EnergyWindow:
    """Metered energy over the served workload the steps came from."""

    energy_j: float
    """Joules the meters counted over the window."""
    window_s: float
    """Seconds the window lasted (busy steps and idle time)."""
    idle_w: float
    """Watts the meters counted with the server up and no request in flight."""
    source: str
    """The meters' sources, e.g. ``estimated:cpu-model``."""
    scope: str
    """What the meters cover (cpu, gpu, node)."""

    def __post_init__(self) -> None:
        if not (self.energy_j >= 0 and self.window_s > 0 and self.idle_w >= 0):
            raise ConfigError(
                "energy window: need energy_j >= 0, window_s > 0 and idle_w >= 0, got "
                f"{self.energy_j}, {self.window_s}, {self.idle_w}"
            )


_STATISTICS: dict[str, Callable[[list[float]], float]] = {
    "mean": statistics.fmean,
    "median": statistics.median,
}


class _Rows:
    """Seconds at x from (x, seconds) rows, as ProfileModel interpolates them."""

    def __init__(self, rows: list[tuple[float, float]]) -> None:
        self.model = ProfileModel(prefill_table=tuple(rows))

    def __call__(self, x: float) -> float:
        return self.model.prefill_s(round(x), 1)


def _binned(
    points: list[tuple[float, tuple[float, float]]],
    min_samples: int,
    centre: Callable[[list[float]], float] = statistics.median,
) -> tuple[list[float], list[float], list[float]]:
    """Per bin key: (median x, centre of seconds, count) of its (x, seconds) points; bins with
    too few samples left out, seconds made non-decreasing in x."""
    groups: dict[float, list[tuple[float, float]]] = {}
    for key, point in points:
        groups.setdefault(key, []).append(point)
    xs, ts, ns = [], [], []
    for key in sorted(groups):
        rows = groups[key]
        if len(rows) < min_samples:
            continue
        xs.append(statistics.median(r[0] for r in rows))
        ts.append(centre([r[1] for r in rows]))
        ns.append(float(len(rows)))
    return xs, monotone(ts, ns), ns


MIN_SPREAD_STEPS = 20
"""Fewest steps a spread (``prefill_jitter``, ``decode_jitter``) is taken from."""


def _spread(ratios: list[float], points: int) -> list[float]:
    """``points`` quantiles of step-over-row ratios (one per ratio when there are fewer), scaled
    to mean 1 (a row is a mean, so the factors keep the busy time the steps add up to)."""
    ordered = sorted(ratios)
    n = len(ordered)
    points = min(points, n)
    q = [ordered[min(n - 1, int((i + 0.5) * n / points))] for i in range(points)]
    mean = sum(q) / len(q)
    return [f / mean for f in q]


def profile_from_steps(
    steps: Sequence[StepRecord],
    name: str,
    *,
    decode_s_per_context_token: float = 0.0,
    bins_per_octave: int = 2,
    min_samples: int = 3,
    energy: EnergyWindow | None = None,
    request_overhead_s: float = 0.0,
    statistic: str = "mean",
    jitter_points: int = 200,
    request_overheads_s: Sequence[float] = (),
    overhead_points: int = 200,
    decode_jitter_points: int = 0,
) -> dict[str, Any]:
    """A profile (``write_profile``'s dict) from steps observed while serving.

    Decode rows: the median pure-decode step per batch size (the context term, at
    ``decode_s_per_context_token``, taken out). Prefill rows: steps that computed prompt tokens,
    keyed as the simulator prices a fused step, by prompt tokens plus decodes, in log-spaced bins
    (``bins_per_octave``), median per bin. Rows with fewer than ``min_samples`` steps are left
    out; both tables are made non-decreasing. ``statistic`` is ``mean`` (a row then keeps the
    busy time its steps add up to, which throughput and energy depend on) or ``median``.
    ``jitter_points`` quantiles of each prefill step's time over its row's (scaled to mean 1)
    become the profile's ``prefill_jitter``: the spread that sets the TTFT tail (0: none; with
    fewer steps than points, one factor per step; none from fewer than ``MIN_SPREAD_STEPS``).
    200 rather than 40 keeps the top of the tail: the last of 40 points stands for the slowest
    2.5% of steps and of overheads, and the TTFT p99 lives there (``benchmarks/plan_fidelity.py``,
    docs/benchmarks.md: in-sample p99 ratio 0.983 with 200 points against 0.927-0.950 with 40;
    out of sample 0.92 from one 400-request calibration, about as with 40, and 0.96 from a
    1,200-request one).
    ``decode_jitter_points`` does the same for pure decode steps (``decode_jitter``); off by
    default: on the tiny engine it raised predicted energy 3-11% and left the TTFT tail as it
    was (docs/plan.md, "Step spread").
    With ``energy``, one busy power for every phase:
    the window's joules less its idle draw, over the summed step seconds.
    ``request_overhead_s`` (the serving time outside the engine per request) is stored under
    ``serving`` as ``request_s``, the one constant older profiles carried; ``request_overheads_s``,
    that time measured per request, is stored there as ``overhead_points`` quantiles
    (``request_quantiles_s``). ``overhead_from_profile`` reads either: the simulator draws each
    request's overhead from them.
    """
    if bins_per_octave < 1 or min_samples < 1 or min(jitter_points, decode_jitter_points) < 0:
        raise ConfigError(
            "profile_from_steps: bins_per_octave and min_samples must be >= 1, jitter_points "
            "and decode_jitter_points >= 0"
        )
    if statistic not in _STATISTICS:
        raise ConfigError(f"profile_from_steps: statistic must be mean or median, not {statistic}")
    centre = _STATISTICS[statistic]
    slope = decode_s_per_context_token
    dec_points = [
        (float(s.decodes), (float(s.decodes), s.seconds - slope * s.context_tokens))
        for s in steps
        if s.prefill_tokens == 0
    ]
    pre_points: list[tuple[float, tuple[float, float]]] = []
    for s in steps:
        if s.prefill_tokens > 0:
            x = float(s.prefill_tokens + s.decodes)
            pre_points.append((float(math.floor(math.log2(x) * bins_per_octave)), (x, s.seconds)))
    dec_x, dec_t, _ = _binned(dec_points, min_samples, centre)
    pre_x, pre_t, _ = _binned(pre_points, min_samples, centre)
    if not dec_x or not pre_x:
        raise ConfigError(
            f"profile_from_steps: fewer than {min_samples} steps for every "
            f"{'decode batch size' if not dec_x else 'prefill size'}; serve a longer workload"
        )
    profile: dict[str, Any] = {
        "name": name,
        "prefill": [[x, t] for x, t in zip(pre_x, pre_t, strict=True)],
        "decode": [[x, max(0.0, t)] for x, t in zip(dec_x, dec_t, strict=True)],
        "decode_s_per_context_token": slope,
        "serving": {"request_s": request_overhead_s, "token_s": 0.0},
        "steps": len(steps),
    }
    if request_overheads_s:
        quantiles = overhead_quantiles(request_overheads_s, overhead_points)
        profile["serving"]["request_quantiles_s"] = list(quantiles)
    if jitter_points:
        model_t = _Rows([(x, t) for x, t in zip(pre_x, pre_t, strict=True)])
        ratios = [t / model_t(x) for _, (x, t) in pre_points if model_t(x) > 0]
        if len(ratios) >= MIN_SPREAD_STEPS:
            profile["prefill_jitter"] = _spread(ratios, jitter_points)
    if decode_jitter_points:
        # Decode steps stall too (a descheduled engine thread). As a factor on the step's time,
        # though, a stall grows with the batch, which real stalls (a fixed time off a CPU) do
        # not: hence opt-in.
        dec_t_of = _Rows([(x, max(t, 0.0)) for x, t in zip(dec_x, dec_t, strict=True)])
        ratios = [t / dec_t_of(x) for _, (x, t) in dec_points if dec_t_of(x) > 0]
        if len(ratios) >= MIN_SPREAD_STEPS:
            profile["decode_jitter"] = _spread(ratios, decode_jitter_points)
    if energy is not None:
        busy_s = sum(s.seconds for s in steps)
        idle_s = max(0.0, energy.window_s - busy_s)
        busy_w = max(energy.idle_w, (energy.energy_j - energy.idle_w * idle_s) / max(busy_s, 1e-9))
        profile["power"] = {
            "name": name,
            "kind": "calibrated",
            "scope": energy.scope,
            "idle_w": energy.idle_w,
            "prefill_w": busy_w,
            "decode_min_w": busy_w,
            "decode_max_w": busy_w,
            "decode_saturation_batch": int(max(dec_x)),
            "cold_start_w": energy.idle_w,
            "load_w": energy.idle_w,
            "source": (
                f"calibrated from a served workload ({len(steps)} steps): {energy.source} "
                f"(scope {energy.scope})"
            ),
        }
    return profile


def overhead_from_profile(path: str | Path) -> tuple[float, ...]:
    """The per-request serving overheads (equally likely seconds) a profile carries: its
    measured quantiles, else its one constant (older profiles), else () when it has none."""
    p = resolve_profile(path)
    try:
        data = json.loads(p.read_text())
        serving = data.get("serving") or {}
        quantiles = serving.get("request_quantiles_s")
        if quantiles:
            return tuple(float(q) for q in quantiles)
        if "request_s" in serving:
            return (float(serving["request_s"]),)
        return ()
    except (ValueError, AttributeError, TypeError) as exc:
        raise ConfigError(f"profile file {p}: bad serving section ({exc})") from None
