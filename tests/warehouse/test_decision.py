"""Load-or-recompute decision."""

from __future__ import annotations

import pytest

from tokenwatt.errors import ConfigError
from tokenwatt.warehouse.decision import DecisionConfig, LoadDecider


def test_loads_everything_before_any_prefill_measurement() -> None:
    """With no prefill timing, every available block is loaded."""
    assert LoadDecider().blocks_to_load(["disk"] * 3, block_tokens=256) == 3


def test_cheap_tier_loaded_expensive_tier_not() -> None:
    """Blocks in a tier faster than prefill load; blocks after them in a slower tier do not."""
    d = LoadDecider(DecisionConfig(ewma_alpha=1.0))
    d.observe_prefill(tokens=100, seconds=0.1)  # 1 ms/token -> 0.1 s per 100-token block
    d.observe_load("dram", blocks=1, nbytes=1, seconds=0.01)
    d.observe_load("redis", blocks=1, nbytes=1, seconds=0.5)
    assert d.blocks_to_load(["dram", "dram", "redis", "redis"], block_tokens=100) == 2


def test_slow_block_between_fast_ones_is_worth_it_overall() -> None:
    """A loss on one block is accepted when the blocks after it more than make up for it."""
    d = LoadDecider(DecisionConfig(ewma_alpha=1.0))
    d.observe_prefill(tokens=100, seconds=0.1)
    d.observe_load("dram", blocks=1, nbytes=1, seconds=0.0)
    d.observe_load("redis", blocks=1, nbytes=1, seconds=0.15)
    # saved: 0.1, 0.05, 0.15, 0.25 -> best at 4 blocks
    assert d.blocks_to_load(["dram", "redis", "dram", "dram"], block_tokens=100) == 4


def test_prefill_windows_weighted_by_alpha() -> None:
    """Two windows at one position, weights 0.5 and 1: (0.5 x 1 ms + 3 ms) / 1.5 per token."""
    d = LoadDecider(DecisionConfig(ewma_alpha=0.5))
    d.observe_prefill(tokens=1000, seconds=1.0, energy_j=10.0, energy_source="rapl")
    d.observe_prefill(tokens=1000, seconds=3.0, energy_j=30.0, energy_source="rapl")
    assert d.prefill_s_per_token == pytest.approx(0.0035 / 1.5)
    joules, basis = d.energy_saved(100)
    assert joules == pytest.approx(100 * 0.035 / 1.5)
    assert basis.startswith("estimated:prefill-energy-model (")
    assert basis.endswith("; from rapl)")


def test_no_energy_estimate_without_a_meter() -> None:
    """Prefill timings alone give no joules, and the label says why."""
    d = LoadDecider()
    d.observe_prefill(tokens=10, seconds=1.0)
    assert d.energy_saved(10) == (
        None,
        "estimated:prefill-energy-model (no prefill energy measured yet)",
    )


def test_later_blocks_worth_more() -> None:
    """With recompute cost growing by position, a prefix whose first blocks cost more to load than
    to recompute is still loaded when its later blocks make up for them."""
    d = LoadDecider(DecisionConfig(ewma_alpha=0.1))
    for start, tokens in ((0, 100), (1000, 100), (5000, 50)):  # 0.1 ms/token + 1 us per position
        d.observe_prefill(
            tokens, 1e-4 * tokens + 1e-6 * (tokens * start + tokens * (tokens - 1) / 2), start=start
        )
    d.observe_load("disk", blocks=1, nbytes=1, seconds=0.03)
    # block i of 100 tokens: 0.01 + 0.01 i + 0.00495 s to recompute, 0.03 s to load
    assert d.blocks_to_load(["disk"] * 2, block_tokens=100) == 0
    assert d.blocks_to_load(["disk"] * 5, block_tokens=100) == 5


def test_bandwidth_tracked_per_tier() -> None:
    """Observed loads give bytes per second and seconds per block per tier."""
    d = LoadDecider(DecisionConfig(ewma_alpha=1.0))
    d.observe_load("disk", blocks=4, nbytes=4_000_000, seconds=0.002)
    assert d.bandwidth_bytes_per_s("disk") == pytest.approx(2e9)
    assert d.load_s_per_block("disk") == pytest.approx(0.0005)
    assert d.bandwidth_bytes_per_s("redis") is None


