"""Calibration: a fake engine with known step times yields the profile that reproduces them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tokenwatt.energy.meter import Component, Reading
from tokenwatt.errors import ConfigError
from tokenwatt.plan.calibrate import (
    CalibrationSpec,
    calibrate,
    power_from_profile,
    write_profile,
)
from tokenwatt.plan.config import PlanConfig
from tokenwatt.plan.execution import ProfileModel
from tokenwatt.plan.simulator import Simulation


class Clock:
    """A manual clock the fake engine advances."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


class FakeEngine:
    """Prefill: 1 ms + 10 us per token at 300 W; decode: 5 ms + 1 ms per request
    + 1 us per context token at 200 W; idle 50 W. Prefill runs in one step. ``slow``
    multiplies every step time (a burst of load from elsewhere)."""

    def __init__(self, clock: Clock, meter: FakeMeter, slow: float = 1.0) -> None:
        self.clock = clock
        self.meter = meter
        self.slow = slow
        self.new: list[tuple[int, int]] = []
        self.running: list[list[int]] = []  # [context, remaining]

    def add(self, prompt_tokens: int, max_tokens: int) -> None:
        self.new.append((prompt_tokens, max_tokens))

    def _spend(self, s: float, w: float) -> None:
        self.clock.t += s * self.slow
        self.meter.joules += s * self.slow * w

    def step(self) -> int:
        if self.new:
            tokens = sum(p for p, _ in self.new)
            self._spend(0.001 + 1e-5 * tokens, 300.0)
            self.running += [[p + 1, m - 1] for p, m in self.new if m > 1]
            self.new = []
            return tokens
        ctx = sum(r[0] for r in self.running)
        self._spend(0.005 + 0.001 * len(self.running) + 1e-6 * ctx, 200.0)
        for r in self.running:
            r[0] += 1
            r[1] -= 1
        n = len(self.running)
        self.running = [r for r in self.running if r[1] > 0]
        return n

    def has_work(self) -> bool:
        return bool(self.new or self.running)


class FakeMeter:
    """Reports the joules the fake engine spent, plus 50 W while idle (via sleep)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.joules = 0.0
        self.components = (Component("gpu0", "gpu", "estimated:fake"),)

    def read(self) -> Reading:
        return Reading(self.clock.t, {"gpu0": self.joules})

    def close(self) -> None:
        pass


def _setup() -> tuple[Clock, FakeMeter]:
    clock = Clock()
    return clock, FakeMeter(clock)


def _profile(meter: bool) -> dict[str, object]:
    clock, m = _setup()

    def sleep(s: float) -> None:
        clock.sleep(s)
        m.joules += 50.0 * s

    spec = CalibrationSpec(prefill_tokens=(10, 100), decode_batches=(1, 4), long_context=116)
    return calibrate(lambda: FakeEngine(clock, m), spec, m if meter else None, "fake", clock, sleep)


def test_profile_reproduces_engine_step_times(tmp_path: Path) -> None:
    """The profile model built from the measurements predicts the engine's own step times."""
    path = tmp_path / "p.json"
    write_profile(_profile(meter=False), path)
    model = ProfileModel.from_file(path)
    assert model.prefill_s(100, 1) == pytest.approx(0.001 + 1e-5 * 100)
    assert model.decode_s_per_context_token == pytest.approx(1e-6)
    # batch 4 at 4 x 300 context tokens, one iteration
    assert model.decode_s(4, 1200, 1) == pytest.approx(0.005 + 0.004 + 1e-6 * 1200)


def test_profile_with_meter_carries_power(tmp_path: Path) -> None:
    """With a meter the profile holds measured phase powers, labelled with the meter's source."""
    path = tmp_path / "p.json"
    write_profile(_profile(meter=True), path)
    power = power_from_profile(path)
    assert power is not None
    assert (power.idle_w, power.prefill_w, power.decode_min_w) == pytest.approx((50, 300, 200))
    assert "estimated:fake" in power.source
    sim = Simulation(PlanConfig(profile_path=str(path)))
    assert sim.power.label == "calibrated:fake"
    assert sim.power.scope == "gpu"  # the fake meter's one component


def test_profile_without_meter_has_no_power(tmp_path: Path) -> None:
    """Timing-only profiles leave power to the accelerator preset."""
    path = tmp_path / "p.json"
    write_profile(_profile(meter=False), path)
    assert power_from_profile(path) is None
    assert json.loads(path.read_text())["name"] == "fake"


def test_rounds_take_the_median_through_a_burst_of_load() -> None:
    """With 3 rounds, one round slowed 10x does not move the profile."""
    clock, m = _setup()
    made = [0]
    spec = CalibrationSpec(
        prefill_tokens=(10, 100), decode_batches=(1, 4), long_context=116, rounds=3
    )
    per_round = len(spec.prefill_tokens) * spec.repeats + len(spec.decode_batches) + 1

    def make() -> FakeEngine:
        made[0] += 1
        in_first_round = 1 < made[0] <= 1 + per_round  # target 1 is the warm-up
        return FakeEngine(clock, m, slow=10.0 if in_first_round else 1.0)

    profile = calibrate(make, spec, None, "fake", clock)
    assert made[0] == 1 + 3 * per_round
    assert profile["prefill"][1][1] == pytest.approx(0.001 + 1e-5 * 100)


def test_bad_spec_is_refused() -> None:
    """Contradictory calibration sizes raise ConfigError."""
    with pytest.raises(ConfigError, match="short_context < long_context"):
        CalibrationSpec(short_context=64, long_context=32)
    with pytest.raises(ConfigError, match="must increase"):
        CalibrationSpec(decode_batches=(4, 2))


@pytest.mark.slow
def test_calibrate_reference_engine(tmp_path: Path) -> None:
    """The tiny reference engine calibrates in process into a profile the simulator loads."""
    from tokenwatt.engine import EngineConfig, EngineCore, load_model
    from tokenwatt.plan.calibrate import EngineTarget

    loaded = load_model("tiny", device="cpu")
    spec = CalibrationSpec(
        prefill_tokens=(16, 64), decode_batches=(1, 2), long_context=64, decode_steps=2, repeats=1
    )
    cfg = EngineConfig(max_step_tokens=256)
    profile = calibrate(lambda: EngineTarget(EngineCore(loaded, cfg)), spec, name="tiny")
    path = tmp_path / "tiny.json"
    write_profile(profile, path)
    model = ProfileModel.from_file(path)
    assert model.prefill_s(64, 1) > 0 and model.decode_s(2, 100, 3) > 0
