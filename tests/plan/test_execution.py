"""Execution models: closed-form decode runs equal step-by-step sums; profiles interpolate."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tokenwatt.errors import ConfigError
from tokenwatt.plan.execution import (
    ExecutionModel,
    ProfileModel,
    RooflineModel,
    ServingOverhead,
    decode_steps_until,
    linear_max_sum,
    resolve_profile,
    shipped_profiles,
)
from tokenwatt.plan.hardware import accelerator_preset, model_preset


@pytest.mark.parametrize(
    ("const", "base", "slope", "steps"),
    [(5.0, 1.0, 0.5, 20), (0.0, 2.0, 0.1, 7), (3.0, 4.0, 0.2, 9), (2.0, 1.0, 0.0, 4), (1, 1, 1, 0)],
)
def test_linear_max_sum_matches_loop(const: float, base: float, slope: float, steps: int) -> None:
    """The closed form equals summing max(const, base + slope*i) term by term."""
    expected = sum(max(const, base + slope * i) for i in range(steps))
    assert linear_max_sum(const, base, slope, steps) == pytest.approx(expected, rel=1e-12)


def test_roofline_decode_run_equals_single_steps() -> None:
    """k decode iterations in one call equal k single iterations with the context growing."""
    m = RooflineModel()
    batch, ctx, k = 48, 20_000, 300
    stepwise = sum(m.decode_s(batch, ctx + batch * i, 1) for i in range(k))
    assert m.decode_s(batch, ctx, k) == pytest.approx(stepwise, rel=1e-12)


def test_roofline_single_request_decode_floor() -> None:
    """Batch 1 on H100 with 8B BF16 weights: 16.06 GB / (3.35 TB/s x 0.8) + 0.5 ms overhead."""
    m = RooflineModel()
    expected = 16.06e9 / (3.35e12 * 0.8) + 0.0005 + 131072 / (3.35e12 * 0.8) * 100
    assert m.decode_s(1, 100, 1) == pytest.approx(expected, rel=1e-12)


def test_roofline_prefill_is_compute_bound_for_long_prompts() -> None:
    """4,096 prompt tokens: 2 x 8.03e9 x 4096 FLOP at 50% of 989 TFLOP/s, plus overhead."""
    m = RooflineModel()
    assert m.prefill_s(4096, 1) == pytest.approx(2 * 8.03e9 * 4096 / (989e12 * 0.5) + 0.0005)


def test_roofline_prefill_counts_attention_pairs() -> None:
    """Attention adds 4 x 32 x 4096 FLOPs per (token, position) pair at the same efficiency."""
    m = RooflineModel()
    pairs = 4096 * 4097 // 2
    extra = 4 * 32 * 4096 * pairs / (989e12 * 0.5)
    assert m.prefill_s(4096, 1, pairs) - m.prefill_s(4096, 1) == pytest.approx(extra)


def test_roofline_kv_capacity_from_memory() -> None:
    """(80 GB x 0.9 - 16.06 GB) / 131,072 B per token."""
    assert RooflineModel().kv_capacity_tokens() == int((72e9 - 16.06e9) / 131072)


def test_roofline_rejects_model_that_does_not_fit() -> None:
    """A 70B model on one 80 GB device is refused with a hint to add devices."""
    with pytest.raises(ConfigError, match="raise devices"):
        RooflineModel(
            accelerator=accelerator_preset("H100-SXM"), model=model_preset("llama-3.3-70b")
        )


def test_decode_steps_until_finds_first_boundary() -> None:
    """The smallest j whose j iterations reach the elapsed time (boundaries at 0.1 s steps)."""
    m = ProfileModel(decode_table=((1.0, 0.1),))
    assert decode_steps_until(m, 1, 0, 0.25, 10) == 3
    assert decode_steps_until(m, 1, 0, 0.2, 10) == 2
    assert decode_steps_until(m, 1, 0, 5.0, 10) == 10


def test_profile_interpolates_and_extrapolates() -> None:
    """Linear between rows, along the end slope beyond them."""
    m = ProfileModel(
        prefill_table=((100.0, 0.01), (1100.0, 0.11)), decode_table=((1, 0.01), (9, 0.03))
    )
    assert m.prefill_s(600, 1) == pytest.approx(0.06)
    assert m.prefill_s(2100, 1) == pytest.approx(0.21)
    assert m.decode_s(5, 0, 1) == pytest.approx(0.02)
    assert m.decode_s(5, 0, 4) == pytest.approx(0.08)


def test_profile_context_slope_grows_per_step() -> None:
    """Per-context-token cost adds up as the batch's context grows each iteration."""
    m = ProfileModel(decode_table=((1.0, 0.01),), decode_s_per_context_token=1e-6)
    # a single-row table is constant: 0.01 s at any batch, plus the context term
    expected = sum(0.01 + 1e-6 * (1000 + 2 * i) for i in range(3))
    assert m.decode_s(2, 1000, 3) == pytest.approx(expected, rel=1e-12)


