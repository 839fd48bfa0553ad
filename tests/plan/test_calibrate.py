"""Calibration: a fake engine with known step times yields the profile that reproduces them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tokenwatt.energy.meter import Component, Reading
from tokenwatt.errors import ConfigError
from tokenwatt.plan.calibrate import (
    MIN_SPREAD_STEPS,
    CalibrationSpec,
    EnergyWindow,
    StepRecord,
    calibrate,
    monotone,
    overhead_from_profile,
    power_from_profile,
    profile_from_steps,
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


def test_slow_long_context_round_never_zeroes_the_decode_table() -> None:
    """A long-context measurement slowed 50x (load elsewhere) caps the context slope at half a
    short step instead of subtracting the decode table down to zero."""
    clock, m = _setup()
    made = [0]
    spec = CalibrationSpec(prefill_tokens=(10, 100), decode_batches=(1, 4, 8), long_context=116)
    per_round = len(spec.prefill_tokens) * spec.repeats + len(spec.decode_batches) + 1

    def make() -> FakeEngine:
        made[0] += 1
        return FakeEngine(clock, m, slow=50.0 if made[0] == 1 + per_round else 1.0)

    profile = calibrate(make, spec, None, "fake", clock)
    times = [t for _, t in profile["decode"]]
    assert min(times) > 0
    assert times == sorted(times)
    # batch 8 at its measured context: exactly half of its step is left as the zero-context time
    assert times[-1] == pytest.approx((0.005 + 0.008 + 1e-6 * 8 * 19.5) / 2, rel=0.02)


def test_monotone_pools_adjacent_violators() -> None:
    """A dip is pooled into the weighted mean of the violating run; sorted input is unchanged."""
    assert monotone([1.0, 3.0, 2.0, 4.0]) == [1.0, 2.5, 2.5, 4.0]
    assert monotone([1.0, 3.0, 1.0], [1.0, 1.0, 2.0]) == pytest.approx([1.0, 5 / 3, 5 / 3])
    assert monotone([1.0, 2.0, 3.0]) == [1.0, 2.0, 3.0]


def _steps() -> list[StepRecord]:
    """Decodes at batch 1 (2 ms) and 2 (3 ms), prefills of 100 tokens (10 ms) with one decode
    fused in, 3 of each; one lone batch-3 decode."""
    steps = [StepRecord(0.002, 1, 0), StepRecord(0.003, 2, 0), StepRecord(0.010, 1, 99)] * 3
    return [*steps, StepRecord(0.050, 3, 0)]


def test_profile_from_steps_medians_per_row() -> None:
    """Each table row is the median of its steps; a fused step is keyed by prompt + decodes."""
    profile = profile_from_steps(_steps(), "served")
    assert profile["decode"] == [[1.0, pytest.approx(0.002)], [2.0, pytest.approx(0.003)]]
    assert profile["prefill"] == [[100.0, pytest.approx(0.010)]]
    assert profile["serving"] == {"request_s": 0.0, "token_s": 0.0}
    assert "power" not in profile


def test_profile_from_steps_mean_or_median() -> None:
    """The mean keeps the busy time a row's steps add up to; the median ignores the outlier."""
    steps = [StepRecord(t, 1, 0) for t in (0.001, 0.001, 0.004)]
    steps += [StepRecord(0.010, 0, 100)] * 3
    assert profile_from_steps(steps, "s")["decode"] == [[1.0, pytest.approx(0.002)]]
    median = profile_from_steps(steps, "s", statistic="median")
    assert median["decode"] == [[1.0, 0.001]]
    with pytest.raises(ConfigError, match="mean or median"):
        profile_from_steps(steps, "s", statistic="mode")


def test_profile_from_steps_records_the_prefill_spread() -> None:
    """Prefill steps of 10 ms and 30 ms (mean 20 ms) give jitter factors 0.5 and 1.5."""
    steps = [StepRecord(0.002, 1, 0)] * 3
    steps += [StepRecord(0.010, 0, 100), StepRecord(0.030, 0, 100)] * 20
    profile = profile_from_steps(steps, "s", jitter_points=4)
    assert profile["prefill"] == [[100.0, pytest.approx(0.020)]]
    assert profile["prefill_jitter"] == pytest.approx([0.5, 0.5, 1.5, 1.5])
    assert "prefill_jitter" not in profile_from_steps(steps, "s", jitter_points=0)
    # more points than steps: one factor per step (the default asks for 200)
    assert sorted(profile_from_steps(steps, "s")["prefill_jitter"]) == pytest.approx(
        [0.5] * 20 + [1.5] * 20
    )
    # a spread from fewer than MIN_SPREAD_STEPS steps would be noise: none
    few = steps[: 3 + MIN_SPREAD_STEPS - 1]
    assert "prefill_jitter" not in profile_from_steps(few, "s", jitter_points=4)
    enough = steps[: 3 + MIN_SPREAD_STEPS]
    assert len(profile_from_steps(enough, "s", jitter_points=4)["prefill_jitter"]) == 4


