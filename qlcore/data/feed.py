"""Market data feeds: bars arriving over time, paced by an injectable clock.

A `Feed` hands out `Bar`s in time order, either pushed through iteration (``for bar in feed``, which
sleeps on the feed's clock until each step is due) or pulled with ``poll()`` (every bar due by now,
never blocking). A live adapter implements the same protocol later.

Pacing is by *steps*: a step is every bar sharing one timestamp, and ``step_seconds`` is the clock
time between consecutive steps (``1.0`` replays one trading day a second from daily bars, or
synthetic 1-second bars in real time); ``None`` releases everything at once. Tests pass a
`ManualClock`, whose ``sleep`` only moves its own time, so nothing really waits.

``after_ts`` resumes a feed after a bar already seen (a restarted engine): every bar at or before it
is dropped without pacing, and the clock starts at the first step after it, which is due at once.
"""
from __future__ import annotations

import math
import threading
import time
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, cast, runtime_checkable

import numpy as np
import pandas as pd

from qlcore.model.market import Bar

NS_PER_SECOND = 1_000_000_000
_SESSION_SECONDS = 23_400  # 6.5 hours: turns daily volatility and volume into per-second figures


# --- clocks --------------------------------------------------------------------------------------
class FeedClock(Protocol):
    """What a feed needs of time: read it (integer nanoseconds) and wait on it."""

    @property
    def now(self) -> int: ...

    def sleep(self, seconds: float) -> None: ...


class WallFeedClock:
    """Real time: epoch nanoseconds, real sleeping."""

    @property
    def now(self) -> int:
        return time.time_ns()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class ManualClock:
    """Test time: ``sleep`` and ``advance`` move ``now`` at once and nothing waits."""

    __slots__ = ("now", "slept")

    def __init__(self, start: int = 0) -> None:
        self.now = start
        self.slept: list[float] = []  # every sleep asked for, in seconds

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        if seconds > 0:
            self.now += round(seconds * NS_PER_SECOND)

    def advance(self, seconds: float) -> None:
        self.now += round(seconds * NS_PER_SECOND)


# --- the protocol --------------------------------------------------------------------------------
@runtime_checkable
class Feed(Protocol):
    """A source of bars in time order (per symbol strictly increasing ``ts`` when healthy)."""

    def start(self) -> None:
        """Begin delivering; the pacing clock starts now."""

    def stop(self) -> None:
        """Stop delivering; iteration ends before the next bar and ``poll`` returns nothing."""

    def poll(self, max_steps: int | None = None) -> list[Bar]:
        """Every bar due by the clock's ``now`` (at most ``max_steps`` time steps of them: a consumer
        that fell behind catches up over several polls), without blocking; empty when none is due."""
        ...

    def __iter__(self) -> Iterator[Bar]:
        """Bars one by one, sleeping on the clock until each is due; starts the feed if needed."""
        ...

    @property
    def exhausted(self) -> bool:
        """True once a finite feed has handed out its last bar."""
        ...


