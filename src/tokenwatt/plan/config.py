"""The planner's configuration: one frozen tree of dataclasses, validated on construction.

``PlanConfig.from_dict`` reads the JSON form (what ``to_dict`` writes and the CLI accepts).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from tokenwatt.errors import ConfigError

__all__ = [
    "AUTOSCALERS",
    "ROUTERS",
    "FacilityConfig",
    "PlanConfig",
    "ReplicaConfig",
    "SLOConfig",
    "ScalingConfig",
    "TierSpec",
    "WarehouseConfig",
]

ROUTERS = ("round_robin", "least_outstanding", "prefix_aware")
"""Router names ``PlanConfig.router`` accepts."""
AUTOSCALERS = ("static", "concurrency", "queue_kv", "predictive")
"""Autoscaler names ``PlanConfig.autoscaler`` accepts."""


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


_KINDS: dict[str, tuple[str, Any]] = {
    "int": ("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    "float": (
        "a number",
        lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    ),
    "bool": ("true or false", lambda v: isinstance(v, bool)),
    "str": ("a string", lambda v: isinstance(v, str)),
}


def _check_types(obj: Any, where: str) -> None:
    """Scalar fields hold their annotated type, so a typo (``--set seed=abc``) is named here
    rather than surfacing as a TypeError deep in validation or, worse, passing silently."""
    prefix = f"{where}." if where else ""
    for f in dataclasses.fields(obj):
        kind = str(f.type)
        optional = kind.endswith(" | None")
        kind = kind.removesuffix(" | None")
        if kind not in _KINDS:
            continue  # Literal names, dicts and nested configs are checked where they are built
        value = getattr(obj, f.name)
        if optional and value is None:
            continue
        expected, ok = _KINDS[kind]
        if not ok(value):
            expected += " or null" if optional else ""
            raise ConfigError(f"config {prefix}{f.name} must be {expected}, got {value!r}")


@dataclass(frozen=True)
class ReplicaConfig:
    """Limits of one replica's continuous-batching scheduler."""

    max_batch: int = 256
    """Most requests decoded together (vLLM's max_num_seqs)."""
    max_prefill_tokens: int = 8192
    """Token budget of one iteration: new prompt tokens (plus, with chunked prefill, one per
    decoding request); without chunking a longer single prompt still runs alone."""
    chunked_prefill: bool = False
    """False: prefill iterations pause decoding (vLLM V0's default, Splitwise/Vidur-like);
    True: prompt chunks share each iteration with the running decodes (vLLM V1, tokenwatt)."""
    kv_capacity_tokens: int | None = None
    """KV-cache capacity in tokens; None derives it from accelerator memory minus weights."""
    request_overhead_s: float | None = None
    """Fixed seconds each request spends outside engine steps before it can be scheduled
    (HTTP, tokenization, queue hand-off, the first token's way back); it adds to TTFT and
    end-to-end latency. None: the distribution the profile (``profile_path``) measured, if it
    carries one, else 0."""
    request_overhead_quantiles_s: tuple[float, ...] = ()
    """Equally likely per-request overheads in seconds (e.g. a served profile's 200 measured
    quantiles) instead of one constant: each request draws one by a hash of its id and
    ``seed``. Empty: not used."""
    token_overhead_s: float = 0.0
    """Serving seconds per token a step emits (detokenising, streaming), added to every
    iteration: batch x this for decodes, one per finished prompt for prefills."""
    prefix_cache_tokens: int | None = None
    """Tokens of finished prompts a replica keeps for prefix reuse; None: a quarter of its KV
    capacity (an assumption: idle KV blocks vLLM keeps), 0: no reuse on the replica."""

    def __post_init__(self) -> None:
        _check_types(self, "replica")
        _check(self.max_batch >= 1, f"replica: max_batch must be >= 1, got {self.max_batch}")
        _check(self.max_prefill_tokens >= 1, "replica: max_prefill_tokens must be >= 1")
        _check(
            self.kv_capacity_tokens is None or self.kv_capacity_tokens > 0,
            f"replica: kv_capacity_tokens must be > 0, got {self.kv_capacity_tokens}",
        )
        _check(
            self.request_overhead_s is None
            or (self.request_overhead_s >= 0 and math.isfinite(self.request_overhead_s)),
            f"replica: request_overhead_s must be >= 0, got {self.request_overhead_s}",
        )
        quantiles = self.request_overhead_quantiles_s
        _check(
            isinstance(quantiles, (list, tuple))
            and all(
                isinstance(q, (int, float))
                and not isinstance(q, bool)
                and q >= 0
                and math.isfinite(q)
                for q in quantiles
            ),
            "replica: request_overhead_quantiles_s must be a list of seconds >= 0, e.g. "
            f"[0.004, 0.006, 0.02], got {quantiles!r}",
        )
        # JSON gives a list; a tuple keeps the config hashable and immutable
        object.__setattr__(self, "request_overhead_quantiles_s", tuple(map(float, quantiles)))
        _check(
            not (quantiles and self.request_overhead_s is not None),
            "replica: set request_overhead_s (one constant) or request_overhead_quantiles_s "
            "(a distribution), not both",
        )
        _check(
            self.token_overhead_s >= 0 and math.isfinite(self.token_overhead_s),
            f"replica: token_overhead_s must be >= 0, got {self.token_overhead_s}",
        )
        _check(
            self.prefix_cache_tokens is None or self.prefix_cache_tokens >= 0,
            f"replica: prefix_cache_tokens must be >= 0, got {self.prefix_cache_tokens}",
        )


