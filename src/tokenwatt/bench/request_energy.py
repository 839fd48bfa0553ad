"""Energy per request and per session as the endpoint itself reported it in ``usage``, labelled
with the source and scope the endpoint states, beside the run's own (sampled) energy figures.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from tokenwatt.bench.metrics import Percentiles, summarize
from tokenwatt.bench.record import RequestRecord

__all__ = ["ENDPOINT_ENERGY_BASIS", "RequestEnergy", "summarize_request_energy"]

ENDPOINT_ENERGY_BASIS = (
    "the endpoint's own figures from usage.energy; tokenwatt serve splits each engine step's "
    "metered energy over the requests in that step by the tokens each processed"
)
"""How the per-request joules were obtained, stated beside them."""


def _label(values: Sequence[str]) -> str:
    """One label for the values the endpoint stated ("unstated" when it stated none)."""
    stated = sorted({v for v in values if v})
    if not stated:
        return "unstated"
    return stated[0] if len(stated) == 1 else "mixed: " + ", ".join(stated)


@dataclass(frozen=True)
class RequestEnergy:
    """Per-request and per-session joules the endpoint reported, over the measured requests."""

    source: str = "unstated"
    """The source the endpoint stated (``nvml``, ``estimated:cpu-model``); ``mixed: ...`` when
    requests stated different ones, ``unstated`` when none did."""
    scope: str = "unstated"
    """The scope the endpoint stated (``gpu``, ``cpu``), labelled as ``source`` is."""
    basis: str = ENDPOINT_ENERGY_BASIS
    """How the endpoint obtained the figures."""
    requests: int = 0
    """Completed measured requests that carried a figure."""
    unreported: int = 0
    """Completed measured requests that carried none (left out of every figure here)."""
    total_j: float = 0.0
    """Sum of the reported joules."""
    j_per_request: Percentiles = field(default_factory=Percentiles)
    """Distribution of joules per request."""
    sessions: int = 0
    """Sessions whose every turn was measured, completed and carried a figure."""
    sessions_left_out: int = 0
    """Other sessions (a warm-up, failed or unreported turn): their sum would be partial."""
    j_per_session: Percentiles | None = None
    """Distribution of a session's joules (sum of its turns); None when no session counts."""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        return asdict(self)


def _session_totals(records: Sequence[RequestRecord]) -> tuple[list[float], int]:
    """(joules of each complete session, sessions left out), over every record of a session."""
    turns: dict[str, list[RequestRecord]] = {}
    for r in records:
        if r.session_id is not None:
            turns.setdefault(r.session_id, []).append(r)
    totals: list[float] = []
    for session in turns.values():
        joules = [r.endpoint_energy_j for r in session if r.ok and not r.warmup]
        if len(joules) == len(session) and all(j is not None for j in joules):
            totals.append(math.fsum(j for j in joules if j is not None))
    return totals, len(turns) - len(totals)


def summarize_request_energy(records: Sequence[RequestRecord]) -> RequestEnergy | None:
    """The endpoint's per-request and per-session joules over ``records`` (every request of the
    run, warm-up included: warm-up requests are left out, and so are sessions that had one).
    None when no completed measured request carried a figure: absent, not zero."""
    done = [r for r in records if r.ok and not r.warmup]
    reported = [r for r in done if r.endpoint_energy_j is not None]
    if not reported:
        return None
    joules = [r.endpoint_energy_j for r in reported if r.endpoint_energy_j is not None]
    sessions, left_out = _session_totals(records)
    return RequestEnergy(
        source=_label([r.endpoint_energy_source for r in reported]),
        scope=_label([r.endpoint_energy_scope for r in reported]),
        requests=len(reported),
        unreported=len(done) - len(reported),
        total_j=math.fsum(joules),
        j_per_request=summarize(joules),
        sessions=len(sessions),
        sessions_left_out=left_out,
        j_per_session=summarize(sessions) if sessions else None,
    )
