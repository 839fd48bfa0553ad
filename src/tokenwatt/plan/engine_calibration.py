"""Calibrating the reference engine by name: the choices of ``tokenwatt plan calibrate`` as one
checked value (``EngineCalibration``), and ``calibrate_engine``, which loads the engine, meters it
and profiles it served over HTTP or in isolated steps.

The measuring itself lives in ``calibrate`` (isolated steps) and ``served`` (a served workload).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tokenwatt.errors import ConfigError
from tokenwatt.plan.calibrate import CalibrationSpec, EngineTarget, calibrate
from tokenwatt.plan.served import Progress, ServedCalibrationSpec, calibrate_served

if TYPE_CHECKING:  # the engine pulls in torch: imported where it is used
    from tokenwatt.energy.meter import Meter
    from tokenwatt.engine import EngineConfig

__all__ = ["CALIBRATION_METHODS", "QUICK_ISOLATED_SPEC", "EngineCalibration", "calibrate_engine"]

CALIBRATION_METHODS = ("served", "isolated")
"""served: the engine behind its HTTP server under a workload; isolated: single steps in
process (faster, misses serving costs)."""

QUICK_ISOLATED_SPEC = CalibrationSpec(
    prefill_tokens=(16, 128), decode_batches=(1, 4), long_context=128, decode_steps=3, repeats=1
)
"""The isolated points of a quick (smoke) calibration."""

_QUICK_SERVED_REQUESTS = 40
"""A quick served calibration sends at most this many requests..."""
_QUICK_IDLE_S = 0.5
"""...and meters idle power for at most this long."""


@dataclass(frozen=True)
class EngineCalibration:
    """How to calibrate the reference engine; checked on construction, before any engine
    loads. The served-only fields are checked only for the served method. Messages name the
    ``tokenwatt plan calibrate`` options."""

    method: str = "served"
    """One of ``CALIBRATION_METHODS``."""
    model: str = "tiny"
    """Engine preset or checkpoint directory (``tokenwatt.engine.load_model``)."""
    device: str = "auto"
    """auto, cpu or cuda."""
    use_meters: bool = True
    """Measure power with the meters this machine has; False: step times only."""
    quick: bool = False
    """Fewer sizes and requests: a smoke run, not a profile to plan with."""
    torch_threads: int | None = None
    """Torch intra-op threads, set process-wide (1 is steadiest on a shared CPU); None:
    torch's default."""
    requests: int = 400
    """served: requests in the calibration workload."""
    rate_per_s: float = 4.0
    """served: Poisson arrivals per second."""
    seed: int = 1000
    """served: seed of arrivals and lengths."""
    idle_s: float = 3.0
    """served: seconds of idle power metered before the workload (with meters)."""
    max_batch: int = 16
    """served: the engine's batch limit."""
    step_tokens: int = 1024
    """served: the engine's token budget per step."""

    def __post_init__(self) -> None:
        if self.method not in CALIBRATION_METHODS:
            raise ConfigError(f"--method must be served or isolated, got {self.method!r}")
        if self.torch_threads is not None and self.torch_threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {self.torch_threads}")
        if self.method == "served":
            if self.max_batch < 1 or self.step_tokens < 1:
                raise ConfigError(
                    f"--max-batch and --step-tokens must be >= 1, got {self.max_batch} and "
                    f"{self.step_tokens}"
                )
            self.served_spec()

    @property
    def name(self) -> str:
        """What the profile and the served model are called: a preset's name, or a checkpoint
        directory's own name (``/models/llama-3/`` -> ``llama-3``), not its path."""
        path = Path(self.model).expanduser()
        if path.name in ("", ".."):  # "." or "..": the folder they stand for
            path = path.resolve()
        return path.name or self.model

    def isolated_spec(self) -> CalibrationSpec:
        """The points the isolated method times."""
        return QUICK_ISOLATED_SPEC if self.quick else CalibrationSpec()

    def served_spec(self) -> ServedCalibrationSpec:
        """The workload the served method replays."""
        requests, idle_s = self.requests, self.idle_s
        if self.quick:
            requests, idle_s = min(requests, _QUICK_SERVED_REQUESTS), min(idle_s, _QUICK_IDLE_S)
        return ServedCalibrationSpec(
            requests=requests,
            rate_per_s=self.rate_per_s,
            seed=self.seed,
            idle_s=idle_s,
            warmup_requests=2 if self.quick else 8,
        )

    def engine_config(self) -> EngineConfig:
        """The engine's limits: the served method's options, or what the isolated points
        need."""
        from tokenwatt.engine import EngineConfig

        if self.method == "isolated":
            spec = self.isolated_spec()
            return EngineConfig(
                max_batch=max(spec.decode_batches), max_step_tokens=max(spec.prefill_tokens)
            )
        return EngineConfig(
            max_batch=self.max_batch,
            max_step_tokens=self.step_tokens,
            torch_threads=self.torch_threads,
        )


def _open_meter(use_meters: bool) -> Meter | None:
    from tokenwatt.energy import CombinedMeter, detect_meters

    meters = detect_meters() if use_meters else []
    return CombinedMeter(meters) if meters else None


def calibrate_engine(
    options: EngineCalibration, progress: Progress | None = None
) -> dict[str, Any]:
    """Load the engine ``options`` name and profile it (``write_profile``'s dict).
    ``progress`` hears (requests finished, requests sent) while a served workload runs."""
    from tokenwatt.engine import EngineCore, load_model

    if options.torch_threads is not None:
        import torch

        torch.set_num_threads(options.torch_threads)
    loaded = load_model(options.model, device=options.device)
    engine_config = options.engine_config()
    meter = _open_meter(options.use_meters)
    try:
        if options.method == "isolated":
            return calibrate(
                lambda: EngineTarget(EngineCore(loaded, engine_config)),
                options.isolated_spec(),
                meter,
                options.name,
            )
        return calibrate_served(
            loaded,
            engine_config,
            options.served_spec(),
            model_name=options.name,
            meter=meter,
            progress=progress,
        )
    finally:
        if meter is not None:
            meter.close()
