"""Accelerator, model and power specs for the planner, with presets from cited public figures.

Every preset is a published number (see ../shared/reference/public-figures.md), never a measurement
of ours; results label energy from these presets with the source ``preset:<name>``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from tokenwatt.errors import ConfigError

__all__ = [
    "ACCELERATOR_PRESETS",
    "MODEL_PRESETS",
    "POWER_PRESETS",
    "AcceleratorSpec",
    "ModelSpec",
    "PowerModel",
    "accelerator_preset",
    "model_preset",
    "power_preset",
]


def _positive(owner: str, **values: float) -> None:
    for name, value in values.items():
        if not (value > 0 and math.isfinite(value)):
            raise ConfigError(f"{owner}: {name} must be a positive number, got {value!r}")


def _non_negative(owner: str, **values: float) -> None:
    for name, value in values.items():
        if not (value >= 0 and math.isfinite(value)):
            raise ConfigError(f"{owner}: {name} must be >= 0, got {value!r}")


@dataclass(frozen=True)
class AcceleratorSpec:
    """Datasheet figures of one accelerator (per device, not per replica)."""

    name: str = "H100-SXM"
    """Preset name, used in energy source labels (``preset:<name>``)."""
    memory_bytes: float = 80e9
    """Device memory in bytes (HBM)."""
    bandwidth_bytes_per_s: float = 3.35e12
    """Peak memory bandwidth in bytes/s."""
    flops_per_s: float = 989e12
    """Peak dense BF16 throughput in FLOP/s."""
    tdp_w: float = 700.0
    """Maximum board power in watts."""
    source: str = "NVIDIA datasheet"
    """Where the figures come from."""

    def __post_init__(self) -> None:
        _positive(
            f"accelerator {self.name}",
            memory_bytes=self.memory_bytes,
            bandwidth_bytes_per_s=self.bandwidth_bytes_per_s,
            flops_per_s=self.flops_per_s,
            tdp_w=self.tdp_w,
        )


@dataclass(frozen=True)
class ModelSpec:
    """The served model's size as the roofline needs it."""

    name: str = "llama-3.1-8b"
    """Preset name."""
    params: float = 8.03e9
    """Parameters touched per token (active parameters for MoE models)."""
    weight_bytes: float = 16.06e9
    """Bytes of weights read per forward pass (BF16: 2 bytes per parameter)."""
    kv_bytes_per_token: float = 131072.0
    """KV-cache bytes per token: 2 (K,V) x layers x KV heads x head dim x bytes per value."""
    attention_flops_per_pair: float = 524288.0
    """Attention FLOPs per (query token, attended position) pair: 4 x layers x hidden size
    (QK^T and AV, 2 FLOPs per multiply-add each); 4 x 32 x 4096 for Llama-3.1-8B."""

    def __post_init__(self) -> None:
        _positive(
            f"model {self.name}",
            params=self.params,
            weight_bytes=self.weight_bytes,
            kv_bytes_per_token=self.kv_bytes_per_token,
        )
        _non_negative(f"model {self.name}", attention_flops_per_pair=self.attention_flops_per_pair)


@dataclass(frozen=True)
class PowerModel:
    """Power of one accelerator in each replica state; busy power depends on phase and batch.

    Decode power rises with the batch on a log scale from ``decode_min_w`` at batch 1 to
    ``decode_max_w`` at ``decode_saturation_batch`` (ML.ENERGY v3 saw ~300 W at batch 1 and
    ~600 W at batch 128 on an H100); prefill is compute bound and draws ``prefill_w``.
    """

    name: str = "H100-SXM"
    """Preset name; energy from this model is labelled ``preset:<name>``."""
    idle_w: float = 75.0
    """Power with the model loaded and no work (SplitwiseSim: H100 75 W)."""
    prefill_w: float = 700.0
    """Power during a prefill iteration (SplitwiseSim: H100 700 W)."""
    decode_min_w: float = 300.0
    """Decode power at batch 1 (ML.ENERGY v3, H100 with vLLM: about 300 W)."""
    decode_max_w: float = 600.0
    """Decode power at or beyond the saturation batch (ML.ENERGY v3, H100: about 600 W)."""
    decode_saturation_batch: int = 128
    """Batch at which decode power reaches ``decode_max_w``."""
    cold_start_w: float = 75.0
    """Power while a replica starts (loading weights); an estimate: the idle power."""
    load_w: float = 75.0
    """Power while a replica waits on a warehouse load (DMA, SMs idle); an estimate: idle power."""
    source: str = "SplitwiseSim constant power model; ML.ENERGY leaderboard v3"
    """Where the figures come from."""
    kind: str = "preset"
    """preset (published figures) or calibrated (measured by ``tokenwatt plan calibrate``)."""
    scope: str = "gpu"
    """What the watts cover (gpu, cpu, node...): one accelerator for presets."""
    host_w: float = 0.0
    """Watts of the server around each accelerator (CPUs, memory, fans, NICs) in every state
    but off; 0 counts the accelerator alone."""

    def __post_init__(self) -> None:
        if self.kind not in ("preset", "calibrated"):
            raise ConfigError(f"power model {self.name}: kind must be preset or calibrated")
        _non_negative(
            f"power model {self.name}",
            idle_w=self.idle_w,
            prefill_w=self.prefill_w,
            decode_min_w=self.decode_min_w,
            decode_max_w=self.decode_max_w,
            cold_start_w=self.cold_start_w,
            load_w=self.load_w,
            host_w=self.host_w,
        )
        if self.decode_max_w < self.decode_min_w:
            raise ConfigError(
                f"power model {self.name}: decode_max_w ({self.decode_max_w}) must be >= "
                f"decode_min_w ({self.decode_min_w})"
            )
        if self.decode_saturation_batch < 1:
            raise ConfigError(f"power model {self.name}: decode_saturation_batch must be >= 1")

    @property
    def label(self) -> str:
        """The energy source label, ``preset:<name>`` or ``calibrated:<name>``."""
        return f"{self.kind}:{self.name}"

    def with_host(self) -> PowerModel:
        """The same model with ``host_w`` folded into every state's watts (host_w then 0)."""
        if self.host_w == 0:
            return self
        h = self.host_w
        return replace(
            self,
            idle_w=self.idle_w + h,
            prefill_w=self.prefill_w + h,
            decode_min_w=self.decode_min_w + h,
            decode_max_w=self.decode_max_w + h,
            cold_start_w=self.cold_start_w + h,
            load_w=self.load_w + h,
            host_w=0.0,
        )

    def decode_w(self, batch: int) -> float:
        """Power in watts of one accelerator decoding a batch of ``batch`` requests."""
        if batch <= 1 or self.decode_saturation_batch <= 1:
            return self.decode_min_w if batch <= 1 else self.decode_max_w
        frac = min(1.0, math.log2(batch) / math.log2(self.decode_saturation_batch))
        return self.decode_min_w + (self.decode_max_w - self.decode_min_w) * frac


