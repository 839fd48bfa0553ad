"""Workloads: request and session types, synthetic generators, trace readers."""

from tokenwatt.workload.types import Request

__all__ = ["Request"]