def test_profile_file_round_trip(tmp_path: Path) -> None:
    """A profile JSON file loads into the same tables."""
    p = tmp_path / "p.json"
    p.write_text(json.dumps({"prefill": [[1, 0.001], [10, 0.01]], "decode": [[1, 0.02]]}))
    m = ProfileModel.from_file(p)
    assert m.prefill_s(5, 1) == pytest.approx(0.005)
    assert m.name == "p.json"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("{not json", "malformed"),
        ('{"prefill": []}', "malformed"),
        ('{"prefill": [], "decode": [[1, 1]]}', "empty"),
    ],
)
def test_profile_file_errors(tmp_path: Path, text: str, match: str) -> None:
    """Malformed profile files raise ConfigError saying what to fix."""
    p = tmp_path / "p.json"
    p.write_text(text)
    with pytest.raises(ConfigError, match=match):
        ProfileModel.from_file(p)


def test_profile_missing_file(tmp_path: Path) -> None:
    """A missing profile points at `tokenwatt plan calibrate`."""
    with pytest.raises(ConfigError, match="plan calibrate"):
        ProfileModel.from_file(tmp_path / "none.json")


def test_prefill_jitter_is_a_deterministic_pick_of_the_factors() -> None:
    """Each prefill size gets one of the factors, the same one every call; both are used."""
    plain = ProfileModel(prefill_table=((1.0, 0.001), (1001.0, 0.101)))
    jittered = ProfileModel(prefill_table=plain.prefill_table, prefill_jitter=(0.5, 2.0))
    factors = {
        round(jittered.prefill_s(n, 1, 7) / plain.prefill_s(n, 1, 7), 9) for n in range(1, 200)
    }
    assert factors == {0.5, 2.0}
    assert jittered.prefill_s(64, 2, 10) == jittered.prefill_s(64, 2, 10)
    assert jittered.decode_s(4, 100, 3) == plain.decode_s(4, 100, 3)


def test_seed_picks_the_jitter_factors_anew() -> None:
    """Another seed gives a size another factor (for some sizes), the same seed the same one;
    seed 0 keeps the sizes-only pick."""
    table = ((1.0, 0.001), (1001.0, 0.101))
    unseeded = ProfileModel(
        prefill_table=table, prefill_jitter=(0.5, 2.0), decode_jitter=(0.5, 2.0)
    )
    seeded = [replace(unseeded, seed=s) for s in (0, 7, 7, 8)]
    picks = [[m.prefill_s(n, 1, 7) for n in range(1, 100)] for m in seeded]
    decodes = [[m.decode_s(2, n, 3) for n in range(0, 100)] for m in seeded]
    assert picks[0] == [unseeded.prefill_s(n, 1, 7) for n in range(1, 100)]
    assert picks[1] == picks[2] and decodes[1] == decodes[2]
    assert picks[1] != picks[0] and picks[1] != picks[3]
    assert decodes[1] != decodes[0] and decodes[1] != decodes[3]


