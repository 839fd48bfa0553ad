"""Hardware and power presets: cited figures, batch-dependent decode power, clear errors."""

from __future__ import annotations

import math

import pytest

from tokenwatt.errors import ConfigError
from tokenwatt.plan.hardware import (
    POWER_PRESETS,
    AcceleratorSpec,
    PowerModel,
    accelerator_preset,
    model_preset,
    power_preset,
)


def test_presets_carry_datasheet_figures() -> None:
    """H200 has 141 GB at 4.8 TB/s; A100 312 TFLOP/s at 400 W."""
    h200 = accelerator_preset("H200-SXM")
    assert (h200.memory_bytes, h200.bandwidth_bytes_per_s) == (141e9, 4.8e12)
    a100 = accelerator_preset("a100-sxm-80gb")
    assert (a100.flops_per_s, a100.tdp_w) == (312e12, 400.0)


def test_power_presets_follow_splitwisesim() -> None:
    """H100 idle 75 W and prefill 700 W; A100 idle 63, prefill 400, decode 250 W."""
    h100 = power_preset("H100-SXM")
    assert (h100.idle_w, h100.prefill_w) == (75.0, 700.0)
    a100 = power_preset("A100-SXM-80GB")
    assert (a100.idle_w, a100.prefill_w, a100.decode_w(64)) == (63.0, 400.0, 250.0)
    assert all(p.label == f"preset:{name}" for name, p in POWER_PRESETS.items())


def test_node_preset_folds_host_power_into_every_state() -> None:
    """H100-SXM-node adds 275 W of host per GPU (DGX-H100 idle share) to each state."""
    node = power_preset("H100-SXM-node")
    assert node.scope == "node"
    eff = node.with_host()
    assert (eff.idle_w, eff.prefill_w, eff.decode_w(1), eff.decode_w(128)) == (
        350.0,
        975.0,
        575.0,
        875.0,
    )
    assert eff.host_w == 0.0
    assert PowerModel().with_host() == PowerModel()


def test_decode_power_rises_with_log_batch() -> None:
    """300 W at batch 1, 600 W at 128 and beyond, log2-linear between (ML.ENERGY v3 ends)."""
    p = PowerModel()
    assert p.decode_w(1) == 300.0
    assert p.decode_w(8) == pytest.approx(300.0 + 300.0 * 3 / 7)
    assert p.decode_w(128) == 600.0
    assert p.decode_w(512) == 600.0


@pytest.mark.parametrize("lookup", [accelerator_preset, power_preset, model_preset])
def test_unknown_preset_names_choices(lookup: object) -> None:
    """An unknown name raises ConfigError listing what exists."""
    assert callable(lookup)
    with pytest.raises(ConfigError, match="choose one of"):
        lookup("nope")


def test_bad_specs_are_rejected() -> None:
    """Negative power, non-positive bandwidth and a decode range upside down are refused."""
    with pytest.raises(ConfigError, match="idle_w"):
        PowerModel(idle_w=-1.0)
    with pytest.raises(ConfigError, match="bandwidth"):
        AcceleratorSpec(bandwidth_bytes_per_s=0.0)
    with pytest.raises(ConfigError, match="decode_max_w"):
        PowerModel(decode_min_w=500.0, decode_max_w=400.0)
    with pytest.raises(ConfigError, match="memory_bytes"):
        AcceleratorSpec(memory_bytes=math.nan)
