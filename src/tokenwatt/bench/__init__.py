"""tokenwatt.bench: drive OpenAI-compatible endpoints and join latency, goodput and energy."""

from tokenwatt.bench.bench import build_result, run_bench
from tokenwatt.bench.client import (
    ClientConfig,
    EndpointClient,
    EndpointError,
    FunctionClient,
    ModelInfo,
    OpenAIClient,
    discover_model,
    list_models,
    synthetic_prompt,
)
from tokenwatt.bench.energy import (
    EnergyFigures,
    EnergySummary,
    SteadyWindow,
    concurrency_steps,
    steady_state_window,
    summarize_energy,
)
from tokenwatt.bench.energy_sources import (
    CounterSpec,
    EnergySampler,
    EnergySource,
    EnergyTrace,
    MeterSource,
    PrometheusSource,
)
from tokenwatt.bench.lengths import LengthFitter, LengthLimits, describe_fit, fit_lengths
from tokenwatt.bench.load import (
    ClosedLoop,
    GoodputSearch,
    LoadShape,
    OpenLoop,
    Sessions,
    TraceReplay,
    find_max_goodput_rate,
    interarrival_times,
)
from tokenwatt.bench.record import (
    ERROR_KINDS,
    Chunk,
    Done,
    ErrorKind,
    Failure,
    RequestRecord,
    StreamEvent,
)
from tokenwatt.bench.report import build_report, write_report
from tokenwatt.bench.request_energy import (
    ENDPOINT_ENERGY_BASIS,
    RequestEnergy,
    summarize_request_energy,
)
from tokenwatt.bench.results import BenchResult, Comparison, compare, load_result
from tokenwatt.bench.runner import LoadRunner, RunLimits, send_one
from tokenwatt.bench.sweep import search_max_goodput, shape_dirname, sweep_shapes
from tokenwatt.bench.workloads import (
    BENCH_WORKLOADS,
    BenchWorkload,
    WorkloadOptions,
    build_workload,
)

__all__ = [
    "BENCH_WORKLOADS",
    "ENDPOINT_ENERGY_BASIS",
    "ERROR_KINDS",
    "BenchResult",
    "BenchWorkload",
    "Chunk",
    "ClientConfig",
    "ClosedLoop",
    "Comparison",
    "CounterSpec",
    "Done",
    "EndpointClient",
    "EndpointError",
    "EnergyFigures",
    "EnergySampler",
    "EnergySource",
    "EnergySummary",
    "EnergyTrace",
    "ErrorKind",
    "Failure",
    "FunctionClient",
    "GoodputSearch",
    "LengthFitter",
    "LengthLimits",
    "LoadRunner",
    "LoadShape",
    "MeterSource",
    "ModelInfo",
    "OpenAIClient",
    "OpenLoop",
    "PrometheusSource",
    "RequestEnergy",
    "RequestRecord",
    "RunLimits",
    "Sessions",
    "SteadyWindow",
    "StreamEvent",
    "TraceReplay",
    "WorkloadOptions",
    "build_report",
    "build_result",
    "build_workload",
    "compare",
    "concurrency_steps",
    "describe_fit",
    "discover_model",
    "find_max_goodput_rate",
    "fit_lengths",
    "interarrival_times",
    "list_models",
    "load_result",
    "run_bench",
    "search_max_goodput",
    "send_one",
    "shape_dirname",
    "steady_state_window",
    "summarize_energy",
    "summarize_request_energy",
    "sweep_shapes",
    "synthetic_prompt",
    "write_report",
]
