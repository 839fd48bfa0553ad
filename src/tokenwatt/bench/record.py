"""What one benchmarked request produced: its stream events and the record a run keeps of it.

Times are ``time.perf_counter()`` seconds; records store them relative to the run's start.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

__all__ = [
    "ERROR_KINDS",
    "Chunk",
    "Done",
    "ErrorKind",
    "Failure",
    "RequestRecord",
    "StreamEvent",
]

ErrorKind = Literal[
    "connect",
    "reset",
    "http_429",
    "http_4xx",
    "http_5xx",
    "malformed_sse",
    "truncated",
    "stall",
    "timeout",
    "stream_error",
    "cancelled",
    "other",
]
"""Why a request failed: endpoint unreachable, connection reset, HTTP status class, a malformed
or truncated SSE stream, no bytes for the stall timeout, the per-request timeout, an error object
inside the stream, the run ending first (cancelled), or anything else."""

ERROR_KINDS: tuple[ErrorKind, ...] = get_args(ErrorKind)
"""Every error kind, in the order of ``ErrorKind``."""


@dataclass(frozen=True)
class Chunk:
    """One streamed piece of output, stamped when its bytes arrived."""

    time_s: float
    """``time.perf_counter()`` when the chunk was parsed."""
    text: str = ""
    """Text the chunk carried (content, or reasoning content for reasoning models)."""


@dataclass(frozen=True)
class Done:
    """The stream ended cleanly (``data: [DONE]``)."""

    time_s: float
    """``time.perf_counter()`` when the end was seen."""
    usage: Mapping[str, Any] = field(default_factory=dict)
    """The endpoint's ``usage`` object, empty when it sent none."""
    status: int = 200
    """HTTP status of the response."""


@dataclass(frozen=True)
class Failure:
    """The request failed; the stream yields nothing after this."""

    time_s: float
    """``time.perf_counter()`` when the failure was noticed."""
    kind: ErrorKind
    """What went wrong (see ``ErrorKind``)."""
    message: str = ""
    """Detail for humans (exception text, first bytes of an error body)."""
    status: int | None = None
    """HTTP status when one was received."""


StreamEvent = Chunk | Done | Failure
"""What an ``EndpointClient`` yields: chunks, then exactly one ``Done`` or ``Failure``."""


@dataclass(frozen=True)
class RequestRecord:
    """Timings and outcome of one request, relative to the run's start (seconds)."""

    request_id: str
    """Id of the workload request."""
    scheduled_s: float = 0.0
    """When the load shape meant to send it."""
    start_s: float = 0.0
    """When it was actually sent."""
    chunk_times_s: tuple[float, ...] = ()
    """Arrival time of each non-empty output chunk, in order."""
    end_s: float = 0.0
    """When the stream ended (cleanly or not)."""
    input_tokens: int = 0
    """Prompt tokens: the endpoint's count when it reported one, else the workload's."""
    output_tokens: int = 0
    """Output tokens: the endpoint's count when reported, else the number of chunks."""
    requested_output_tokens: int = 0
    """max_tokens sent."""
    error: ErrorKind | None = None
    """Why it failed, or None on success."""
    error_message: str = ""
    """Detail of the failure."""
    http_status: int | None = None
    """HTTP status received, None when no response arrived."""
    session_id: str | None = None
    """Session of the request, if any."""
    turn: int = 0
    """Turn within the session."""
    warmup: bool = False
    """True when the request was sent during warm-up (excluded from every summary)."""
    endpoint_energy_j: float | None = None
    """Energy the endpoint attributed to this request in ``usage`` (tokenwatt serve), if any."""
    endpoint_energy_source: str = ""
    """Source the endpoint stated for ``endpoint_energy_j`` (e.g. ``nvml``); empty if none."""
    endpoint_energy_scope: str = ""
    """Scope the endpoint stated for ``endpoint_energy_j`` (e.g. ``gpu``); empty if none."""

    @property
    def ok(self) -> bool:
        """True when the request completed without error."""
        return self.error is None

    @property
    def first_token_s(self) -> float | None:
        """Arrival of the first output chunk, None when none arrived."""
        return self.chunk_times_s[0] if self.chunk_times_s else None
