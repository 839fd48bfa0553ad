"""Fitting request lengths to the endpoint: the clamp arithmetic and its counts."""

from __future__ import annotations

import pytest

from tokenwatt.bench.lengths import LengthFitter, LengthLimits, describe_fit, fit_lengths
from tokenwatt.errors import ConfigError
from tokenwatt.workload.types import Request


@pytest.mark.parametrize(
    ("inp", "out", "expected"),
    [
        (100, 50, (100, 50)),  # fits: unchanged
        (8142, 50, (8142, 50)),  # exactly 8192: unchanged
        (9000, 50, (8142, 50)),  # prompt cut so prompt + output = 8192, output kept
        (8143, 50, (8142, 50)),  # one token over
        (5, 8191, (1, 8191)),  # output fills all but one token: the prompt keeps 1
        (5, 8192, (1, 8191)),  # output alone does not fit: 1 prompt token, output 8191
        (20000, 20000, (1, 8191)),
    ],
)
def test_context_clamp_keeps_the_output_and_cuts_the_prompt(
    inp: int, out: int, expected: tuple[int, int]
) -> None:
    """With max_model_len 8192 the prompt shrinks so prompt + output fits."""
    assert fit_lengths(inp, out, LengthLimits(max_model_len=8192)) == expected


def test_output_cap_applies_before_the_context() -> None:
    """--max-output-tokens 100 first, then the prompt fits the rest of 8192."""
    limits = LengthLimits(max_output_tokens=100, max_model_len=8192)
    assert fit_lengths(9000, 500, limits) == (8092, 100)


def test_explicit_input_cap_wins_over_the_context() -> None:
    """An explicit max_input_tokens caps the prompt and max_model_len is not used."""
    limits = LengthLimits(max_input_tokens=8000, max_model_len=8192)
    assert fit_lengths(9000, 500, limits) == (8000, 500)
    assert limits.binding == "max_input_tokens"


def test_unknown_context_leaves_lengths_alone() -> None:
    """No max_model_len and no input cap: lengths are as given."""
    assert fit_lengths(50000, 3, LengthLimits()) == (50000, 3)
    assert LengthLimits().binding is None


@pytest.mark.parametrize(
    "kwargs",
    [{"max_model_len": 1}, {"max_input_tokens": 0}, {"max_output_tokens": -1}],
)
def test_limits_refuse_impossible_values(kwargs: dict[str, int]) -> None:
    """A context below 2 tokens or a cap below 1 is a ConfigError."""
    with pytest.raises(ConfigError):
        LengthLimits(**kwargs)


def test_fitter_counts_clamped_prompts_and_outputs() -> None:
    """Of 4 requests on a 100-token context, 2 prompts are cut, 1 output alone did not fit."""
    fitter = LengthFitter(LengthLimits(max_model_len=100))
    reqs = [
        Request("a", input_tokens=10, output_tokens=10),
        Request("b", input_tokens=95, output_tokens=10),
        Request("c", input_tokens=90, output_tokens=10),
        Request("d", input_tokens=50, output_tokens=150),
    ]
    fitted = list(fitter.fit_all(reqs))
    assert [(r.input_tokens, r.output_tokens) for r in fitted] == [
        (10, 10),
        (90, 10),
        (90, 10),
        (1, 99),
    ]
    assert fitted[0] is reqs[0] and fitted[2] is reqs[2]
    assert fitter.stats() == {
        "limit": "max_model_len",
        "max_input_tokens": None,
        "max_model_len": 100,
        "requests": 4,
        "prompts_clamped": 2,
        "outputs_clamped": 1,
    }


def test_fitter_drops_prefix_blocks_cut_off_by_the_prompt() -> None:
    """A 64-token prompt of 16-token blocks cut to 40 keeps the 3 blocks it still reaches
    (2 whole, 1 partial), as a trace's scaled prompts do; cut to 32, exactly 2."""
    r = Request(
        "a", input_tokens=64, output_tokens=4, prefix_block_ids=(1, 2, 3, 4), block_tokens=16
    )
    fitted = LengthFitter(LengthLimits(max_model_len=44)).fit(r)
    assert (fitted.input_tokens, fitted.prefix_block_ids) == (40, (1, 2, 3))
    fitted = LengthFitter(LengthLimits(max_input_tokens=32)).fit(r)
    assert (fitted.input_tokens, fitted.prefix_block_ids) == (32, (1, 2))


def test_fitter_keeps_prefix_blocks_when_only_the_output_is_capped() -> None:
    """A 1000-token prompt of 512-token blocks (the last one partial) keeps both blocks when
    --max-output-tokens cuts only its output: shared prefix must stay shared."""
    r = Request("a", input_tokens=1000, output_tokens=300, prefix_block_ids=(7, 8))
    fitted = LengthFitter(LengthLimits(max_output_tokens=100)).fit(r)
    assert (fitted.input_tokens, fitted.output_tokens) == (1000, 100)
    assert fitted.prefix_block_ids == (7, 8)
    fitted = LengthFitter(LengthLimits(max_output_tokens=100, max_model_len=4096)).fit(r)
    assert (fitted.input_tokens, fitted.output_tokens, fitted.prefix_block_ids) == (
        1000,
        100,
        (7, 8),
    )


def test_unknown_context_is_stated() -> None:
    """Without a limit the stats say it was unknown and nothing was clamped."""
    fitter = LengthFitter(LengthLimits())
    fitter.fit(Request("a", input_tokens=10**6, output_tokens=1))
    stats = fitter.stats()
    assert (stats["limit"], stats["prompts_clamped"]) == (None, 0)
    assert stats["note"].startswith("context limit unknown")
    assert describe_fit(stats) == ("max_model_len", "unknown: prompts not clamped")


def test_describe_fit_names_the_binding_limit() -> None:
    """The summary line names the limit and the count: 'N of M'."""
    context = LengthFitter(LengthLimits(max_model_len=8192))
    for r in [Request(str(i), input_tokens=9000 if i < 37 else 10) for i in range(500)]:
        context.fit(r)
    assert describe_fit(context.stats()) == (
        "prompts clamped to fit max_model_len 8192",
        "37 of 500",
    )
    explicit = LengthFitter(LengthLimits(max_input_tokens=512))
    explicit.fit(Request("a", input_tokens=600))
    assert describe_fit(explicit.stats()) == ("prompts clamped to --max-input-tokens 512", "1 of 1")