@dataclass(frozen=True)
class ScalingConfig:
    """Bounds, delays and cold start shared by every autoscaler."""

    min_replicas: int = 1
    """Fewest replicas kept on; 0 allows scale to zero."""
    max_replicas: int = 10
    """Most replicas the autoscaler may run."""
    initial_replicas: int | None = None
    """Replicas ready at time 0; None: min_replicas (static: its replica count)."""
    scale_up_delay_s: float = 0.0
    """A higher recommendation must hold this long before replicas start."""
    scale_down_delay_s: float = 300.0
    """A lower recommendation must hold this long before replicas stop (AIBrix: 300 s)."""
    cold_start_s: float = 30.0
    """Seconds from start to ready (8B model with cached weights: 25-30 s, vendor write-ups)."""
    cold_start_jitter_s: float = 0.0
    """Each cold start takes a further uniform 0..jitter seconds (seeded by PlanConfig.seed)."""
    tick_s: float = 2.0
    """Seconds between autoscaler decisions (Knative's tick is 2 s)."""

    def __post_init__(self) -> None:
        _check_types(self, "scaling")
        _check(
            self.min_replicas >= 0, f"scaling: min_replicas must be >= 0, got {self.min_replicas}"
        )
        _check(
            self.max_replicas >= max(1, self.min_replicas),
            f"scaling: max_replicas ({self.max_replicas}) must be >= 1 and >= min_replicas",
        )
        _check(
            self.initial_replicas is None or 0 <= self.initial_replicas <= self.max_replicas,
            "scaling: initial_replicas must be in [0, max_replicas]",
        )
        for name in (
            "scale_up_delay_s",
            "scale_down_delay_s",
            "cold_start_s",
            "cold_start_jitter_s",
        ):
            value = getattr(self, name)
            _check(
                value >= 0 and math.isfinite(value), f"scaling: {name} must be >= 0, got {value}"
            )
        _check(self.tick_s > 0, f"scaling: tick_s must be > 0, got {self.tick_s}")


