"""Served calibration: the workload, the step telemetry, pairing client and engine TTFTs by
request id, and the tiny engine over loopback."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

import pytest

from tokenwatt.bench.record import RequestRecord
from tokenwatt.errors import ConfigError
from tokenwatt.plan.calibrate import StepRecord, overhead_from_profile, write_profile
from tokenwatt.plan.config import PlanConfig
from tokenwatt.plan.served import (
    ServedCalibrationSpec,
    ServedRun,
    ServedSession,
    StepTelemetry,
    calibrate_served,
    request_overheads_s,
    served_workload,
)
from tokenwatt.plan.simulator import simulate

if TYPE_CHECKING:
    from tokenwatt.engine import LoadedModel


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
    """Just enough of an Engine for StepTelemetry to wrap: ``emit`` sends a request's next
    output (the first one, ``finished`` False) from the engine."""

    def __init__(self) -> None:
        class Core:
            scheduler = type("S", (), {"schedule": staticmethod(lambda: None)})()

            @staticmethod
            def step() -> list[object]:
                return []

        self.core = Core()
        self.outputs: dict[str, Callable[[object], None]] = {}

    def submit(
        self, prompt: object, params: object, on_output: Callable[[object], None], **kw: object
    ) -> str:
        rid = f"req-{len(self.outputs)}"
        self.outputs[str(kw.get("tenant") or rid)] = on_output
        return rid

    def emit(self, key: str, finished: bool = False) -> None:
        self.outputs[key](SimpleNamespace(finished=finished))


class _Clock:
    """A clock the test sets."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _engine_ttfts(
    submits: list[tuple[str, float]], firsts: list[tuple[str, float]]
) -> dict[str, float]:
    """The engine TTFTs StepTelemetry records for submits and first outputs at these times."""
    engine, clock = _FakeEngine(), _Clock()
    tele = StepTelemetry(engine, clock)
    tele.on = True
    for key, t in submits:
        clock.now = t
        engine.submit("prompt", None, lambda _out: None, tenant=key)
    for key, t in firsts:
        clock.now = t
        engine.emit(key)
    return tele.engine_ttfts_s()


def _record(rid: str, start_s: float, first_token_s: float) -> RequestRecord:
    return RequestRecord(rid, start_s=start_s, chunk_times_s=(first_token_s, first_token_s + 0.1))


def test_overheads_pair_by_id_past_a_request_that_failed_at_the_client() -> None:
    """b got its first token in the engine, then stalled at the client: it has an engine TTFT
    and no record, and c is still paired with its own engine TTFT (0.03 s, not b's 0.05)."""
    engine = _engine_ttfts(
        [("a", 1.0), ("b", 1.1), ("c", 1.2)], [("a", 1.04), ("b", 1.15), ("c", 1.23)]
    )
    assert engine == pytest.approx({"a": 0.04, "b": 0.05, "c": 0.03})
    assert list(engine) == ["a", "b", "c"]
    records = [_record("a", 0.99, 1.05), _record("c", 1.19, 1.25)]
    assert request_overheads_s(records, engine) == pytest.approx((0.02, 0.03))


def test_overheads_pair_by_id_when_submits_come_in_the_other_order() -> None:
    """x is sent first but y reaches the engine first: each is paired with its own TTFT."""
    engine = _engine_ttfts([("y", 0.010), ("x", 0.011)], [("y", 0.030), ("x", 0.050)])
    assert list(engine) == ["y", "x"]
    records = [_record("x", 0.000, 0.055), _record("y", 0.001, 0.034)]
    assert request_overheads_s(records, engine) == pytest.approx((0.016, 0.013))


def test_telemetry_keys_a_request_without_a_tenant_by_the_engine_id() -> None:
    """Without a tenant the engine's own id is the key; only while on is anything kept."""
    engine, clock = _FakeEngine(), _Clock()
    tele = StepTelemetry(engine, clock)
    engine.submit("prompt", None, lambda _out: None)
    tele.on = True
    clock.now = 2.0
    engine.submit("prompt", None, lambda _out: None)
    clock.now = 2.5
    engine.emit("req-1", finished=True)
    assert tele.engine_ttfts_s() == {"req-1": 0.5}
    assert tele.finished == 1


def test_an_answered_request_without_an_engine_ttft_is_refused() -> None:
    """A record whose id the engine never saw (the tenant did not reach it) stops the fit."""
    records = [_record("a", 0.0, 0.05), _record("b", 0.1, 0.15)]
    with pytest.raises(ConfigError) as err:
        request_overheads_s(records, {"a": 0.01, "key:1234/b": 0.02})
    assert str(err.value) == (
        "served calibration: 1 of 2 answered requests have no engine TTFT under their id "
        "(first: 'b'); the server must pass each request's `user` field to the engine as its "
        "tenant (serve without API keys)"
    )


