"""What one simulation reports: SLO attainment, goodput, energy split, facility view, timelines.

``PlanResult.to_dict`` / ``from_dict`` are the JSON form that ``tokenwatt plan compare`` reads.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tokenwatt.energy.facility import FacilityModel
from tokenwatt.errors import ConfigError
from tokenwatt.plan.config import FacilityConfig
from tokenwatt.plan.files import read_json
from tokenwatt.plan.replica import ENERGY_CATEGORIES

if TYPE_CHECKING:
    from tokenwatt.plan.simulator import Simulation

__all__ = ["PlanResult", "build_result", "facility_figures", "load_result"]


def facility_figures(it_energy_j: float, facility: FacilityConfig) -> dict[str, float]:
    """Facility energy (PUE), reused heat (ERF), water, carbon and electricity cost for IT
    energy, computed by ``tokenwatt.energy.FacilityModel`` (The Green Grid definitions).

    Without a price the model's default applies and ``price_placeholder`` is 1.0."""
    model = FacilityModel(
        name="plan",
        pue=facility.pue,
        erf=facility.erf,
        wue_l_per_kwh=facility.wue_l_per_kwh,
        carbon_g_per_kwh=facility.carbon_g_per_kwh,
        currency=facility.currency,
        source="PlanConfig.facility",
    )
    placeholder = facility.price_per_kwh is None
    if facility.price_per_kwh is not None:
        model = dataclasses.replace(model, price_per_kwh=facility.price_per_kwh)
    rep = model.report(it_energy_j)
    return {
        "it_energy_j": rep.it_energy_j,
        "facility_energy_j": rep.facility_energy_j,
        "reused_heat_j": rep.reused_heat_j,
        "net_energy_j": rep.net_energy_j,
        "water_l": rep.water_l,
        "carbon_g": rep.carbon_g,
        "energy_cost": rep.cost,
        "pue": model.pue,
        "erf": model.erf,
        "ere": model.ere,
        "carbon_g_per_kwh": model.carbon_g_per_kwh,
        "price_per_kwh": model.price_per_kwh,
        "price_placeholder": 1.0 if placeholder else 0.0,
    }


@dataclass(frozen=True)
class PlanResult:
    """The outcome of one configuration over one trace (energy scope: accelerators)."""

    config: dict[str, Any] = field(default_factory=dict)
    """The PlanConfig that produced it (``PlanConfig.to_dict``)."""
    label: str = ""
    """A short name for tables (router / autoscaler)."""
    arrived: int = 0
    """Requests that arrived."""
    completed: int = 0
    """Requests that finished."""
    dropped: dict[str, int] = field(default_factory=dict)
    """Requests dropped, by reason."""
    duration_s: float = 0.0
    """Simulated seconds from 0 to the end of the last request (or tick)."""
    last_completion_s: float = 0.0
    """Simulated time the last request finished (the makespan from time 0)."""
    slo_attainment: float = 0.0
    """Fraction of arrived requests that finished within the SLO (drops count as misses)."""
    goodput_rps: float = 0.0
    """Requests within the SLO per simulated second."""
    goodput_tokens_per_s: float = 0.0
    """Output tokens of requests within the SLO per simulated second."""
    output_tokens: int = 0
    """Output tokens generated."""
    input_tokens: int = 0
    """Prompt tokens of completed requests."""
    prefill_tokens: int = 0
    """Prompt tokens computed (the rest were reused from a cache or the warehouse)."""
    latency_s: dict[str, float] = field(default_factory=dict)
    """TTFT, TPOT and end-to-end latency: mean, p50, p90, p99."""
    energy_j: float = 0.0
    """Accelerator energy (J), integrated from the power model."""
    energy_split_j: dict[str, float] = field(default_factory=dict)
    """Energy by replica state: prefill, decode, load, idle, cold_start."""
    energy_source: str = ""
    """Where the power figures come from (``preset:<name>`` or a profile)."""
    energy_scope: str = "gpu"
    """What the energy covers (accelerators only; facility figures below add the rest)."""
    output_tokens_per_j: float = 0.0
    """Output tokens per accelerator joule (all output, SLO or not)."""
    goodput_tokens_per_j: float = 0.0
    """Output tokens within the SLO per accelerator joule."""
    j_per_request: float = 0.0
    """Accelerator joules per completed request."""
    accelerator_hours: float = 0.0
    """Accelerator-hours the fleet was on (starting, serving or draining)."""
    peak_replicas: int = 0
    """Most replicas on at once (timeline resolution)."""
    facility: dict[str, float] = field(default_factory=dict)
    """Facility energy, reused heat, carbon and cost (see ``facility_figures``)."""
    warehouse: dict[str, float] = field(default_factory=dict)
    """Warehouse counters (empty without a warehouse)."""
    timeline: dict[str, Any] = field(default_factory=dict)
    """Per-interval arrivals, completions, replicas, queue, energy and mean power."""
    sim: dict[str, Any] = field(default_factory=dict)
    """Simulator mode and counters: events, iterations, wall seconds, requests per second."""

    @property
    def busy_j(self) -> float:
        """Energy spent computing (prefill, decode, warehouse loads)."""
        s = self.energy_split_j
        return s.get("prefill", 0.0) + s.get("decode", 0.0) + s.get("load", 0.0)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)

    def with_label(self, label: str) -> PlanResult:
        """The same result named ``label`` (tables and reports show it)."""
        return dataclasses.replace(self, label=label)

    def relative_to(self, base: PlanResult) -> tuple[float, float]:
        """(energy, output tokens per J) as multiples of ``base``'s; nan where ``base``'s is 0."""
        energy = self.energy_j / base.energy_j if base.energy_j else float("nan")
        per_j = (
            self.output_tokens_per_j / base.output_tokens_per_j
            if base.output_tokens_per_j
            else float("nan")
        )
        return energy, per_j

    def to_json(self, path: str | Path) -> None:
        """Write the JSON form to ``path``."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=1, sort_keys=True))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PlanResult:
        """Read the JSON form back (unknown keys and wrongly typed figures are an error)."""
        problem = _problem(data)
        if problem:
            raise ConfigError(f"not a plan result: {problem}")
        return cls(**data)


_EXPECTED: dict[str, tuple[str, tuple[type, ...]]] = {
    "int": ("an integer", (int,)),
    "float": ("a number", (int, float)),
    "str": ("a string", (str,)),
}


def _problem(data: dict[str, Any]) -> str | None:
    """What makes ``data`` not a PlanResult's JSON form, or None."""
    fields = PlanResult.__dataclass_fields__
    unknown = sorted(set(data) - set(fields))
    if unknown:
        return f"unknown keys {', '.join(unknown)}"
    for name, value in data.items():
        kind = str(fields[name].type)
        types: tuple[type, ...]
        if kind.startswith("dict"):
            expected, types = "an object", (dict,)
        elif kind in _EXPECTED:
            expected, types = _EXPECTED[kind]
        else:
            continue
        if isinstance(value, bool) or not isinstance(value, types):
            return f"{name} must be {expected}, got {value!r}"
    return None


