"""Latency objectives (SLOs) per request, parsed from strings like ``ttft<=0.5s,tpot<=50ms``.

A request meets an SLO set when it meets every objective in it (DistServe's goodput definition);
:mod:`tokenwatt.bench.metrics` does the checking.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, get_args

from tokenwatt.errors import ConfigError

__all__ = ["SLO_EXAMPLE", "Slo", "SloMetric", "SloSet", "SloStat", "parse_slos"]

SloMetric = Literal["ttft", "itl", "tpot", "e2e"]
"""``ttft``: time to first token. ``itl``: gaps between output chunks. ``tpot``: time per output
token after the first, (e2e - ttft) / (output_tokens - 1). ``e2e``: send to end of stream."""

SloStat = Literal["max", "mean", "p50", "p90", "p95", "p99"]
"""Statistic over one request's inter-token gaps that an ``itl`` objective bounds."""

SLO_EXAMPLE = "ttft<=0.5s,tpot<=50ms,e2e<=10s,itl.p99<=200ms"
"""A valid SLO string, shown in error messages."""

_ITEM = re.compile(
    r"^(?P<metric>[a-z0-9]+)(?:\.(?P<stat>[a-z0-9]+))?\s*<=\s*"
    r"(?P<value>[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(?P<unit>ms|s)$"
)
_UNIT_S = {"s": 1.0, "ms": 1e-3}


@dataclass(frozen=True)
class Slo:
    """One objective: a per-request latency metric must be at most ``bound_s``."""

    metric: SloMetric = "ttft"
    """Which latency (see SloMetric)."""
    bound_s: float = 1.0
    """Largest value that still meets the objective, in seconds."""
    stat: SloStat | None = None
    """For ``itl`` only: the statistic over the request's gaps (None means every gap: max)."""

    def __post_init__(self) -> None:
        if self.metric not in get_args(SloMetric):
            raise ConfigError(
                f"unknown SLO metric {self.metric!r}; use one of {', '.join(get_args(SloMetric))}"
            )
        if not self.bound_s > 0:
            raise ConfigError(f"SLO bound for {self.metric} must be > 0 s, got {self.bound_s}")
        if self.stat is not None:
            if self.metric != "itl":
                raise ConfigError(
                    f"SLO {self.metric}.{self.stat}: a statistic applies to itl only (a request "
                    f"has one {self.metric}); write e.g. {self.metric}<=1s"
                )
            if self.stat not in get_args(SloStat):
                choices = ", ".join(get_args(SloStat))
                raise ConfigError(f"unknown itl statistic {self.stat!r}; use one of {choices}")

    @property
    def name(self) -> str:
        """``metric`` or ``metric.stat``, as written."""
        return self.metric if self.stat is None else f"{self.metric}.{self.stat}"

    def __str__(self) -> str:
        ms = self.bound_s * 1e3
        if ms < 1000:
            return f"{self.name}<={ms:g}ms"
        return f"{self.name}<={self.bound_s:g}s"


@dataclass(frozen=True)
class SloSet:
    """Objectives a request must all meet to count as goodput; empty means every success counts."""

    slos: tuple[Slo, ...] = ()
    """The objectives, at most one per metric name."""

    def __post_init__(self) -> None:
        names = [s.name for s in self.slos]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"SLO {', '.join(dupes)} given more than once; keep one bound each")

    def __str__(self) -> str:
        return ",".join(str(s) for s in self.slos)

    def __bool__(self) -> bool:
        return bool(self.slos)


def _bad(part: str, why: str) -> ConfigError:
    return ConfigError(f"bad SLO {part!r}: {why}; a valid example: {SLO_EXAMPLE!r}")


def parse_slos(text: str) -> SloSet:
    """Parse ``metric[.stat]<=<number><s|ms>`` items separated by commas ('' gives no SLOs).

    Raises:
        ConfigError: an item is malformed, names an unknown metric or unit, or repeats a metric;
            the message names the bad part and shows a valid example.
    """
    items = [p.strip() for p in text.split(",")] if text.strip() else []
    slos: list[Slo] = []
    for part in items:
        if not part:
            raise _bad(text, "empty item between commas")
        m = _ITEM.match(part.lower())
        if m is None:
            if "<=" not in part:
                raise _bad(part, "expected metric<=bound with a unit (s or ms)")
            raise _bad(part, "expected a positive number followed by s or ms after '<='")
        metric, stat = m["metric"], m["stat"]
        if metric not in get_args(SloMetric):
            raise _bad(part, f"unknown metric {metric!r} (use {', '.join(get_args(SloMetric))})")
        if stat is not None and metric == "itl" and stat not in get_args(SloStat):
            raise _bad(part, f"unknown itl statistic {stat!r} (use {', '.join(get_args(SloStat))})")
        try:
            slos.append(
                Slo(
                    metric=metric,  # type: ignore[arg-type]
                    bound_s=float(m["value"]) * _UNIT_S[m["unit"]],
                    stat=stat,  # type: ignore[arg-type]
                )
            )
        except ConfigError as exc:
            raise _bad(part, str(exc)) from None
    try:
        return SloSet(tuple(slos))
    except ConfigError as exc:
        raise _bad(text, str(exc)) from None
