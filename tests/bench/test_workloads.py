"""Bench workloads by name: synthetic presets, agentic sessions, traces, clamping."""

from __future__ import annotations

from pathlib import Path

import pytest

from tokenwatt.bench.workloads import WorkloadOptions, build_workload
from tokenwatt.errors import ConfigError, TraceError


def test_chat_workload_has_the_requested_count() -> None:
    """chat with 5 requests yields 5 requests, deterministic by seed."""
    a = list(build_workload(WorkloadOptions("chat", num_requests=5)).requests)
    b = list(build_workload(WorkloadOptions("chat", num_requests=5)).requests)
    assert len(a) == 5 and a == b


def test_clamping_caps_tokens_and_drops_cut_blocks() -> None:
    """max_input_tokens=32 with 16-token blocks keeps at most 2 prefix block ids."""
    opts = WorkloadOptions(
        "prefix-share", num_requests=20, max_input_tokens=32, max_output_tokens=3
    )
    for r in build_workload(opts).requests:
        assert r.input_tokens <= 32 and r.output_tokens <= 3
        assert len(r.prefix_block_ids) <= r.input_tokens // r.block_tokens


def test_agentic_workload_groups_turns_into_sessions() -> None:
    """2 sessions x 3 turns give 6 requests over 2 session ids with turns 0..2."""
    reqs = list(build_workload(WorkloadOptions("agentic", sessions=2, turns=3)).requests)
    assert sorted({r.session_id for r in reqs}) == ["agentic-0", "agentic-1"]
    assert sorted(r.turn for r in reqs) == [0, 0, 1, 1, 2, 2]


def test_trace_workload_reads_the_shared_azure_trace(shared_traces: Path) -> None:
    """The Azure conversation trace yields the first 3 rows' token counts."""
    opts = WorkloadOptions("trace", num_requests=3, trace=shared_traces / "azure_llm_2023_conv.csv")
    workload = build_workload(opts)
    reqs = list(workload.requests)
    assert [(r.input_tokens, r.output_tokens) for r in reqs] == [(374, 44), (396, 109), (879, 55)]
    assert workload.stats()["requests"] == 3


def test_unknown_workload_names_the_choices() -> None:
    """An unknown workload is a ConfigError listing the valid names."""
    with pytest.raises(ConfigError, match="chat, reasoning, agentic, prefix-share, trace"):
        WorkloadOptions("poetry")


def test_missing_trace_is_a_trace_error(tmp_path: Path) -> None:
    """A trace path that does not exist is a TraceError."""
    with pytest.raises(TraceError):
        build_workload(WorkloadOptions("trace", trace=tmp_path / "none.csv"))


def test_byte_tokenizer_gives_exact_prompt_lengths() -> None:
    """With tokenwatt serve's byte tokenizer, every prompt encodes to exactly input_tokens."""
    from tokenwatt.engine.tokenizer import ByteTokenizer

    opts = WorkloadOptions("prefix-share", num_requests=5, max_input_tokens=64, tokenizer="bytes")
    workload = build_workload(opts)
    for r in workload.requests:
        assert r.prompt is not None
        assert len(ByteTokenizer().encode(r.prompt)) == r.input_tokens
    assert workload.stats()["token_counts"] == "exact"


def test_without_tokenizer_counts_are_stated_as_approximate() -> None:
    """No tokenizer: prompts are filled and the stats say the counts are approximate."""
    workload = build_workload(WorkloadOptions("chat", num_requests=2))
    assert all(r.prompt for r in workload.requests)
    assert workload.stats()["token_counts"].startswith("approximate")


def test_salt_changes_every_prompt() -> None:
    """Two salts give different prompts for the same requests."""
    a = build_workload(WorkloadOptions("chat", num_requests=2, salt="a")).requests
    b = build_workload(WorkloadOptions("chat", num_requests=2, salt="b")).requests
    assert [r.prompt for r in a] != [r.prompt for r in b]


def _azure(path: Path, rows: list[tuple[int, int]]) -> Path:
    lines = ["TIMESTAMP,ContextTokens,GeneratedTokens"]
    lines += [f"2023-11-16 18:15:46.{i},{inp},{out}" for i, (inp, out) in enumerate(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_trace_prompts_fit_the_endpoint_context(tmp_path: Path) -> None:
    """With max_model_len 8192, trace prompts are cut so prompt + output fits, and counted."""
    trace = _azure(tmp_path / "t.csv", [(9000, 4), (100, 4), (8190, 4), (8188, 4)])
    opts = WorkloadOptions("trace", num_requests=10, trace=trace, max_model_len=8192)
    workload = build_workload(opts)
    reqs = list(workload.requests)
    assert [(r.input_tokens, r.output_tokens) for r in reqs] == [
        (8188, 4),
        (100, 4),
        (8188, 4),
        (8188, 4),
    ]
    context = workload.stats()["context"]
    assert (context["limit"], context["requests"], context["prompts_clamped"]) == (
        "max_model_len",
        4,
        2,
    )


def test_explicit_max_input_tokens_wins_over_the_context(tmp_path: Path) -> None:
    """--max-input-tokens 50 caps prompts whatever max_model_len says, and is reported."""
    trace = _azure(tmp_path / "t.csv", [(9000, 4), (40, 4), (60, 4)])
    opts = WorkloadOptions(
        "trace", trace=trace, max_input_tokens=50, max_model_len=8192, max_output_tokens=3
    )
    workload = build_workload(opts)
    assert [(r.input_tokens, r.output_tokens) for r in workload.requests] == [
        (50, 3),
        (40, 3),
        (50, 3),
    ]
    context = workload.stats()["context"]
    assert (context["limit"], context["prompts_clamped"]) == ("max_input_tokens", 2)


def test_synthetic_workload_states_an_unknown_context() -> None:
    """Without max_model_len or a cap nothing is clamped, and the stats say the limit is unknown."""
    workload = build_workload(WorkloadOptions("chat", num_requests=3))
    context = workload.stats()["context"]
    assert (context["limit"], context["requests"], context["prompts_clamped"]) == (None, 3, 0)


def test_synthetic_workload_fits_a_small_context() -> None:
    """A 64-token context: every chat request fits, the output kept where it alone fits."""
    opts = WorkloadOptions("chat", num_requests=20, max_model_len=64, max_output_tokens=16)
    workload = build_workload(opts)
    reqs = list(workload.requests)
    assert all(r.input_tokens + r.output_tokens <= 64 for r in reqs)
    assert all(r.output_tokens <= 16 for r in reqs)
    clamped = workload.stats()["context"]["prompts_clamped"]
    # The chat preset's prompts (median ~1,000 tokens) all exceed 48.
    assert clamped == sum(1 for r in reqs if r.input_tokens == 64 - r.output_tokens) == 20
