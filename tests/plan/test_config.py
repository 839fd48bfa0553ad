"""PlanConfig: validation with clear messages, dict round trip, dotted replace."""

from __future__ import annotations

import pytest

from tokenwatt.errors import ConfigError
from tokenwatt.plan.config import (
    PlanConfig,
    ReplicaConfig,
    ScalingConfig,
    TierSpec,
    WarehouseConfig,
)


def test_round_trip_through_dict() -> None:
    """from_dict(to_dict(c)) == c, warehouse tiers included."""
    c = PlanConfig(
        router="prefix_aware",
        autoscaler_params={"target": 3.0},
        warehouse=WarehouseConfig((TierSpec("dram", 1e9, 2e9), TierSpec("disk", 1e12, 5e9))),
    )
    assert PlanConfig.from_dict(c.to_dict()) == c


def test_replace_accepts_a_warehouse_dict() -> None:
    """A warehouse given as JSON-like data (the CLI's --set) becomes tiers."""
    c = PlanConfig().replace(warehouse={"tiers": [{"name": "dram", "capacity_bytes": 1e9}]})
    assert c.warehouse == WarehouseConfig((TierSpec("dram", 1e9),))


def test_replace_reaches_nested_fields() -> None:
    """Dotted keys change nested configs and are validated."""
    c = PlanConfig().replace(**{"scaling.max_replicas": 3, "autoscaler_params.target": 4})
    assert c.scaling.max_replicas == 3
    assert c.autoscaler_params == {"target": 4.0}
    with pytest.raises(ConfigError, match=r"unknown config key 'scaling\.nope'"):
        PlanConfig().replace(**{"scaling.nope": 1})


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: ReplicaConfig(kv_capacity_tokens=-5), "kv_capacity_tokens must be > 0"),
        (lambda: ScalingConfig(min_replicas=3, max_replicas=2), "max_replicas"),
        (lambda: ScalingConfig(cold_start_s=-1), "cold_start_s must be >= 0"),
        (lambda: TierSpec(capacity_bytes=-1), "capacity_bytes must be >= 0"),
        (lambda: PlanConfig(router="random"), "unknown router 'random'"),  # type: ignore[arg-type]
        (lambda: PlanConfig.from_dict({"replicas": 3}), "unknown config key 'replicas'"),
        (lambda: PlanConfig.from_dict({"slo": {"ttft": 1}}), "unknown key"),
        (lambda: PlanConfig.from_dict({"facility": {"pue": 0.9}}), "pue must be >= 1"),
    ],
)
def test_bad_values_are_clear_errors(build: object, match: str) -> None:
    """Each invalid value raises ConfigError naming the field."""
    assert callable(build)
    with pytest.raises(ConfigError, match=match):
        build()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"seed": "abc"}, "seed must be an integer, got 'abc'"),
        ({"devices_per_replica": "abc"}, "devices_per_replica must be an integer, got 'abc'"),
        ({"timeline_interval_s": "abc"}, "timeline_interval_s must be a number, got 'abc'"),
        ({"drop_after_s": "abc"}, "drop_after_s must be a number or null, got 'abc'"),
        ({"scaling": {"cold_start_s": "abc"}}, "scaling.cold_start_s must be a number, got 'abc'"),
        ({"facility": {"pue": "x"}}, "facility.pue must be a number, got 'x'"),
        ({"replica": {"chunked_prefill": 3}}, "replica.chunked_prefill must be true or false"),
        ({"autoscaler_params": {"target": "x"}}, "autoscaler_params.target must be a number"),
        ({"autoscaler_params": 5}, "autoscaler_params must be an object"),
        ({"warehouse": {"tiers": 5}}, "warehouse.tiers must be a list of tier objects"),
        ({"warehouse": 5}, "config warehouse must be an object, got int"),
    ],
)
def test_from_dict_rejects_wrong_types_by_name(data: dict[str, object], message: str) -> None:
    """A value of the wrong type names the key and the expected type (never a TypeError)."""
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        PlanConfig.from_dict(data)


def test_replace_unknown_nested_key_lists_the_valid_ones() -> None:
    """A typo in a nested key names the section's valid keys."""
    with pytest.raises(ConfigError) as info:
        PlanConfig().replace(**{"scaling.bogus": 1})
    assert str(info.value) == (
        "unknown config key 'scaling.bogus'; scaling has: cold_start_jitter_s, cold_start_s, "
        "initial_replicas, max_replicas, min_replicas, scale_down_delay_s, scale_up_delay_s, "
        "tick_s"
    )


def test_slo_names_the_bad_field_and_value() -> None:
    """A non-positive SLO bound names which one and the value given."""
    with pytest.raises(ConfigError, match=r"slo: tpot_s must be > 0, got -1"):
        PlanConfig.from_dict({"slo": {"tpot_s": -1}})


@pytest.mark.parametrize(
    ("key", "hint"),
    [
        ("max_replicas", "did you mean scaling.max_replicas?"),
        ("scaling.max_replica", "did you mean scaling.max_replicas?"),
        ("replicas", "did you mean autoscaler_params.replicas?"),
        ("slo.ttft", "did you mean slo.ttft_s?"),
    ],
)
def test_replace_suggests_the_nearest_key(key: str, hint: str) -> None:
    """A misplaced or misspelt key suggests the dotted key it most likely meant."""
    with pytest.raises(ConfigError, match=hint):
        PlanConfig().replace(**{key: 1})


def test_replace_without_a_near_key_suggests_nothing() -> None:
    """No suggestion when nothing is close."""
    with pytest.raises(ConfigError) as info:
        PlanConfig().replace(zzzz=1)
    assert "did you mean" not in str(info.value)


def test_from_dict_suggests_the_nested_key_for_a_top_level_typo() -> None:
    """A config file with a nested key at the top level points to where it belongs."""
    with pytest.raises(ConfigError, match=r"'pue'; did you mean facility.pue\?"):
        PlanConfig.from_dict({"pue": 1.2})


def test_warehouse_tier_entries_must_be_objects() -> None:
    """A tier given as a bare number names the entry and shows the expected shape."""
    with pytest.raises(ConfigError) as info:
        PlanConfig.from_dict({"warehouse": {"tiers": [5]}})
    assert str(info.value) == (
        "config warehouse.tiers[0] must be an object, got 5 "
        '(e.g. {"name": "dram", "capacity_bytes": 5e11, "bandwidth_bytes_per_s": 25e9})'
    )


def test_request_overhead_quantiles_from_json() -> None:
    """A JSON list of overheads becomes a tuple (the config stays hashable) and round-trips."""
    c = PlanConfig().replace(**{"replica.request_overhead_quantiles_s": [0.004, 0.02]})
    assert c.replica.request_overhead_quantiles_s == (0.004, 0.02)
    assert PlanConfig.from_dict(c.to_dict()) == c


@pytest.mark.parametrize(
    ("replica", "match"),
    [
        ({"request_overhead_quantiles_s": [0.1, -0.1]}, "list of seconds >= 0"),
        ({"request_overhead_quantiles_s": "0.1"}, "list of seconds >= 0"),
        ({"request_overhead_quantiles_s": [0.1], "request_overhead_s": 0.2}, "not both"),
        ({"request_overhead_s": -1.0}, "request_overhead_s must be >= 0"),
    ],
)
def test_bad_request_overheads_are_refused(replica: dict[str, object], match: str) -> None:
    """Negative or non-list overheads, or a constant and a distribution at once, are refused."""
    with pytest.raises(ConfigError, match=match):
        PlanConfig.from_dict({"replica": replica})