@dataclass(frozen=True)
class SLOConfig:
    """The service-level objective a request must meet to count toward goodput."""

    ttft_s: float = 2.0
    """Most seconds to the first token."""
    tpot_s: float = 0.2
    """Most mean seconds per output token after the first."""

    def __post_init__(self) -> None:
        _check_types(self, "slo")
        _check(self.ttft_s > 0, f"slo: ttft_s must be > 0, got {self.ttft_s}")
        _check(self.tpot_s > 0, f"slo: tpot_s must be > 0, got {self.tpot_s}")


@dataclass(frozen=True)
class FacilityConfig:
    """Facility figures applied to the fleet's IT energy."""

    pue: float = 1.56
    """Power usage effectiveness (Uptime Institute 2024 average: 1.56)."""
    erf: float = 0.0
    """Energy reuse factor: reused heat / facility energy (Helsinki district heating: 0.2-0.3)."""
    carbon_g_per_kwh: float = 475.0
    """Grid carbon intensity (CodeCarbon's world-average default: 475 gCO2/kWh)."""
    wue_l_per_kwh: float = 1.8
    """Site water litres per IT kWh (tokenwatt.energy's default: LBNL 2016 US average)."""
    price_per_kwh: float | None = None
    """Electricity price per kWh in your currency; None: ``tokenwatt.energy.FacilityModel``'s
    default (0.10, a round placeholder that measure and bench use too), labelled as such."""
    accelerator_hour_price: float | None = None
    """Price of one accelerator-hour; None: not set (no accelerator cost reported)."""
    currency: str = "USD"
    """Currency of both prices."""

    def __post_init__(self) -> None:
        _check_types(self, "facility")
        _check(self.pue >= 1.0, f"facility: pue must be >= 1, got {self.pue}")
        _check(0.0 <= self.erf <= 1.0, f"facility: erf must be in [0, 1], got {self.erf}")
        for name in (
            "carbon_g_per_kwh",
            "wue_l_per_kwh",
            "price_per_kwh",
            "accelerator_hour_price",
        ):
            value = getattr(self, name)
            _check(value is None or value >= 0, f"facility: {name} must be >= 0, got {value}")


@dataclass(frozen=True)
class TierSpec:
    """One warehouse tier: capacity and the bandwidth a replica loads from it at."""

    name: str = "dram"
    """Tier name (dram, disk, redis...)."""
    capacity_bytes: float = 512e9
    """Bytes of KV cache the tier holds."""
    bandwidth_bytes_per_s: float = 25e9
    """Load bandwidth into the accelerator (an assumption: PCIe 5 x16 effective)."""

    def __post_init__(self) -> None:
        _check_types(self, f"warehouse tier {self.name}")
        _check(
            self.capacity_bytes >= 0,
            f"warehouse tier {self.name}: capacity_bytes must be >= 0, got {self.capacity_bytes}",
        )
        _check(
            self.bandwidth_bytes_per_s > 0,
            f"warehouse tier {self.name}: bandwidth_bytes_per_s must be > 0",
        )


@dataclass(frozen=True)
class WarehouseConfig:
    """A fleet-shared token warehouse; no tiers means no warehouse."""

    tiers: tuple[TierSpec, ...] = ()
    """Tiers from fastest to slowest; evictions demote to the next tier."""


