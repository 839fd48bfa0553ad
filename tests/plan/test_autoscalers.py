"""Autoscalers and the governor: each policy's recommendation, bounds and delays."""

from __future__ import annotations

import pytest

from tokenwatt.errors import ConfigError
from tokenwatt.plan.autoscalers import (
    ConcurrencyAutoscaler,
    FleetState,
    PredictiveAutoscaler,
    QueueKVAutoscaler,
    ScalingGovernor,
    StaticAutoscaler,
    make_autoscaler,
)
from tokenwatt.plan.config import ScalingConfig


def test_static_always_recommends_its_size() -> None:
    """Whatever the load, static N says N."""
    assert StaticAutoscaler(4).observe(FleetState(outstanding=1000)) == 4


def test_concurrency_targets_in_flight_per_replica() -> None:
    """A steady 10 requests in flight at target 2 asks for 5 replicas."""
    a = ConcurrencyAutoscaler(target=2.0)
    recs = [a.observe(FleetState(time_s=2.0 * i, ready=5, outstanding=10)) for i in range(1, 40)]
    assert recs[-1] == 5


def test_concurrency_panics_on_a_burst_and_does_not_shrink() -> None:
    """A jump to 4x the capacity triggers panic: the fast window rules, and no scale-down."""
    a = ConcurrencyAutoscaler(target=1.0, stable_window_s=60.0, panic_window_s=6.0)
    for i in range(1, 31):
        a.observe(FleetState(time_s=2.0 * i, ready=2, outstanding=2))
    burst = a.observe(FleetState(time_s=62.0, ready=2, outstanding=16))
    # panic window (6 s): samples at 58, 60, 62 s -> mean (2 + 2 + 16) / 3 -> 7 replicas
    assert burst == 7
    calm = a.observe(FleetState(time_s=64.0, ready=7, outstanding=0))
    assert calm >= 7


def test_queue_kv_scales_by_the_larger_pressure() -> None:
    """3 replicas with 24 waiting at target 4 per replica ask for 6 (capped at x2)."""
    a = QueueKVAutoscaler(target_waiting=4.0, target_kv=0.7)
    rec = a.observe(FleetState(time_s=2.0, ready=3, outstanding=30, waiting=24, kv_usage=0.1))
    assert rec == 6


def test_queue_kv_holds_within_tolerance() -> None:
    """KV usage at 72% of a 70% target is within 10%: keep the current count."""
    a = QueueKVAutoscaler(target_waiting=4.0, target_kv=0.7)
    assert a.observe(FleetState(time_s=2.0, ready=3, outstanding=9, kv_usage=0.72)) == 3


def test_queue_kv_wakes_from_zero() -> None:
    """With no replicas and work outstanding, ask for one."""
    a = QueueKVAutoscaler()
    assert a.observe(FleetState(time_s=2.0, ready=0, outstanding=3, waiting=3)) == 1


def test_predictive_follows_a_rising_rate() -> None:
    """A rising arrival rate is forecast ahead: the recommendation exceeds today's need."""
    a = PredictiveAutoscaler(target=1.0, horizon_s=30.0, prior_latency_s=1.0)
    recs = [a.observe(FleetState(time_s=2.0 * i, arrivals=2 * i, tick_s=2.0)) for i in range(1, 20)]
    assert recs == sorted(recs)
    assert recs[-1] > 19  # today's rate is 19/s; the trend adds more


def test_governor_delays_scale_down() -> None:
    """A lower recommendation acts only after it held for the scale-down delay."""
    g = ScalingGovernor(ScalingConfig(max_replicas=10, scale_down_delay_s=10.0), initial=4)
    assert g.decide(2.0, 4, 1) == 4
    assert g.decide(8.0, 4, 1) == 4
    assert g.decide(12.0, 4, 1) == 1


def test_governor_delays_scale_up_and_clamps() -> None:
    """A higher recommendation waits the scale-up delay and never passes max_replicas."""
    g = ScalingGovernor(ScalingConfig(max_replicas=5, scale_up_delay_s=4.0), initial=1)
    assert g.decide(2.0, 1, 50) == 1
    assert g.decide(4.0, 1, 50) == 1
    assert g.decide(6.0, 1, 50) == 5


def test_make_autoscaler_names_and_errors() -> None:
    """Known names build; unknown names and parameters raise ConfigError."""
    scaler, initial = make_autoscaler("static", {"replicas": 3}, ScalingConfig())
    assert isinstance(scaler, StaticAutoscaler) and initial == 3
    with pytest.raises(ConfigError, match="unknown autoscaler"):
        make_autoscaler("magic", {}, ScalingConfig())
    with pytest.raises(ConfigError, match="unknown parameter 'nope'"):
        make_autoscaler("concurrency", {"nope": 1.0}, ScalingConfig())
    with pytest.raises(ConfigError, match="replicas must be >= 0"):
        make_autoscaler("static", {"replicas": -1}, ScalingConfig())


def test_make_autoscaler_lists_valid_parameters_for_an_unknown_one() -> None:
    """An unknown parameter names itself and the autoscaler's valid ones, not Python internals."""
    with pytest.raises(ConfigError) as info:
        make_autoscaler("concurrency", {"bogus": 1.0}, ScalingConfig())
    assert str(info.value) == (
        "autoscaler concurrency: unknown parameter 'bogus'; valid parameters: "
        "panic_threshold, panic_window_s, stable_window_s, target "
        "(set one with --set autoscaler_params.NAME=VALUE)"
    )


def test_make_autoscaler_static_lists_replicas_as_valid() -> None:
    """The static autoscaler's only parameter is replicas."""
    with pytest.raises(ConfigError, match="valid parameters: replicas "):
        make_autoscaler("static", {"target": 1.0}, ScalingConfig())


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        (
            "static",
            {"replicas": 2.5},
            "static autoscaler: replicas must be a whole number, got 2.5",
        ),
        ("concurrency", {"target": -1.0}, "concurrency autoscaler: target must be > 0, got -1.0"),
        (
            "concurrency",
            {"panic_threshold": 1.0},
            "concurrency autoscaler: panic_threshold must be > 1, got 1.0",
        ),
        (
            "queue_kv",
            {"target_kv": 2.0},
            "queue_kv autoscaler: target_kv must be in (0, 1], got 2.0",
        ),
        ("queue_kv", {"tolerance": -0.5}, "queue_kv autoscaler: tolerance must be >= 0, got -0.5"),
        ("predictive", {"alpha": 0.0}, "predictive autoscaler: alpha must be in (0, 1], got 0.0"),
        (
            "predictive",
            {"prior_latency_s": -1.0},
            "predictive autoscaler: prior_latency_s must be > 0, got -1.0",
        ),
    ],
)
def test_bad_autoscaler_parameter_values_are_named(
    name: str, params: dict[str, float], message: str
) -> None:
    """A parameter out of range names itself, its bound and the value given."""
    with pytest.raises(ConfigError) as info:
        make_autoscaler(name, params, ScalingConfig())
    assert str(info.value) == message
