"""Per-request and per-session energy as the endpoint reported it: known answers."""

from __future__ import annotations

import pytest

from tokenwatt.bench.record import RequestRecord
from tokenwatt.bench.request_energy import ENDPOINT_ENERGY_BASIS, summarize_request_energy


def _rec(
    rid: str,
    joules: float | None,
    session: str | None = None,
    error: str | None = None,
    warmup: bool = False,
    source: str = "nvml",
    scope: str = "gpu",
) -> RequestRecord:
    return RequestRecord(
        rid,
        error=error,  # type: ignore[arg-type]
        warmup=warmup,
        session_id=session,
        endpoint_energy_j=joules,
        endpoint_energy_source=source if joules is not None else "",
        endpoint_energy_scope=scope if joules is not None else "",
    )


def test_per_request_percentiles_and_total() -> None:
    """Joules 1, 2, 3, 4: p50 2.5, p90 3.7, mean 2.5, total 10, labelled as stated."""
    summary = summarize_request_energy([_rec(str(i), float(i)) for i in (4, 1, 3, 2)])
    assert summary is not None
    assert (summary.source, summary.scope, summary.basis) == ("nvml", "gpu", ENDPOINT_ENERGY_BASIS)
    assert (summary.requests, summary.unreported, summary.total_j) == (4, 0, 10.0)
    p = summary.j_per_request
    assert (p.count, p.mean, p.p50, p.min, p.max) == (4, 2.5, 2.5, 1.0, 4.0)
    assert p.p90 == pytest.approx(3.7)
    assert summary.j_per_session is None and summary.sessions == 0


def test_failed_and_warmup_requests_are_left_out() -> None:
    """A failed request and a warm-up request carry no weight; a completed request without a
    figure is counted as unreported."""
    records = [
        _rec("a", 2.0),
        _rec("b", 50.0, error="reset"),
        _rec("c", 70.0, warmup=True),
        _rec("d", None),
    ]
    summary = summarize_request_energy(records)
    assert summary is not None
    assert (summary.requests, summary.unreported, summary.total_j) == (1, 1, 2.0)


def test_per_session_sums_its_turns() -> None:
    """Sessions of turns (1, 2) and (3, 4, 5) sum to 3 and 12: p50 7.5, mean 7.5."""
    records = [
        _rec("s1t0", 1.0, "s1"),
        _rec("s1t1", 2.0, "s1"),
        _rec("s2t0", 3.0, "s2"),
        _rec("s2t1", 4.0, "s2"),
        _rec("s2t2", 5.0, "s2"),
    ]
    summary = summarize_request_energy(records)
    assert summary is not None and summary.j_per_session is not None
    assert (summary.sessions, summary.sessions_left_out) == (2, 0)
    s = summary.j_per_session
    assert (s.count, s.p50, s.mean, s.min, s.max) == (2, 7.5, 7.5, 3.0, 12.0)


@pytest.mark.parametrize(
    "bad_turn",
    [
        _rec("s2t1", 4.0, "s2", error="http_5xx"),
        _rec("s2t1", 4.0, "s2", warmup=True),
        _rec("s2t1", None, "s2"),
    ],
)
def test_a_session_with_a_missing_turn_is_left_out(bad_turn: RequestRecord) -> None:
    """A session with a failed, warm-up or unreported turn would have a partial sum: left out."""
    records = [_rec("s1t0", 1.0, "s1"), _rec("s1t1", 2.0, "s1"), _rec("s2t0", 3.0, "s2"), bad_turn]
    summary = summarize_request_energy(records)
    assert summary is not None and summary.j_per_session is not None
    assert (summary.sessions, summary.sessions_left_out) == (1, 1)
    assert summary.j_per_session.p50 == 3.0


def test_absent_not_zero_when_the_endpoint_reports_nothing() -> None:
    """No request carried a figure: the summary is None, not zeros."""
    assert summarize_request_energy([_rec("a", None), _rec("b", None)]) is None
    assert summarize_request_energy([]) is None


def test_labels_say_when_unstated_or_mixed() -> None:
    """A flat usage.energy_j states no source; two different sources are both named."""
    unstated = summarize_request_energy([_rec("a", 1.0, source="", scope="")])
    assert unstated is not None and (unstated.source, unstated.scope) == ("unstated", "unstated")
    mixed = summarize_request_energy([_rec("a", 1.0), _rec("b", 1.0, source="rapl", scope="cpu")])
    assert mixed is not None
    assert (mixed.source, mixed.scope) == ("mixed: nvml, rapl", "mixed: cpu, gpu")