ACCELERATOR_PRESETS: dict[str, AcceleratorSpec] = {
    "H100-SXM": AcceleratorSpec("H100-SXM", 80e9, 3.35e12, 989e12, 700.0),
    "H200-SXM": AcceleratorSpec("H200-SXM", 141e9, 4.8e12, 989e12, 700.0),
    "A100-SXM-80GB": AcceleratorSpec("A100-SXM-80GB", 80e9, 2.0e12, 312e12, 400.0),
}
"""Accelerator presets (NVIDIA datasheets, via public-figures.md)."""

POWER_PRESETS: dict[str, PowerModel] = {
    "H100-SXM": PowerModel(),
    # No published per-state figures for H200; same 700 W TDP and compute as H100, so H100's.
    "H200-SXM": PowerModel(
        name="H200-SXM",
        source="assumed equal to H100-SXM (same 700 W TDP): SplitwiseSim; ML.ENERGY v3",
    ),
    # The server around each GPU: SplitwiseSim's DGX-H100 idles at 2,800 W with 8 GPUs at 75 W,
    # leaving (2,800 - 8 x 75) / 8 = 275 W of host per GPU (its idle share, a lower bound).
    "H100-SXM-node": PowerModel(
        name="H100-SXM-node",
        host_w=275.0,
        scope="node",
        source=(
            "SplitwiseSim (H100 states; DGX-H100 2,800 W idle -> 275 W host per GPU); "
            "ML.ENERGY v3 decode"
        ),
    ),
    # SplitwiseSim gives A100 decode as one constant (250 W): no batch dependence published.
    "A100-SXM-80GB": PowerModel(
        name="A100-SXM-80GB",
        idle_w=63.0,
        prefill_w=400.0,
        decode_min_w=250.0,
        decode_max_w=250.0,
        cold_start_w=63.0,
        load_w=63.0,
        source="SplitwiseSim constant power model (A100: idle 63, prefill 400, decode 250 W)",
    ),
}
"""Power presets per accelerator (SplitwiseSim, ML.ENERGY v3, via public-figures.md)."""

MODEL_PRESETS: dict[str, ModelSpec] = {
    # 32 layers x 8 KV heads x 128 head dim x 2 (K, V) x 2 bytes = 131072 bytes per token.
    "llama-3.1-8b": ModelSpec("llama-3.1-8b", 8.03e9, 16.06e9, 131072.0, 4 * 32 * 4096.0),
    # 80 layers x 8 KV heads x 128 x 2 x 2 bytes = 327680 bytes per token.
    "llama-3.3-70b": ModelSpec("llama-3.3-70b", 70.6e9, 141.2e9, 327680.0, 4 * 80 * 8192.0),
}
"""Model presets (BF16 weights)."""


def _lookup(kind: str, table: dict[str, object], name: str) -> object:
    if name in table:
        return table[name]
    lowered = {k.lower(): v for k, v in table.items()}
    if name.lower() in lowered:
        return lowered[name.lower()]
    raise ConfigError(f"unknown {kind} preset {name!r}; choose one of: {', '.join(sorted(table))}")


def accelerator_preset(name: str) -> AcceleratorSpec:
    """The accelerator preset called ``name`` (case-insensitive); ConfigError names the choices."""
    spec = _lookup("accelerator", dict(ACCELERATOR_PRESETS), name)
    assert isinstance(spec, AcceleratorSpec)
    return spec


def power_preset(name: str) -> PowerModel:
    """The power preset called ``name`` (case-insensitive); ConfigError names the choices."""
    spec = _lookup("power", dict(POWER_PRESETS), name)
    assert isinstance(spec, PowerModel)
    return spec


def model_preset(name: str) -> ModelSpec:
    """The model preset called ``name`` (case-insensitive); ConfigError names the choices."""
    spec = _lookup("model", dict(MODEL_PRESETS), name)
    assert isinstance(spec, ModelSpec)
    return spec
