"""Benchmark results on disk: one JSON with the exact config and versions, a per-request CSV,
and ``compare`` of two results with side-by-side ratios.
"""

from __future__ import annotations

import csv
import json
import platform
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from tokenwatt import __version__
from tokenwatt.bench.metrics import request_metrics
from tokenwatt.bench.record import RequestRecord
from tokenwatt.errors import ConfigError

__all__ = [
    "COMPARE_METRICS",
    "RESULT_FORMAT",
    "BenchResult",
    "Comparison",
    "compare",
    "energy_alike",
    "errors_by_kind",
    "load_result",
    "versions",
    "write_requests_csv",
]

RESULT_FORMAT = "tokenwatt.bench/1"
"""Format tag written into every result JSON."""


def versions() -> dict[str, str]:
    """Versions that shape a result: tokenwatt, Python, platform, httpx."""
    import httpx

    return {
        "tokenwatt": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "httpx": httpx.__version__,
    }


@dataclass(frozen=True)
class BenchResult:
    """Everything a run produced; ``to_json`` / ``load_result`` round-trip it."""

    config: Mapping[str, Any] = field(default_factory=dict)
    """The exact configuration: endpoint, workload, load shape, limits, SLOs, energy source."""
    versions: Mapping[str, str] = field(default_factory=versions)
    """Software versions (see ``versions()``)."""
    started_at: str = ""
    """UTC ISO-8601 time the run started."""
    duration_s: float = 0.0
    """Wall time of the whole run, warm-up and drain included."""
    interrupted: bool = False
    """True when the run was stopped early (Ctrl-C): the figures cover what finished."""
    summary: Mapping[str, Any] = field(default_factory=dict)
    """``RunMetrics`` as a dict: latency, throughput, SLO attainment, goodput, errors."""
    energy: Mapping[str, Any] | None = None
    """``EnergySummary.to_dict()`` plus ``facility``; None when energy was not measured."""
    request_energy: Mapping[str, Any] | None = None
    """``RequestEnergy.to_dict()``: J per request and per session as the endpoint reported them
    in ``usage``; None when it reported none."""
    power_timeline: tuple[tuple[float, float], ...] = ()
    """(seconds from start, total W) of the energy source."""
    workload_stats: Mapping[str, Any] = field(default_factory=dict)
    """What the workload reported (trace rows skipped by reason, token-count approximation)."""
    records: tuple[RequestRecord, ...] = ()
    """Every request, warm-up included."""

    def to_json(self) -> str:
        """The result as JSON text."""
        body = asdict(self)
        body = {"format": RESULT_FORMAT, **body}
        return json.dumps(body, indent=1, default=str)  # paths in the config become strings

    def first_errors(self) -> dict[str, str]:
        """The first error message of each error kind among the measured requests."""
        found: dict[str, str] = {}
        for r in self.records:
            if r.error is not None and not r.warmup and r.error not in found:
                found[r.error] = r.error_message
        return found

    def write(self, out_dir: Path) -> dict[str, Path]:
        """Write ``result.json`` and ``requests.csv`` into ``out_dir``; return their paths."""
        out_dir.mkdir(parents=True, exist_ok=True)
        json_path = out_dir / "result.json"
        json_path.write_text(self.to_json(), encoding="utf-8")
        csv_path = out_dir / "requests.csv"
        write_requests_csv(self.records, csv_path)
        return {"json": json_path, "csv": csv_path}


_CSV_FIELDS = [f.name for f in fields(RequestRecord) if f.name != "chunk_times_s"]


def write_requests_csv(records: Sequence[RequestRecord], path: Path) -> None:
    """One row per request: its fields, derived latencies, and chunk times joined by spaces."""
    extra = ["ttft_s", "tpot_s", "e2e_s", "chunks", "chunk_times_s"]
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(_CSV_FIELDS + extra)
        for r in records:
            row = [getattr(r, name) for name in _CSV_FIELDS]
            m = request_metrics(r)
            times = " ".join(f"{t:.6f}" for t in r.chunk_times_s)
            writer.writerow([*row, m.ttft_s, m.tpot_s, m.e2e_s, len(r.chunk_times_s), times])


