"""Ingestion checks between a feed and its consumers: bad bars are quarantined, never delivered.

`IngestionGate.ingest(bar)` returns the bar when it passes and ``None`` when it is quarantined;
every finding is an event handed to ``sink`` (and kept in ``gate.events``):

- `DataQuarantined` (the bar is withheld) for, checked in this order:
  ``out_of_order`` (``ts`` before the symbol's latest), ``duplicate`` (``ts`` equal to it),
  ``ohlc`` (a price not positive and finite, ``low > min(open, close)``, ``high < max(open, close)``,
  or a negative or non-finite volume) and ``spike`` (a log return beyond ``spike_sigmas`` times the
  root-mean-square of the last ``spike_window`` accepted returns, once ``spike_min_returns`` are known;
  a move of one tick never counts, and over a gap of n intervals the limit widens by sqrt(n)).
- `DataGap` when bars are missing for the configured ``interval_ns``; the bar after the gap is good
  data and passes.
- `FeedStale` when a symbol has sent nothing for ``stale_after_seconds`` of the gate's clock, and
  `FeedResumed` when it sends again. Call `check_stale` from a timer; `run` also checks on each arrival.

A real jump of the price level would otherwise be quarantined forever against the old close: after
``spike_accept_after`` consecutive spikes the next bar is accepted as the new level, the return
window restarts, and a `PriceLevelReset` records it.

The event types live in `qlcore.events.facts`, registered with the store codec.
"""
from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, fields

from qlcore.data.feed import NS_PER_SECOND, Feed, FeedClock
from qlcore.events.facts import (
    DataGap,
    DataQuarantined,
    FeedResumed,
    FeedStale,
    PriceLevelReset,
    QuarantineKind,
)
from qlcore.events.types import Event
from qlcore.model.market import Bar


