"""Execution models: how long a prefill or a run of decode iterations takes on one replica.

A decode iteration's time is ``overhead + max(compute, weights + KV reads)``; the context grows by
the batch size every iteration, so a run of k iterations has a closed form, which is what lets the
fast simulator jump over many iterations at once (``decode_s(batch, context, k)``).
"""

from __future__ import annotations

import bisect
import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Protocol, runtime_checkable

from tokenwatt.errors import ConfigError
from tokenwatt.plan.hardware import AcceleratorSpec, ModelSpec

__all__ = [
    "ExecutionModel",
    "ProfileModel",
    "RooflineModel",
    "ServingOverhead",
    "decode_steps_until",
    "linear_max_sum",
    "resolve_profile",
    "shipped_profiles",
]

_PROFILES = "data/profiles"
"""Where shipped calibration profiles live inside the package (``<name>.json``)."""


def shipped_profiles() -> tuple[str, ...]:
    """Names of the calibration profiles that ship with tokenwatt (e.g. ``tiny-cpu``)."""
    folder = resources.files("tokenwatt").joinpath(_PROFILES)
    if not folder.is_dir():
        return ()
    return tuple(sorted(f.name[:-5] for f in folder.iterdir() if f.name.endswith(".json")))


def resolve_profile(path_or_name: str | Path) -> Path:
    """The profile file for ``path_or_name``: an existing file, else a shipped profile's name.

    Raises ConfigError naming the shipped profiles when it is neither.
    """
    p = Path(path_or_name)
    if p.is_file():
        return p
    name = str(path_or_name)
    if name in shipped_profiles():
        return Path(str(resources.files("tokenwatt").joinpath(f"{_PROFILES}/{name}.json")))
    known = ", ".join(shipped_profiles()) or "none"
    raise ConfigError(
        f"profile file {p} not found and not a shipped profile (shipped: {known}); "
        "run `tokenwatt plan calibrate` or pass a shipped name"
    )


@runtime_checkable
class ExecutionModel(Protocol):
    """Step times of one replica (the ``ExecutionModel`` seam of the planner)."""

    def prefill_s(self, tokens: int, batch: int, attention_pairs: int = 0) -> float:
        """Seconds for one prefill iteration over ``tokens`` new tokens from ``batch`` requests;
        ``attention_pairs`` counts (new token, attended position) pairs, for attention cost."""
        ...

    def decode_s(self, batch: int, context_tokens: int, steps: int) -> float:
        """Seconds for ``steps`` decode iterations of ``batch`` requests holding
        ``context_tokens`` tokens in total at the first one (growing by ``batch`` per step)."""
        ...


def linear_max_sum(const_s: float, base_s: float, slope_s: float, steps: int) -> float:
    """Sum over i in [0, steps) of ``max(const_s, base_s + slope_s * i)`` in closed form."""
    if steps <= 0:
        return 0.0
    if slope_s <= 0.0:
        return steps * max(const_s, base_s)
    # iterations where the constant (compute) term still dominates the rising memory term
    flat = min(steps, math.floor((const_s - base_s) / slope_s) + 1) if const_s >= base_s else 0
    rising = steps - flat
    if rising <= 0:
        return steps * const_s
    idx_sum = (steps - 1) * steps / 2 - (flat - 1) * flat / 2
    return flat * const_s + rising * base_s + slope_s * idx_sum


def decode_steps_until(
    model: ExecutionModel, batch: int, context_tokens: int, elapsed_s: float, max_steps: int
) -> int:
    """Smallest j in [1, max_steps] whose j decode iterations take at least ``elapsed_s``.

    Iterations never get faster as the context grows, so elapsed / first iteration's time bounds
    j from above and is usually the answer: two model calls instead of a full bisection. With
    decode jitter a slow first iteration breaks that bound; a galloping search then finds one.
    """
    first = model.decode_s(batch, context_tokens, 1)
    if first >= elapsed_s or max_steps <= 1:
        return 1
    hi = min(max_steps, math.ceil(elapsed_s / first) if first > 0 else max_steps)
    lo = 1
    if hi < max_steps and model.decode_s(batch, context_tokens, hi) < elapsed_s:
        # a slow first iteration (jitter) or float rounding at a boundary: gallop upward
        lo, step = hi, 1
        while True:
            hi = min(max_steps, lo + step)
            if hi == max_steps or model.decode_s(batch, context_tokens, hi) >= elapsed_s:
                break
            lo, step = hi, step * 2
    if model.decode_s(batch, context_tokens, hi - 1) < elapsed_s:
        return hi
    while lo < hi:
        mid = (lo + hi) // 2
        if model.decode_s(batch, context_tokens, mid) >= elapsed_s:
            hi = mid
        else:
            lo = mid + 1
    return lo


