"""Prefill cost as a function of position: ``cost(token at position p) = a + b * p``.

Attention makes a token late in a long context cost more than an early one, so the cost of
recomputing a cached prefix is not its length times the average cost of the tokens the engine
computes (those sit at the end of the context). The model is fitted by exponentially weighted
least squares on measured prefill windows (start position, token count, total seconds or joules).
"""

from __future__ import annotations

from dataclasses import dataclass

from tokenwatt.errors import ConfigError

__all__ = ["PrefillCostModel", "span_features"]


def span_features(start: int, tokens: int) -> tuple[float, float]:
    """(sum of 1, sum of positions) over positions ``[start, start + tokens)``."""
    return float(tokens), tokens * start + tokens * (tokens - 1) / 2.0


@dataclass
class _Sums:
    s11: float = 0.0
    s12: float = 0.0
    s22: float = 0.0
    s1y: float = 0.0
    s2y: float = 0.0


class PrefillCostModel:
    """Fits ``a + b * position`` per token; ``alpha`` is the weight of the newest window.

    With one window, or windows that cannot separate ``a`` from ``b`` (all at one position), it
    falls back to a constant cost per token. A fit that would make either negative is replaced
    by the better of the two one-term fits (``a`` alone or ``b`` alone): the non-negative least
    squares. On long contexts attention dominates and a fixed cost per window can pull ``a``
    below 0; a constant per token would then price a cached prefix's early, cheap positions
    like the costly late ones the engine computes.
    """

    def __init__(self, alpha: float = 0.2) -> None:
        if not 0 < alpha <= 1:
            raise ConfigError(f"alpha must be in (0, 1], got {alpha}")
        self.alpha = alpha
        self.samples = 0
        self._s = _Sums()

    def observe(self, start: int, tokens: int, total: float) -> None:
        """Positions ``[start, start + tokens)`` cost ``total`` (seconds or joules)."""
        if tokens <= 0 or total < 0 or start < 0:
            return
        x1, x2 = span_features(start, tokens)
        keep = 1.0 - self.alpha if self.samples else 0.0
        s = self._s
        s.s11 = keep * s.s11 + x1 * x1
        s.s12 = keep * s.s12 + x1 * x2
        s.s22 = keep * s.s22 + x2 * x2
        s.s1y = keep * s.s1y + x1 * total
        s.s2y = keep * s.s2y + x2 * total
        self.samples += 1

    def coefficients(self) -> tuple[float, float] | None:
        """``(a, b)``: per-token cost at position 0 and its growth per position (None: unfitted)."""
        if not self.samples:
            return None
        s = self._s
        det = s.s11 * s.s22 - s.s12 * s.s12
        if self.samples >= 2 and det > 1e-9 * s.s11 * s.s22:
            a = (s.s22 * s.s1y - s.s12 * s.s2y) / det
            b = (s.s11 * s.s2y - s.s12 * s.s1y) / det
            if a >= 0 and b >= 0:
                return a, b
            if s.s22 > 0 and s.s2y > 0 and s.s2y * s.s2y / s.s22 > s.s1y * s.s1y / s.s11:
                # total = b * positions explains more of the windows than a * tokens does
                # (each one-term fit lowers the squared error by its term's y^2 / x^2 sum)
                return 0.0, s.s2y / s.s22
        # Constant per-token cost: least squares of total = a * tokens.
        return s.s1y / s.s11, 0.0

    def cost(self, start: int, tokens: int) -> float | None:
        """Predicted cost of positions ``[start, start + tokens)``; None if unfitted."""
        coef = self.coefficients()
        if coef is None:
            return None
        x1, x2 = span_features(start, tokens)
        return coef[0] * x1 + coef[1] * x2

    def describe(self, unit: str) -> str:
        """The fitted model in words, e.g. ``1.2e-04 J/token + 3.4e-08 J/token per position``."""
        coef = self.coefficients()
        if coef is None:
            return "not fitted"
        return f"{coef[0]:.3g} {unit}/token + {coef[1]:.3g} {unit}/token per position"
