"""Join a run's records with its energy trace: J per token, request and session, tokens per J,
goodput per J, idle share, and the steady-state window beside the whole run.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from tokenwatt.bench.energy_sources import EnergyTrace
from tokenwatt.bench.record import RequestRecord
from tokenwatt.energy.meter import Component

__all__ = [
    "EnergyFigures",
    "EnergySummary",
    "SteadyWindow",
    "concurrency_steps",
    "steady_state_window",
    "summarize_energy",
]


def concurrency_steps(records: Sequence[RequestRecord]) -> list[tuple[float, int]]:
    """(time, requests in flight from then on) at every send and end, in time order."""
    events = sorted(
        itertools.chain(((r.start_s, 1) for r in records), ((r.end_s, -1) for r in records)),
        key=lambda e: (e[0], e[1]),  # ends before starts at the same instant
    )
    steps: list[tuple[float, int]] = []
    level = 0
    for t, delta in events:
        level += delta
        if steps and steps[-1][0] == t:
            steps[-1] = (t, level)
        else:
            steps.append((t, level))
    return steps


def _median_level(steps: Sequence[tuple[float, int]]) -> int:
    """Time-weighted median of the in-flight count while any request is in flight."""
    spans: dict[int, float] = {}
    for (t, level), (t_next, _) in itertools.pairwise(steps):
        if level > 0:
            spans[level] = spans.get(level, 0.0) + (t_next - t)
    total = sum(spans.values())
    acc = 0.0
    for level in sorted(spans):
        acc += spans[level]
        if acc >= total / 2:
            return level
    return 0


@dataclass(frozen=True)
class SteadyWindow:
    """The steady-state window of a run (seconds from the run's start)."""

    start_s: float
    """First instant the in-flight count reaches ``level``."""
    end_s: float
    """Last instant the in-flight count drops below ``level``."""
    level: int
    """The steady concurrency level."""


def steady_state_window(
    records: Sequence[RequestRecord], level: int | None = None
) -> SteadyWindow | None:
    """The steady state, after ML.ENERGY: the period in which the batch is at its steady level.

    Seen from the client, the batch is the number of requests in flight. The steady level is
    ``level`` when the load fixes it (closed-loop concurrency, session count), otherwise the
    time-weighted median in-flight count while anything is in flight. The window runs from the
    first instant the in-flight count reaches the level to the last instant it falls below it,
    so ramp-up (the first requests joining) and drain (the last ones leaving) are excluded.
    None when the level is never reached or the window is empty.
    """
    steps = concurrency_steps(records)
    target = level if level is not None else _median_level(steps)
    if target < 1:
        return None
    start = next((t for t, lvl in steps if lvl >= target), None)
    if start is None:
        return None
    end = start
    for (_t, lvl), (t_next, lvl_next) in itertools.pairwise(steps):
        if lvl >= target > lvl_next:
            end = t_next
    return SteadyWindow(start, end, target) if end > start else None


def tokens_between(records: Sequence[RequestRecord], start_s: float, end_s: float) -> float:
    """Output tokens produced in [start_s, end_s]: each chunk counts output_tokens/chunks."""
    total = 0.0
    for r in records:
        if not r.chunk_times_s:
            continue
        per_chunk = r.output_tokens / len(r.chunk_times_s)
        total += per_chunk * sum(1 for t in r.chunk_times_s if start_s <= t <= end_s)
    return total


@dataclass(frozen=True)
class EnergyFigures:
    """Energy of one window and the figures derived from it (all of the same source/scope)."""

    start_s: float
    """Window start (seconds from the run's start)."""
    end_s: float
    """Window end."""
    energy_j: float
    """Joules over the window, all components summed."""
    by_component_j: Mapping[str, float] = field(default_factory=dict)
    """Joules per component."""
    output_tokens: float = 0.0
    """Output tokens produced in the window."""
    j_per_output_token: float | None = None
    """Joules per output token (None without tokens)."""
    output_tokens_per_j: float | None = None
    """Output tokens per joule (None without energy)."""
    avg_power_w: float | None = None
    """Mean power over the window."""


def _figures(
    trace: EnergyTrace, t0: float, records: Sequence[RequestRecord], start_s: float, end_s: float
) -> EnergyFigures:
    by_component = trace.energy_between(t0 + start_s, t0 + end_s)
    energy = sum(by_component.values())
    tokens = tokens_between(records, start_s, end_s)
    duration = end_s - start_s
    return EnergyFigures(
        start_s=start_s,
        end_s=end_s,
        energy_j=energy,
        by_component_j=by_component,
        output_tokens=tokens,
        j_per_output_token=energy / tokens if tokens else None,
        output_tokens_per_j=tokens / energy if energy > 0 else None,
        avg_power_w=energy / duration if duration > 0 else None,
    )


@dataclass(frozen=True)
class EnergySummary:
    """A run's energy figures. ``source`` and ``scope`` apply to every figure in it."""

    source: str
    """Where the joules come from, e.g. ``estimated:cpu-model`` or ``dcgm`` (``+``-joined)."""
    scope: str
    """What they cover, e.g. ``cpu+dram`` or ``gpu``."""
    estimated: bool
    """True when any component is an estimate rather than a sensor reading."""
    components: tuple[Mapping[str, Any], ...]
    """Each component: name, scope, source, params."""
    whole_run: EnergyFigures
    """From the first measured send to the last measured answer."""
    steady: EnergyFigures | None
    """Inside the steady-state window (see ``steady_state_window``), None when there is none."""
    steady_level: int | None
    """In-flight level defining the steady window."""
    j_per_request: float | None
    """Whole-run joules per successful request."""
    j_per_session: float | None
    """Whole-run joules per session with at least one successful turn (None without sessions)."""
    good_requests_per_j: float | None
    """Requests meeting every SLO, per joule."""
    good_tokens_per_j: float | None
    """Output tokens of requests meeting every SLO, per joule (token goodput per joule)."""
    idle_share: float | None
    """Share of the whole run's energy spent while no request was in flight."""
    endpoint_attributed_j: float | None = None
    """Sum of per-request energy the endpoint reported in ``usage`` (tokenwatt serve), if any."""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        return asdict(self)


def _idle_j(
    trace: EnergyTrace, t0: float, steps: Sequence[tuple[float, int]], end_s: float
) -> float:
    idle = 0.0
    for (t, level), (t_next, _) in itertools.pairwise([*steps, (end_s, 0)]):
        if level == 0 and t_next > t:
            idle += sum(trace.energy_between(t0 + t, t0 + t_next).values())
    return idle


def summarize_energy(
    trace: EnergyTrace,
    t0: float,
    records: Sequence[RequestRecord],
    good: Sequence[bool] | None = None,
    steady_level: int | None = None,
) -> EnergySummary | None:
    """Energy figures of a run. ``records`` are the measured (non-warm-up) ones; ``good[i]``
    says whether ``records[i]`` met every SLO; ``t0`` is the run's perf_counter origin."""
    if len(trace.times_s) < 2 or not records:
        return None
    start = min(r.start_s for r in records)
    end = max(r.end_s for r in records)
    whole = _figures(trace, t0, records, start, end)
    window = steady_state_window(records, steady_level)
    steady = _figures(trace, t0, records, window.start_s, window.end_s) if window else None
    energy = whole.energy_j
    ok = [r for r in records if r.ok]
    sessions = {r.session_id for r in ok if r.session_id is not None}
    flags = list(good) if good is not None else [False] * len(records)
    good_reqs = [r for r, g in zip(records, flags, strict=True) if g]
    reported = [r.endpoint_energy_j for r in records if r.endpoint_energy_j is not None]
    steps = [(t, lvl) for t, lvl in concurrency_steps(records) if start <= t <= end]
    comps: Sequence[Component] = trace.components
    return EnergySummary(
        source="+".join(sorted({c.source for c in comps})) or "unknown",
        scope="+".join(sorted({c.scope for c in comps})) or "unknown",
        estimated=any(c.estimated for c in comps),
        components=tuple(
            {"name": c.name, "scope": c.scope, "source": c.source, "params": dict(c.params)}
            for c in comps
        ),
        whole_run=whole,
        steady=steady,
        steady_level=window.level if window else None,
        j_per_request=energy / len(ok) if ok else None,
        j_per_session=energy / len(sessions) if sessions else None,
        good_requests_per_j=len(good_reqs) / energy if energy > 0 and good is not None else None,
        good_tokens_per_j=(
            sum(r.output_tokens for r in good_reqs) / energy
            if energy > 0 and good is not None
            else None
        ),
        idle_share=_idle_j(trace, t0, steps, end) / energy if energy > 0 else None,
        endpoint_attributed_j=sum(reported) if reported else None,
    )
