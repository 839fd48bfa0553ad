"""tokenwatt.bench: drive OpenAI-compatible endpoints and join latency, goodput and energy."""

from tokenwatt.bench.client import (
    ClientConfig,
    EndpointClient,
    FunctionClient,
    OpenAIClient,
    synthetic_prompt,
)
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
from tokenwatt.bench.runner import LoadRunner, RunLimits, send_one

__all__ = [
    "ERROR_KINDS",
    "Chunk",
    "ClientConfig",
    "ClosedLoop",
    "Done",
    "EndpointClient",
    "ErrorKind",
    "Failure",
    "FunctionClient",
    "GoodputSearch",
    "LoadRunner",
    "LoadShape",
    "OpenAIClient",
    "OpenLoop",
    "RequestRecord",
    "RunLimits",
    "Sessions",
    "StreamEvent",
    "TraceReplay",
    "find_max_goodput_rate",
    "interarrival_times",
    "send_one",
    "synthetic_prompt",
]