def test_disabled_decision_loads_all() -> None:
    """enabled=False loads every block whatever the measurements."""
    d = LoadDecider(DecisionConfig(enabled=False))
    d.observe_prefill(tokens=1, seconds=1e-9)
    d.observe_load("disk", blocks=1, nbytes=1, seconds=10.0)
    assert d.blocks_to_load(["disk"], block_tokens=1) == 1


def test_config_validated() -> None:
    """alpha outside (0, 1] is rejected."""
    with pytest.raises(ConfigError, match="ewma_alpha"):
        DecisionConfig(ewma_alpha=0.0)


def test_a_tier_judged_too_slow_is_retried_now_and_then() -> None:
    """One slow load (a cold disk index, a hiccup) must not shut a tier out for good: after
    `explore_every` refusals the next decision loads everything, to measure again."""
    d = LoadDecider(DecisionConfig(ewma_alpha=1.0, explore_every=3))
    d.observe_prefill(tokens=100, seconds=0.1)
    d.observe_load("disk", blocks=1, nbytes=1, seconds=0.5)  # a cold first load
    decisions = [d.blocks_to_load(["disk"] * 2, block_tokens=100) for _ in range(4)]
    assert decisions == [0, 0, 0, 2]
    d.observe_load("disk", blocks=2, nbytes=2, seconds=0.002)  # the re-measurement: fast
    assert d.blocks_to_load(["disk"] * 2, block_tokens=100) == 2


def test_exploration_can_be_turned_off() -> None:
    """explore_every=0 keeps refusing a tier measured as too slow."""
    d = LoadDecider(DecisionConfig(ewma_alpha=1.0, explore_every=0))
    d.observe_prefill(tokens=100, seconds=0.1)
    d.observe_load("disk", blocks=1, nbytes=1, seconds=0.5)
    assert [d.blocks_to_load(["disk"], block_tokens=100) for _ in range(20)] == [0] * 20


def test_explore_every_must_not_be_negative() -> None:
    """A negative exploration period is a ConfigError."""
    with pytest.raises(ConfigError, match="explore_every"):
        DecisionConfig(explore_every=-1)


def test_loads_all_before_measurement_and_when_loading_is_cheaper() -> None:
    """loads_all is true with nothing measured, and then exactly while one block of the tier
    loads faster than the cheapest of its blocks (the one at ``start``) recomputes."""
    d = LoadDecider(DecisionConfig(ewma_alpha=1.0))
    assert d.loads_all("redis", start=0, block_tokens=100)
    d.observe_prefill(tokens=100, seconds=0.1)  # 0.1 s per 100-token block
    assert d.loads_all("redis", start=0, block_tokens=100)  # load cost not measured yet
    d.observe_load("redis", blocks=1, nbytes=1, seconds=0.05)
    assert d.loads_all("redis", start=0, block_tokens=100)
    d.observe_load("redis", blocks=1, nbytes=1, seconds=0.2)
    assert not d.loads_all("redis", start=0, block_tokens=100)
    assert d.loads_all("dram", start=0, block_tokens=100)


def test_loads_all_checks_the_block_at_start() -> None:
    """With cost growing by position, a tier too slow for early blocks is fast enough for late
    ones: loads_all answers for the blocks from ``start`` on."""
    d = LoadDecider(DecisionConfig(ewma_alpha=0.5))  # two windows fit a + b x position exactly
    d.observe_prefill(tokens=100, seconds=0.1, start=0)  # 1 ms/token at position 0..99
    d.observe_prefill(tokens=100, seconds=0.3, start=1000)  # 3 ms/token at 1000..1099
    d.observe_load("redis", blocks=1, nbytes=1, seconds=0.2)
    assert d.recompute_s(0, 100) == pytest.approx(0.1)
    assert d.recompute_s(1000, 100) == pytest.approx(0.3)
    assert not d.loads_all("redis", start=0, block_tokens=100)
    assert d.loads_all("redis", start=1000, block_tokens=100)


def test_loads_all_when_decision_disabled() -> None:
    """With the decision off everything loads, however slow the tier."""
    d = LoadDecider(DecisionConfig(enabled=False))
    d.observe_prefill(tokens=100, seconds=0.001)
    d.observe_load("redis", blocks=1, nbytes=1, seconds=9.0)
    assert d.loads_all("redis", start=0, block_tokens=100)
