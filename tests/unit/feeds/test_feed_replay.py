"""ReplayFeed: real daily frames of several symbols merged in time order, paced by the clock."""
from __future__ import annotations

import pandas as pd
import pytest

from qlcore.data import load_sample
from qlcore.data.feed import Feed, ManualClock, ReplayFeed
from qlcore.model.market import Bar

START = 1_000 * 1_000_000_000  # any clock origin: pacing is relative to start()


def _frame(days: list[str], closes: list[float]) -> pd.DataFrame:
    index = pd.DatetimeIndex(pd.to_datetime(days), name="ts").as_unit("ns")
    return pd.DataFrame(
        {"open": closes, "high": closes, "low": closes, "close": closes, "volume": [1.0] * len(days)},
        index=index,
    )


def test_replay_merges_symbols_in_time_order_with_frame_order_on_ties() -> None:
    frames = {
        "B": _frame(["2020-01-02", "2020-01-06"], [20.0, 21.0]),
        "A": _frame(["2020-01-02", "2020-01-03", "2020-01-06"], [10.0, 11.0, 12.0]),
    }
    feed = ReplayFeed(frames, step_seconds=None, clock=ManualClock())
    got = [(b.symbol, str(b.time.date()), b.close) for b in feed]
    assert got == [
        ("B", "2020-01-02", 20.0), ("A", "2020-01-02", 10.0),
        ("A", "2020-01-03", 11.0),
        ("B", "2020-01-06", 21.0), ("A", "2020-01-06", 12.0),
    ]
    assert feed.exhausted


def test_replay_of_real_sample_is_time_ordered_and_carries_the_frame_values() -> None:
    feed = ReplayFeed.from_sample(["aapl", "goog"], step_seconds=None, clock=ManualClock(),
                                  start="2010-01-01", end="2010-03-31")
    bars = list(feed)
    assert [b.ts for b in bars] == sorted(b.ts for b in bars)
    aapl = load_sample("AAPL").loc["2010-01-01":"2010-03-31"]
    mine = [b for b in bars if b.symbol == "AAPL"]
    assert len(mine) == len(aapl) == len([b for b in bars if b.symbol == "GOOG"])
    first = aapl.iloc[0]
    assert mine[0] == Bar("AAPL", int(aapl.index[0].value), first["open"], first["high"],
                          first["low"], first["close"], first["volume"])
    assert isinstance(feed, Feed)


def test_replay_iteration_sleeps_one_step_per_trading_day_on_the_injected_clock() -> None:
    frames = {"A": _frame(["2020-01-02", "2020-01-03", "2020-01-06"], [10.0, 11.0, 12.0]),
              "B": _frame(["2020-01-02", "2020-01-03", "2020-01-06"], [20.0, 21.0, 22.0])}
    clock = ManualClock(START)
    seen: list[tuple[str, int]] = []
    for bar in ReplayFeed(frames, step_seconds=0.5, clock=clock):
        seen.append((bar.symbol, clock.now - START))
    # two symbols per step, a weekend does not count: steps are trading days, not calendar time
    assert seen == [("A", 0), ("B", 0), ("A", 500_000_000), ("B", 500_000_000),
                    ("A", 1_000_000_000), ("B", 1_000_000_000)]
    assert clock.slept == [0.5, 0.5]


def test_replay_poll_returns_only_what_is_due_by_the_clock() -> None:
    frames = {"A": _frame(["2020-01-02", "2020-01-03", "2020-01-06", "2020-01-07"], [1.0, 2.0, 3.0, 4.0])}
    clock = ManualClock(START)
    feed = ReplayFeed(frames, step_seconds=1.0, clock=clock)
    with pytest.raises(RuntimeError, match="before start"):
        feed.poll()
    feed.start()
    assert [b.close for b in feed.poll()] == [1.0]
    assert feed.poll() == []
    clock.advance(0.999)
    assert feed.poll() == []
    clock.advance(1.001)  # now 2 s after start: steps 1 and 2 are both due
    assert [b.close for b in feed.poll()] == [2.0, 3.0]
    feed.stop()
    clock.advance(10)
    assert feed.poll() == []
    assert not feed.exhausted


def test_stop_ends_iteration_before_the_next_bar() -> None:
    frames = {"A": _frame(["2020-01-02", "2020-01-03", "2020-01-06"], [1.0, 2.0, 3.0])}
    feed = ReplayFeed(frames, step_seconds=1.0, clock=ManualClock())
    got = []
    for bar in feed:
        got.append(bar.close)
        feed.stop()
    assert got == [1.0]


def test_replay_refuses_a_negative_speed_and_a_second_start() -> None:
    frames = {"A": _frame(["2020-01-02"], [1.0])}
    with pytest.raises(ValueError, match="step_seconds"):
        ReplayFeed(frames, step_seconds=-1.0)
    feed = ReplayFeed(frames, clock=ManualClock())
    feed.start()
    with pytest.raises(RuntimeError, match="already started"):
        feed.start()
