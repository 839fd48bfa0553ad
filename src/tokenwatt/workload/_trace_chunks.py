"""Chunked trace parsing into numpy columns: vectorised for Azure CSV, row by row otherwise.

Private to :mod:`tokenwatt.workload.traces`. The Azure path reads blocks of text and parses them
as one byte array (no per-row Python objects). A block it cannot vouch for (a row with the wrong
field count, an odd timestamp, a count that is not plain digits) is re-parsed row by row, so both
paths skip and count exactly the same rows.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import TextIO

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from tokenwatt.workload._trace_formats import Skip, row_parser

__all__ = ["RawChunk", "raw_chunks"]

RawChunk = tuple[np.ndarray, np.ndarray, np.ndarray]
"""(absolute time in s as float64, input tokens as int64, output tokens as int64)."""

_AZURE_HEADER = ["TIMESTAMP", "ContextTokens", "GeneratedTokens"]
_AZURE_LINE_CHARS = 36
"""About one Azure row (``2023-11-16 18:15:46.6805900,1020,129``): sizes the text blocks."""
_PAD = 32
"""Bytes of padding around a block: more than the widest timestamp or count."""
_UTC = np.frombuffer(b"+00:00", dtype=np.uint8)
# Byte template of YYYY-MM-DD?HH:MM:SS: 0 = digit, else that exact byte (10: space or 'T').
_STAMP = np.frombuffer(b"0000-00-00 00:00:00", dtype=np.uint8)


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


def _digits(padded: np.ndarray, end: np.ndarray, length: np.ndarray) -> np.ndarray | None:
    """Non-negative integers written as 1-15 plain digits ending just before ``end``."""
    if len(length) == 0 or int(length.min()) < 1 or int(length.max()) > 15:
        return None
    d = int(length.max())
    # Right-aligned windows: column j always weighs 10**(d-1-j), so one dot product sums them
    # (in float64, exact below 2**53, hence at most 15 digits).
    digit = sliding_window_view(padded, d)[end + _PAD - d] - np.uint8(48)
    mask = np.arange(d) >= (d - length)[:, None]
    if ((digit > 9) & mask).any():
        return None
    digit *= mask
    weights = 10.0 ** np.arange(d - 1, -1, -1)
    result: np.ndarray = (digit.astype(np.float64) @ weights).astype(np.int64)
    return result


def _timestamps_s(padded: np.ndarray, start: np.ndarray, width: int) -> np.ndarray | None:
    """Epoch seconds of fixed-width naive or ``+00:00`` ISO timestamps, or None."""
    mat = sliding_window_view(padded, width)[start + _PAD]
    if width > 25 and (mat[:, -6:] == _UTC).all():
        mat, width = mat[:, :-6], width - 6
    head = mat[:, :19]
    fixed = _STAMP != 48
    seps = head[:, fixed]
    sep_ok = (seps == _STAMP[fixed]) | ((seps == ord("T")) & (_STAMP[fixed] == 32))
    digits = head[:, ~fixed]
    if not sep_ok.all() or not ((digits >= 48) & (digits <= 57)).all():
        return None
    if width > 19:
        # Only ".fraction" may follow, so numpy never sees a zone (it warns on those).
        tail = mat[:, 19:]
        if not ((tail[:, 0] == 46).all() and ((tail[:, 1:] >= 48) & (tail[:, 1:] <= 57)).all()):
            return None
    stamps = np.ascontiguousarray(mat).view(f"S{width}").ravel()
    try:
        ns = stamps.astype("datetime64[ns]").astype(np.int64)
    except ValueError:
        return None
    seconds: np.ndarray = ns / 1e9
    return seconds


def _azure_block(text: str) -> RawChunk | None:
    """Columns of a block of whole ``timestamp,int,int`` lines, or None to fall back."""
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError:
        return None
    buf = np.frombuffer(raw, dtype=np.uint8)
    ends = np.flatnonzero(buf == 10)
    if not raw.endswith(b"\n"):
        ends = np.append(ends, len(buf))
    n = len(ends)
    commas = np.flatnonzero(buf == 44)
    if n == 0 or b"\r" in raw or len(commas) != 2 * n:
        return None
    c = commas.reshape(n, 2)
    starts = np.empty(n, dtype=np.int64)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    # 2n commas in all and two inside every line: exactly two per line.
    if not ((starts <= c[:, 0]) & (c[:, 0] < c[:, 1]) & (c[:, 1] < ends)).all():
        return None
    widths = c[:, 0] - starts
    width = int(widths[0])
    if width < 19 or not (widths == width).all():
        return None
    # Padding lets fixed-size windows start before the first byte or run past the last.
    pad = np.full(_PAD, 48, dtype=np.uint8)
    padded = np.concatenate([pad, buf, pad])
    seconds = _timestamps_s(padded, starts, width)
    inp = _digits(padded, c[:, 1], c[:, 1] - c[:, 0] - 1)
    out = _digits(padded, ends, ends - c[:, 1] - 1)
    if seconds is None or inp is None or out is None:
        return None
    return seconds, inp, out


def _azure_chunks(fh: TextIO, header: str, chunk_chars: int, skip: Skip) -> Iterator[RawChunk]:
    carry = ""
    while True:
        block = fh.read(chunk_chars)
        text = carry + block
        if not block:
            if text:
                yield _azure_block(text) or _rowwise("azure", header, text.splitlines(True), skip)
            return
        cut = text.rfind("\n") + 1
        if cut == 0:
            carry = text
            continue
        body, carry = text[:cut], text[cut:]
        yield _azure_block(body) or _rowwise("azure", header, body.splitlines(True), skip)


def raw_chunks(fmt: str, fh: TextIO, chunk_rows: int, skip: Skip) -> Iterator[RawChunk]:
    """Raw columns of about ``chunk_rows`` rows at a time (bad rows skipped and counted).

    Azure files are cut at line ends near ``chunk_rows`` typical rows; others at exactly
    ``chunk_rows`` lines.
    """
    header = "" if fmt == "mooncake" else fh.readline()
    names = [h.strip() for h in header.lstrip("\ufeff").split(",")]
    if fmt == "azure" and names == _AZURE_HEADER:
        yield from _azure_chunks(fh, header, chunk_rows * _AZURE_LINE_CHARS, skip)
        return
    while True:
        lines = list(itertools.islice(fh, chunk_rows))
        if not lines:
            return
        yield _rowwise(fmt, header, lines, skip)