def load_result(path: Path) -> BenchResult:
    """Read a result JSON written by ``BenchResult.write``; a run's folder stands for the
    ``result.json`` in it.

    Raises:
        ConfigError: missing file, not JSON, or not a tokenwatt bench result.
    """
    if path.is_dir():
        if not (path / "result.json").is_file():
            raise ConfigError(f"folder {path} has no result.json; pass a bench run's --out folder")
        path = path / "result.json"
    if not path.is_file():
        raise ConfigError(f"result file {path} not found; pass the result.json of a bench run")
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not JSON ({exc}); pass a bench result.json") from None
    if not isinstance(body, dict) or body.get("format") != RESULT_FORMAT:
        raise ConfigError(f"{path} is not a tokenwatt bench result (format {RESULT_FORMAT})")
    records = tuple(
        RequestRecord(**{**r, "chunk_times_s": tuple(r["chunk_times_s"])})
        for r in body.get("records", [])
    )
    return BenchResult(
        config=body.get("config", {}),
        versions=body.get("versions", {}),
        started_at=body.get("started_at", ""),
        duration_s=body.get("duration_s", 0.0),
        interrupted=body.get("interrupted", False),
        summary=body.get("summary", {}),
        energy=body.get("energy"),
        request_energy=body.get("request_energy"),
        power_timeline=tuple(tuple(p) for p in body.get("power_timeline", [])),  # type: ignore[misc]
        workload_stats=body.get("workload_stats", {}),
        records=records,
    )


COMPARE_METRICS: tuple[tuple[str, str, bool], ...] = (
    ("summary.request_throughput_rps", "requests/s", True),
    ("summary.output_throughput_tps", "output tokens/s", True),
    ("summary.slo_attainment", "SLO attainment", True),
    ("summary.request_goodput_rps", "goodput requests/s", True),
    ("summary.token_goodput_tps", "goodput tokens/s", True),
    ("summary.ttft_s.p50", "TTFT p50 (s)", False),
    ("summary.ttft_s.p99", "TTFT p99 (s)", False),
    ("summary.tpot_s.p50", "TPOT p50 (s)", False),
    ("summary.tpot_s.p99", "TPOT p99 (s)", False),
    ("summary.itl_s.p99", "ITL p99 (s)", False),
    ("summary.e2e_s.p50", "e2e p50 (s)", False),
    ("summary.e2e_s.p99", "e2e p99 (s)", False),
    ("energy.whole_run.energy_j", "energy (J)", False),
    ("energy.whole_run.j_per_output_token", "J/output token", False),
    ("energy.whole_run.output_tokens_per_j", "output tokens/J", True),
    ("energy.steady.j_per_output_token", "J/output token (steady)", False),
    ("energy.j_per_request", "J/request", False),
    ("energy.good_tokens_per_j", "goodput tokens/J", True),
    ("energy.idle_share", "idle energy share", False),
    ("request_energy.j_per_request.p50", "J/request p50 (endpoint usage)", False),
    ("request_energy.j_per_session.p50", "J/session p50 (endpoint usage)", False),
)
"""(dotted path, label, higher is better) of every figure ``compare`` reports."""


@dataclass(frozen=True)
class Comparison:
    """One figure of two results side by side."""

    label: str
    """What the figure is."""
    a: float | None
    """Value in the first result."""
    b: float | None
    """Value in the second result."""
    higher_is_better: bool
    """Direction of improvement."""

    @property
    def ratio(self) -> float | None:
        """b / a, None when either is missing or a is 0."""
        if self.a is None or self.b is None or self.a == 0:
            return None
        return self.b / self.a

    @property
    def better(self) -> bool | None:
        """Whether B improves on A in this figure's direction; None when there is no ratio
        or it is 1."""
        ratio = self.ratio
        if ratio is None or ratio == 1:
            return None
        return (ratio > 1) == self.higher_is_better


def _dig(result: BenchResult, path: str) -> float | None:
    node: Any = {
        "summary": result.summary,
        "energy": result.energy,
        "request_energy": result.request_energy,
    }
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return float(node) if isinstance(node, int | float) and not isinstance(node, bool) else None


def compare(a: BenchResult, b: BenchResult) -> list[Comparison]:
    """Every figure of ``COMPARE_METRICS`` present in either result, side by side."""
    rows = []
    for path, label, higher in COMPARE_METRICS:
        va, vb = _dig(a, path), _dig(b, path)
        if va is not None or vb is not None:
            rows.append(Comparison(label, va, vb, higher))
    return rows


def energy_alike(a: BenchResult, b: BenchResult) -> bool:
    """False when both results measured energy, but from different sources or scopes: their
    energy ratios would compare different measurements."""
    if a.energy is None or b.energy is None:
        return True
    return (a.energy["source"], a.energy["scope"]) == (b.energy["source"], b.energy["scope"])


def errors_by_kind(results: Iterable[BenchResult]) -> dict[str, int]:
    """Failed measured requests per error kind, summed over ``results``."""
    errors: dict[str, int] = {}
    for r in results:
        for kind, n in r.summary.get("errors", {}).items():
            errors[kind] = errors.get(kind, 0) + n
    return errors
