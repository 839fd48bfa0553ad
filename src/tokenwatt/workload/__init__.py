"""Workloads: request and session types, synthetic generators, trace readers."""

from tokenwatt.workload.traces import (
    TraceFormat,
    TraceOptions,
    TraceReader,
    TraceStats,
    detect_format,
    open_trace,
)
from tokenwatt.workload.types import Request

__all__ = [
    "Request",
    "TraceFormat",
    "TraceOptions",
    "TraceReader",
    "TraceStats",
    "detect_format",
    "open_trace",
]