def test_simulator_seeds_a_profile_file_s_jitter(tmp_path: Path) -> None:
    """A profile loaded from a file samples its spread by PlanConfig.seed: another seed, other
    TTFTs; the same seed, the same."""
    from tokenwatt.plan.config import PlanConfig, ReplicaConfig
    from tokenwatt.plan.simulator import simulate
    from tokenwatt.workload.types import Request

    p = tmp_path / "p.json"
    p.write_text(
        json.dumps(
            {
                "prefill": [[1, 0.001], [1001, 0.101]],
                "decode": [[1, 0.001], [8, 0.002]],
                "prefill_jitter": [0.25, 0.5, 1.0, 4.0],
                "decode_jitter": [0.5, 1.5],
            }
        )
    )
    reqs = [Request(f"r{i}", 0.05 * i, 20 + 37 * i % 200, 3 + i % 5) for i in range(40)]

    def run(seed: int, mode: str = "fast") -> dict[str, Any]:
        cfg = PlanConfig(
            seed=seed, mode=mode, profile_path=str(p), replica=ReplicaConfig(max_batch=8)
        )
        return simulate(cfg, reqs).to_dict()

    first, again = run(3), run(3)
    assert (first["latency_s"], first["energy_j"]) == (again["latency_s"], again["energy_j"])
    assert len({run(s)["latency_s"]["ttft_p99"] for s in range(4)}) > 1
    # a seeded spread keeps fast and step mode in agreement
    fast, step = run(3), run(3, "step")
    assert fast["completed"] == step["completed"] == 40
    for k, v in fast["latency_s"].items():
        assert v == pytest.approx(step["latency_s"][k], rel=1e-9, abs=1e-12), k
    assert fast["energy_j"] == pytest.approx(step["energy_j"], rel=1e-9)


def test_prefill_jitter_must_be_positive() -> None:
    """A zero factor would make a free iteration: refused."""
    with pytest.raises(ConfigError, match="prefill_jitter"):
        ProfileModel(prefill_jitter=(1.0, 0.0))


def test_jittered_profile_fast_and_step_modes_agree() -> None:
    """Jitter is a function of the iteration's sizes, so both simulation modes still agree."""
    from tokenwatt.plan.config import PlanConfig, ReplicaConfig
    from tokenwatt.plan.simulator import simulate
    from tokenwatt.workload.types import Request

    model = ProfileModel(
        prefill_table=((1.0, 0.001), (1001.0, 0.101)), prefill_jitter=(0.5, 1.0, 1.5)
    )
    reqs = [Request(f"r{i}", 0.013 * i, 20 + 37 * i % 200, 3 + i % 9) for i in range(60)]
    results = [
        simulate(
            PlanConfig(mode=mode, replica=ReplicaConfig(max_batch=8, chunked_prefill=chunked)),
            reqs,
            execution=model,
        ).to_dict()
        for chunked in (False, True)
        for mode in ("fast", "step")
    ]
    for fast, step in (results[:2], results[2:]):
        assert fast["completed"] == step["completed"] == 60
        for k, v in fast["latency_s"].items():
            assert v == pytest.approx(step["latency_s"][k], rel=1e-9, abs=1e-12), k
        assert fast["energy_j"] == pytest.approx(step["energy_j"], rel=1e-9)


def test_shipped_profile_loads_by_name() -> None:
    """`tiny-cpu` ships with the package and loads by name, with positive step times."""
    assert "tiny-cpu" in shipped_profiles()
    model = ProfileModel.from_file("tiny-cpu")
    assert model.name == "tiny-cpu"
    assert model.prefill_s(128, 1) > 0 and model.decode_s(4, 400, 1) > 0


def test_existing_file_wins_over_a_shipped_name(tmp_path: Path) -> None:
    """A path that exists is the file, even when a shipped profile has a similar name."""
    p = tmp_path / "tiny-cpu"
    p.write_text("{}")
    assert resolve_profile(p) == p


def test_unknown_profile_name_lists_the_shipped_ones() -> None:
    """Neither a file nor a shipped name: the error names what ships."""
    with pytest.raises(ConfigError, match=r"shipped: .*tiny-cpu"):
        resolve_profile("tiny-gpu-nonexistent")


def test_serving_overhead_adds_per_emitted_token() -> None:
    """Prefill emits one token per request, each decode iteration one per request."""
    inner = ProfileModel(prefill_table=((1.0, 0.5),), decode_table=((1.0, 0.01),))
    m = ServingOverhead(inner, token_s=0.001)
    assert m.prefill_s(100, 3) == pytest.approx(0.5 + 0.003)
    assert m.decode_s(4, 0, 10) == pytest.approx(10 * (0.01 + 0.004))


