"""Autoscalers: observe the fleet every tick, recommend a replica count (one policy per class).

``ScalingGovernor`` applies what every policy shares: min/max bounds and the scale-up and
scale-down delays (a recommendation must hold for the delay, as Kubernetes' stabilization window).
"""

from __future__ import annotations

import inspect
import math
from collections import deque
from dataclasses import dataclass
from typing import Protocol

from tokenwatt.errors import ConfigError
from tokenwatt.plan.config import ScalingConfig

__all__ = [
    "Autoscaler",
    "ConcurrencyAutoscaler",
    "FleetState",
    "PredictiveAutoscaler",
    "QueueKVAutoscaler",
    "ScalingGovernor",
    "StaticAutoscaler",
    "make_autoscaler",
]


@dataclass(frozen=True)
class FleetState:
    """What an autoscaler sees at one tick."""

    time_s: float = 0.0
    """Simulated time of the tick."""
    ready: int = 0
    """Replicas serving (not draining)."""
    starting: int = 0
    """Replicas in cold start."""
    outstanding: int = 0
    """Requests in the system: pending, queued on replicas, or running."""
    waiting: int = 0
    """Requests not yet admitted to a batch (pending plus replica queues)."""
    kv_usage: float = 0.0
    """Mean KV-cache fraction reserved on the ready replicas (0..1)."""
    arrivals: int = 0
    """Requests that arrived since the previous tick."""
    tick_s: float = 2.0
    """Seconds between ticks."""
    mean_latency_s: float = 0.0
    """Mean end-to-end latency of requests completed so far (0 before the first)."""

    @property
    def current(self) -> int:
        """Replicas ready or starting."""
        return self.ready + self.starting


class Autoscaler(Protocol):
    """Recommends a replica count from the fleet state (the ``Autoscaler`` seam)."""

    def observe(self, state: FleetState) -> int:
        """The replica count this policy wants now (before bounds and delays)."""
        ...


def _require(who: str, name: str, value: float, ok: bool, bound: str) -> None:
    if not ok or math.isnan(value):
        raise ConfigError(f"{who}: {name} must be {bound}, got {value}")


class StaticAutoscaler:
    """Always ``replicas``: the fixed fleet baseline."""

    def __init__(self, replicas: int) -> None:
        if replicas < 0:
            raise ConfigError(f"static autoscaler: replicas must be >= 0, got {replicas}")
        self.replicas = replicas

    def observe(self, state: FleetState) -> int:
        """The fixed count."""
        return self.replicas


