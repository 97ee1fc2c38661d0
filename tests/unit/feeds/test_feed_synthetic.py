"""SyntheticIntradayFeed: a seeded random walk of 1-second bars from real closes, with faults."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from qlcore.data import load_sample
from qlcore.data.feed import Fault, FaultKind, ManualClock, SymbolSeed, SyntheticIntradayFeed

T0 = 1_600_000_000 * 1_000_000_000
SEEDS = (SymbolSeed("AAA", 100.0, 0.02), SymbolSeed("BBB", 25.0, 0.03))


def _feed(**kw: object) -> SyntheticIntradayFeed:
    args: dict[str, object] = dict(start_ts=T0, n_bars=500, seed=7, clock=ManualClock())
    args.update(kw)
    return SyntheticIntradayFeed(SEEDS, **args)  # type: ignore[arg-type]


def test_same_seed_gives_the_same_bars_and_another_seed_does_not() -> None:
    assert list(_feed()) == list(_feed())
    assert list(_feed()) != list(_feed(seed=8))


def test_a_symbol_path_does_not_depend_on_the_other_symbols() -> None:
    alone = SyntheticIntradayFeed(SEEDS[:1], start_ts=T0, n_bars=200, seed=7, clock=ManualClock())
    together = [b for b in _feed(n_bars=200) if b.symbol == "AAA"]
    assert list(alone) == together


def test_bars_are_valid_one_second_apart_in_ticks_and_open_at_the_previous_close() -> None:
    bars = [b for b in _feed() if b.symbol == "AAA"]
    assert len(bars) == 500
    assert [b.ts - T0 for b in bars[:3]] == [0, 1_000_000_000, 2_000_000_000]
    assert bars[0].open == 100.0
    for prev, bar in itertools.pairwise(bars):
        assert bar.open == prev.close
        assert bar.low <= min(bar.open, bar.close) <= max(bar.open, bar.close) <= bar.high
        assert round(bar.close * 100) / 100 == bar.close


def test_per_second_volatility_is_the_daily_one_scaled_to_the_session() -> None:
    seeds = (SymbolSeed("AAA", 10_000.0, 0.02),)  # a high price so tick rounding is negligible
    feed = SyntheticIntradayFeed(seeds, start_ts=T0, n_bars=20_000, seed=3, clock=ManualClock())
    closes = np.array([b.close for b in feed])
    realized = float(np.std(np.diff(np.log(closes))))
    expected = 0.02 / math.sqrt(23_400)
    assert realized == pytest.approx(expected, rel=0.05)


def test_from_sample_starts_at_the_last_real_close_next_business_day_open() -> None:
    feed = SyntheticIntradayFeed.from_sample(["aapl"], n_bars=3, seed=1, clock=ManualClock())
    last = load_sample("AAPL").iloc[-1]  # 2013-03-01, a Friday
    bars = list(feed)
    assert feed.seeds[0].price == last["close"]
    assert bars[0].open == round(last["close"], 2)
    assert str(bars[0].time) == "2013-03-04 09:30:00"
    assert 0.005 < feed.seeds[0].daily_vol < 0.1


def test_stall_fault_delays_the_following_bars_on_the_clock() -> None:
    clock = ManualClock(T0)
    feed = _feed(n_bars=4, step_seconds=1.0, clock=clock,
                 faults=(Fault(FaultKind.STALL, step=2, seconds=30.0),))
    arrivals = [(b.ts - T0) // 1_000_000_000 for b in feed if b.symbol == "AAA"]
    assert arrivals == [0, 1, 2, 3]
    assert clock.slept == [1.0, 31.0, 1.0]


def test_a_fault_on_an_unknown_symbol_is_refused() -> None:
    with pytest.raises(ValueError, match="'ZZZ'"):
        _feed(faults=(Fault(FaultKind.SPIKE, step=3, symbol="ZZZ"),))


def test_a_resumed_feed_skips_the_bars_seen_without_waiting_and_goes_on_at_its_pace() -> None:
    clock = ManualClock(T0)
    whole = [b for step in _feed(n_bars=100).clean_bars() for b in step]
    feed = _feed(n_bars=100, step_seconds=1.0, clock=clock, after_ts=T0 + 59 * 1_000_000_000)
    feed.start()
    first = feed.poll()  # nothing has been waited for: the first step after the resume point is due
    assert [(b.symbol, b.ts) for b in first] == [("AAA", T0 + 60 * 1_000_000_000), ("BBB", T0 + 60 * 1_000_000_000)]
    assert feed.poll() == [] and feed.behind_s == 0.0
    clock.advance(10.0)
    assert feed.behind_s == 9.0  # the step due at 1 s has waited nine
    later = feed.poll()
    assert first + later == whole[120:142]  # the same walk as an uninterrupted feed
