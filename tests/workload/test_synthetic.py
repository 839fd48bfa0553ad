"""Synthetic chat/reasoning/prefix-share generators and the workload presets."""

from __future__ import annotations

import itertools

import pytest

from tokenwatt.errors import ConfigError
from tokenwatt.workload.agentic import AgenticSpec
from tokenwatt.workload.arrivals import Arrivals
from tokenwatt.workload.blocks import SHARED, UNIQUE, split_block_id
from tokenwatt.workload.distributions import LogNormal
from tokenwatt.workload.synthetic import (
    SyntheticSpec,
    generate,
    prefix_blocks,
    synthetic_requests,
    workload_spec,
)

FIXED_100 = LogNormal(median=100.0)


def test_same_seed_same_requests_other_seed_differs() -> None:
    """A seed fixes the workload; another seed changes it."""
    spec = SyntheticSpec(num_requests=20, arrivals=Arrivals("poisson", 5.0))
    again = list(synthetic_requests(spec))
    assert list(synthetic_requests(spec)) == again
    other = list(synthetic_requests(SyntheticSpec(num_requests=20, seed=1)))
    assert [r.input_tokens for r in other] != [r.input_tokens for r in again]


def test_requests_are_numbered_and_ordered_by_arrival() -> None:
    """Ids count from 0 and arrivals never decrease."""
    reqs = list(
        synthetic_requests(SyntheticSpec(num_requests=5, arrivals=Arrivals("constant", 2.0)))
    )
    assert [r.request_id for r in reqs] == [f"chat-{i}" for i in range(5)]
    assert [r.arrival_s for r in reqs] == [0.0, 0.5, 1.0, 1.5, 2.0]


def test_no_prefix_share_means_no_shared_blocks() -> None:
    """With prefix_share 0 no block id appears in two requests."""
    reqs = list(synthetic_requests(SyntheticSpec(num_requests=50)))
    ids = [b for r in reqs for b in r.prefix_block_ids]
    assert len(ids) == len(set(ids))
    assert all(split_block_id(b)[0] == UNIQUE for b in ids)


def test_prefix_share_rounds_down_to_whole_shared_blocks() -> None:
    """share 0.5 of 100 tokens with 16-token blocks: 3 shared blocks, then 4 unique ones."""
    spec = SyntheticSpec(num_requests=3, input_tokens=FIXED_100, prefix_share=0.5)
    reqs = list(synthetic_requests(spec))
    assert all(len(r.prefix_block_ids) == 7 for r in reqs)
    assert (
        reqs[0].prefix_block_ids[:3] == reqs[1].prefix_block_ids[:3] == reqs[2].prefix_block_ids[:3]
    )
    tails = [set(r.prefix_block_ids[3:]) for r in reqs]
    assert tails[0].isdisjoint(tails[1]) and tails[1].isdisjoint(tails[2])


def test_prefix_groups_do_not_share_blocks() -> None:
    """Requests of different prefix groups have different shared blocks."""
    spec = SyntheticSpec(num_requests=40, input_tokens=FIXED_100, prefix_share=1.0, num_prefixes=3)
    groups = {split_block_id(r.prefix_block_ids[0])[1] for r in synthetic_requests(spec)}
    assert groups == {0, 1, 2}


def test_partial_last_block_is_unique_even_inside_the_shared_prefix() -> None:
    """A fully shared 40-token prompt has 2 shared blocks and a unique partial one."""
    ids = prefix_blocks(40, 40, group=0, owner=9, block_tokens=16)
    assert [split_block_id(b) for b in ids] == [(SHARED, 0, 0), (SHARED, 0, 1), (UNIQUE, 9, 2)]


def test_reasoning_preset_has_long_outputs() -> None:
    """The reasoning preset's answers are at least 256 tokens and longer than its prompts."""
    reqs = list(generate(workload_spec("reasoning", num_requests=30)))
    assert min(r.output_tokens for r in reqs) >= 256
    assert sum(r.output_tokens for r in reqs) > sum(r.input_tokens for r in reqs)


def test_workload_spec_presets_and_overrides() -> None:
    """Presets exist for each name and keyword overrides replace fields."""
    assert workload_spec("prefix").prefix_share == 0.5  # type: ignore[union-attr]
    assert workload_spec("chat", num_requests=7).num_requests == 7  # type: ignore[union-attr]
    assert isinstance(workload_spec("agentic", turns=3), AgenticSpec)


def test_workload_spec_unknown_name_or_field() -> None:
    """An unknown name or field raises ConfigError naming it."""
    with pytest.raises(ConfigError, match="unknown workload 'video'"):
        workload_spec("video")
    with pytest.raises(ConfigError, match="colour"):
        workload_spec("chat", colour=1)


def test_generate_streams_lazily() -> None:
    """generate() is lazy: taking 3 of a million requests is instant and yields 3."""
    first = list(itertools.islice(generate(SyntheticSpec(num_requests=1_000_000)), 3))
    assert len(first) == 3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_requests": 0}, "num_requests must be >= 1"),
        ({"prefix_share": 1.5}, r"prefix_share must be in \[0, 1\]"),
        ({"num_prefixes": 0}, "num_prefixes must be >= 1"),
        ({"block_tokens": 0}, "block_tokens must be >= 1"),
    ],
)
def test_invalid_spec_raises(kwargs: dict[str, float], message: str) -> None:
    """Bad spec fields raise ConfigError naming them."""
    with pytest.raises(ConfigError, match=message):
        SyntheticSpec(**kwargs)  # type: ignore[arg-type]