@dataclass(frozen=True)
class PlanConfig:
    """Everything one simulation needs besides the trace."""

    accelerator: str = "H100-SXM"
    """Accelerator preset (H100-SXM, H200-SXM, A100-SXM-80GB)."""
    model: str = "llama-3.1-8b"
    """Model preset (llama-3.1-8b, llama-3.3-70b)."""
    devices_per_replica: int = 1
    """Accelerators per replica (tensor parallel)."""
    power: str | None = None
    """Power preset; None: the accelerator's."""
    profile_path: str | None = None
    """A calibration profile JSON; None uses the roofline model."""
    router: Literal["round_robin", "least_outstanding", "prefix_aware"] = "least_outstanding"
    """How arrivals pick a replica."""
    autoscaler: Literal["static", "concurrency", "queue_kv", "predictive"] = "static"
    """Which autoscaler decides the replica count."""
    autoscaler_params: dict[str, float] = field(default_factory=dict)
    """Autoscaler keyword parameters (e.g. replicas for static, target for concurrency)."""
    replica: ReplicaConfig = field(default_factory=ReplicaConfig)
    """Per-replica scheduler limits."""
    scaling: ScalingConfig = field(default_factory=ScalingConfig)
    """Bounds, delays and cold start."""
    slo: SLOConfig = field(default_factory=SLOConfig)
    """The SLO behind goodput."""
    facility: FacilityConfig = field(default_factory=FacilityConfig)
    """PUE, heat reuse, carbon and prices."""
    warehouse: WarehouseConfig = field(default_factory=WarehouseConfig)
    """The shared token warehouse (off by default)."""
    mode: Literal["fast", "step"] = "fast"
    """fast: jump over decode iterations analytically; step: one event per iteration."""
    seed: int = 0
    """Seed of every random draw in the run (cold-start jitter, each request's serving overhead,
    the step-time spread of a profile loaded from ``profile_path``); equal seeds, equal
    results."""
    timeline_interval_s: float = 60.0
    """Width of the timeline buckets."""
    drop_after_s: float | None = None
    """Drop a request still waiting this long after arrival; None: never."""

    def __post_init__(self) -> None:
        _check_types(self, "")
        _check(self.devices_per_replica >= 1, "devices_per_replica must be >= 1")
        _check(
            self.router in ROUTERS,
            f"unknown router {self.router!r}; choose one of: {', '.join(ROUTERS)}",
        )
        _check(
            self.autoscaler in AUTOSCALERS,
            f"unknown autoscaler {self.autoscaler!r}; choose one of: {', '.join(AUTOSCALERS)}",
        )
        _check(self.mode in ("fast", "step"), f"mode must be fast or step, got {self.mode!r}")
        _check(self.timeline_interval_s > 0, "timeline_interval_s must be > 0")
        _check(
            self.drop_after_s is None or self.drop_after_s > 0,
            f"drop_after_s must be > 0 or None, got {self.drop_after_s}",
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``from_dict`` reads it back)."""
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> PlanConfig:
        """A copy with ``changes``; dotted keys reach nested configs (``scaling.min_replicas``)."""
        data = self.to_dict()
        for key, value in changes.items():
            node = data
            parts = key.split(".")
            for depth, part in enumerate(parts[:-1]):
                if part not in node or not isinstance(node[part], dict):
                    raise ConfigError(_unknown_key(key, ".".join(parts[:depth]), node, data))
                node = node[part]
            if parts[-1] not in node and parts[0] != "autoscaler_params":
                raise ConfigError(_unknown_key(key, ".".join(parts[:-1]), node, data))
            node[parts[-1]] = value
        return PlanConfig.from_dict(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PlanConfig:
        """Build from a (possibly partial) dict; unknown keys raise ConfigError naming them."""
        nested: dict[str, type[Any]] = {
            "replica": ReplicaConfig,
            "scaling": ScalingConfig,
            "slo": SLOConfig,
            "facility": FacilityConfig,
        }
        kwargs: dict[str, Any] = {}
        known = {f.name for f in dataclasses.fields(cls)}
        for key, value in data.items():
            if key not in known:
                near = _nearest_key(key, cls().to_dict())
                guess = f"did you mean {near}? " if near else ""
                raise ConfigError(
                    f"unknown config key {key!r}; {guess}known: {', '.join(sorted(known))}"
                )
            if key in nested:
                kwargs[key] = _build(nested[key], value, key)
            elif key == "warehouse":
                kwargs[key] = _warehouse(value)
            elif key == "autoscaler_params":
                kwargs[key] = _autoscaler_params(value)
            else:
                kwargs[key] = value
        return cls(**kwargs)


def _build(kind: type[Any], value: Any, where: str) -> Any:
    if isinstance(value, kind):
        return value
    if not isinstance(value, dict):
        raise ConfigError(f"config {where} must be an object, got {type(value).__name__}")
    names = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(set(value) - names)
    if unknown:
        raise ConfigError(f"unknown key(s) in {where}: {', '.join(unknown)}")
    try:
        return kind(**value)
    except TypeError as exc:
        raise ConfigError(f"config {where}: {exc}") from None


def _warehouse(value: Any) -> WarehouseConfig:
    if isinstance(value, WarehouseConfig):
        return value
    if value is None:
        return WarehouseConfig()
    if not isinstance(value, dict):
        raise ConfigError(
            f"config warehouse must be an object, got {type(value).__name__} "
            '(e.g. {"tiers": [{"name": "dram", "capacity_bytes": 5e11}]})'
        )
    unknown = sorted(set(value) - {"tiers"})
    if unknown:
        raise ConfigError(f"unknown key(s) in warehouse: {', '.join(unknown)}; known: tiers")
    tiers = value.get("tiers") or ()
    if not isinstance(tiers, (list, tuple)):
        raise ConfigError(
            f"config warehouse.tiers must be a list of tier objects, got {tiers!r} "
            '(e.g. [{"name": "dram", "capacity_bytes": 5e11}])'
        )
    for i, tier in enumerate(tiers):
        if not isinstance(tier, (dict, TierSpec)):
            raise ConfigError(
                f"config warehouse.tiers[{i}] must be an object, got {tier!r} "
                '(e.g. {"name": "dram", "capacity_bytes": 5e11, "bandwidth_bytes_per_s": 25e9})'
            )
    return WarehouseConfig(
        tuple(_build(TierSpec, t, f"warehouse.tiers[{i}]") for i, t in enumerate(tiers))
    )


def _autoscaler_params(value: Any) -> dict[str, float]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(
            f"config autoscaler_params must be an object of numbers, got {value!r} "
            '(e.g. {"target": 2}, or --set autoscaler_params.target=2)'
        )
    out: dict[str, float] = {}
    for k, v in value.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ConfigError(f"config autoscaler_params.{k} must be a number, got {v!r}")
        out[str(k)] = float(v)
    return out


def _unknown_key(key: str, section: str, node: dict[str, Any], root: dict[str, Any]) -> str:
    """The message for a key ``replace`` cannot place: the nearest known key, if one is close,
    and what ``section`` has."""
    where = section or "the config"
    nested = [k for k, v in node.items() if isinstance(v, dict)]
    known = ", ".join(sorted(node))
    hint = f" (nested: {', '.join(sorted(nested))})" if nested and not section else ""
    near = _nearest_key(key, root)
    guess = f"did you mean {near}? " if near else ""
    return f"unknown config key {key!r}; {guess}{where} has: {known}{hint}"


def _dotted_keys(node: dict[str, Any], prefix: str = "") -> list[str]:
    keys: list[str] = []
    for k, v in node.items():
        if isinstance(v, dict) and v:
            keys += _dotted_keys(v, f"{prefix}{k}.")
        else:
            keys.append(f"{prefix}{k}")
    return keys


def _nearest_key(key: str, root: dict[str, Any]) -> str | None:
    """The dotted key ``key`` most likely meant: a close spelling of the whole key, else the
    key whose last part is closest (``max_replicas`` -> ``scaling.max_replicas``)."""
    # The static fleet size is the autoscaler parameter people reach for by its bare name.
    keys = [*_dotted_keys(root), "autoscaler_params.replicas"]
    whole = difflib.get_close_matches(key, keys, n=1, cutoff=0.8)
    if whole:
        return whole[0]
    by_last = {k.rsplit(".", 1)[-1]: k for k in keys}
    last = difflib.get_close_matches(key.rsplit(".", 1)[-1], list(by_last), n=1, cutoff=0.8)
    return by_last[last[0]] if last else None
