"""Row parsers per trace format: lines in, raw ``(time_s, input, output, session, blocks)`` out.

Private to :mod:`tokenwatt.workload.traces`, which applies windows, scaling and builds Requests.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timezone

from tokenwatt.errors import TraceError

__all__ = ["RawRow", "Skip", "detect_from_first_line", "row_parser"]

RawRow = tuple[float, int, int, "str | None", "tuple[int, ...]"]
"""(absolute time in s, input tokens, output tokens, session id or None, prefix block ids)."""

Skip = Callable[[str], None]
"""Called with a reason whenever a row is skipped, so the reader can count it."""

_AZURE_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
_BURST_COLUMNS = ("Timestamp", "Request tokens", "Response tokens")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_EPOCH_NAIVE = datetime(1970, 1, 1)
_ONLY_INT = frozenset([int])


def detect_from_first_line(line: str) -> str | None:
    """The format a trace's first line (CSV header or first JSON object) says, or None."""
    text = line.lstrip("\ufeff").strip()
    if text.startswith("{"):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError:
            return None
        if isinstance(obj, dict) and "input_length" in obj and "output_length" in obj:
            return "mooncake"
        return None
    names = {c.strip() for c in text.split(",")}
    if all(c in names for c in _AZURE_COLUMNS):
        return "azure"
    if all(c in names for c in _BURST_COLUMNS):
        return "burstgpt"
    return None


def _parse_iso_s(text: str, day_cache: dict[str, float]) -> float:
    """Seconds since the epoch of an ISO timestamp like ``2023-11-16 18:15:46.6805900[+00:00]``.

    ``datetime.fromisoformat`` (C, ~0.3 us) reads it on Python 3.11+; older versions refuse
    7-digit fractions and ``Z``, so a positional parse of Azure's fixed layout backs it up.
    Naive timestamps are taken as UTC.
    """
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return _parse_iso_slow(text, day_cache)
    if parsed.tzinfo is None:
        return (parsed - _EPOCH_NAIVE).total_seconds()
    return (parsed - _EPOCH).total_seconds()


def _parse_iso_slow(text: str, day_cache: dict[str, float]) -> float:
    n = len(text)
    if n >= 19 and text[10] in " T" and text[13] == ":" and text[16] == ":":
        end = n
        if text.endswith("+00:00"):
            end = n - 6
        elif text.endswith("Z"):
            end = n - 1
        day = text[:10]
        base = day_cache.get(day)
        if base is None:
            base = datetime.fromisoformat(day).replace(tzinfo=timezone.utc).timestamp()
            day_cache[day] = base
        tail = text[19:end]
        if tail == "" or (tail[0] == "." and tail[1:].isdigit()):
            return base + int(text[11:13]) * 3600 + int(text[14:16]) * 60 + float(text[17:end])
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return (parsed - _EPOCH).total_seconds()


def _column_index(header: list[str], names: Iterable[str], fmt: str) -> list[int]:
    stripped = [h.strip() for h in header]
    missing = [n for n in names if n not in stripped]
    if missing:
        raise TraceError(
            f"{fmt} trace header {stripped} lacks column(s) {missing}; "
            f"pass the right format or fix the header"
        )
    return [stripped.index(n) for n in names]


def _azure(lines: Iterator[str], skip: Skip) -> Iterator[RawRow]:
    reader = csv.reader(lines)
    header = next(reader, None)
    if header is None:
        return
    it, ii, io = _column_index(header, _AZURE_COLUMNS, "azure")
    width = max(it, ii, io) + 1
    days: dict[str, float] = {}
    for row in reader:
        if len(row) < width:
            skip("malformed" if row else "blank")
            continue
        try:
            t = _parse_iso_s(row[it], days)
            yield t, int(row[ii]), int(row[io]), None, ()
        except ValueError:
            skip("malformed")


def _burstgpt(lines: Iterator[str], skip: Skip) -> Iterator[RawRow]:
    reader = csv.reader(lines)
    header = next(reader, None)
    if header is None:
        return
    it, ii, io = _column_index(header, _BURST_COLUMNS, "burstgpt")
    names = [h.strip() for h in header]
    isess = names.index("Session ID") if "Session ID" in names else -1
    width = max(it, ii, io, isess) + 1
    for row in reader:
        if len(row) < width:
            skip("malformed" if row else "blank")
            continue
        try:
            t = float(row[it])
            inp = int(float(row[ii]))
            out = int(float(row[io]))
        except ValueError:
            skip("malformed")
            continue
        # BurstGPT records a failed request as one with zero response tokens.
        if out == 0:
            skip("failed")
            continue
        session = row[isess].strip() if isess >= 0 else ""
        yield t, inp, out, (session or None), ()


def _mooncake(lines: Iterator[str], skip: Skip) -> Iterator[RawRow]:
    loads = json.loads
    for line in lines:
        if not line.strip():
            skip("blank")
            continue
        try:
            obj = loads(line)
            t = obj["timestamp"] / 1000.0
            inp = int(obj["input_length"])
            out = int(obj["output_length"])
            blocks = tuple(obj.get("hash_ids", ()))
        except (ValueError, KeyError, TypeError):
            skip("malformed")
            continue
        # JSON already made the ids ints; checking their types in C beats int() per id.
        if blocks and not _ONLY_INT.issuperset(map(type, blocks)):
            skip("malformed")
            continue
        yield t, inp, out, None, blocks


_PARSERS: dict[str, Callable[[Iterator[str], Skip], Iterator[RawRow]]] = {
    "azure": _azure,
    "burstgpt": _burstgpt,
    "mooncake": _mooncake,
}


def row_parser(fmt: str) -> Callable[[Iterator[str], Skip], Iterator[RawRow]]:
    """The parser for a format name (one of ``azure``, ``burstgpt``, ``mooncake``)."""
    return _PARSERS[fmt]
