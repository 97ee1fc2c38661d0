"""The `Feed` contract, run against every implementation (a live adapter joins this list later)."""
from __future__ import annotations

from collections.abc import Callable

import pytest

from qlcore.data.feed import (
    Feed,
    FeedClock,
    ManualClock,
    ReplayFeed,
    SymbolSeed,
    SyntheticIntradayFeed,
)

T0 = 1_600_000_000 * 1_000_000_000


def _replay(clock: FeedClock) -> Feed:
    return ReplayFeed.from_sample(["IBM", "MSFT"], step_seconds=1.0, clock=clock,
                                  start="2012-01-01", end="2012-01-31")


def _synthetic(clock: FeedClock) -> Feed:
    seeds = (SymbolSeed("AAA", 50.0, 0.02), SymbolSeed("BBB", 80.0, 0.01))
    return SyntheticIntradayFeed(seeds, start_ts=T0, n_bars=20, step_seconds=1.0, clock=clock)


@pytest.fixture(params=[_replay, _synthetic], ids=["replay", "synthetic"])
def make(request: pytest.FixtureRequest) -> Callable[[FeedClock], Feed]:
    return request.param


def test_is_a_feed(make: Callable[[FeedClock], Feed]) -> None:
    assert isinstance(make(ManualClock()), Feed)


def test_iteration_is_time_ordered_and_ends_exhausted(make: Callable[[FeedClock], Feed]) -> None:
    feed = make(ManualClock(T0))
    bars = list(feed)
    assert len(bars) >= 20
    assert [b.ts for b in bars] == sorted(b.ts for b in bars)
    assert len({(b.symbol, b.ts) for b in bars}) == len(bars)
    assert feed.exhausted


def test_polling_step_by_step_gives_the_same_bars_as_iterating(make: Callable[[FeedClock], Feed]) -> None:
    expected = list(make(ManualClock(T0)))
    clock = ManualClock(T0)
    feed = make(clock)
    feed.start()
    polled = []
    while not feed.exhausted:
        polled.extend(feed.poll())
        clock.advance(1.0)
    assert polled == expected


def test_poll_before_start_is_an_error_and_stop_silences(make: Callable[[FeedClock], Feed]) -> None:
    clock = ManualClock(T0)
    feed = make(clock)
    with pytest.raises(RuntimeError, match="before start"):
        feed.poll()
    feed.start()
    assert feed.poll() != []
    feed.stop()
    clock.advance(3600)
    assert feed.poll() == []
    assert list(feed) == []


def test_an_endless_synthetic_stream_must_be_paced() -> None:
    with pytest.raises(ValueError, match="needs step_seconds"):
        SyntheticIntradayFeed((SymbolSeed("A", 1.0, 0.01),), start_ts=0, n_bars=None)
    endless = SyntheticIntradayFeed((SymbolSeed("A", 1.0, 0.01),), start_ts=0, step_seconds=1.0,
                                    clock=ManualClock())
    it = iter(endless)
    assert [next(it).ts for _ in range(3)] == [0, 1_000_000_000, 2_000_000_000]


def test_a_consumer_behind_the_feed_takes_at_most_max_steps_a_poll_and_loses_nothing(
    make: Callable[[FeedClock], Feed],
) -> None:
    expected = list(make(ManualClock(T0)))
    clock = ManualClock(T0)
    feed = make(clock)
    feed.start()
    clock.advance(3600)  # every step is due: the consumer is an hour behind
    assert feed.behind_s >= 3600 - 30  # type: ignore[attr-defined]
    polled: list = []
    polls = 0
    while not feed.exhausted:
        batch = feed.poll(max_steps=3)
        assert 1 <= len({b.ts for b in batch}) <= 3
        polled.extend(batch)
        polls += 1
    assert polled == expected
    assert polls >= len({b.ts for b in expected}) // 3
    assert feed.behind_s == 0.0  # type: ignore[attr-defined]


def test_behind_is_zero_while_the_consumer_keeps_up(make: Callable[[FeedClock], Feed]) -> None:
    clock = ManualClock(T0)
    feed = make(clock)
    feed.start()
    feed.poll()
    assert feed.behind_s == 0.0  # type: ignore[attr-defined]
    clock.advance(2.5)
    assert 0.5 <= feed.behind_s <= 2.5  # type: ignore[attr-defined]
