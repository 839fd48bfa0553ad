"""Streaming readers for public request traces: Azure LLM inference 2023/2024, BurstGPT, Mooncake.

A reader never holds the trace in memory: it yields one :class:`Request` per valid row, skips and
counts bad rows by reason, and applies a time window, a speed-up and token scaling on the way.
"""

from __future__ import annotations

import gzip
import io
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TextIO, TypeVar, get_args

import numpy as np

from tokenwatt.errors import ConfigError, TraceError
from tokenwatt.workload._trace_chunks import raw_chunks
from tokenwatt.workload._trace_formats import RawRow, detect_from_first_line, row_parser
from tokenwatt.workload.types import Request

__all__ = [
    "TraceColumns",
    "TraceFormat",
    "TraceOptions",
    "TraceReader",
    "TraceStats",
    "detect_format",
    "open_trace",
]

log = logging.getLogger(__name__)
_T = TypeVar("_T")

TraceFormat = Literal["azure", "burstgpt", "mooncake"]
"""``azure``: Azure LLM inference CSV, 2023 and 2024 (TIMESTAMP, ContextTokens, GeneratedTokens).
``burstgpt``: BurstGPT CSV (Timestamp, Session ID, ..., Request tokens, Response tokens, ...).
``mooncake``: Mooncake JSONL (timestamp in ms, input_length, output_length, hash_ids)."""

TRACE_FORMATS: tuple[str, ...] = get_args(TraceFormat)
_REQUEST_CHUNK_ROWS = 4096
"""Rows per column chunk when iterating Azure Requests (bounds how far skip counts run ahead)."""
MOONCAKE_BLOCK_TOKENS = 512
"""Tokens per Mooncake ``hash_ids`` block (FAST'25 release)."""


@dataclass(frozen=True)
class TraceOptions:
    """How to cut, compress and scale a trace while reading it (defaults: the whole trace as is)."""

    limit: int | None = None
    """Stop after this many requests; None reads every row."""
    start_s: float = 0.0
    """Window start in trace seconds from the first valid row; earlier rows are skipped."""
    end_s: float | None = None
    """Window end (exclusive) in trace seconds from the first valid row; None: no end."""
    speedup: float = 1.0
    """Arrival times are divided by this (2.0 replays the trace twice as fast)."""
    input_scale: float = 1.0
    """Input token counts are multiplied by this, rounded, at least 1 (Mooncake blocks too)."""
    output_scale: float = 1.0
    """Output token counts are multiplied by this, rounded, at least 1."""
    max_input_tokens: int | None = None
    """Clamp input tokens (after scaling) to this, e.g. to fit a tiny model's context."""
    max_output_tokens: int | None = None
    """Clamp output tokens (after scaling) to this."""
    sorted_input: bool = True
    """Trust that timestamps never decrease, so reading stops at the first row past ``end_s``."""

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"trace limit must be >= 1 or None, got {self.limit}")
        if self.start_s < 0:
            raise ConfigError(f"trace start_s must be >= 0, got {self.start_s}")
        if self.end_s is not None and self.end_s <= self.start_s:
            raise ConfigError(
                f"trace end_s ({self.end_s}) must be greater than start_s ({self.start_s})"
            )
        if not self.speedup > 0:
            raise ConfigError(f"trace speedup must be > 0 (e.g. 2.0), got {self.speedup}")
        for name in ("input_scale", "output_scale"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"trace {name} must be > 0, got {getattr(self, name)}")
        for name in ("max_input_tokens", "max_output_tokens"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"trace {name} must be >= 1 or None, got {value}")


@dataclass(frozen=True)
class TraceStats:
    """What a reader has read so far: rows seen, requests yielded, rows skipped by reason."""

    path: str = ""
    """The trace file."""
    format: str = ""
    """Its format name."""
    rows: int = 0
    """Data rows read (header excluded): requests plus skipped rows."""
    requests: int = 0
    """Requests yielded."""
    skipped: dict[str, int] = field(default_factory=dict)
    """Rows skipped by reason: malformed, blank, failed, zero_input, zero_output, outside_window."""
    last_arrival_s: float = 0.0
    """Arrival time of the last request yielded (after the speed-up)."""

    @property
    def skipped_total(self) -> int:
        """All rows skipped, whatever the reason."""
        return sum(self.skipped.values())


@dataclass(frozen=True, eq=False)
class TraceColumns:
    """A chunk of requests as numpy columns (no session ids or block ids): the bulk fast path."""

    arrival_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """Arrival times (float64 s, after window and speed-up)."""
    input_tokens: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    """Prompt tokens (int64, after scaling and clamping)."""
    output_tokens: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    """Output tokens (int64, after scaling and clamping)."""
    first_index: int = 0
    """Index of the chunk's first request in the pass (request ids are ``<format>-<index>``)."""

    def __len__(self) -> int:
        return len(self.arrival_s)