class _PacedFeed:
    """Shared pacing: subclasses yield ``(release offset in ns from start, bars of one step)``."""

    def __init__(self, clock: FeedClock | None, after_ts: int | None = None) -> None:
        self.clock: FeedClock = clock if clock is not None else WallFeedClock()
        self.after_ts = after_ts
        self._stopped = threading.Event()
        self._started = False
        self._start_ns = 0
        self._steps_left: Iterator[tuple[int, list[Bar]]] = iter(())
        self._pending: tuple[int, list[Bar]] | None = None
        self._done = False

    def _steps(self) -> Iterator[tuple[int, list[Bar]]]:
        raise NotImplementedError

    def start(self) -> None:
        if self._started:
            raise RuntimeError(f"{type(self).__name__} was already started; make a new one to replay")
        self._started = True
        self._start_ns = self.clock.now
        self._steps_left = self._steps() if self.after_ts is None else self._resumed(self.after_ts)

    def _resumed(self, after_ts: int) -> Iterator[tuple[int, list[Bar]]]:
        # the steps before the resume point are skipped, not waited for: the first step after it is
        # the feed's new origin (offset 0, due at start); later bars at or before it (a resent old
        # bar) are dropped too, as a consumer that has seen them would quarantine them
        origin: int | None = None
        for offset, bars in self._steps():
            kept = [b for b in bars if b.ts > after_ts]
            if not kept:
                continue
            if origin is None:
                origin = offset
            yield offset - origin, kept

    def stop(self) -> None:
        self._stopped.set()

    @property
    def exhausted(self) -> bool:
        return self._done

    def _next_step(self) -> tuple[int, list[Bar]] | None:
        if self._pending is None and not self._done:
            self._pending = next(self._steps_left, None)
            self._done = self._pending is None
        return self._pending

    def poll(self, max_steps: int | None = None) -> list[Bar]:
        if not self._started:
            raise RuntimeError(f"{type(self).__name__}.poll() before start()")
        due: list[Bar] = []
        left = -1 if max_steps is None else max_steps
        while left and not self._stopped.is_set():
            step = self._next_step()
            if step is None or self._start_ns + step[0] > self.clock.now:
                break
            due.extend(step[1])
            self._pending = None
            left -= 1
        return due

    @property
    def behind_s(self) -> float:
        """How long the next undelivered step has been due, in seconds (0 when the consumer keeps up)."""
        step = self._next_step() if self._started and not self._stopped.is_set() else None
        if step is None:
            return 0.0
        return max(self.clock.now - (self._start_ns + step[0]), 0) / NS_PER_SECOND

    def __iter__(self) -> Iterator[Bar]:
        if not self._started:
            self.start()
        while not self._stopped.is_set():
            step = self._next_step()
            if step is None:
                return
            wait_ns = self._start_ns + step[0] - self.clock.now
            if wait_ns > 0:
                self.clock.sleep(wait_ns / NS_PER_SECOND)
            self._pending = None
            for bar in step[1]:
                if self._stopped.is_set():
                    return
                yield bar


def _step_ns(step_seconds: float | None) -> int:
    if step_seconds is None:
        return 0
    if not (math.isfinite(step_seconds) and step_seconds >= 0):
        raise ValueError(f"step_seconds must be a non-negative number or None, got {step_seconds!r}")
    return round(step_seconds * NS_PER_SECOND)


# --- replay of canonical frames ------------------------------------------------------------------
class ReplayFeed(_PacedFeed):
    """Canonical bar frames of several symbols merged in time order and replayed step by step.

    Bars sharing a timestamp come out in the order of ``frames`` (a mapping symbol -> frame).
    ``start``/``end`` (inclusive, anything ``pandas.Timestamp`` accepts) cut the frames first.
    """

    def __init__(
        self,
        frames: Mapping[str, pd.DataFrame],
        *,
        step_seconds: float | None = 1.0,
        clock: FeedClock | None = None,
        start: str | pd.Timestamp | None = None,
        end: str | pd.Timestamp | None = None,
        after_ts: int | None = None,
    ) -> None:
        super().__init__(clock, after_ts)
        if not frames:
            raise ValueError("ReplayFeed needs at least one frame")
        self.step_ns = _step_ns(step_seconds)
        self._bars = _merge(frames, start, end)

    @classmethod
    def from_sample(cls, symbols: Iterable[str], **kwargs: object) -> ReplayFeed:
        """Replay the embedded real daily bars (`qlcore.data.load_sample`) of ``symbols``."""
        from qlcore.data.sample import load_sample

        return cls({s.upper(): load_sample(s) for s in symbols}, **kwargs)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self._bars)

    def steps(self) -> Iterator[list[Bar]]:
        """Every bar this feed delivers, grouped by timestamp, in order, without pacing."""
        step: list[Bar] = []
        for bar in self._bars:
            if step and bar.ts != step[0].ts:
                yield step
                step = []
            step.append(bar)
        if step:
            yield step

    def _steps(self) -> Iterator[tuple[int, list[Bar]]]:
        for k, step in enumerate(self.steps()):
            yield k * self.step_ns, step