class _WindowMean:
    """Mean of samples within the last ``window_s`` seconds."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._items: deque[tuple[float, float]] = deque()
        self._sum = 0.0

    def add(self, t: float, value: float) -> float:
        self._items.append((t, value))
        self._sum += value
        while self._items and self._items[0][0] <= t - self.window_s:
            self._sum -= self._items.popleft()[1]
        return self._sum / len(self._items)


class ConcurrencyAutoscaler:
    """Knative KPA-like: requests in flight per replica over a stable and a panic window.

    Defaults: 60 s stable and 6 s panic windows, panic at 200% of the current capacity (Knative
    KPA); target 2 requests in flight per replica (Ray Serve's default for LLM deployments).
    In panic mode the fleet never shrinks.
    """

    def __init__(
        self,
        target: float = 2.0,
        stable_window_s: float = 60.0,
        panic_window_s: float = 6.0,
        panic_threshold: float = 2.0,
    ) -> None:
        who = "concurrency autoscaler"
        _require(who, "target", target, target > 0, "> 0")
        _require(who, "stable_window_s", stable_window_s, stable_window_s > 0, "> 0")
        _require(who, "panic_window_s", panic_window_s, panic_window_s > 0, "> 0")
        _require(who, "panic_threshold", panic_threshold, panic_threshold > 1, "> 1")
        self.target = target
        self.panic_threshold = panic_threshold
        self._stable = _WindowMean(stable_window_s)
        self._panic = _WindowMean(panic_window_s)
        self._panic_until = -math.inf
        self._stable_window_s = stable_window_s

    def observe(self, state: FleetState) -> int:
        """ceil(mean concurrency / target), with the panic window's faster view in a burst."""
        conc = float(state.outstanding)
        stable = math.ceil(self._stable.add(state.time_s, conc) / self.target)
        panic = math.ceil(self._panic.add(state.time_s, conc) / self.target)
        if panic >= self.panic_threshold * max(state.ready, 1):
            self._panic_until = state.time_s + self._stable_window_s
        if state.time_s < self._panic_until:
            return max(panic, stable, state.current)
        return stable


class QueueKVAutoscaler:
    """AIBrix-like: scale on waiting requests and KV-cache usage, within a tolerance.

    Defaults: 60 s metric window, +-10% tolerance, at most x2 or /2 per step (AIBrix);
    targets of 4 waiting requests per replica and 70% KV usage are assumptions.
    """

    def __init__(
        self,
        target_waiting: float = 4.0,
        target_kv: float = 0.7,
        window_s: float = 60.0,
        tolerance: float = 0.1,
    ) -> None:
        who = "queue_kv autoscaler"
        _require(who, "target_waiting", target_waiting, target_waiting > 0, "> 0")
        _require(who, "target_kv", target_kv, 0 < target_kv <= 1, "in (0, 1]")
        _require(who, "window_s", window_s, window_s > 0, "> 0")
        _require(who, "tolerance", tolerance, tolerance >= 0, ">= 0")
        self.target_waiting = target_waiting
        self.target_kv = target_kv
        self.tolerance = tolerance
        self._waiting = _WindowMean(window_s)
        self._kv = _WindowMean(window_s)

    def observe(self, state: FleetState) -> int:
        """current x the larger of the waiting and KV ratios to their targets."""
        current = state.current
        waiting = self._waiting.add(state.time_s, float(state.waiting))
        kv = self._kv.add(state.time_s, state.kv_usage)
        if current == 0:
            return 1 if state.outstanding > 0 else 0
        ratio = max(waiting / (self.target_waiting * current), kv / self.target_kv)
        if abs(ratio - 1.0) <= self.tolerance:
            return current
        if state.outstanding == 0 and waiting == 0:
            return 0
        want = math.ceil(current * ratio)
        return max(min(want, 2 * current), math.ceil(current / 2))


class PredictiveAutoscaler:
    """Forecast the arrival rate one cold start ahead (Holt's linear smoothing) and size the
    fleet by Little's law: replicas = rate x mean latency / target concurrency."""

    def __init__(
        self,
        target: float = 2.0,
        horizon_s: float = 30.0,
        alpha: float = 0.3,
        beta: float = 0.1,
        prior_latency_s: float = 5.0,
    ) -> None:
        who = "predictive autoscaler"
        _require(who, "target", target, target > 0, "> 0")
        _require(who, "horizon_s", horizon_s, horizon_s >= 0, ">= 0")
        _require(who, "alpha", alpha, 0 < alpha <= 1, "in (0, 1]")
        _require(who, "beta", beta, 0 <= beta <= 1, "in [0, 1]")
        _require(who, "prior_latency_s", prior_latency_s, prior_latency_s > 0, "> 0")
        self.target = target
        self.horizon_s = horizon_s
        self.alpha = alpha
        self.beta = beta
        self.prior_latency_s = prior_latency_s
        self._level: float | None = None
        self._trend = 0.0

    def observe(self, state: FleetState) -> int:
        """Replicas for the forecast rate, never fewer than the work already in flight needs."""
        rate = state.arrivals / state.tick_s
        if self._level is None:
            self._level = rate
        else:
            prev = self._level
            self._level = self.alpha * rate + (1 - self.alpha) * (prev + self._trend)
            self._trend = self.beta * (self._level - prev) + (1 - self.beta) * self._trend
        steps = self.horizon_s / state.tick_s
        forecast = max(0.0, self._level + self._trend * steps)
        latency = state.mean_latency_s or self.prior_latency_s
        need = forecast * latency / self.target
        return max(math.ceil(need), math.ceil(state.outstanding / self.target))


class _WindowExtreme:
    """Sliding-window max (or min) of (time, value) samples in O(1) amortized per sample."""

    def __init__(self, window_s: float, largest: bool) -> None:
        self.window_s = window_s
        self.largest = largest
        self._q: deque[tuple[float, int]] = deque()

    def add(self, t: float, value: int) -> int:
        q = self._q
        if self.largest:
            while q and q[-1][1] <= value:
                q.pop()
        else:
            while q and q[-1][1] >= value:
                q.pop()
        q.append((t, value))
        while q[0][0] < t - self.window_s:
            q.popleft()
        return q[0][1]


class ScalingGovernor:
    """Bounds and delays: scale up to the lowest, down to the highest recent recommendation."""

    def __init__(self, scaling: ScalingConfig, initial: int) -> None:
        self.scaling = scaling
        self._up = _WindowExtreme(scaling.scale_up_delay_s, largest=False)
        self._down = _WindowExtreme(scaling.scale_down_delay_s, largest=True)
        self._up.add(0.0, initial)
        self._down.add(0.0, initial)

    def decide(self, now: float, current: int, recommended: int) -> int:
        """The replica count to run now."""
        s = self.scaling
        rec = min(max(recommended, s.min_replicas), s.max_replicas)
        low = self._up.add(now, rec)
        high = self._down.add(now, rec)
        if rec > current:
            return max(current, low)
        if rec < current:
            return min(current, high)
        return current


def make_autoscaler(
    name: str, params: dict[str, float], scaling: ScalingConfig
) -> tuple[Autoscaler, int]:
    """The autoscaler called ``name`` and the replica count it starts with."""
    p = dict(params)
    _check_params(name, p)
    default_initial = (
        scaling.initial_replicas if scaling.initial_replicas is not None else scaling.min_replicas
    )
    if name == "static":
        size = p.pop("replicas", scaling.initial_replicas or max(scaling.min_replicas, 1))
        if size != int(size):
            raise ConfigError(f"static autoscaler: replicas must be a whole number, got {size}")
        n = int(size)
        scaler: Autoscaler = StaticAutoscaler(n)
        initial = n
    elif name == "concurrency":
        scaler = ConcurrencyAutoscaler(**p)
        initial = default_initial
    elif name == "queue_kv":
        scaler = QueueKVAutoscaler(**p)
        initial = default_initial
    else:  # predictive (_check_params rejected any other name)
        p.setdefault("horizon_s", scaling.cold_start_s)
        scaler = PredictiveAutoscaler(**p)
        initial = default_initial
    if name != "static":  # a static fleet has its own size, whatever the bounds say
        initial = min(max(initial, scaling.min_replicas), scaling.max_replicas)
    return scaler, initial


_PARAMS: dict[str, tuple[str, ...]] = {
    "static": ("replicas",),
    "concurrency": tuple(inspect.signature(ConcurrencyAutoscaler).parameters),
    "queue_kv": tuple(inspect.signature(QueueKVAutoscaler).parameters),
    "predictive": tuple(inspect.signature(PredictiveAutoscaler).parameters),
}
"""Keyword parameters each autoscaler accepts (``PlanConfig.autoscaler_params``)."""


def _check_params(name: str, params: dict[str, float]) -> None:
    valid = _PARAMS.get(name)
    if valid is None:
        raise ConfigError(
            f"unknown autoscaler {name!r}; choose static, concurrency, queue_kv or predictive"
        )
    unknown = sorted(set(params) - set(valid))
    if unknown:
        plural = "s" if len(unknown) > 1 else ""
        names = ", ".join(repr(u) for u in unknown)
        raise ConfigError(
            f"autoscaler {name}: unknown parameter{plural} {names}; valid parameters: "
            f"{', '.join(sorted(valid))} (set one with --set autoscaler_params.NAME=VALUE)"
        )