@dataclass(frozen=True, slots=True)
class QualityConfig:
    """Limits of the ingestion checks. ``interval_ns=None`` turns gap detection off (daily bars,
    whose calendar has weekends and holidays); ``stale_after_seconds=None`` turns staleness off."""

    interval_ns: int | None = NS_PER_SECOND
    stale_after_seconds: float | None = 5.0
    spike_sigmas: float = 6.0
    spike_window: int = 100
    spike_min_returns: int = 20
    spike_accept_after: int = 5
    tick: float = 0.01
    source: str = ""

    def __post_init__(self) -> None:
        if self.spike_sigmas <= 0:
            raise ValueError(f"spike_sigmas must be positive, got {self.spike_sigmas!r}")
        if not 1 <= self.spike_min_returns <= self.spike_window:
            raise ValueError(
                f"spike_min_returns must be in 1..spike_window ({self.spike_window}), "
                f"got {self.spike_min_returns!r}"
            )
        if self.interval_ns is not None and self.interval_ns <= 0:
            raise ValueError(f"interval_ns must be positive or None, got {self.interval_ns!r}")

    @classmethod
    def from_mapping(cls, data: dict[str, object]) -> QualityConfig:
        """Build from a mapping, refusing keys that are not fields."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown quality config keys {unknown}; known: {sorted(known)}")
        return cls(**data)  # type: ignore[arg-type]


@dataclass(slots=True)
class _SymbolState:
    last_ts: int | None = None
    last_close: float | None = None
    last_seen: int = 0
    stale: bool = False
    spikes: int = 0
    returns: deque[float] = field(default_factory=deque)
    sum_sq: float = 0.0
    pops: int = 0


# relative slack on the spike limit, so a move computed to sit exactly at the limit is not
# quarantined by the last bit of a float
_LIMIT_SLACK = 1e-9


class IngestionGate:
    """Validates bars from a feed; only good bars come out (see module docstring)."""

    def __init__(
        self,
        config: QualityConfig,
        clock: FeedClock,
        *,
        sink: Callable[[Event], None] | None = None,
        symbols: Iterable[str] = (),
    ) -> None:
        self.config = config
        self.clock = clock
        self.events: list[Event] = []
        self._sink = sink
        now = clock.now
        # symbols expected from the start can go stale before their first bar
        self._state: dict[str, _SymbolState] = {s: _SymbolState(last_seen=now) for s in symbols}

    def _emit(self, event: Event) -> None:
        self.events.append(event)
        if self._sink is not None:
            self._sink(event)

    def run(self, feed: Feed) -> Iterator[Bar]:
        """Iterate ``feed`` and yield only good bars."""
        for bar in feed:
            self.check_stale()
            good = self.ingest(bar)
            if good is not None:
                yield good

    def poll(self, feed: Feed, max_steps: int | None = None) -> list[Bar]:
        """Poll ``feed`` (at most ``max_steps`` time steps), check staleness, and return the good bars."""
        bars = feed.poll(max_steps)
        self.check_stale()
        return [b for b in bars if self.ingest(b) is not None]

    def check_stale(self) -> list[FeedStale]:
        """Emit `FeedStale` for each symbol silent longer than the limit (once per silence)."""
        limit_s = self.config.stale_after_seconds
        if limit_s is None:
            return []
        limit = round(limit_s * NS_PER_SECOND)
        now = self.clock.now
        found = []
        for symbol, st in self._state.items():
            if not st.stale and now - st.last_seen > limit:
                st.stale = True
                event = FeedStale(now, symbol, st.last_seen, limit, self.config.source)
                found.append(event)
                self._emit(event)
        return found

    def ingest(self, bar: Bar) -> Bar | None:
        """The bar if it passes every check, else ``None`` after a `DataQuarantined`."""
        now = self.clock.now
        st = self._state.get(bar.symbol)
        if st is None:
            st = self._state[bar.symbol] = _SymbolState()
        if st.stale:
            st.stale = False
            self._emit(FeedResumed(now, bar.symbol, now - st.last_seen, self.config.source))
        st.last_seen = now

        gap_steps = 1
        if st.last_ts is not None:
            if bar.ts < st.last_ts:
                self._quarantine(now, bar, QuarantineKind.OUT_OF_ORDER,
                                 f"out_of_order: ts {bar.ts} is before the latest {st.last_ts}")
                return None
            if bar.ts == st.last_ts:
                self._quarantine(now, bar, QuarantineKind.DUPLICATE,
                                 f"duplicate: a bar for ts {bar.ts} was already received")
                return None
            interval = self.config.interval_ns
            if interval is not None:
                gap_steps = max((bar.ts - st.last_ts) // interval, 1)
                if gap_steps > 1:
                    self._emit(DataGap(now, bar.symbol, st.last_ts, bar.ts, gap_steps - 1,
                                       self.config.source))
        st.last_ts = bar.ts

        problem = _ohlc_problem(bar)
        if problem is not None:
            self._quarantine(now, bar, QuarantineKind.OHLC, f"ohlc: {problem}")
            return None

        if st.last_close is not None:
            r = math.log(bar.close / st.last_close)
            spike = self._spike_reason(st, r, bar.close, gap_steps)
            if spike is not None:
                st.spikes += 1
                if st.spikes <= self.config.spike_accept_after:
                    self._quarantine(now, bar, QuarantineKind.SPIKE, spike)
                    return None
                self._emit(PriceLevelReset(now, bar.symbol, st.last_close, bar.close,
                                           st.spikes - 1, self.config.source))
                st.returns.clear()
                st.sum_sq = 0.0
            else:
                self._add_return(st, r)
            st.spikes = 0
        st.last_close = bar.close
        return bar

    def _quarantine(self, now: int, bar: Bar, kind: QuarantineKind, reason: str) -> None:
        self._emit(DataQuarantined.of(now, kind, reason, bar, self.config.source))
        return None

    def _spike_reason(self, st: _SymbolState, r: float, close: float, gap_steps: int) -> str | None:
        cfg = self.config
        prev = st.last_close
        assert prev is not None
        if len(st.returns) < cfg.spike_min_returns or abs(close - prev) <= cfg.tick * (1 + _LIMIT_SLACK):
            return None
        rms = math.sqrt(max(st.sum_sq, 0.0) / len(st.returns))
        sigma = rms * math.sqrt(gap_steps)
        if sigma == 0.0:
            return f"spike: close {close:.2f} moved from {prev:.2f} after {len(st.returns)} flat returns"
        z = abs(r) / sigma
        if z <= cfg.spike_sigmas * (1 + _LIMIT_SLACK):
            return None
        return (f"spike: close {close:.2f} is {z:.1f} sigma from {prev:.2f} "
                f"(limit {cfg.spike_sigmas:g})")

    def _add_return(self, st: _SymbolState, r: float) -> None:
        st.returns.append(r)
        st.sum_sq += r * r
        if len(st.returns) > self.config.spike_window:
            old = st.returns.popleft()
            st.sum_sq -= old * old
            st.pops += 1
            if st.pops % self.config.spike_window == 0:  # a running sum drifts; start it afresh
                st.sum_sq = math.fsum(x * x for x in st.returns)


def _ohlc_problem(bar: Bar) -> str | None:
    o, h, lo, c = bar.open, bar.high, bar.low, bar.close
    for name, value in (("open", o), ("high", h), ("low", lo), ("close", c)):
        if not (math.isfinite(value) and value > 0):
            return f"{name} {value!r} is not a positive number"
    if not (math.isfinite(bar.volume) and bar.volume >= 0):
        return f"volume {bar.volume!r} is not a non-negative number"
    if lo > min(o, c):
        return f"low {lo:.2f} is above min(open, close) {min(o, c):.2f}"
    if h < max(o, c):
        return f"high {h:.2f} is below max(open, close) {max(o, c):.2f}"
    return None