def load_result(path: str | Path) -> PlanResult:
    """Read a result JSON written by ``tokenwatt plan run``; ConfigError if it is not one."""
    p = Path(path)
    data = read_json(p, "result")
    how = "(write one with `tokenwatt plan run`)"
    if not isinstance(data, dict) or "energy_j" not in data:
        raise ConfigError(f"{p} is not a plan result {how}")
    problem = _problem(data)
    if problem:
        raise ConfigError(f"{p} is not a plan result: {problem} {how}")
    return PlanResult.from_dict(data)


def _latency(sim: Simulation) -> dict[str, float]:
    out: dict[str, float] = {}
    m = sim.metrics
    for name, hist in (("ttft", m.ttft), ("tpot", m.tpot), ("e2e", m.e2e)):
        out[f"{name}_mean"] = hist.mean
        for q in (50, 90, 99):
            out[f"{name}_p{q}"] = hist.quantile(q / 100)
    return out


def _source(sim: Simulation) -> str:
    cfg = sim.config
    timing = f"; timing: profile {cfg.profile_path}" if cfg.profile_path else "; timing: roofline"
    return f"{sim.power.label} ({sim.power.source}){timing}"


def build_result(sim: Simulation, end_s: float, wall_s: float) -> PlanResult:
    """Collect the result of a finished ``sim``."""
    m = sim.metrics
    cfg = sim.config
    split = [0.0] * len(ENERGY_CATEGORIES)
    on_s = 0.0
    for r in sim.fleet.replicas:
        for i, e in enumerate(r.energy_j):
            split[i] += e
        on_s += r.on_s
    energy = sum(split)
    duration = end_s if end_s > 0 else 1.0
    wh: dict[str, float] = {}
    if sim.warehouse is not None:
        st = sim.warehouse.stats
        wh = {
            "lookups_blocks": float(st.lookups_blocks),
            "hits_blocks": float(st.hits_blocks),
            "loaded_bytes": st.loaded_bytes,
            "load_s": st.load_s,
        }
    timeline = sim.timeline.to_dict()
    replicas_series = timeline["replicas"]
    assert isinstance(replicas_series, list)
    facility = facility_figures(energy, cfg.facility)
    acc_hours = on_s * cfg.devices_per_replica / 3600.0
    if cfg.facility.accelerator_hour_price is not None:
        facility["accelerator_cost"] = acc_hours * cfg.facility.accelerator_hour_price
    return PlanResult(
        config=cfg.to_dict(),
        label=f"{cfg.router}/{cfg.autoscaler}",
        arrived=m.arrived,
        completed=m.completed,
        dropped=dict(m.dropped),
        duration_s=end_s,
        last_completion_s=m.last_completion_s,
        slo_attainment=m.slo_met / m.arrived if m.arrived else 0.0,
        goodput_rps=m.slo_met / duration,
        goodput_tokens_per_s=m.slo_output_tokens / duration,
        output_tokens=m.output_tokens,
        input_tokens=m.input_tokens,
        prefill_tokens=m.prefill_tokens,
        latency_s=_latency(sim),
        energy_j=energy,
        energy_split_j=dict(zip(ENERGY_CATEGORIES, split, strict=True)),
        energy_source=_source(sim),
        energy_scope=sim.power.scope,
        output_tokens_per_j=m.output_tokens / energy if energy else 0.0,
        goodput_tokens_per_j=m.slo_output_tokens / energy if energy else 0.0,
        j_per_request=energy / m.completed if m.completed else 0.0,
        accelerator_hours=acc_hours,
        peak_replicas=int(max(replicas_series, default=0)),
        facility=facility,
        warehouse=wh,
        timeline=timeline,
        sim={
            "mode": cfg.mode,
            "events": sim.events,
            "iterations": sim.iterations,
            "wall_s": wall_s,
            "requests_per_s": m.arrived / wall_s if wall_s > 0 else 0.0,
        },
    )
