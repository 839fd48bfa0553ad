"""One benchmark's whole configuration as one frozen value (``BenchConfig``), and the rules that
turn flat options (a rate or a concurrency, a warm-up count) into it.

A CLI or a script resolves its options once into a ``BenchConfig``; ``bench.run_configured`` runs
it. The result keeps ``BenchConfig.record()`` as its ``config``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, get_args

from tokenwatt.bench.client import ClientConfig, ModelInfo
from tokenwatt.bench.energy_sources import EnergySource, MeterSource, PrometheusSource
from tokenwatt.bench.load import ClosedLoop, LoadShape, OpenLoop, Sessions, TraceReplay
from tokenwatt.bench.runner import RunLimits
from tokenwatt.bench.slo import SloSet
from tokenwatt.bench.workloads import WorkloadOptions
from tokenwatt.energy.detect import detect_meters
from tokenwatt.energy.facility import FacilityModel, facility_preset
from tokenwatt.errors import ConfigError

__all__ = ["ENERGY_CHOICES", "BenchConfig", "EnergyChoice", "load_shape"]

EnergyChoice = Literal["local", "endpoint", "none"]
"""Where a run's joules come from: this machine's meters, the endpoint's /metrics, or nowhere."""

ENERGY_CHOICES: tuple[str, ...] = get_args(EnergyChoice)
"""Every ``EnergyChoice``, in the order messages list them."""


def load_shape(
    workload: str,
    rate_rps: float | None = None,
    concurrency: int | None = None,
    arrival: str = "poisson",
    burstiness: float = 1.0,
    speedup: float | None = None,
    seed: int = 0,
) -> LoadShape:
    """The load shape a workload and its load options ask for: agentic sessions (4 at once by
    default), an open loop when a rate is given, a trace replayed at its own times unless a
    concurrency is given, else a closed loop (1 in flight by default).

    Raises:
        ConfigError: both a rate and a concurrency (outside agentic), a rate for agentic
            sessions, a speed-up for anything but a trace, or an out-of-range value.
    """
    if rate_rps is not None and concurrency is not None and workload != "agentic":
        raise ConfigError("give either --rate (open loop) or --concurrency (closed loop), not both")
    if workload == "agentic" and rate_rps is not None:
        raise ConfigError(
            "--rate does not apply to --workload agentic: sessions are closed loops; "
            "set how many run at once with --concurrency"
        )
    if speedup is not None and workload != "trace":
        raise ConfigError("--speedup applies only to --workload trace (it compresses trace time)")
    if workload == "agentic":
        return Sessions(4 if concurrency is None else concurrency)
    if rate_rps is not None:
        # OpenLoop validates the arrival name with a message listing the choices.
        return OpenLoop(rate_rps, arrival, burstiness, seed)  # type: ignore[arg-type]
    if workload == "trace" and concurrency is None:
        return TraceReplay(speedup or 1.0)
    return ClosedLoop(1 if concurrency is None else concurrency)


@dataclass(frozen=True)
class BenchConfig:
    """Everything one run needs (defaults: 100 chat requests, one at a time, to
    http://127.0.0.1:8000, no SLO, this machine's meters, the average facility)."""

    client: ClientConfig = field(default_factory=ClientConfig)
    """Where requests go and how long to wait for them."""
    workload: WorkloadOptions = field(default_factory=WorkloadOptions)
    """The requests to send, warm-up requests included."""
    shape: LoadShape = field(default_factory=ClosedLoop)
    """When to send them."""
    limits: RunLimits = field(default_factory=RunLimits)
    """When to stop, and which requests are warm-up."""
    slos: SloSet = field(default_factory=SloSet)
    """Objectives a request must meet to count as goodput (empty: every completed request)."""
    energy: EnergyChoice = "local"
    """Where joules come from (see ``EnergyChoice``)."""
    metrics_url: str | None = None
    """With ``energy="endpoint"``: the Prometheus URL; None: the endpoint's root + /metrics."""
    facility: str = "uptime-2024-average"
    """Facility preset (PUE, carbon, price) applied to measured IT energy."""

    def __post_init__(self) -> None:
        if self.energy not in ENERGY_CHOICES:
            raise ConfigError(f"unknown energy source {self.energy!r}; use local, endpoint or none")
        _ = self.facility_model  # an unknown preset is refused here, before anything is sent

    @classmethod
    def build(
        cls,
        workload: WorkloadOptions,
        shape: LoadShape,
        *,
        warmup_requests: int = 0,
        duration_s: float | None = None,
        client: ClientConfig | None = None,
        slos: SloSet | None = None,
        energy: EnergyChoice = "local",
        metrics_url: str | None = None,
        facility: str = "uptime-2024-average",
    ) -> BenchConfig:
        """A config that measures ``workload.num_requests`` requests after ``warmup_requests``
        warm-up ones, which the workload generates on top. Agentic workloads send whole
        sessions (``sessions`` x ``turns``): no request cap, and the warm-up requests are the
        first turns sent, not extra ones."""
        agentic = workload.name == "agentic"
        measured = workload.num_requests
        if not agentic:
            workload = replace(workload, num_requests=measured + warmup_requests)
        limits = RunLimits(
            max_requests=None if agentic else measured,
            duration_s=duration_s,
            warmup_requests=warmup_requests,
        )
        return cls(
            client=client or ClientConfig(),
            workload=workload,
            shape=shape,
            limits=limits,
            slos=slos or SloSet(),
            energy=energy,
            metrics_url=metrics_url,
            facility=facility,
        )

    @property
    def facility_model(self) -> FacilityModel:
        """The facility preset named by ``facility``."""
        return facility_preset(self.facility)

    @property
    def energy_label(self) -> str:
        """The energy source as results record it: ``local``, ``none`` or ``endpoint:URL``."""
        if self.energy == "endpoint":
            return f"endpoint:{self._metrics_target()}"
        return self.energy

    def _metrics_target(self) -> str:
        return self.metrics_url or self.client.base_url.rstrip("/").removesuffix("/v1") + "/metrics"

    def energy_source(self) -> EnergySource | None:
        """A new source for ``energy`` (None for ``none``); ``local`` probes this machine's
        meters now."""
        if self.energy == "endpoint":
            return PrometheusSource(self._metrics_target())
        if self.energy == "local":
            # The endpoint usually runs beside the client: count the whole machine, not us.
            return MeterSource(detect_meters(cpu_mode="machine"))
        return None

    def fitted_to(self, info: ModelInfo | None, *, adopt_model: bool) -> BenchConfig:
        """This config with what the endpoint says of its model: its name when ``adopt_model``
        (no model was chosen), and its context unless prompts are capped explicitly
        (``max_input_tokens``). Unchanged when ``info`` is None."""
        if info is None:
            return self
        config = self
        if adopt_model:
            config = replace(config, client=replace(config.client, model=info.id))
        if config.workload.max_input_tokens is None:
            workload = replace(config.workload, max_model_len=info.max_model_len)
            config = replace(config, workload=workload)
        return config

    def record(self) -> dict[str, Any]:
        """The configuration as a result keeps it (plain data, the API key masked)."""
        client = self.client
        return {
            "url": client.base_url,
            "client": {**asdict(client), "api_key": "***" if client.api_key else None},
            "workload": asdict(self.workload),
            "limits": asdict(self.limits),
            "slos": str(self.slos),
            "facility": self.facility,
            "shape": {"kind": type(self.shape).__name__, **asdict(self.shape)},
            "energy_source": self.energy_label,
        }
