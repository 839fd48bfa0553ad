"""The serving overhead outside the engine, per request: equally likely delays (quantiles).

Each request draws one delay by a hash of its id and the run's seed, not from a random stream,
so the draw does not depend on event order: fast and step mode give the same delays.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from tokenwatt.errors import ConfigError
from tokenwatt.plan.execution import mix_hash

__all__ = ["IngressDelay", "overhead_quantiles"]


@dataclass(frozen=True)
class IngressDelay:
    """Seconds a request spends in the serving stack (HTTP, tokenising, hand-off to the engine,
    the first token's way back to the client) besides the engine's own steps."""

    quantiles_s: tuple[float, ...] = (0.0,)
    """Equally likely delays in seconds; one value is a constant overhead."""
    seed: int = 0
    """Mixed into every draw; equal seeds and request ids, equal delays."""

    def __post_init__(self) -> None:
        if not self.quantiles_s:
            raise ConfigError("request overhead: give at least one delay in seconds")
        if any(not (q >= 0 and math.isfinite(q)) for q in self.quantiles_s):
            raise ConfigError(
                f"request overhead: delays must be finite and >= 0 s, got {self.quantiles_s}"
            )

    @property
    def constant(self) -> bool:
        """True when every request gets the same delay."""
        return len(self.quantiles_s) == 1

    @property
    def mean_s(self) -> float:
        """The mean delay in seconds."""
        return math.fsum(self.quantiles_s) / len(self.quantiles_s)

    def delay_s(self, request_id: str) -> float:
        """The delay of ``request_id`` in seconds."""
        q = self.quantiles_s
        if len(q) == 1:
            return q[0]
        h = mix_hash(zlib.crc32(request_id.encode()), self.seed & 0xFFFFFFFF, len(q))
        return q[h % len(q)]


def overhead_quantiles(samples_s: Sequence[float], points: int = 200) -> tuple[float, ...]:
    """``points`` quantiles (mid-points of equal-count bins) of measured per-request overheads;
    fewer when there are fewer samples. Negative samples (timer skew) count as 0."""
    if points < 1:
        raise ConfigError(f"overhead quantiles: points must be >= 1, got {points}")
    values = sorted(max(0.0, float(s)) for s in samples_s)
    if not values:
        raise ConfigError("overhead quantiles: no per-request overheads were measured")
    if any(not math.isfinite(v) for v in values):
        raise ConfigError("overhead quantiles: a measured overhead is not finite")
    n = min(points, len(values))
    return tuple(values[min(len(values) - 1, int((i + 0.5) * len(values) / n))] for i in range(n))
