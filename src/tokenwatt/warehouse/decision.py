"""Load or recompute: per request, load only the leading blocks that are cheaper to load.

Load cost per block is an EWMA of observed fetch-and-verify times per tier; recompute cost comes
from the engine's measured prefill windows, fitted as a per-token cost growing with position
(see costmodel). With no measurement yet, loading is assumed cheaper (the first loads then
provide the measurement); a tier judged too slow is loaded again now and then to re-measure.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

from tokenwatt.errors import ConfigError

from .costmodel import PrefillCostModel

__all__ = ["DecisionConfig", "LoadDecider"]


@dataclass(frozen=True)
class DecisionConfig:
    """How the load-or-recompute decision weighs its measurements."""

    ewma_alpha: float = 0.2
    """Weight of the newest observation in every moving average (0 < alpha <= 1)."""
    margin: float = 1.0
    """Load a block only if load time x margin < recompute time (> 1 favours recompute)."""
    enabled: bool = True
    """False: always load every available block (no decision)."""
    explore_every: int = 16
    """After this many decisions in a row that left available blocks unloaded, load them all
    once to measure the load cost again (0: never). Without it, one slow load (a cold disk
    index, a hiccup) would shut a tier out for good, since only loads update its estimate."""

    def __post_init__(self) -> None:
        if not 0 < self.ewma_alpha <= 1:
            raise ConfigError(f"ewma_alpha must be in (0, 1], got {self.ewma_alpha}")
        if self.margin <= 0:
            raise ConfigError(f"margin must be > 0, got {self.margin}")
        if self.explore_every < 0:
            raise ConfigError(f"explore_every must be >= 0 (0: never), got {self.explore_every}")


def _ewma(old: float | None, new: float, alpha: float) -> float:
    return new if old is None else old + alpha * (new - old)


class LoadDecider:
    """Tracks load and prefill costs; :meth:`blocks_to_load` applies them. Thread-safe."""

    def __init__(self, config: DecisionConfig | None = None) -> None:
        self.config = config if config is not None else DecisionConfig()
        self._lock = threading.Lock()
        self._load_s_per_block: dict[str, float] = {}
        self._bytes_per_s: dict[str, float] = {}
        self.prefill_time = PrefillCostModel(self.config.ewma_alpha)
        """Seconds per prefilled token as a function of position (fitted from the engine)."""
        self.prefill_energy = PrefillCostModel(self.config.ewma_alpha)
        """Joules per prefilled token as a function of position (when a meter is attached)."""
        self.energy_source = "none"
        """Source label of the prefill energy measured (e.g. ``rapl``, ``estimated:cpu-model``)."""
        self._refusals = 0

    def observe_load(self, tier: str, blocks: int, nbytes: int, seconds: float) -> None:
        """``blocks`` blocks (``nbytes`` bytes) were fetched and verified from ``tier``."""
        if blocks <= 0 or seconds < 0:
            return
        a = self.config.ewma_alpha
        with self._lock:
            self._load_s_per_block[tier] = _ewma(
                self._load_s_per_block.get(tier), seconds / blocks, a
            )
            if seconds > 0:
                self._bytes_per_s[tier] = _ewma(self._bytes_per_s.get(tier), nbytes / seconds, a)

    def observe_prefill(
        self,
        tokens: int,
        seconds: float,
        energy_j: float | None = None,
        energy_source: str = "",
        *,
        start: int = 0,
    ) -> None:
        """The engine prefilled positions ``[start, start + tokens)`` in ``seconds``
        (using ``energy_j``, if measured)."""
        if tokens <= 0 or seconds <= 0:
            return
        with self._lock:
            self.prefill_time.observe(start, tokens, seconds)
            if energy_j is not None and energy_j >= 0:
                self.prefill_energy.observe(start, tokens, energy_j)
                self.energy_source = energy_source or "unlabelled"

    @property
    def prefill_s_per_token(self) -> float | None:
        """Fitted prefill seconds per token at position 0 (None before any measurement)."""
        with self._lock:
            coef = self.prefill_time.coefficients()
        return None if coef is None else coef[0]

    def recompute_s(self, start: int, tokens: int) -> float | None:
        """Predicted seconds to prefill positions ``[start, start + tokens)``."""
        with self._lock:
            return self.prefill_time.cost(start, tokens)

    def energy_saved(self, tokens: int) -> tuple[float | None, str]:
        """Predicted joules to prefill positions ``[0, tokens)``, and the label of the estimate."""
        with self._lock:
            joules = self.prefill_energy.cost(0, tokens)
            model = self.prefill_energy.describe("J")
        if joules is None:
            return None, "estimated:prefill-energy-model (no prefill energy measured yet)"
        return joules, f"estimated:prefill-energy-model ({model}; from {self.energy_source})"

    def load_s_per_block(self, tier: str) -> float | None:
        """Moving average of seconds to fetch and verify one block from ``tier``."""
        return self._load_s_per_block.get(tier)

    def bandwidth_bytes_per_s(self, tier: str) -> float | None:
        """Moving average of the bytes per second observed from ``tier``."""
        return self._bytes_per_s.get(tier)

    def loads_all(self, tier: str, start: int, block_tokens: int) -> bool:
        """Whether every block from ``tier`` at token position ``start`` or later is judged
        cheaper to load than to recompute (true before either cost was measured). Recompute
        cost grows with position, so the block at ``start`` is the one to check."""
        if not self.config.enabled:
            return True
        with self._lock:
            recompute_s = self.prefill_time.cost(start, block_tokens)
            load_s = self._load_s_per_block.get(tier)
        if recompute_s is None or load_s is None:
            return True
        return load_s * self.config.margin < recompute_s

    def blocks_to_load(self, tiers: Sequence[str], block_tokens: int) -> int:
        """How many leading blocks to load, given the tier holding each available block.

        Picks the prefix length that maximises the estimated time saved: block ``i`` saves its
        recompute time (which grows with its position) minus its load time. A tier with no
        measurement yet counts as free to load; with no prefill measurement, everything loads.
        """
        if not self.config.enabled:
            return len(tiers)
        with self._lock:
            if self.prefill_time.coefficients() is None:
                return len(tiers)
            recompute = [self.prefill_time.cost(i * block_tokens, block_tokens) or 0.0
                         for i in range(len(tiers))]  # fmt: skip
        best_k, best_saved, saved = 0, 0.0, 0.0
        for i, tier in enumerate(tiers):
            load_s = self._load_s_per_block.get(tier, 0.0) * self.config.margin
            saved += recompute[i] - load_s
            if saved >= best_saved:
                best_k, best_saved = i + 1, saved
        return self._explore(best_k, len(tiers))

    def _explore(self, best_k: int, available: int) -> int:
        """``best_k``, or every available block when it is time to measure loading again."""
        with self._lock:
            if best_k >= available:
                self._refusals = 0
                return best_k
            self._refusals += 1
            every = self.config.explore_every
            if every and self._refusals > every:
                self._refusals = 0
                return available
            return best_k
