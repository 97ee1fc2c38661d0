"""The engine and its feed on the wall clock: a feed that stops delivering is alerted, then moves the
account to REDUCING, and its next bar brings it back; a restarted engine's feed goes on at once.

The wall clock is a `ManualClock` handed to the engine: silence is made by moving it, never by waiting,
so nothing here depends on how fast the machine is.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import update

from qlcore.data.feed import ManualClock
from qlcore.engine.service import ALL_SYMBOLS, FEED_WATCH, EngineConfig, EngineService
from qlcore.events.facts import FeedResumed, FeedStale, TradingModeChanged
from qlcore.events.store import EventStore
from qlcore.model.enums import OrderSide, OrderStatus
from qlcore.model.market import Bar
from qlcore.store.db import dispose_all
from qlcore.store.tables import engine_status

NS = 1_000_000_000
T0 = 1_700_000_000 * NS
SYMBOLS = ("AAPL", "MSFT")


class Tap:
    """A feed that delivers a step only when the test opens the tap, and otherwise stays silent."""

    def __init__(self, *, exhausted_after: int | None = None) -> None:
        self.sent = 0
        self.waiting: list[Bar] = []
        self.exhausted_after = exhausted_after

    def release(self) -> None:
        self.sent += 1
        ts = T0 + self.sent * NS
        self.waiting += [Bar(s, ts, 100.0, 101.0, 99.0, 100.0, 1e6) for s in SYMBOLS]

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def poll(self, max_steps: int | None = None) -> list[Bar]:
        out, self.waiting = self.waiting, []
        return out

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(())

    @property
    def exhausted(self) -> bool:
        return self.exhausted_after is not None and self.sent >= self.exhausted_after and not self.waiting


def _config(url: str, tmp_path: Path, **kw) -> EngineConfig:
    kw = {"speed": 1.0, "feed_stale_s": 5.0, "feed_reduce_s": 20.0, **kw}  # speed 1: a second of slack
    return EngineConfig(engine_id="f", url=url, venue_path=tmp_path / "venue.sqlite", symbols=SYMBOLS,
                        heartbeat_s=3600.0, **kw)


def _engine(url: str, tmp_path: Path, clock: ManualClock, tap: Tap | None = None, **kw) -> EngineService:
    engine = EngineService(_config(url, tmp_path, **kw), feed=tap, wall_clock=clock)
    engine.start()
    return engine


def _delivering(url: str, tmp_path: Path, tap: Tap, clock: ManualClock, **kw) -> EngineService:
    """An engine on `tap` that has taken one step of bars."""
    engine = _engine(url, tmp_path, clock, tap, **kw)
    _deliver(engine, tap)
    return engine


def _deliver(engine: EngineService, tap: Tap) -> None:
    tap.release()
    engine.step()


def _crash(engine: EngineService) -> None:
    """Drop the engine as SIGKILL would: no flush, no shutdown; its lease freed as a dead pid's would be."""
    engine.venue.close()
    with engine.db.begin() as conn:
        conn.execute(update(engine_status).values(heartbeat_at=0))
    dispose_all()


def _after(engine: EngineService, clock: ManualClock, seconds: float) -> str:
    clock.advance(seconds)
    engine.step()
    return engine.trading_mode()[0]


def _feed_events(url: str) -> list[tuple]:
    out = []
    for e in EventStore(url).events("engine-f"):
        if type(e) in (FeedStale, FeedResumed) and e.symbol == ALL_SYMBOLS:
            out.append((type(e).__name__, getattr(e, "silent_ns", None)))
        elif type(e) is TradingModeChanged:
            out.append(("mode", e.old, e.new, e.actor))
    return out


def test_a_silent_feed_is_alerted_then_reduces_the_account_and_its_next_bar_restores_it(sqlite_url, tmp_path):
    clock, tap = ManualClock(T0), Tap()
    engine = _delivering(sqlite_url, tmp_path, tap, clock)
    assert engine.counters.bars == 2 and engine.watch.health == "live"

    assert _after(engine, clock, 5.9) == "ACTIVE" and engine.watch.health == "live"  # limit 5 s + one step
    assert _after(engine, clock, 0.2) == "ACTIVE" and engine.watch.health == "stale"
    assert [a["level"] for a in engine.alerts if a["source"] == "feed"] == ["warning"]
    assert _after(engine, clock, 14.8) == "ACTIVE"  # 20.9 s silent
    assert _after(engine, clock, 0.2) == "REDUCING" and engine.watch.health == "down"
    assert "feed down" in engine.trading_mode()[1]
    # while down, an order that would open a position is denied by the mode, naming why
    order = engine.kernel.state.orders[engine.kernel.submit_order("desk", "AAPL", OrderSide.BUY, 1)]
    assert order.status is OrderStatus.DENIED and "mode REDUCING" in order.reason and "feed down" in order.reason

    _deliver(engine, tap)
    assert engine.trading_mode()[0] == "ACTIVE" and engine.watch.health == "live"
    assert [a["level"] for a in engine.alerts if a["source"] == "feed"] == ["warning", "error", "info"]
    engine.shutdown()
    assert _feed_events(sqlite_url) == [
        ("FeedStale", None),
        ("mode", "ACTIVE", "REDUCING", FEED_WATCH),
        ("FeedResumed", round(21.1 * NS)),
        ("mode", "REDUCING", "ACTIVE", FEED_WATCH),
    ]


