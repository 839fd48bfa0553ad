"""Workload recipes from flat options: trace or synthetic, and the rules between the options."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from tokenwatt.errors import ConfigError
from tokenwatt.plan.workloads import (
    WORKLOADS,
    SyntheticWorkload,
    TraceWorkload,
    WorkloadOptions,
)
from tokenwatt.workload import Arrivals, TraceOptions


def test_synthetic_recipe_carries_the_options() -> None:
    """A chat workload becomes the chat generator with its count, Poisson rate and seed."""
    recipe = WorkloadOptions(num_requests=30, rate_per_s=2.5, seed=7).recipe()
    assert recipe == SyntheticWorkload(
        "chat",
        (("num_requests", 30), ("arrivals", Arrivals("poisson", 2.5)), ("seed", 7)),
    )


def test_prefix_share_name_and_alias_are_one_generator() -> None:
    """bench's name prefix-share and the alias prefix open the same generator."""
    bench = WorkloadOptions(workload="prefix-share", prefix_share=0.25).recipe()
    alias = WorkloadOptions(workload="prefix", prefix_share=0.25).recipe()
    assert bench == alias
    assert isinstance(bench, SyntheticWorkload)
    assert bench.name == "prefix"
    assert dict(bench.params)["prefix_share"] == 0.25


def test_agentic_counts_sessions_as_a_tenth_of_the_requests() -> None:
    """Agentic runs one session per ten requests, at least one."""
    many = WorkloadOptions(workload="agentic", num_requests=95, rate_per_s=3.0).recipe()
    assert many == SyntheticWorkload(
        "agentic",
        (("num_sessions", 9), ("session_arrivals", Arrivals("poisson", 3.0)), ("seed", 0)),
    )
    few = WorkloadOptions(workload="agentic", num_requests=4).recipe()
    assert isinstance(few, SyntheticWorkload)
    assert dict(few.params)["num_sessions"] == 1


def test_trace_recipe_reads_the_file_with_limit_and_speedup(shared_traces: Path) -> None:
    """With a trace the synthetic choices are ignored and the trace options are kept."""
    path = str(shared_traces / "azure_llm_2023_code.csv")
    recipe = WorkloadOptions(trace=path, workload="nope", limit=5, speedup=2.0).recipe()
    assert recipe == TraceWorkload(path, "auto", TraceOptions(limit=5, speedup=2.0))
    assert len(list(recipe)) == 5


def test_recipes_pickle_for_worker_processes() -> None:
    """A recipe survives pickling (it travels to sweep workers), equal to itself."""
    recipe = WorkloadOptions(workload="reasoning", num_requests=3).recipe()
    again = pickle.loads(pickle.dumps(recipe))
    assert again == recipe
    assert [r.request_id for r in again] == [r.request_id for r in recipe]


def test_workload_names_match_bench() -> None:
    """The names offered are bench's four."""
    assert WORKLOADS == ("chat", "reasoning", "agentic", "prefix-share")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"prefix_share": 1.5}, "--prefix-share must be in [0, 1] (a fraction), got 1.5"),
        ({"prefix_share": -0.1}, "--prefix-share must be in [0, 1] (a fraction), got -0.1"),
        (
            {"trace": "t.csv", "prefix_share": 0.5},
            "--prefix-share applies to synthetic workloads; drop it with a trace",
        ),
        (
            {"workload": "nope"},
            "unknown workload 'nope'; use one of chat, reasoning, agentic, prefix-share "
            "(or pass a trace file)",
        ),
        ({"rate_per_s": 0.0}, "arrival rate_per_s must be > 0, got 0.0"),
        (
            {"workload": "agentic", "prefix_share": 0.5},
            "--prefix-share applies to chat, reasoning and prefix-share; agentic sessions "
            "share their system prefix and history by construction",
        ),
    ],
)
def test_bad_options_are_refused_on_construction(options: dict[str, object], message: str) -> None:
    """Each conflicting or out-of-range choice is a ConfigError naming it."""
    with pytest.raises(ConfigError) as err:
        WorkloadOptions(**options)  # type: ignore[arg-type]
    assert str(err.value) == message