def _merge(
    frames: Mapping[str, pd.DataFrame],
    start: str | pd.Timestamp | None,
    end: str | pd.Timestamp | None,
) -> list[Bar]:
    rows: list[tuple[int, int, Bar]] = []
    for rank, (symbol, frame) in enumerate(frames.items()):
        part = frame.loc[start:end]
        ts = cast(pd.DatetimeIndex, part.index).asi8  # bar frames are indexed by time
        cols = [part[c].to_numpy(dtype="float64").tolist() for c in ("open", "high", "low", "close", "volume")]
        for i, (o, h, lo, c, v) in enumerate(zip(*cols, strict=True)):
            t = int(ts[i])
            rows.append((t, rank, Bar(symbol, t, o, h, lo, c, v)))
    rows.sort(key=lambda r: (r[0], r[1]))  # each frame is already increasing; this interleaves them
    return [r[2] for r in rows]


# --- synthetic intraday stream -------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SymbolSeed:
    """Where a synthetic symbol starts: a real close, its daily volatility and daily volume."""

    symbol: str
    price: float
    daily_vol: float
    daily_volume: float = 1_000_000.0


class FaultKind(StrEnum):
    GAP = "gap"  # ``length`` bars from ``step`` on are never sent
    SPIKE = "spike"  # the close jumps by ``size`` (a fraction: 0.05 is +5%), wicks widened to fit
    DUPLICATE = "duplicate"  # the bar is sent twice
    OUT_OF_ORDER = "out_of_order"  # after the bar, the one from ``length`` steps earlier is resent
    OHLC = "ohlc"  # the high is set one tick under max(open, close)
    STALL = "stall"  # nothing at all is sent for ``seconds`` of clock time before ``step``


@dataclass(frozen=True, slots=True)
class Fault:
    """One injected fault at a step (bar index) of a symbol (``symbol`` is ignored for stalls)."""

    kind: FaultKind
    step: int
    symbol: str = ""
    length: int = 1
    size: float = 0.05
    seconds: float = 0.0


