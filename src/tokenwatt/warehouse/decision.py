"""Load or recompute: per request, load only the leading blocks that are cheaper to load.

Load cost per block is an EWMA of observed fetch-and-verify times per tier; recompute cost is
an EWMA of the engine's measured prefill seconds per token. With no measurement yet, loading is
assumed cheaper (the first loads then provide the measurement).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

from tokenwatt.errors import ConfigError

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

    def __post_init__(self) -> None:
        if not 0 < self.ewma_alpha <= 1:
            raise ConfigError(f"ewma_alpha must be in (0, 1], got {self.ewma_alpha}")
        if self.margin <= 0:
            raise ConfigError(f"margin must be > 0, got {self.margin}")


def _ewma(old: float | None, new: float, alpha: float) -> float:
    return new if old is None else old + alpha * (new - old)


class LoadDecider:
    """Tracks load and prefill speed; :meth:`blocks_to_load` applies them. Thread-safe."""

    def __init__(self, config: DecisionConfig | None = None) -> None:
        self.config = config if config is not None else DecisionConfig()
        self._lock = threading.Lock()
        self._load_s_per_block: dict[str, float] = {}
        self._bytes_per_s: dict[str, float] = {}
        self._prefill_s_per_token: float | None = None
        self._energy_j_per_token: float | None = None
        self.energy_source = "none"
        """Source label of the prefill energy measured (e.g. ``rapl``, ``estimated:cpu-model``)."""

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
        self, tokens: int, seconds: float, energy_j: float | None = None, energy_source: str = ""
    ) -> None:
        """The engine prefilled ``tokens`` tokens in ``seconds`` (and ``energy_j`` if measured)."""
        if tokens <= 0 or seconds <= 0:
            return
        a = self.config.ewma_alpha
        with self._lock:
            self._prefill_s_per_token = _ewma(self._prefill_s_per_token, seconds / tokens, a)
            if energy_j is not None and energy_j >= 0:
                self._energy_j_per_token = _ewma(self._energy_j_per_token, energy_j / tokens, a)
                self.energy_source = energy_source or "unlabelled"

    @property
    def prefill_s_per_token(self) -> float | None:
        """Moving average of measured prefill seconds per token (None before any measurement)."""
        return self._prefill_s_per_token

    @property
    def energy_j_per_token(self) -> float | None:
        """Moving average of measured prefill joules per token (None before any measurement)."""
        return self._energy_j_per_token

    def load_s_per_block(self, tier: str) -> float | None:
        """Moving average of seconds to fetch and verify one block from ``tier``."""
        return self._load_s_per_block.get(tier)

    def bandwidth_bytes_per_s(self, tier: str) -> float | None:
        """Moving average of the bytes per second observed from ``tier``."""
        return self._bytes_per_s.get(tier)

    def blocks_to_load(self, tiers: Sequence[str], block_tokens: int) -> int:
        """How many leading blocks to load, given the tier holding each available block.

        Picks the prefix length that maximises the estimated time saved; a block whose tier has
        no measurement yet counts as free to load.
        """
        if not self.config.enabled or self._prefill_s_per_token is None:
            return len(tiers)
        recompute_s = self._prefill_s_per_token * block_tokens
        best_k, best_saved, saved = 0, 0.0, 0.0
        for i, tier in enumerate(tiers):
            load_s = self._load_s_per_block.get(tier, 0.0) * self.config.margin
            saved += recompute_s - load_s
            if saved >= best_saved:
                best_k, best_saved = i + 1, saved
        return best_k
