"""Seeded length and delay distributions for synthetic workloads.

Lognormal around a median, clamped to a range: the shape token lengths and think times have in
public traces (Azure 2023 conversation lengths fit it to within their median and mean).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from tokenwatt.errors import ConfigError

__all__ = ["LogNormal"]


@dataclass(frozen=True)
class LogNormal:
    """A lognormal distribution given by its median and log-space sigma, clamped to a range.

    ``sigma == 0`` gives the constant ``median``. Samples are ``median * exp(sigma * N(0, 1))``
    clamped to ``[minimum, maximum]``; :meth:`sample_int` rounds to the nearest integer first.
    """

    median: float = 128.0
    """Median of the unclamped distribution (tokens or seconds)."""
    sigma: float = 0.0
    """Standard deviation of the log; 0 is a constant, 1 is heavy-tailed (mean = 1.65 x median)."""
    minimum: float = 1.0
    """Smallest value returned."""
    maximum: float = 1_000_000.0
    """Largest value returned."""

    def __post_init__(self) -> None:
        if not self.median > 0:
            raise ConfigError(f"lognormal median must be > 0, got {self.median}")
        if self.sigma < 0:
            raise ConfigError(f"lognormal sigma must be >= 0, got {self.sigma}")
        if self.minimum < 0 or self.maximum < self.minimum:
            raise ConfigError(
                f"lognormal range [{self.minimum}, {self.maximum}] is empty or negative; "
                f"use 0 <= minimum <= maximum"
            )

    @property
    def mean(self) -> float:
        """Mean of the unclamped distribution: median * exp(sigma^2 / 2)."""
        return self.median * math.exp(self.sigma * self.sigma / 2)

    def sample(self, rng: random.Random) -> float:
        """One draw, clamped to the range."""
        value = (
            self.median if self.sigma == 0 else rng.lognormvariate(0.0, self.sigma) * self.median
        )
        return min(self.maximum, max(self.minimum, value))

    def sample_int(self, rng: random.Random) -> int:
        """One draw rounded to an integer, clamped to the range (rounded inward)."""
        value = round(self.sample(rng))
        return int(min(math.floor(self.maximum), max(math.ceil(self.minimum), value)))

    def scaled(self, factor: float) -> LogNormal:
        """The same shape with median and range multiplied by ``factor`` (e.g. for a tiny model)."""
        if not factor > 0:
            raise ConfigError(f"scale factor must be > 0, got {factor}")
        return LogNormal(
            self.median * factor, self.sigma, self.minimum * factor, self.maximum * factor
        )
