"""Market conditions: rolling realized volatility per symbol and its regime.

Realized volatility is the root-mean-square of the last ``window`` log returns of the close,
annualized by ``sqrt(bars_per_year)`` (252 for daily bars, 252 * 23,400 for 1-second bars).
Regimes are named intervals of it: ``bounds=(0.15, 0.35)`` with ``names=("low", "normal", "high")``
is low below 15%, normal to 35%, high above. To keep a volatility hovering at a bound from flapping,
a regime is left only once the volatility is beyond the bound by ``hysteresis`` (relative): with
10%, normal becomes high above 38.5% and high becomes normal again below 31.5%.

The first classification (once ``window`` returns are known) is reported with ``old=None``.
The event type lives in `qlcore.events.facts`, registered with the store codec.
"""
from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, fields

from qlcore.events.facts import VolatilityRegimeChanged
from qlcore.events.types import Event
from qlcore.model.market import Bar


@dataclass(frozen=True, slots=True)
class RegimeConfig:
    """Window, annualization and named regimes; rejects unknown keys via `from_mapping`."""

    window: int = 60
    bars_per_year: float = 252.0
    bounds: tuple[float, ...] = (0.15, 0.35)
    names: tuple[str, ...] = ("low", "normal", "high")
    hysteresis: float = 0.10

    def __post_init__(self) -> None:
        if self.window < 2:
            raise ValueError(f"window must be at least 2 returns, got {self.window!r}")
        if len(self.names) != len(self.bounds) + 1:
            raise ValueError(
                f"{len(self.bounds)} bounds need {len(self.bounds) + 1} names, got {self.names!r}"
            )
        if list(self.bounds) != sorted(set(self.bounds)) or any(b <= 0 for b in self.bounds):
            raise ValueError(f"bounds must be positive and strictly increasing, got {self.bounds!r}")
        if not 0 <= self.hysteresis < 1:
            raise ValueError(f"hysteresis must be in [0, 1), got {self.hysteresis!r}")

    @classmethod
    def from_mapping(cls, data: dict[str, object]) -> RegimeConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown regime config keys {unknown}; known: {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})  # type: ignore[arg-type]


@dataclass(slots=True)
class _Rolling:
    last_close: float | None = None
    returns: deque[float] = field(default_factory=deque)
    sum_sq: float = 0.0
    pops: int = 0
    regime: int | None = None


class VolatilityMonitor:
    """Feed it good bars (after the ingestion gate); it emits `VolatilityRegimeChanged`."""

    def __init__(self, config: RegimeConfig, *, sink: Callable[[Event], None] | None = None) -> None:
        self.config = config
        self.events: list[VolatilityRegimeChanged] = []
        self._sink = sink
        self._state: dict[str, _Rolling] = {}
        self._scale = math.sqrt(config.bars_per_year)

    def vol(self, symbol: str) -> float | None:
        """Annualized realized volatility of ``symbol``, once ``window`` returns are known."""
        st = self._state.get(symbol)
        if st is None or len(st.returns) < self.config.window:
            return None
        return math.sqrt(max(st.sum_sq, 0.0) / len(st.returns)) * self._scale

    def regime(self, symbol: str) -> str | None:
        st = self._state.get(symbol)
        return None if st is None or st.regime is None else self.config.names[st.regime]

    def on_bar(self, bar: Bar) -> VolatilityRegimeChanged | None:
        """Update ``bar.symbol``'s volatility; the event when its regime changed, else None."""
        st = self._state.get(bar.symbol)
        if st is None:
            st = self._state[bar.symbol] = _Rolling()
        prev, st.last_close = st.last_close, bar.close
        if prev is None:
            return None
        r = math.log(bar.close / prev)
        st.returns.append(r)
        st.sum_sq += r * r
        window = self.config.window
        if len(st.returns) > window:
            old = st.returns.popleft()
            st.sum_sq -= old * old
            st.pops += 1
            if st.pops % window == 0:  # a running sum drifts; start it afresh
                st.sum_sq = math.fsum(x * x for x in st.returns)
        vol = self.vol(bar.symbol)
        if vol is None:
            return None
        new = self._classify(vol, st.regime)
        if new == st.regime:
            return None
        names = self.config.names
        event = VolatilityRegimeChanged(
            bar.ts, bar.symbol, None if st.regime is None else names[st.regime], names[new], vol
        )
        st.regime = new
        self.events.append(event)
        if self._sink is not None:
            self._sink(event)
        return event

    def _classify(self, vol: float, current: int | None) -> int:
        bounds, h = self.config.bounds, self.config.hysteresis
        if current is None:
            return sum(vol > b for b in bounds)
        regime = current
        # bounds[i] separates regime i from i + 1
        while regime < len(bounds) and vol > bounds[regime] * (1 + h):
            regime += 1
        while regime > 0 and vol < bounds[regime - 1] * (1 - h):
            regime -= 1
        return regime
