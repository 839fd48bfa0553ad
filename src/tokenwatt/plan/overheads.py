"""Per-request serving overhead of a served calibration: client TTFT less engine TTFT, paired by
request id, and the nearest-rank quantile the benchmark prints them with."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from tokenwatt.bench.record import RequestRecord
from tokenwatt.errors import ConfigError

__all__ = ["quantile", "request_overheads_s"]


def request_overheads_s(
    records: Sequence[RequestRecord], engine_ttfts_s: Mapping[str, float]
) -> tuple[float, ...]:
    """Client TTFT less engine TTFT per record with a first token, in ``records``' order,
    paired by request id (``engine_ttfts_s`` is keyed by the id each request was submitted
    under: ``ServedSession.serve`` sends it as the tenant). A request that got its first token
    in the engine but failed at the client (a stall, a timeout) has no record to pair with and
    shifts nothing.

    Raises ConfigError when a record has no engine TTFT under its id, or a client TTFT shorter
    than the engine's: the client sends before the engine submits and reads after the engine
    emits, so either means the ids did not reach the engine as tenants."""
    answered = [
        (r.request_id, r.first_token_s - r.start_s) for r in records if r.first_token_s is not None
    ]
    missing = [rid for rid, _ in answered if rid not in engine_ttfts_s]
    if missing:
        raise ConfigError(
            f"served calibration: {len(missing)} of {len(answered)} answered requests have no "
            f"engine TTFT under their id (first: {missing[0]!r}); the server must pass each "
            "request's `user` field to the engine as its tenant (serve without API keys)"
        )
    for rid, client_s in answered:
        if client_s < engine_ttfts_s[rid]:
            raise ConfigError(
                f"served calibration: request {rid!r} took {client_s * 1e3:.3f} ms to its first "
                f"token at the client but {engine_ttfts_s[rid] * 1e3:.3f} ms in the engine: the "
                "engine's TTFT under that id is another request's"
            )
    return tuple(client_s - engine_ttfts_s[rid] for rid, client_s in answered)


def quantile(values: Sequence[float], q: float) -> float:
    """The nearest-rank q-quantile of ``values`` (the benchmark's printouts)."""
    s = sorted(values)
    if not s:
        raise ConfigError("quantile of no values")
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]