@dataclass(frozen=True)
class RooflineModel:
    """Step times from accelerator specs: compute-bound prefill, bandwidth-bound decode."""

    accelerator: AcceleratorSpec = field(default_factory=AcceleratorSpec)
    """The accelerator each replica runs on."""
    model: ModelSpec = field(default_factory=ModelSpec)
    """The served model."""
    devices: int = 1
    """Accelerators per replica (tensor parallel; communication cost ignored)."""
    compute_efficiency: float = 0.5
    """Fraction of peak FLOP/s reached (an assumption: typical prefill MFU)."""
    bandwidth_efficiency: float = 0.8
    """Fraction of peak memory bandwidth reached (an assumption)."""
    overhead_s: float = 0.0005
    """Fixed per-iteration cost (scheduling, kernel launches); an assumption."""

    def __post_init__(self) -> None:
        if self.devices < 1:
            raise ConfigError(f"roofline: devices must be >= 1, got {self.devices}")
        for name in ("compute_efficiency", "bandwidth_efficiency"):
            value = getattr(self, name)
            if not 0 < value <= 1:
                raise ConfigError(f"roofline: {name} must be in (0, 1], got {value}")
        if self.overhead_s < 0:
            raise ConfigError(f"roofline: overhead_s must be >= 0, got {self.overhead_s}")
        if self.model.weight_bytes >= self.accelerator.memory_bytes * self.devices:
            raise ConfigError(
                f"roofline: {self.model.name} weights ({self.model.weight_bytes:.3g} B) do not fit "
                f"in {self.devices} x {self.accelerator.name}; raise devices"
            )
        flops = self.accelerator.flops_per_s * self.devices * self.compute_efficiency
        bw = self.accelerator.bandwidth_bytes_per_s * self.devices * self.bandwidth_efficiency
        object.__setattr__(self, "_flop_s", 2.0 * self.model.params / flops)
        object.__setattr__(self, "_attn_s", self.model.attention_flops_per_pair / flops)
        object.__setattr__(self, "_weights_s", self.model.weight_bytes / bw)
        object.__setattr__(self, "_kv_s", self.model.kv_bytes_per_token / bw)

    def kv_capacity_tokens(self, memory_fraction: float = 0.9) -> int:
        """Tokens of KV cache that fit beside the weights in ``memory_fraction`` of memory."""
        free = self.accelerator.memory_bytes * self.devices * memory_fraction
        return max(0, int((free - self.model.weight_bytes) / self.model.kv_bytes_per_token))

    def prefill_s(self, tokens: int, batch: int, attention_pairs: int = 0) -> float:
        """Seconds for one prefill iteration: max(compute, one read of the weights); compute
        is the dense layers' 2 x params per token plus attention per (token, position) pair."""
        flop_s: float = self._flop_s  # type: ignore[attr-defined]
        attn_s: float = self._attn_s  # type: ignore[attr-defined]
        weights_s: float = self._weights_s  # type: ignore[attr-defined]
        return self.overhead_s + max(flop_s * tokens + attn_s * attention_pairs, weights_s)

    def decode_s(self, batch: int, context_tokens: int, steps: int) -> float:
        """Seconds for ``steps`` decode iterations (closed form over the growing context)."""
        flop_s: float = self._flop_s  # type: ignore[attr-defined]
        weights_s: float = self._weights_s  # type: ignore[attr-defined]
        kv_s: float = self._kv_s  # type: ignore[attr-defined]
        base = weights_s + kv_s * context_tokens
        return steps * self.overhead_s + linear_max_sum(flop_s * batch, base, kv_s * batch, steps)


def _interp(xs: Sequence[float], ys: Sequence[float], x: float) -> float:
    """Piecewise-linear interpolation, extrapolating with the end segments' slopes.

    A single row is a constant: one measurement says nothing about the slope.
    """
    if len(xs) == 1:
        return ys[0]
    i = bisect.bisect_left(xs, x)
    i = min(max(i, 1), len(xs) - 1)
    x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
    return max(0.0, y0 + (y1 - y0) * (x - x0) / (x1 - x0))


_SEED_SALT = 0x5EED
_DECODE_SALT = 0x5BD1E995
"""Third hash input of decode iterations, so they do not share factors with prefills."""


def mix_hash(a: int, b: int, c: int) -> int:
    """A well-spread 32-bit hash of three sizes (stable across processes, unlike str hashes)."""
    h = (a * 0x9E3779B1 + b * 0x85EBCA77 + c * 0xC2B2AE3D) & 0xFFFFFFFF
    h ^= h >> 16
    h = (h * 0x7FEB352D) & 0xFFFFFFFF
    h ^= h >> 15
    h = (h * 0x846CA68B) & 0xFFFFFFFF
    return h ^ (h >> 16)


