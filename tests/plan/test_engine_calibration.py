"""Calibrating the engine by name: options checked before any engine loads, specs, limits."""

from __future__ import annotations

from pathlib import Path

import pytest

from tokenwatt.errors import ConfigError
from tokenwatt.plan.calibrate import CalibrationSpec
from tokenwatt.plan.engine_calibration import (
    QUICK_ISOLATED_SPEC,
    EngineCalibration,
    calibrate_engine,
)
from tokenwatt.plan.served import ServedCalibrationSpec


def test_served_spec_carries_the_workload_options() -> None:
    """The served workload is the options' requests, rate, seed and idle time."""
    options = EngineCalibration(requests=60, rate_per_s=8.0, seed=3, idle_s=1.5)
    assert options.served_spec() == ServedCalibrationSpec(
        requests=60, rate_per_s=8.0, seed=3, idle_s=1.5, warmup_requests=8
    )


def test_quick_caps_requests_idle_time_and_warmup() -> None:
    """--quick sends at most 40 requests, meters idle at most 0.5 s and warms up with 2."""
    spec = EngineCalibration(quick=True).served_spec()
    assert (spec.requests, spec.idle_s, spec.warmup_requests) == (40, 0.5, 2)
    smaller = EngineCalibration(quick=True, requests=10, idle_s=0.1).served_spec()
    assert (smaller.requests, smaller.idle_s) == (10, 0.1)


def test_isolated_spec_is_the_quick_one_when_asked() -> None:
    """Isolated calibration times the full grid, or two sizes of each when quick."""
    assert EngineCalibration(method="isolated").isolated_spec() == CalibrationSpec()
    quick = EngineCalibration(method="isolated", quick=True).isolated_spec()
    assert quick == QUICK_ISOLATED_SPEC
    assert (quick.prefill_tokens, quick.decode_batches) == ((16, 128), (1, 4))


def test_engine_limits_follow_the_method() -> None:
    """Served uses the options' batch, step budget and threads; isolated what its points need."""
    served = EngineCalibration(max_batch=8, step_tokens=512, torch_threads=1).engine_config()
    assert (served.max_batch, served.max_step_tokens, served.torch_threads) == (8, 512, 1)
    isolated = EngineCalibration(method="isolated", quick=True).engine_config()
    assert (isolated.max_batch, isolated.max_step_tokens, isolated.torch_threads) == (4, 128, None)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"method": "guess"}, "--method must be served or isolated, got 'guess'"),
        ({"torch_threads": 0}, "--threads must be >= 1, got 0"),
        ({"max_batch": 0}, "--max-batch and --step-tokens must be >= 1, got 0 and 1024"),
        ({"step_tokens": -1}, "--max-batch and --step-tokens must be >= 1, got 16 and -1"),
        ({"requests": 0}, "served calibration: requests must be >= 1"),
        ({"rate_per_s": 0.0}, "served calibration: rate must be a finite number > 0"),
    ],
)
def test_bad_options_are_refused_on_construction(options: dict[str, object], message: str) -> None:
    """Each bad option is a ConfigError before any engine loads."""
    with pytest.raises(ConfigError) as err:
        EngineCalibration(**options)  # type: ignore[arg-type]
    assert str(err.value).startswith(message)


def test_served_only_options_do_not_bind_the_isolated_method() -> None:
    """Isolated calibration ignores the served workload's options, so they are not checked."""
    options = EngineCalibration(method="isolated", max_batch=0, requests=0)
    assert options.engine_config().max_batch == max(CalibrationSpec().decode_batches)


@pytest.mark.slow
def test_calibrate_engine_isolated_quick_profiles_the_tiny_model() -> None:
    """The quick isolated run of the tiny engine gives one point per size, without power."""
    options = EngineCalibration(
        method="isolated", device="cpu", use_meters=False, quick=True, torch_threads=1
    )
    profile = calibrate_engine(options)
    assert profile["name"] == "tiny"
    assert [n for n, _ in profile["prefill"]] == [16.0, 128.0]
    assert [b for b, _ in profile["decode"]] == [1.0, 4.0]
    assert "power" not in profile


@pytest.mark.parametrize(
    ("model", "name"),
    [
        ("tiny", "tiny"),
        ("/models/llama-3", "llama-3"),
        ("/models/llama-3/", "llama-3"),
        ("checkpoints/run-7", "run-7"),
    ],
)
def test_name_is_the_preset_or_the_checkpoint_folder(model: str, name: str) -> None:
    """A checkpoint path names the profile and the served model by its folder, not its path."""
    assert EngineCalibration(model=model).name == name


def test_name_of_the_current_folder_is_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``.`` and ``..`` stand for the folders they point at."""
    (tmp_path / "ckpt").mkdir()
    monkeypatch.chdir(tmp_path / "ckpt")
    assert EngineCalibration(model=".").name == "ckpt"
    assert EngineCalibration(model="..").name == tmp_path.name


@pytest.mark.slow
def test_calibrate_engine_names_a_checkpoint_profile_by_its_folder(tmp_path: Path) -> None:
    """A checkpoint directory given by path gives a profile named after the folder."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    from tokenwatt.engine import load_model

    folder = tmp_path / "my-checkpoint"
    vocab = {(chr(i) if i > 32 else f"<{i}>"): i for i in range(256)}
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.BPE(vocab=vocab, merges=[])),
        bos_token="<0>",
        eos_token="<1>",
    )
    load_model("tiny", device="cpu").model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    options = EngineCalibration(
        method="isolated",
        model=f"{folder}/",
        device="cpu",
        use_meters=False,
        quick=True,
        torch_threads=1,
    )
    assert calibrate_engine(options)["name"] == "my-checkpoint"