def test_profile_from_steps_records_the_decode_spread() -> None:
    """Asked for, decode steps of 1 ms and 3 ms at one batch size (row 2 ms) give factors 0.5
    and 1.5."""
    steps = [StepRecord(0.001, 1, 0), StepRecord(0.003, 1, 0)] * 20
    steps += [StepRecord(0.010, 0, 100)] * 3
    assert "decode_jitter" not in profile_from_steps(steps, "s")  # opt-in
    profile = profile_from_steps(steps, "s", jitter_points=4, decode_jitter_points=4)
    assert profile["decode"] == [[1.0, pytest.approx(0.002)]]
    assert profile["decode_jitter"] == pytest.approx([0.5, 0.5, 1.5, 1.5])
    assert "prefill_jitter" not in profile  # 3 prefill steps: fewer than MIN_SPREAD_STEPS
    assert ProfileModel(decode_jitter=tuple(profile["decode_jitter"])).decode_s(1, 0, 2) > 0


def test_profile_from_steps_takes_out_the_context_term() -> None:
    """Decode rows hold the time at empty context: slope x context is subtracted per step."""
    steps = [StepRecord(0.003, 1, 0, context_tokens=1000)] * 3
    steps += [StepRecord(0.010, 0, 100)] * 3
    profile = profile_from_steps(steps, "s", decode_s_per_context_token=1e-6)
    assert profile["decode"] == [[1.0, pytest.approx(0.002)]]


def test_profile_from_steps_busy_power_from_the_window(tmp_path: Path) -> None:
    """Busy watts: the window's joules less idle watts x idle seconds, over the step seconds."""
    steps = _steps()  # 0.095 s of steps
    window = EnergyWindow(energy_j=10.0, window_s=10.0, idle_w=0.5, source="fake", scope="cpu")
    profile = profile_from_steps(steps, "s", energy=window, request_overhead_s=0.004)
    busy_s = sum(s.seconds for s in steps)
    expected = (10.0 - 0.5 * (10.0 - busy_s)) / busy_s
    path = tmp_path / "p.json"
    write_profile(profile, path)
    power = power_from_profile(path)
    assert power is not None
    assert (power.idle_w, power.prefill_w, power.decode_max_w) == pytest.approx(
        (0.5, expected, expected)
    )
    assert "served workload (10 steps): fake" in power.source
    assert overhead_from_profile(path) == (0.004,)


def test_profile_from_steps_needs_enough_steps() -> None:
    """Without min_samples steps of both kinds the fit refuses, saying what to do."""
    with pytest.raises(ConfigError, match="serve a longer workload"):
        profile_from_steps([StepRecord(0.002, 1, 0)] * 5, "s")


def test_step_record_rejects_empty_and_negative_steps() -> None:
    """A step with no tokens or a negative duration is refused."""
    with pytest.raises(ConfigError, match="at least one token"):
        StepRecord(0.001, 0, 0)
    with pytest.raises(ConfigError, match="seconds"):
        StepRecord(-1.0, 1, 0)


def test_overhead_from_profile_defaults_to_none(tmp_path: Path) -> None:
    """A profile without a serving section adds no overhead."""
    path = tmp_path / "p.json"
    write_profile(_profile(meter=False), path)
    assert overhead_from_profile(path) == ()


def test_profile_from_steps_keeps_the_overhead_distribution(tmp_path: Path) -> None:
    """Per-request overheads become quantiles under serving; overhead_from_profile reads them,
    and reads an older profile's one constant as a one-point distribution."""
    overheads = [0.001 * i for i in range(1, 101)]
    profile = profile_from_steps(
        _steps(), "s", request_overhead_s=0.05, request_overheads_s=overheads, overhead_points=4
    )
    assert profile["serving"]["request_quantiles_s"] == pytest.approx([0.013, 0.038, 0.063, 0.088])
    path = tmp_path / "p.json"
    write_profile(profile, path)
    assert overhead_from_profile(path) == pytest.approx((0.013, 0.038, 0.063, 0.088))
    assert json.loads(path.read_text())["serving"]["request_s"] == 0.05
    del profile["serving"]["request_quantiles_s"]
    write_profile(profile, path)
    assert overhead_from_profile(path) == (0.05,)


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