def _table(
    name: str, rows: Sequence[Sequence[float]]
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    if not rows:
        raise ConfigError(f"profile: {name} table is empty; give at least one [x, seconds] row")
    pairs = sorted((float(r[0]), float(r[1])) for r in rows)
    xs = tuple(p[0] for p in pairs)
    if any(b <= a for a, b in itertools.pairwise(xs)) or xs[0] <= 0:
        raise ConfigError(f"profile: {name} table needs distinct positive x values, got {xs}")
    if any(p[1] < 0 for p in pairs):
        raise ConfigError(f"profile: {name} table has a negative time")
    return xs, tuple(p[1] for p in pairs)


@dataclass(frozen=True)
class ProfileModel:
    """Step times interpolated from measured tables (``tokenwatt plan calibrate`` writes them)."""

    prefill_table: tuple[tuple[float, float], ...] = ((1.0, 0.001), (4096.0, 0.25))
    """Rows (prefill tokens, seconds) measured on the target."""
    decode_table: tuple[tuple[float, float], ...] = ((1.0, 0.005), (64.0, 0.008))
    """Rows (batch size, seconds per decode iteration) at near-empty context."""
    decode_s_per_context_token: float = 0.0
    """Extra seconds per decode iteration per token of context held by the batch."""
    name: str = "profile"
    """Where the tables came from (file name or engine)."""
    prefill_jitter: tuple[float, ...] = ()
    """Measured spread of prefill (and fused) iterations: equally likely factors on the table's
    time, mean 1 (empty: none). Each iteration takes the factor a hash of its sizes picks, so
    a simulation stays deterministic and fast and step modes agree."""
    decode_jitter: tuple[float, ...] = ()
    """Measured spread of decode iterations, likewise (empty: none); each iteration's factor is
    picked by a hash of its batch size and context. A run of k iterations then costs k terms
    instead of a closed form."""
    seed: int = 0
    """Mixed into every jitter pick (0: the sizes alone pick): equal seeds, equal step times.
    The simulator sets it to ``PlanConfig.seed`` on a profile it loads (``profile_path``), so
    runs with other seeds sample the spread anew; a model passed in keeps its own seed."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "_prefill", _table("prefill", self.prefill_table))
        object.__setattr__(self, "_decode", _table("decode", self.decode_table))
        if self.decode_s_per_context_token < 0:
            raise ConfigError("profile: decode_s_per_context_token must be >= 0")
        for name in ("prefill_jitter", "decode_jitter"):
            if any(not (f > 0 and math.isfinite(f)) for f in getattr(self, name)):
                raise ConfigError(f"profile: {name} factors must be finite and > 0")

    @classmethod
    def from_file(cls, path: str | Path) -> ProfileModel:
        """Load a profile JSON file (keys: prefill, decode, decode_s_per_context_token), or a
        shipped profile by name (``shipped_profiles()``)."""
        p = resolve_profile(path)
        try:
            data = json.loads(p.read_text())
            return cls(
                prefill_table=tuple(tuple(r) for r in data["prefill"]),  # type: ignore[misc]
                decode_table=tuple(tuple(r) for r in data["decode"]),  # type: ignore[misc]
                decode_s_per_context_token=float(data.get("decode_s_per_context_token", 0.0)),
                name=str(data.get("name", p.name)),
                prefill_jitter=tuple(float(f) for f in data.get("prefill_jitter", ())),
                decode_jitter=tuple(float(f) for f in data.get("decode_jitter", ())),
            )
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise ConfigError(
                f"profile file {p} is malformed ({exc}); expected JSON with 'prefill' and "
                "'decode' lists of [x, seconds]"
            ) from None

    def prefill_s(self, tokens: int, batch: int, attention_pairs: int = 0) -> float:
        """Seconds for one prefill iteration over ``tokens`` tokens (interpolated; the measured
        table already holds the attention cost of prompts of that length), times the jitter
        factor of these sizes."""
        xs, ys = self._prefill  # type: ignore[attr-defined]
        t = _interp(xs, ys, float(tokens))
        jitter = self.prefill_jitter
        if jitter:
            t *= jitter[self._seeded(mix_hash(tokens, batch, attention_pairs)) % len(jitter)]
        return t

    def decode_s(self, batch: int, context_tokens: int, steps: int) -> float:
        """Seconds for ``steps`` decode iterations (interpolated over the batch size)."""
        xs, ys = self._decode  # type: ignore[attr-defined]
        slope = self.decode_s_per_context_token
        base = _interp(xs, ys, float(batch)) + slope * context_tokens
        jitter = self.decode_jitter
        if not jitter:
            return linear_max_sum(0.0, base, slope * batch, steps)
        n = len(jitter)
        grow = slope * batch
        total = 0.0
        for i in range(steps):
            ctx = context_tokens + batch * i
            total += (base + grow * i) * jitter[
                self._seeded(mix_hash(batch, ctx, _DECODE_SALT)) % n
            ]
        return total

    def _seeded(self, h: int) -> int:
        return mix_hash(h, self.seed & 0xFFFFFFFF, _SEED_SALT) if self.seed else h


@dataclass(frozen=True)
class ServingOverhead:
    """An execution model plus a serving cost per emitted token (detokenising, streaming)."""

    inner: ExecutionModel
    """The model of the engine's steps."""
    token_s: float = 0.0
    """Seconds per token an iteration emits."""

    def prefill_s(self, tokens: int, batch: int, attention_pairs: int = 0) -> float:
        """The inner prefill plus one emitted token per request."""
        return self.inner.prefill_s(tokens, batch, attention_pairs) + self.token_s * batch

    def decode_s(self, batch: int, context_tokens: int, steps: int) -> float:
        """The inner decode run plus ``batch`` emitted tokens per iteration."""
        return self.inner.decode_s(batch, context_tokens, steps) + self.token_s * batch * steps
