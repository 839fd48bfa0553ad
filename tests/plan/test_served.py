"""Served calibration: the workload, the step telemetry, and the tiny engine over loopback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tokenwatt.errors import ConfigError
from tokenwatt.plan.calibrate import overhead_from_profile, write_profile
from tokenwatt.plan.config import PlanConfig
from tokenwatt.plan.served import (
    ServedCalibrationSpec,
    StepTelemetry,
    calibrate_served,
    served_workload,
)
from tokenwatt.plan.simulator import simulate


def _unique(tokens: int, rid: str) -> str:
    return f"{rid}:{tokens}"


def test_served_workload_is_seeded_and_in_range() -> None:
    """Equal seeds give equal workloads; lengths stay in range; arrivals increase."""
    a = served_workload(50, 4.0, 7, _unique, (32, 256), (16, 64))
    assert a == served_workload(50, 4.0, 7, _unique, (32, 256), (16, 64))
    assert a != served_workload(50, 4.0, 8, _unique, (32, 256), (16, 64))
    assert a[0].request_id == "s7r0" and a[0].arrival_s == 0.0
    assert all(32 <= r.input_tokens <= 256 and 16 <= r.output_tokens <= 64 for r in a)
    assert all(r.prompt == f"{r.request_id}:{r.input_tokens}" for r in a)
    assert [r.arrival_s for r in a] == sorted(r.arrival_s for r in a)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"requests": 0}, "requests must be >= 1"),
        ({"rate_per_s": 0.0}, "rate must be a finite number > 0"),
        ({"rate_per_s": float("nan")}, "rate must be a finite number > 0"),
        ({"prompt_tokens": (10, 5)}, "prompt_tokens needs 1 <= low <= high"),
        ({"idle_s": -1.0}, "idle_s must be >= 0"),
        ({"client": "cloud"}, "process or thread"),
        ({"overhead_points": 0}, "overhead_points >= 1"),
    ],
)
def test_bad_served_spec_is_refused(changes: dict[str, object], match: str) -> None:
    """Each bad field is named in the error."""
    with pytest.raises(ConfigError, match=match):
        ServedCalibrationSpec(**changes)  # type: ignore[arg-type]


class _FakeEngine:
    """Just enough of an Engine for StepTelemetry to wrap."""

    def __init__(self) -> None:
        class Core:
            scheduler = type("S", (), {"schedule": staticmethod(lambda: None)})()

            @staticmethod
            def step() -> list[object]:
                return []

        self.core = Core()

    def submit(self, *args: object, **kw: object) -> str:
        return "x"


def test_step_telemetry_step_durations() -> None:
    """A step followed at once by another lasts until that one starts; the last before idle
    gets its own time plus the median gap between busy steps."""
    tele = StepTelemetry(_FakeEngine())
    tele.marks = [
        (0.0, 0.008, 1, 0, 40, True),  # busy: lasts to the next start, 0.010
        (0.010, 0.019, 0, 100, 0, True),  # busy: to 0.020
        (0.020, 0.026, 2, 0, 80, False),  # idle after: 0.006 + median gap (0.002, 0.001)
        (1.0, 1.004, 1, 0, 10, False),
    ]
    steps = tele.steps()
    assert [s.seconds for s in steps] == pytest.approx([0.010, 0.010, 0.0075, 0.0055])
    assert (steps[1].decodes, steps[1].prefill_tokens) == (0, 100)
    assert (steps[2].decodes, steps[2].context_tokens) == (2, 80)


@pytest.mark.slow
def test_calibrate_served_tiny_engine(tmp_path: Path) -> None:
    """The tiny engine served on loopback yields a profile with step tables, the overhead
    distribution and its provenance, which a simulation then uses."""
    from tokenwatt.engine import EngineConfig, load_model

    loaded = load_model("tiny", device="cpu")
    spec = ServedCalibrationSpec(
        requests=30,
        rate_per_s=30.0,
        prompt_tokens=(16, 64),
        output_tokens=(4, 8),
        idle_s=0.0,
        warmup_requests=1,
        client="thread",
        overhead_points=10,
    )
    seen: list[tuple[int, int]] = []
    profile = calibrate_served(
        loaded,
        EngineConfig(max_batch=8, max_step_tokens=256, torch_threads=1),
        spec,
        decode_s_per_context_token=0.0,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert profile["name"] == "tiny-served"
    assert profile["prefill"] and profile["decode"]
    quantiles = profile["serving"]["request_quantiles_s"]
    assert len(quantiles) == 10 and quantiles == sorted(quantiles) and quantiles[0] >= 0
    assert "power" not in profile  # no meter
    assert "Poisson 30.0/s, 30 requests" in profile["provenance"]["workload"]
    assert all(total == 30 for _, total in seen)
    path = tmp_path / "served.json"
    write_profile(profile, path)
    assert overhead_from_profile(path) == pytest.approx(tuple(quantiles))
    cfg = PlanConfig(autoscaler="static", autoscaler_params={"replicas": 1}, profile_path=str(path))
    reqs = served_workload(20, 10.0, 1, _unique, (16, 64), (4, 8))
    assert simulate(cfg, reqs).completed == 20
