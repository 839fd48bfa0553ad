"""The results a monitor hands out: a window's Measurement, a PowerSample, an IdleBaseline.

Plain frozen data with the arithmetic readers need (totals by scope, average power, idle-adjusted
energy); every figure stays tied to its component's source and scope.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from tokenwatt.energy.meter import Component, Scope
from tokenwatt.errors import ConfigError

__all__ = ["IdleBaseline", "Measurement", "PowerSample", "average_power_w", "component_dict"]


def component_dict(component: Component) -> dict[str, Any]:
    """A component as plain JSON-ready data."""
    return {
        "name": component.name,
        "scope": component.scope,
        "source": component.source,
        "estimated": component.estimated,
        "params": dict(component.params),
    }


def _sum_scope(
    values: Mapping[str, float], components: tuple[Component, ...], scope: Scope | None
) -> float:
    return sum(values[c.name] for c in components if scope is None or c.scope == scope)


@dataclass(frozen=True)
class PowerSample:
    """Average power per component over one sampler interval."""

    time_s: float
    """``time.monotonic()`` at the end of the interval."""
    power_w: Mapping[str, float] = field(default_factory=dict)
    """Average watts per component over the interval."""
    interval_s: float = 0.0
    """Length of the interval the average covers."""

    def total_w(self) -> float:
        """Watts summed over every component."""
        return sum(self.power_w.values())


def average_power_w(samples: Sequence[PowerSample]) -> dict[str, float]:
    """Interval-weighted average watts per component over ``samples`` (empty: no samples).

    Use it on a slice of the timeline for steady-state power, e.g. the middle of a long
    batch after warm-up, where the window's start and end transients are left out.
    """
    weight_s = sum(s.interval_s for s in samples)
    if weight_s <= 0:
        return {}
    totals: dict[str, float] = {}
    for s in samples:
        for name, watts in s.power_w.items():
            totals[name] = totals.get(name, 0.0) + watts * s.interval_s
    return {name: joules / weight_s for name, joules in totals.items()}


@dataclass(frozen=True)
class IdleBaseline:
    """Idle power per component, measured over a quiet period before the work."""

    duration_s: float = 0.0
    """How long idle power was measured."""
    power_w: Mapping[str, float] = field(default_factory=dict)
    """Average idle watts per component."""
    components: tuple[Component, ...] = ()
    """The components measured, with source and scope."""

    def __post_init__(self) -> None:
        if not self.duration_s >= 0:
            raise ConfigError(f"idle baseline duration must be >= 0 s, got {self.duration_s!r}")
        missing = {c.name for c in self.components} - set(self.power_w)
        if missing:
            raise ConfigError(f"idle baseline lacks power for {', '.join(sorted(missing))}")

    def total_w(self, scope: Scope | None = None) -> float:
        """Idle watts summed over the components of ``scope`` (all when None)."""
        return _sum_scope(self.power_w, self.components, scope)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data."""
        return {"duration_s": self.duration_s, "power_w": dict(self.power_w)}


@dataclass(frozen=True)
class Measurement:
    """Energy of one named window, per component, with what each figure covers and comes from."""

    name: str = ""
    """The window's name."""
    start_s: float = 0.0
    """``time.monotonic()`` at the start of the window."""
    end_s: float = 0.0
    """``time.monotonic()`` at its end."""
    energy_j: Mapping[str, float] = field(default_factory=dict)
    """Joules per component over the window."""
    components: tuple[Component, ...] = ()
    """Every component measured, with source and scope."""
    idle_power_w: Mapping[str, float] | None = None
    """Idle watts per component from a baseline, when one was measured."""

    def __post_init__(self) -> None:
        if not self.end_s >= self.start_s:
            raise ConfigError(f"window {self.name!r} ends ({self.end_s}) before it starts")
        names = {c.name for c in self.components}
        if names != set(self.energy_j):
            raise ConfigError(
                f"window {self.name!r}: energy for {sorted(self.energy_j)} "
                f"but components {sorted(names)}"
            )

    @property
    def duration_s(self) -> float:
        """Seconds from start to end."""
        return self.end_s - self.start_s

    @property
    def estimated(self) -> bool:
        """True when any figure in the measurement is an estimate."""
        return any(c.estimated for c in self.components)

    def total_j(self, scope: Scope | None = None) -> float:
        """Joules over the components of ``scope`` (all when None).

        Components of different scopes add up (gpu + cpu package + dram); a ``node`` figure
        already includes the others, so do not add it to them.
        """
        return _sum_scope(self.energy_j, self.components, scope)

    def by_scope(self) -> dict[str, float]:
        """Joules per scope, in the order the scopes first appear."""
        totals: dict[str, float] = {}
        for c in self.components:
            totals[c.scope] = totals.get(c.scope, 0.0) + self.energy_j[c.name]
        return totals

    @property
    def avg_power_w(self) -> float:
        """Average watts over the window, all components (0 for an empty window)."""
        return self.total_j() / self.duration_s if self.duration_s > 0 else 0.0

    def power_w(self) -> dict[str, float]:
        """Average watts per component over the window."""
        d = self.duration_s
        return {n: (e / d if d > 0 else 0.0) for n, e in self.energy_j.items()}

    def idle_energy_j(self) -> dict[str, float] | None:
        """Joules idle power would have used over the window, per component (None: no baseline)."""
        if self.idle_power_w is None:
            return None
        return {n: self.idle_power_w.get(n, 0.0) * self.duration_s for n in self.energy_j}

    def adjusted_energy_j(self) -> dict[str, float] | None:
        """Energy above idle per component, floored at 0 (None without a baseline)."""
        idle = self.idle_energy_j()
        if idle is None:
            return None
        return {n: max(e - idle[n], 0.0) for n, e in self.energy_j.items()}

    def adjusted_total_j(self, scope: Scope | None = None) -> float | None:
        """Idle-adjusted joules over ``scope`` (None without a baseline)."""
        adjusted = self.adjusted_energy_j()
        return None if adjusted is None else _sum_scope(adjusted, self.components, scope)

    def with_baseline(self, baseline: IdleBaseline | None) -> Measurement:
        """The same measurement, idle-adjusted by ``baseline`` (or not, when None)."""
        idle = None if baseline is None else dict(baseline.power_w)
        return replace(self, idle_power_w=idle)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data."""
        adjusted = self.adjusted_energy_j()
        return {
            "name": self.name,
            "start_s": self.start_s,
            "end_s": self.end_s,
            "duration_s": self.duration_s,
            "estimated": self.estimated,
            "components": [component_dict(c) for c in self.components],
            "energy_j": dict(self.energy_j),
            "total_j": self.total_j(),
            "by_scope_j": self.by_scope(),
            "avg_power_w": self.avg_power_w,
            "idle_power_w": None if self.idle_power_w is None else dict(self.idle_power_w),
            "adjusted_energy_j": adjusted,
            "adjusted_total_j": self.adjusted_total_j(),
        }