def _open_text(path: Path) -> TextIO:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def _existing_file(path: str | Path) -> Path:
    p = Path(path)
    if p.is_dir():
        raise TraceError(f"trace path {p} is a directory; pass a CSV or JSONL trace file in it")
    if not p.is_file():
        raise TraceError(f"trace file {p} not found; pass the path of a CSV or JSONL trace")
    return p


def detect_format(path: str | Path) -> TraceFormat:
    """The format of a trace file, from its CSV header or first JSON line.

    Raises:
        TraceError: the file is missing or its first line matches no known format.
    """
    p = _existing_file(path)
    try:
        with _open_text(p) as fh:
            first = fh.readline()
    except (OSError, UnicodeDecodeError) as exc:
        raise TraceError(f"trace file {p} cannot be read as text: {exc}") from exc
    fmt = detect_from_first_line(first)
    if fmt is None:
        shown = first.strip()[:120]
        raise TraceError(
            f"trace file {p}: cannot tell the format from its first line {shown!r}; "
            f"expected an Azure header (TIMESTAMP,ContextTokens,GeneratedTokens), a BurstGPT "
            f"header (Timestamp,...,Request tokens,Response tokens,...) or Mooncake JSON lines, "
            f"or pass the format explicitly (one of {', '.join(TRACE_FORMATS)})"
        )
    return fmt  # type: ignore[return-value]


def _scale(tokens: int, factor: float, cap: int | None) -> int:
    if factor != 1.0:
        tokens = max(1, round(tokens * factor))
    if cap is not None and tokens > cap:
        tokens = cap
    return tokens


