"""Rebuild and reconciliation at the exact windows a crash can hit, made deterministic.

An engine is "killed" by dropping it without its shutdown (nothing more is committed), then a new
engine starts on the same store and venue ledger.
"""
from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path

import pytest
from signed import signer
from sqlalchemy import update

from qlcore.brokers.paper import PaperVenue
from qlcore.control.commands import CommandQueue
from qlcore.engine.service import EngineConfig, EngineService
from qlcore.engine.status import EngineAlreadyRunning, read_status
from qlcore.events.facts import ReconciliationDifference, ReconciliationPassed
from qlcore.events.store import EventStore
from qlcore.model.enums import OrderSide, OrderStatus, OrderType
from qlcore.model.market import Bar
from qlcore.store.db import dispose_all
from qlcore.store.tables import engine_status

NS = 1_000_000_000


def _config(url: str, tmp_path: Path, **kw) -> EngineConfig:
    # The tests feed their own bars: the replay feed is slowed to one step in ~12 days so none of its
    # bars lands among them, however slowly a loaded machine runs the test.
    kw.setdefault("speed", 1e-6)
    return EngineConfig(engine_id="t", url=url, venue_path=tmp_path / "venue.sqlite", symbols=("AAPL", "MSFT"), **kw)


def _engine(url: str, tmp_path: Path, **kw) -> EngineService:
    engine = EngineService(_config(url, tmp_path, **kw))
    engine.start()
    return engine


def _crash(engine: EngineService) -> None:
    """Drop the engine as SIGKILL would: no flush, no shutdown; its lease is freed as a dead pid's would be."""
    engine.venue.close()  # drops what was not flushed
    with engine.db.begin() as conn:  # the holder's heartbeat is old: the next engine takes over
        conn.execute(update(engine_status).values(heartbeat_at=0))
    dispose_all()


def _bar(symbol: str, ts: int, px: float) -> Bar:
    return Bar(symbol, ts, px, px + 1, px - 1, px, 1_000_000.0)


