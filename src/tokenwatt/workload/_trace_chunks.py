"""Chunked trace parsing into numpy columns: vectorised for Azure CSV, row by row otherwise.

Private to :mod:`tokenwatt.workload.traces`. A chunk the fast path cannot vouch for (a row with
the wrong field count, an odd timestamp, a non-integer count) is re-parsed row by row, so both
paths skip and count exactly the same rows.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterator
from typing import TextIO

import numpy as np

from tokenwatt.workload._trace_formats import Skip, row_parser

__all__ = ["RawChunk", "raw_chunks"]

RawChunk = tuple[np.ndarray, np.ndarray, np.ndarray]
"""(absolute time in s as float64, input tokens as int64, output tokens as int64)."""

_AZURE_HEADER = ["TIMESTAMP", "ContextTokens", "GeneratedTokens"]


def _rowwise(fmt: str, header: str, lines: list[str], skip: Skip) -> RawChunk:
    t: list[float] = []
    i: list[int] = []
    o: list[int] = []
    for ts, inp, out, _session, _blocks in row_parser(fmt)(
        itertools.chain([header] if header else [], lines), skip
    ):
        t.append(ts)
        i.append(inp)
        o.append(out)
    return np.array(t, dtype=np.float64), np.array(i, dtype=np.int64), np.array(o, dtype=np.int64)


def _azure_fast(lines: list[str]) -> RawChunk | None:
    """Columns of a chunk of plain ``timestamp,int,int`` lines, or None to fall back."""
    if set(map(str.count, lines, itertools.repeat(","))) != {2}:
        return None
    text = "".join(lines)
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    if text.count("\n") != len(lines) - (0 if text.endswith("\n") else 1):
        return None
    fields = text.replace("\n", ",").split(",")
    ts = fields[0::3][: len(lines)]
    if len(set(map(len, ts))) != 1:
        return None
    first = ts[0]
    if first.endswith("+00:00"):
        # Same length as the first is not enough: every row must carry the UTC offset.
        if sum(map(str.endswith, ts, itertools.repeat("+00:00"))) != len(ts):
            return None
        ts = [s[:-6] for s in ts]
    if not first[:4].isdigit() or "+" in ts[0] or first.endswith("Z") or len(ts[0]) < 19:
        return None
    inp = _ints(fields[1::3][: len(lines)])
    out = _ints(fields[2::3][: len(lines)])
    if inp is None or out is None:
        return None
    try:
        ns = np.array(ts, dtype="datetime64[ns]").astype(np.int64)
    except ValueError:
        return None
    return ns / 1e9, inp, out


def _ints(values: list[str]) -> np.ndarray | None:
    """int64 array of decimal strings, or None if any is not one (as ``int()`` would refuse)."""
    # np.fromstring's text mode is ~10x faster than int() per value. numpy < 2.3 warns and
    # stops at bad data rather than raising, so the length is checked too.
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        try:
            arr = np.fromstring(",".join(values), dtype=np.int64, sep=",")
        except (ValueError, DeprecationWarning):
            return None
    return arr if len(arr) == len(values) else None


def raw_chunks(fmt: str, fh: TextIO, chunk_rows: int, skip: Skip) -> Iterator[RawChunk]:
    """Raw columns of ``chunk_rows`` lines at a time (bad rows skipped and counted)."""
    header = "" if fmt == "mooncake" else fh.readline()
    fast = fmt == "azure" and [h.strip() for h in header.lstrip("\ufeff").split(",")] == (
        _AZURE_HEADER
    )
    while True:
        lines = list(itertools.islice(fh, chunk_rows))
        if not lines:
            return
        chunk = _azure_fast(lines) if fast else None
        yield chunk if chunk is not None else _rowwise(fmt, header, lines, skip)