class TraceReader:
    """An iterable of the Requests in one trace file; iterate again to re-read from the start.

    ``stats`` reports what the latest pass read. A pass that yields no request raises TraceError.
    """

    def __init__(self, path: Path, fmt: TraceFormat, options: TraceOptions) -> None:
        self.path = path
        self.format: TraceFormat = fmt
        self.options = options
        self._requests = 0
        self._skipped: dict[str, int] = {}
        self._last_arrival_s = 0.0

    @property
    def stats(self) -> TraceStats:
        """A snapshot of the counts of the current (or last) pass."""
        return TraceStats(
            path=str(self.path),
            format=self.format,
            rows=self._requests + sum(self._skipped.values()),
            requests=self._requests,
            skipped=dict(self._skipped),
            last_arrival_s=self._last_arrival_s,
        )

    def _skip(self, reason: str) -> None:
        self._skipped[reason] = self._skipped.get(reason, 0) + 1

    def __iter__(self) -> Iterator[Request]:
        if self.format == "azure":
            return self._pass(self._azure_requests)
        return self._pass(self._requests_from)

    def columns(self, chunk_rows: int = 65536) -> Iterator[TraceColumns]:
        """The same requests as iteration gives (same options, skips and stats) as numpy chunks.

        Several times faster than building Requests: Azure CSV is parsed vectorised. Session ids
        and block ids are not carried; iterate for those.
        """
        if chunk_rows < 1:
            raise ConfigError(f"chunk_rows must be >= 1, got {chunk_rows}")
        return self._pass(lambda fh: self._columns_from(fh, chunk_rows))

    def _pass(self, body: Callable[[TextIO], Iterator[_T]]) -> Iterator[_T]:
        self._requests = 0
        self._skipped = {}
        self._last_arrival_s = 0.0
        try:
            fh = _open_text(self.path)
        except OSError as exc:
            raise TraceError(f"trace file {self.path} cannot be opened: {exc}") from exc
        with fh:
            try:
                yield from body(fh)
            except UnicodeDecodeError as exc:
                raise TraceError(f"trace file {self.path} is not UTF-8 text: {exc}") from exc
        if self._requests == 0:
            raise TraceError(
                f"trace file {self.path} ({self.format}) has no valid request rows "
                f"(skipped {self._skipped or 'none'}); check the file, "
                f"the format and the time window"
            )
        log.debug("read %s: %s", self.path, self.stats)

    def _columns_from(self, fh: TextIO, chunk_rows: int) -> Iterator[TraceColumns]:
        opts = self.options
        t0: float | None = None
        for t, inp, out in raw_chunks(self.format, fh, chunk_rows, self._skip):
            n = len(t)
            if n == 0:
                continue
            status = np.zeros(n, dtype=np.int8)
            status[inp <= 0] = 1
            status[(inp > 0) & (out <= 0)] = 2
            valid = status == 0
            if t0 is None:
                if not valid.any():
                    self._count(status, n)
                    continue
                t0 = float(t[int(np.argmax(valid))])
            rel = t - t0
            outside = valid & (rel < opts.start_s)
            stop, done = n, False
            if opts.end_s is not None:
                past = valid & ~outside & (rel >= opts.end_s)
                if opts.sorted_input and past.any():
                    stop, done = int(np.argmax(past)) + 1, True
                outside |= past
            status[outside] = 3
            kept = np.flatnonzero(status[:stop] == 0)
            if opts.limit is not None and len(kept) >= opts.limit - self._requests:
                kept = kept[: opts.limit - self._requests]
                stop, done = int(kept[-1]) + 1, True
            self._count(status, stop)
            if len(kept):
                yield self._column_chunk(rel[kept], inp[kept], out[kept])
            if done:
                return

    def _count(self, status: np.ndarray, stop: int) -> None:
        counts = np.bincount(status[:stop], minlength=4)
        for code, reason in ((1, "zero_input"), (2, "zero_output"), (3, "outside_window")):
            if counts[code]:
                self._skipped[reason] = self._skipped.get(reason, 0) + int(counts[code])

    def _column_chunk(self, rel: np.ndarray, inp: np.ndarray, out: np.ndarray) -> TraceColumns:
        opts = self.options
        arrival = (rel - opts.start_s) / opts.speedup
        for arr, scale, cap in (
            (inp, opts.input_scale, opts.max_input_tokens),
            (out, opts.output_scale, opts.max_output_tokens),
        ):
            if scale != 1.0:
                arr[:] = np.maximum(1, np.rint(arr * scale))
            if cap is not None:
                np.minimum(arr, cap, out=arr)
        first = self._requests
        self._requests += len(arrival)
        self._last_arrival_s = float(arrival[-1])
        return TraceColumns(arrival, inp, out, first)

    def _azure_requests(self, fh: TextIO) -> Iterator[Request]:
        # Azure rows carry no session or block ids, so Requests can come from the vectorised
        # column parser: a third less CPU per row than csv + fromisoformat. Skip counts of a pass
        # abandoned midway may run up to one chunk ahead; the request count never does.
        for chunk in self._columns_from(fh, _REQUEST_CHUNK_ROWS):
            first = chunk.first_index
            rows = zip(
                chunk.arrival_s.tolist(),
                chunk.input_tokens.tolist(),
                chunk.output_tokens.tolist(),
                strict=True,
            )
            for k, (arrival, inp, out) in enumerate(rows, first):
                self._requests = k + 1
                self._last_arrival_s = arrival
                yield Request(
                    request_id=f"azure-{k}", arrival_s=arrival, input_tokens=inp, output_tokens=out
                )

    def _requests_from(self, lines: Iterator[str]) -> Iterator[Request]:
        opts = self.options
        raw: Iterator[RawRow] = row_parser(self.format)(lines, self._skip)
        start, end, speedup = opts.start_s, opts.end_s, opts.speedup
        in_scale, out_scale = opts.input_scale, opts.output_scale
        in_cap, out_cap = opts.max_input_tokens, opts.max_output_tokens
        plain_tokens = in_scale == 1.0 and out_scale == 1.0 and in_cap is None and out_cap is None
        block_tokens = MOONCAKE_BLOCK_TOKENS
        if in_scale != 1.0:
            block_tokens = max(1, round(MOONCAKE_BLOCK_TOKENS * in_scale))
        limit = opts.limit
        prefix = f"{self.format}-"
        turns: dict[str, int] = {}
        t0: float | None = None
        skip = self._skip
        for t, inp, out, session, blocks in raw:
            if inp <= 0:
                skip("zero_input")
                continue
            if out <= 0:
                skip("zero_output")
                continue
            if t0 is None:
                t0 = t
            rel = t - t0
            if rel < start:
                skip("outside_window")
                continue
            if end is not None and rel >= end:
                skip("outside_window")
                if opts.sorted_input:
                    break
                continue
            if not plain_tokens:
                inp = _scale(inp, in_scale, in_cap)
                out = _scale(out, out_scale, out_cap)
                if blocks:
                    blocks = blocks[: -(-inp // block_tokens)]
            arrival = (rel - start) / speedup
            turn = 0
            if session is not None:
                turn = turns.get(session, 0)
                turns[session] = turn + 1
            index = self._requests
            self._requests = index + 1
            self._last_arrival_s = arrival
            yield Request(
                request_id=prefix + str(index),
                arrival_s=arrival,
                input_tokens=inp,
                output_tokens=out,
                session_id=session,
                turn=turn,
                prefix_block_ids=blocks,
                block_tokens=block_tokens,
            )
            if limit is not None and index + 1 >= limit:
                break


def open_trace(
    path: str | Path,
    format: TraceFormat | Literal["auto"] = "auto",
    options: TraceOptions | None = None,
) -> TraceReader:
    """A streaming reader over a trace file, its format detected unless given.

    Raises:
        TraceError: the file is missing, or its format is unknown or cannot be detected.
    """
    p = _existing_file(path)
    if format == "auto":
        fmt = detect_format(p)
    elif format in TRACE_FORMATS:
        fmt = format
    else:
        raise TraceError(
            f"unknown trace format {format!r}; use one of auto, {', '.join(TRACE_FORMATS)}"
        )
    return TraceReader(p, fmt, options or TraceOptions())