class _Reports:
    """Somewhere for a venue used outside an engine to send its reports."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __getattr__(self, name: str):
        return lambda *args: self.seen.append(name)


def _differences(url: str) -> list[tuple[str, str]]:
    return [(e.kind, e.resolution) for e in EventStore(url).events("engine-t") if type(e) is ReconciliationDifference]


def _priced(engine: EngineService) -> EngineService:
    """A reference price for the manual orders sent before any bar (the account is a cash account)."""
    engine.risk.set_reference_price("AAPL", Decimal(100), engine.clock.now)
    return engine


def test_an_order_logged_but_never_received_by_the_venue_is_rejected_on_restart(sqlite_url, tmp_path):
    engine = _priced(_engine(sqlite_url, tmp_path))
    oid = engine.kernel.submit_order("manual", "AAPL", OrderSide.BUY, 10)
    engine.writer.flush()  # the log has the order; the venue never committed it
    _crash(engine)

    again = _engine(sqlite_url, tmp_path)
    order = again.kernel.state.orders[oid]
    assert order.status is OrderStatus.REJECTED
    assert "never received" in order.reason
    assert _differences(sqlite_url) == [("not_at_venue", "rejected")]
    assert again.reconciliation.passed and again.state == "running"
    again.shutdown()


def test_an_acknowledgement_and_fill_the_log_missed_are_applied_once_on_restart(sqlite_url, tmp_path):
    engine = _priced(_engine(sqlite_url, tmp_path))
    oid = engine.kernel.submit_order("manual", "AAPL", OrderSide.BUY, 10)
    engine.writer.flush()
    engine.on_bar(_bar("AAPL", 10 * NS, 100.0))
    engine.venue.advance_to(engine.clock.now)
    engine.venue.flush()  # the venue committed the ack and the fill; the engine dies before its own commit
    _crash(engine)

    again = _engine(sqlite_url, tmp_path)
    order = again.kernel.state.orders[oid]
    assert order.status is OrderStatus.FILLED
    assert again.kernel.state.position("manual", "AAPL") == Decimal(10)
    assert _differences(sqlite_url) == [("missing_ack", "accepted"), ("missing_fill", "applied")]
    again.shutdown()

    # a third start finds nothing left to fix
    third = _engine(sqlite_url, tmp_path)
    assert _differences(sqlite_url) == [("missing_ack", "accepted"), ("missing_fill", "applied")]
    assert third.kernel.state.position("manual", "AAPL") == Decimal(10)
    third.shutdown()


def test_a_cancel_the_venue_never_got_is_sent_again(sqlite_url, tmp_path):
    engine = _engine(sqlite_url, tmp_path)
    oid = engine.kernel.submit_order("manual", "AAPL", OrderSide.BUY, 10, OrderType.LIMIT, price="0.01")
    engine.step()  # acknowledged and working at the venue
    engine.kernel.cancel_order(oid)
    engine.writer.flush()  # the cancel request is logged, the venue never saw it
    _crash(engine)

    again = _engine(sqlite_url, tmp_path)
    assert ("cancel_lost", "cancel sent again") in _differences(sqlite_url)
    again.step()
    assert again.kernel.state.orders[oid].status is OrderStatus.CANCELED
    assert again.venue.working_count == 0
    again.shutdown()


def test_a_position_break_blocks_trading_until_it_is_resolved(sqlite_url, tmp_path):
    engine = _engine(sqlite_url, tmp_path)
    engine.shutdown()
    # the venue holds a fill the log can never explain: an order placed at the venue by someone else
    venue = PaperVenue(tmp_path / "venue.sqlite")
    from qlcore.events.types import OrderInitialized
    from qlcore.model.orders import Order

    stray = Order(OrderInitialized(1, "stray-1", "x", "MSFT", OrderSide.SELL, OrderType.MARKET, Decimal(5)))
    venue.bind(_Reports())
    venue.submit(stray)
    venue.advance_to(2 * NS)
    venue.on_bar(_bar("MSFT", 3 * NS, 20.0))
    venue.flush()
    venue.close()
    dispose_all()

    blocked = _engine(sqlite_url, tmp_path)
    assert not blocked.reconciliation.passed and blocked.state == "blocked"
    assert "MSFT: log 0 venue -5" in blocked.reconciliation.summary()
    queue = CommandQueue(sqlite_url, signer=signer())
    cid = queue.submit("alice", "order.submit", {"strategy_id": "m", "symbol": "AAPL", "side": "BUY", "quantity": "1"}, target="t")
    blocked.step()
    cmd = queue.status(cid)
    assert cmd.status == "refused" and "reconciliation has not passed" in cmd.reason
    assert not [e for e in EventStore(sqlite_url).events("engine-t") if type(e) is ReconciliationPassed][1:]
    blocked.shutdown()


def test_a_second_engine_with_the_same_id_refuses_to_start(sqlite_url, tmp_path):
    first = _engine(sqlite_url, tmp_path)
    second = EngineService(_config(sqlite_url, tmp_path / "other"))
    second.lease.pid = os.getppid()  # another live process of this host, not the holder
    with pytest.raises(EngineAlreadyRunning, match="already running"):
        second.start()
    status = read_status(sqlite_url, "t")[0]
    assert status.pid == first.lease.pid and status.state == "running"
    first.shutdown()
    assert read_status(sqlite_url, "t")[0].state == "stopped"


def test_state_strategies_and_limits_survive_a_restart(sqlite_url, tmp_path):
    engine = _engine(sqlite_url, tmp_path)
    engine.manager.deploy("sma_cross", {"fast": 2, "slow": 3}, symbols=["AAPL"], allocation=50_000, strategy_id="a")
    engine.manager.deploy("sma_cross", {"fast": 2, "slow": 3}, symbols=["MSFT"], allocation=50_000, strategy_id="b")
    engine.manager.pause("b", actor="alice")
    engine.risk.set_limits({"account": {"max_order_quantity": "500"}}, actor="alice", ts=1)
    for i, px in enumerate([10.0, 11.0, 12.0, 11.0, 10.0, 9.0, 10.0, 12.0, 13.0, 12.0]):
        engine.on_bar(_bar("AAPL", (i + 1) * NS, px))
        engine.step()
    hash_before = engine.kernel.state.state_hash()
    orders_before = len(engine.kernel.state.orders)
    assert orders_before > 0
    _crash(engine)

    again = _engine(sqlite_url, tmp_path)
    assert again.kernel.state.state_hash() == hash_before
    assert again.manager.state("a").value == "RUNNING" and again.manager.state("b").value == "PAUSED"
    assert str(again.risk.config.account.max_order_quantity) == "500"
    new_id = again.kernel.submit_order("manual", "AAPL", OrderSide.BUY, 1)
    assert new_id not in list(again.kernel.state.orders)[:orders_before]  # ids are never reused
    sessions = {oid.rsplit("-", 1)[0] for oid in again.kernel.state.orders}
    assert len(sessions) == 2 and new_id.endswith("-1")  # a new session of ids at each start
    again.shutdown()


def test_a_strategy_redeployed_after_a_restart_goes_on_from_its_position_not_from_flat(sqlite_url, tmp_path):
    # after the replay's first bar (2000-01-03), which the first turn takes: an order fills on a
    # later bar than the one it was made on, and the engine's clock is that first bar's time
    base = 1_000_000_000 * NS

    def feed(engine: EngineService, prices: list[float], start: int) -> list[Decimal]:
        held = []
        for i, px in enumerate(prices):
            engine.on_bar(_bar("AAPL", base + (start + i) * NS, px))
            engine.step()
            held.append(engine.kernel.state.position("a", "AAPL"))
        return held

    engine = _engine(sqlite_url, tmp_path)
    engine.manager.deploy("sma_cross", {"fast": 2, "slow": 3, "quantity": 10}, symbols=["AAPL"], allocation=50_000,
                          strategy_id="a")
    assert feed(engine, [10.0, 9.0, 8.0, 9.0, 11.0, 13.0], 1)[-1] == 10  # long 10 when it dies
    _crash(engine)

    again = _engine(sqlite_url, tmp_path)
    # crosses both ways after the restart: a strategy that believed itself flat bought a second lot
    held = feed(again, [14.0, 13.0, 12.0, 13.0, 15.0, 17.0, 14.0, 11.0, 9.0], 20)
    assert max(held) == 10 and 0 in held  # never more than one lot; the lot from before the crash was closed
    again.shutdown()


def _indicators(engine: EngineService) -> tuple:
    cross = engine.kernel.strategies["s"]._cross["AAPL"].__self__  # SmaCrossover behind the bound update
    z = engine.kernel.strategies["m"]._z["MSFT"]
    window = [cross.buf[(cross.pos + i) % cross.slow] for i in range(cross.slow)]  # oldest first
    return (cross.fast_sum, cross.slow_sum, cross.last_sign, window), (z.s1, z.s2, list(z.window))


@pytest.mark.parametrize("feed", ["replay", "synthetic"])
def test_after_a_restart_strategies_are_warmed_up_to_the_indicators_of_an_uninterrupted_run(feed, sqlite_url, tmp_path):
    def engine() -> EngineService:
        return _engine(sqlite_url, tmp_path, feed=feed, speed=2000.0, seed=5, start="2005-01-03")

    first = engine()
    first.manager.deploy("sma_cross", {"fast": 5, "slow": 20}, symbols=["AAPL"], allocation=50_000, strategy_id="s")
    first.manager.deploy("mean_reversion", {"window": 15}, symbols=["MSFT"], allocation=50_000, strategy_id="m")
    while first.counters.steps < 80:
        first.step()
    live = _indicators(first)
    assert first.warmed == 0  # a fresh start has nothing to warm up on
    _crash(first)

    again = engine()
    assert again.warmed == 20 + 15
    assert _indicators(again) == live
    assert any("warmed up on 35 bars" in a["message"] for a in again.alerts)
    again.shutdown()


@pytest.mark.parametrize("feed", ["replay", "synthetic"])
@pytest.mark.parametrize("saved", [True, False])
def test_a_rebalance_cadence_goes_on_across_a_restart_from_its_saved_state(feed, saved, sqlite_url, tmp_path):
    """`rebalance` counts bars to find its rebalance days. Its count is saved beside the monitors; the
    bars between that save and the crash are counted again in the warm-up. Without the saved state
    the count starts over (the test shows the difference)."""
    from qlcore.engine import derived_state
    from qlcore.store.tables import engine_derived_state

    def engine(url: str, folder: Path) -> EngineService:
        # one feed step a turn: the step counts below hold however slowly a loaded machine runs the turns
        return _engine(url, folder, feed=feed, speed=500.0, seed=5, start="2005-01-03", derived_state_s=3600.0,
                       max_feed_steps_per_turn=1)

    def deploy(engine: EngineService) -> None:
        engine.manager.deploy("rebalance", {"every": 5}, symbols=["AAPL", "MSFT"], allocation=50_000, strategy_id="r")
        engine.manager.deploy("sma_cross", {"fast": 3, "slow": 8}, symbols=["AAPL"], allocation=50_000, strategy_id="s")

    def run(engine: EngineService, until_steps: int, seen: dict) -> None:
        def on_bar(bar: Bar) -> None:  # the strategies' state after each bar, whatever a turn takes
            handed(bar)
            seen[bar.ts, bar.symbol] = _cadence(engine)

        handed = engine.manager.on_bar
        engine.manager.on_bar = on_bar  # type: ignore[method-assign]
        while engine.counters.steps < until_steps:
            engine.step()
        engine.manager.on_bar = handed  # type: ignore[method-assign]

    live: dict[int, tuple] = {}
    (tmp_path / "live").mkdir()
    reference = engine(f"sqlite:///{tmp_path / 'live' / 'q.db'}", tmp_path / "live")
    deploy(reference)
    run(reference, 60, live)
    reference.shutdown()

    first = engine(sqlite_url, tmp_path)
    deploy(first)
    before: dict[int, tuple] = {}
    run(first, 17, before)
    first._save_derived()
    saved_at = first.clock.now
    run(first, first.counters.steps + 4, before)  # these bars are seen, but not in the saved state
    gap = first.counters.steps - 17
    _crash(first)
    if not saved:
        with first.db.begin() as conn:
            conn.execute(engine_derived_state.delete().where(engine_derived_state.c.part == derived_state.STRATEGIES))

    again = engine(sqlite_url, tmp_path)
    at_crash = live[again.resume_ts, "MSFT"]  # the uninterrupted run after the last bar the log has seen
    if saved:
        assert _cadence(again) == at_crash  # count, last bar time, last prices and indicators, before any new bar
    else:
        assert _cadence(again)[1] == at_crash[1] and _cadence(again)[0] != at_crash[0]
    after: dict[int, tuple] = {}
    run(again, 60, after)
    common = sorted(after.keys() & live.keys())
    assert len(common) > 40 and all(before[k] == live[k] for k in before)
    if saved:
        assert (again.restored, again.restored_ts) == ({"r"}, saved_at) and gap > 0
        assert [after[ts] for ts in common] == [live[ts] for ts in common]
        assert any("warmed up" in a["message"] for a in again.alerts)
    else:
        assert again.restored == set()
        assert [after[ts][0] for ts in common] != [live[ts][0] for ts in common]  # the count started over
        assert [after[ts][1] for ts in common] == [live[ts][1] for ts in common]  # indicators still warm
    again.shutdown()


def _cadence(engine: EngineService) -> tuple:
    r = engine.kernel.strategies["r"]
    cross = engine.kernel.strategies["s"]._cross["AAPL"].__self__
    return (r._bars, r._ts, dict(r._last)), (cross.fast_sum, cross.slow_sum, cross.last_sign)


@pytest.mark.parametrize(("body", "message"), [
    ({"strategies": {}}, "saved strategy state unreadable (KeyError('ts'))"),
    ({"ts": 1, "strategies": {"ghost": {"bars": 3}}}, None),  # a strategy the log does not know: ignored
    ("keep", "r: saved state not loaded (KeyError('last'))"),
])
def test_a_strategy_state_that_cannot_be_used_is_named_and_the_engine_starts(body, message, sqlite_url, tmp_path):
    from qlcore.engine import derived_state

    first = _engine(sqlite_url, tmp_path)
    first.manager.deploy("rebalance", {"every": 5}, symbols=["AAPL", "MSFT"], allocation=50_000, strategy_id="r")
    first.step()
    first._save_derived()
    saved = derived_state.load(first.db, "t", derived_state.STRATEGIES, first.config.stream)
    assert saved is not None and saved.body["strategies"]["r"]["bars"] == 1
    if body == "keep":  # the strategy's entry, but a state `load_state` cannot read
        body = {**saved.body, "strategies": {"r": {"bars": 3, "ts": 1}}}
    derived_state.save(first.db, "t", derived_state.STRATEGIES, first.config.stream, saved.seq, body)
    _crash(first)

    again = _engine(sqlite_url, tmp_path)
    assert again.restored == set() and again.restored_ts is None and again.state == "running"
    warnings = [a["message"] for a in again.alerts if a["source"] == "strategies" and a["level"] == "warning"]
    assert len(warnings) == (1 if message else 0) and all(w.startswith(message) for w in warnings)
    assert again.kernel.strategies["r"]._bars == 0  # starts its count afresh
    again.shutdown()