@pytest.mark.parametrize("model", [RooflineModel(), ProfileModel()])
def test_models_satisfy_protocol(model: ExecutionModel) -> None:
    """Both models are ExecutionModels whose times grow with the work."""
    assert isinstance(model, ExecutionModel)
    assert model.decode_s(8, 1000, 10) > model.decode_s(8, 1000, 1) > 0
    assert model.prefill_s(4000, 1) >= model.prefill_s(10, 1) > 0


@pytest.mark.parametrize("elapsed", [1e-4, 0.0071, 0.05, 0.3337, 1.0, 2.5, 100.0])
def test_decode_steps_until_matches_brute_force_on_growing_steps(elapsed: float) -> None:
    """On the roofline (steps slow down as the context grows) the shortcut equals a scan."""
    m = RooflineModel()
    batch, ctx, cap = 64, 300_000, 200
    expected = next((j for j in range(1, cap + 1) if m.decode_s(batch, ctx, j) >= elapsed), cap)
    assert decode_steps_until(m, batch, ctx, elapsed, cap) == expected


def test_decode_jitter_run_equals_its_single_iterations() -> None:
    """A run of k jittered decode iterations costs what its k single iterations cost, each at
    its own context; both factors are used and each call is repeatable."""
    plain = ProfileModel(decode_table=((1.0, 0.002), (8.0, 0.004)), decode_s_per_context_token=1e-6)
    model = ProfileModel(
        decode_table=plain.decode_table,
        decode_s_per_context_token=1e-6,
        decode_jitter=(0.5, 3.0),
    )
    batch, ctx, k = 4, 100, 50
    singles = [model.decode_s(batch, ctx + batch * i, 1) for i in range(k)]
    assert model.decode_s(batch, ctx, k) == pytest.approx(sum(singles), rel=1e-12)
    contexts = [ctx + batch * i for i in range(k)]
    factors = {
        round(model.decode_s(batch, c, 1) / plain.decode_s(batch, c, 1), 9) for c in contexts
    }
    assert factors == {0.5, 3.0}
    assert model.decode_s(batch, ctx, k) == model.decode_s(batch, ctx, k)
    assert model.prefill_s(100, 1) == plain.prefill_s(100, 1)


@pytest.mark.parametrize("elapsed", [1e-4, 0.0071, 0.05, 0.3337, 1.0, 2.5, 100.0])
def test_decode_steps_until_matches_brute_force_with_jitter(elapsed: float) -> None:
    """With decode jitter (a slow first iteration breaks the shortcut's bound) the search still
    finds the first boundary at or after ``elapsed``."""
    m = ProfileModel(decode_table=((1.0, 0.01),), decode_jitter=(0.2, 0.5, 1.0, 8.0))
    batch, ctx, cap = 3, 40, 300
    expected = next((j for j in range(1, cap + 1) if m.decode_s(batch, ctx, j) >= elapsed), cap)
    assert decode_steps_until(m, batch, ctx, elapsed, cap) == expected


def test_decode_jittered_profile_fast_and_step_modes_agree() -> None:
    """Decode jitter hangs on each iteration's batch and context, so both modes still agree."""
    from tokenwatt.plan.config import PlanConfig, ReplicaConfig
    from tokenwatt.plan.simulator import simulate
    from tokenwatt.workload.types import Request

    model = ProfileModel(
        prefill_table=((1.0, 0.001), (1001.0, 0.101)),
        decode_table=((1.0, 0.004), (8.0, 0.01)),
        prefill_jitter=(0.5, 1.5),
        decode_jitter=(0.3, 0.7, 1.0, 2.0),
    )
    reqs = [Request(f"r{i}", 0.013 * i, 20 + 37 * i % 200, 3 + i % 29) for i in range(80)]
    for chunked in (False, True):
        fast, step = (
            simulate(
                PlanConfig(mode=mode, replica=ReplicaConfig(max_batch=8, chunked_prefill=chunked)),
                reqs,
                execution=model,
            ).to_dict()
            for mode in ("fast", "step")
        )
        assert fast["completed"] == step["completed"] == 80
        assert fast["sim"]["iterations"] < step["sim"]["iterations"]
        for k, v in fast["latency_s"].items():
            assert v == pytest.approx(step["latency_s"][k], rel=1e-9, abs=1e-12), k
        assert fast["energy_j"] == pytest.approx(step["energy_j"], rel=1e-9)