def test_a_client_ttft_shorter_than_the_engine_one_is_refused() -> None:
    """The client sends before the engine submits, so a shorter client TTFT is a wrong pair."""
    with pytest.raises(ConfigError) as err:
        request_overheads_s([_record("a", 0.0, 0.02)], {"a": 0.03})
    assert str(err.value) == (
        "served calibration: request 'a' took 20.000 ms to its first token at the client but "
        "30.000 ms in the engine: the engine's TTFT under that id is another request's"
    )


def test_profile_constant_is_the_median_of_the_per_request_overheads() -> None:
    """The constant is the median overhead (0.05 s), not median client TTFT less median
    engine TTFT (0.20 - 0.19 = 0.01 s)."""
    run = ServedRun(
        records=(_record("a", 0.0, 0.10), _record("b", 0.0, 0.20), _record("c", 0.0, 0.30)),
        steps=(StepRecord(0.003, 1, 0),) * 3 + (StepRecord(0.010, 0, 100),) * 3,
        engine_ttfts_s=(0.05, 0.19, 0.25),
        overheads_s=(0.05, 0.01, 0.05),
        energy_j=0.0,
        wall_s=1.0,
        load_average=0.0,
    )
    assert statistics.median(run.client_ttfts_s) - statistics.median(run.engine_ttfts_s) == (
        pytest.approx(0.01)
    )
    session = ServedSession(cast(Any, None), cast(Any, None))
    profile = session.profile(run, "p", idle_w=0.0, decode_s_per_context_token=0.0)
    assert profile["serving"]["request_s"] == pytest.approx(0.05)


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
    assert len(quantiles) == 10 and quantiles == sorted(quantiles)
    assert profile["provenance"]["requests"] == (
        "30 answered (their overheads fitted); 0 failed at the client after their first token"
    )
    assert "power" not in profile  # no meter
    assert "Poisson 30.0/s, 30 requests" in profile["provenance"]["workload"]
    assert all(total == 30 for _, total in seen)
    path = tmp_path / "served.json"
    write_profile(profile, path)
    assert overhead_from_profile(path) == pytest.approx(tuple(quantiles))
    cfg = PlanConfig(autoscaler="static", autoscaler_params={"replicas": 1}, profile_path=str(path))
    reqs = served_workload(20, 10.0, 1, _unique, (16, 64), (4, 8))
    assert simulate(cfg, reqs).completed == 20


@pytest.fixture(scope="module")
def tiny() -> Iterator[LoadedModel]:
    """The tiny engine on CPU."""
    from tokenwatt.engine import load_model

    yield load_model("tiny", device="cpu")


@pytest.mark.slow
def test_each_request_id_reaches_the_engine_as_its_tenant(tiny: LoadedModel) -> None:
    """Over real HTTP, every request's engine TTFT is recorded under its own id, and each
    overhead is the client TTFT less the engine TTFT of the same request."""
    from tokenwatt.engine import EngineConfig

    requests = served_workload(6, 20.0, 3, _unique, (16, 32), (2, 4))
    config = EngineConfig(max_batch=4, max_step_tokens=128, torch_threads=1)
    with ServedSession(tiny, config, client="thread") as session:
        run = session.serve(requests)
        assert session.telemetry is not None
        engine = session.telemetry.engine_ttfts_s()
    ids = [r.request_id for r in requests]
    assert sorted(engine) == sorted(ids) and sorted(r.request_id for r in run.records) == ids
    assert run.overheads_s == pytest.approx(
        [c - engine[r.request_id] for r, c in zip(run.records, run.client_ttfts_s, strict=True)]
    )
    assert min(run.overheads_s) > 0 and run.failed_at_client == ()


@pytest.mark.slow
def test_leaving_on_an_error_does_not_wait_for_the_workload(tiny: LoadedModel) -> None:
    """An error mid-replay (Ctrl-C) stops the server first, so the replay ends at its next
    send instead of serving the remaining ~30 s of arrivals."""
    from tokenwatt.engine import EngineConfig

    class Interrupted(Exception):
        pass

    def interrupt(done: int, total: int) -> None:
        raise Interrupted

    requests = served_workload(60, 2.0, 5, _unique, (16, 32), (2, 4))
    assert requests[-1].arrival_s > 20
    config = EngineConfig(max_batch=4, max_step_tokens=128, torch_threads=1)

    def serve() -> None:
        with ServedSession(tiny, config, client="thread") as session:
            session.serve(requests, interrupt)

    t0 = time.perf_counter()
    with pytest.raises(Interrupted):
        serve()
    assert time.perf_counter() - t0 < 10


def test_repeated_request_ids_are_refused() -> None:
    """Engine TTFTs are found by request id, so a workload that repeats one is refused."""
    session = ServedSession(cast(Any, None), cast(Any, None))
    session.telemetry = StepTelemetry(_FakeEngine())
    requests = served_workload(2, 1.0, 1, _unique)
    with pytest.raises(ConfigError, match="request id 's1r0' repeats"):
        session.serve([requests[0], requests[1], requests[0]])