class SyntheticIntradayFeed(_PacedFeed):
    """Deterministic bars every ``interval_seconds`` per symbol: a random walk from real closes.

    Each symbol walks on its own generator seeded from ``(seed, crc32(symbol))``, so adding a
    symbol or a fault never changes another symbol's path. Per-bar volatility is the daily one
    scaled by ``sqrt(interval / 6.5 h)``; prices are whole ticks; each bar opens at the previous
    close. Faults (see `FaultKind`) are applied on top of the clean path: the clean bars of
    ``faults=()`` are exactly the bars of a faulty run that should pass validation.
    """

    def __init__(
        self,
        seeds: Sequence[SymbolSeed],
        *,
        start_ts: int,
        n_bars: int | None = None,
        seed: int = 0,
        interval_seconds: int = 1,
        step_seconds: float | None = None,
        tick: float = 0.01,
        faults: Sequence[Fault] = (),
        clock: FeedClock | None = None,
        after_ts: int | None = None,
    ) -> None:
        super().__init__(clock, after_ts)
        if not seeds:
            raise ValueError("SyntheticIntradayFeed needs at least one SymbolSeed")
        if n_bars is not None and n_bars < 1:
            raise ValueError(f"n_bars must be positive or None, got {n_bars!r}")
        self.seeds = tuple(seeds)
        self.start_ts = int(start_ts)
        self.n_bars = n_bars
        self.seed = seed
        self.interval_ns = int(interval_seconds) * NS_PER_SECOND
        self.step_ns = _step_ns(step_seconds)
        self.tick = tick
        self.faults = tuple(faults)
        if n_bars is None and self.step_ns == 0:
            raise ValueError("an endless stream (n_bars=None) needs step_seconds: poll() would never return")
        known = {s.symbol for s in self.seeds}
        for f in self.faults:
            if f.kind is not FaultKind.STALL and f.symbol not in known:
                raise ValueError(f"fault {f.kind} names symbol {f.symbol!r}, not one of {sorted(known)}")

    @classmethod
    def from_sample(
        cls, symbols: Iterable[str], *, lookback_days: int = 60, **kwargs: object
    ) -> SyntheticIntradayFeed:
        """Seed from the last real close, volatility and volume of `load_sample` data; the stream
        starts at 09:30 of the next business day unless ``start_ts`` is given."""
        from qlcore.data.sample import load_sample

        seeds, last = [], None
        for s in symbols:
            frame = load_sample(s).iloc[-(lookback_days + 1) :]
            closes = frame["close"].to_numpy()
            daily_vol = float(np.std(np.diff(np.log(closes)), ddof=1))
            seeds.append(SymbolSeed(s.upper(), float(closes[-1]), daily_vol, float(frame["volume"].mean())))
            last = frame.index[-1] if last is None else max(last, frame.index[-1])
        if "start_ts" not in kwargs:
            next_day = pd.Timestamp(cast(pd.Timestamp, last)) + pd.offsets.BDay(1)  # set once per symbol
            kwargs["start_ts"] = (next_day.normalize() + pd.Timedelta(hours=9, minutes=30)).value
        return cls(seeds, **kwargs)  # type: ignore[arg-type]

    def clean_bars(self) -> Iterator[list[Bar]]:
        """The fault-free path: one list per step, one bar per symbol in ``seeds`` order."""
        walks = [self._walk(s) for s in self.seeds]
        k = 0
        while self.n_bars is None or k < self.n_bars:
            yield [next(w) for w in walks]
            k += 1

    def _walk(self, s: SymbolSeed) -> Iterator[Bar]:
        rng = np.random.default_rng([self.seed, zlib.crc32(s.symbol.encode())])
        sigma = s.daily_vol * math.sqrt(self.interval_ns / NS_PER_SECOND / _SESSION_SECONDS)
        mean_volume = s.daily_volume * self.interval_ns / NS_PER_SECOND / _SESSION_SECONDS
        per_unit = round(1.0 / self.tick)
        close = max(round(s.price / self.tick), 1)
        ts = self.start_ts
        chunk = 1024
        while True:
            steps = rng.normal(0.0, sigma, chunk)
            up = np.abs(rng.normal(0.0, sigma / 2, chunk))
            down = np.abs(rng.normal(0.0, sigma / 2, chunk))
            vols = np.floor(rng.lognormal(math.log(max(mean_volume, 1.0)), 0.6, chunk))
            for i in range(chunk):
                open_ = close
                close = max(round(open_ * math.exp(steps[i])), 1)
                top, bottom = max(open_, close), min(open_, close)
                high = max(round(top * math.exp(up[i])), top)
                low = max(min(round(bottom * math.exp(-down[i])), bottom), 1)
                yield Bar(s.symbol, ts, open_ / per_unit, high / per_unit, low / per_unit,
                          close / per_unit, float(vols[i]))
                ts += self.interval_ns

    def _steps(self) -> Iterator[tuple[int, list[Bar]]]:
        by_step: dict[int, list[Fault]] = {}
        for f in self.faults:
            by_step.setdefault(f.step, []).append(f)
        dropped: set[tuple[str, int]] = set()
        history: dict[str, list[Bar]] = {s.symbol: [] for s in self.seeds}
        stall_ns = 0
        keep = 1 + max((f.length for f in self.faults), default=1)
        for k, clean in enumerate(self.clean_bars()):
            here = by_step.get(k, [])
            for f in here:
                if f.kind is FaultKind.STALL:
                    stall_ns += round(f.seconds * NS_PER_SECOND)
                elif f.kind is FaultKind.GAP:
                    dropped.update((f.symbol, k + j) for j in range(f.length))
            out: list[Bar] = []
            for bar in clean:
                history[bar.symbol].append(bar)
                del history[bar.symbol][:-keep]
                if (bar.symbol, k) in dropped:
                    continue
                mine = [f for f in here if f.symbol == bar.symbol]
                out.extend(self._apply(bar, mine, history[bar.symbol]))
            yield k * self.step_ns + stall_ns, out

    def _apply(self, bar: Bar, faults: list[Fault], history: list[Bar]) -> list[Bar]:
        sent = bar
        extra: list[Bar] = []
        per_unit = round(1.0 / self.tick)
        for f in faults:
            if f.kind is FaultKind.SPIKE:
                close = round(bar.close * (1 + f.size) * per_unit) / per_unit
                sent = sent._replace(close=close, high=max(sent.high, close), low=min(sent.low, close))
            elif f.kind is FaultKind.OHLC:
                sent = sent._replace(high=(round(max(sent.open, sent.close) * per_unit) - 1) / per_unit)
            elif f.kind is FaultKind.DUPLICATE:
                extra.append(sent)
            elif f.kind is FaultKind.OUT_OF_ORDER and len(history) > f.length:
                extra.append(history[-1 - f.length])
        return [sent, *extra]
