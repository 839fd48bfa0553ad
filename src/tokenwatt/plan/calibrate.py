"""Calibration: measure step times (and power, with a meter) of an engine into a profile file.

The profile holds prefill times over prompt lengths, decode-iteration times over batch sizes, the
extra decode time per token of context, and optionally power per phase; ``ProfileModel`` and
``power_from_profile`` load it for the simulator. ``EngineTarget`` adapts tokenwatt's engine.
"""

from __future__ import annotations

import itertools
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tokenwatt.energy.meter import Meter
from tokenwatt.errors import ConfigError
from tokenwatt.plan.hardware import PowerModel

__all__ = [
    "CalibrationSpec",
    "EngineTarget",
    "StepTarget",
    "calibrate",
    "power_from_profile",
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
    # the table holds times at empty context: the model adds slope x context back
    decode = [[float(b), max(0.0, t - slope * b * ctx)] for b, (t, ctx) in short.items()]
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
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"profile file {p} not found; run `tokenwatt plan calibrate`") from None
    except ValueError as exc:
        raise ConfigError(f"profile file {p} is not JSON ({exc})") from None
    power = data.get("power") if isinstance(data, dict) else None
    if power is None:
        return None
    try:
        return PowerModel(**power)
    except TypeError as exc:
        raise ConfigError(f"profile file {p}: bad power section ({exc})") from None