def test_a_mode_someone_else_set_after_the_feed_went_down_is_left_to_a_person(sqlite_url, tmp_path):
    clock, tap = ManualClock(T0), Tap()
    engine = _delivering(sqlite_url, tmp_path, tap, clock)
    assert _after(engine, clock, 30) == "REDUCING"
    engine.halt("desk stop", actor="carol")
    _deliver(engine, tap)
    assert engine.watch.health == "live" and engine.trading_mode()[0] == "HALTED"
    engine.shutdown()


def test_a_feed_that_is_exhausted_is_finished_not_stale(sqlite_url, tmp_path):
    clock, tap = ManualClock(T0), Tap(exhausted_after=1)
    engine = _delivering(sqlite_url, tmp_path, tap, clock)
    assert _after(engine, clock, 3600) == "ACTIVE" and engine.watch.health == "live"
    engine.shutdown()


def test_a_slow_replay_is_not_stale_between_its_steps(sqlite_url, tmp_path):
    clock, tap = ManualClock(T0), Tap()
    engine = _delivering(sqlite_url, tmp_path, tap, clock, speed=1 / 60)  # a step a minute
    assert _after(engine, clock, 60 + 4.9) == "ACTIVE" and engine.watch.health == "live"
    assert _after(engine, clock, 0.2) == "ACTIVE" and engine.watch.health == "stale"
    engine.shutdown()


def test_with_a_calendar_only_silence_in_session_counts(sqlite_url, tmp_path):
    saturday = pd.Timestamp("2024-01-06 12:00", tz="UTC").value
    monday_open = pd.Timestamp("2024-01-08 14:30", tz="UTC").value  # 09:30 New York
    clock, tap = ManualClock(saturday), Tap()
    engine = _engine(sqlite_url, tmp_path, clock, tap, feed_calendar="XNYS")
    assert _after(engine, clock, 3600) == "ACTIVE" and engine.watch.health == "live"  # the weekend is quiet
    clock.now = monday_open - NS
    engine.step()
    assert _after(engine, clock, 1 + 5.9) == "ACTIVE" and engine.watch.health == "live"  # counted from the open
    assert _after(engine, clock, 0.2) == "ACTIVE" and engine.watch.health == "stale"
    assert _after(engine, clock, 15) == "REDUCING"
    engine.shutdown()


def test_an_account_the_feed_reduced_is_restored_by_its_first_bar_after_a_restart(sqlite_url, tmp_path):
    clock, tap = ManualClock(T0), Tap()
    engine = _delivering(sqlite_url, tmp_path, tap, clock)
    assert _after(engine, clock, 30) == "REDUCING"
    engine.shutdown()
    dispose_all()

    again = _engine(sqlite_url, tmp_path, clock, tap)
    assert again.trading_mode()[0] == "REDUCING" and again.watch.health == "down"
    _deliver(again, tap)
    assert again.trading_mode()[0] == "ACTIVE" and again.watch.health == "live"
    again.shutdown()


@pytest.mark.parametrize(("bad", "message"), [
    ({"feed_stale_s": 0}, "feed watch stale_after_s must be a positive number of seconds, got 0"),
    ({"feed_stale_s": float("nan")}, "feed watch stale_after_s must be a positive number of seconds, got nan"),
    ({"feed_reduce_s": 1.0}, r"feed watch reduce_after_s \(1\) must be >= stale_after_s \(5\)"),
    ({"feed_calendar": "NOPE"}, "calendar 'NOPE'"),
])
def test_bad_watch_settings_are_refused_naming_the_setting(bad, message, sqlite_url, tmp_path):
    with pytest.raises(ValueError, match=message):
        _config(sqlite_url, tmp_path, **bad)


# --- a restart on the synthetic feed ------------------------------------------------------------
def test_a_restarted_engine_gets_the_next_synthetic_bar_at_once_and_its_lag_is_true(store_url, tmp_path):
    clock = ManualClock(T0)
    first = _engine(store_url, tmp_path, clock, feed="synthetic", seed=4, max_feed_steps_per_turn=1)
    for _ in range(30):
        clock.advance(1.0)
        first.step()
    assert first.counters.steps == 30
    last_seen = first.clock.now
    first.writer.flush()
    _crash(first)

    clock.advance(120.0)  # the engine was down two minutes
    again = _engine(store_url, tmp_path, clock, feed="synthetic", seed=4, max_feed_steps_per_turn=1)
    assert again.resume_ts == last_seen
    again.step()  # no wall time has passed since the start: the next step is due at once
    assert (again.counters.steps, again.counters.bars) == (1, len(SYMBOLS))
    assert again.clock.now == last_seen + NS  # the next 1-second bar after the last one the log has seen
    assert again.feed_behind_s() == 0.0 and again.watch.health == "live"

    clock.advance(20.0)  # twenty steps due, and this engine takes one a turn: it is behind, and says so
    again.step()
    assert again.clock.now == last_seen + 2 * NS
    assert again.feed_behind_s() == 18.0  # the third step was due at 2 s
    assert any(a["source"] == "feed" and "behind the feed" in a["message"] for a in again.alerts)
    for _ in range(19):
        again.step()
    assert again.clock.now == last_seen + 21 * NS and again.feed_behind_s() == 0.0
    assert any("caught up" in a["message"] for a in again.alerts)
    again.shutdown()
