"""A strategy whose own code fails is FAILED alone, on a real engine with a real SQLite store and venue
ledger; the others go on trading, and a restart neither crashes nor runs the failed code again."""
from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from engine_rig import STREAM, command, crash, feed_bars, start_engine

from qlcore.engine.service import EngineService
from qlcore.events.facts import StrategyFailed
from qlcore.events.store import EventStore
from qlcore.events.types import OrderFilled
from qlcore.model.enums import OrderStatus
from qlcore.model.market import Bar
from qlcore.strategies import Param, Strategy
from qlcore.strategies.manager import StrategyState


class Steady(Strategy):
    """Buys one share on every bar: the strategy that must go on trading."""

    name = "steady"

    def on_bar(self, bar: Bar) -> None:
        self.buy(1, bar.symbol)


class Bomb(Strategy):
    """Rests a far buy limit on its first bar, raises from `on_bar` at bar `at`; `on_start` and
    `on_fill` raise when told to. `calls` counts every hook call across instances (restarts)."""

    name = "bomb"
    params = {
        "at": Param(3, int, min=0),  # 0: on_bar never raises
        "start_raises": Param(False, bool),
        "fill_raises": Param(False, bool),
        "buy_qty": Param(0, int, min=0),  # market buy of this many on its first bar
    }
    at: int
    start_raises: bool
    fill_raises: bool
    buy_qty: int
    calls: list[str] = []

    def on_start(self) -> None:
        Bomb.calls.append("on_start")
        if self.start_raises:
            raise RuntimeError("on_start went wrong")
        self.bars = 0

    def on_bar(self, bar: Bar) -> None:
        Bomb.calls.append("on_bar")
        self.bars += 1
        if self.bars == 1:
            self.buy(5, bar.symbol, limit=Decimal("0.01"))  # rests: cancelled when the strategy fails
            if self.buy_qty:
                self.buy(self.buy_qty, bar.symbol)
        if self.bars == self.at:
            raise ZeroDivisionError("the fatal bar")

    def on_fill(self, fill: OrderFilled) -> None:
        Bomb.calls.append("on_fill")
        if self.fill_raises:
            raise KeyError("on_fill went wrong")


class Slow(Strategy):
    """Takes `seconds` of the engine's injected clock on each bar (it moves that clock itself)."""

    name = "slow"
    params = {"seconds": Param(2.0, float)}
    seconds: float
    clock: Any = None

    def on_bar(self, bar: Bar) -> None:
        Slow.clock.now += self.seconds


class Unsaveable(Strategy):
    name = "unsaveable"

    def save_state(self) -> dict[str, Any] | None:
        raise ValueError("cannot save")


class FakeClock:
    """A monotonic clock that moves only when told: timing never decides a test."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _failures(url: str) -> list[StrategyFailed]:
    return [e for e in EventStore(url).events(STREAM) if type(e) is StrategyFailed]


@pytest.fixture(autouse=True)
def _fresh_calls():
    Bomb.calls = []
    yield


def test_a_strategy_raising_in_on_bar_fails_alone_and_stays_failed_across_a_restart(sqlite_url, tmp_path):
    engine = start_engine(sqlite_url, tmp_path)
    engine.manager.deploy(f"{__name__}:Steady", symbols=["AAPL"], allocation=50_000, strategy_id="steady")
    engine.manager.deploy(f"{__name__}:Bomb", {"at": 3}, symbols=["AAPL"], allocation=50_000, strategy_id="bomb")
    feed_bars(engine, 1, 5)

    assert engine.manager.state("bomb") is StrategyState.FAILED
    assert engine.manager.state("steady") is StrategyState.RUNNING
    assert engine.kernel.state.position("steady", "AAPL") == 5  # one a bar, before and after the failure
    assert Bomb.calls.count("on_bar") == 3  # nothing after the fatal bar
    # its resting order was cancelled; the failure is in the log with the hook, the error and the traceback
    bomb_orders = [o for o in engine.kernel.state.orders.values() if o.strategy_id == "bomb"]
    assert [o.status for o in bomb_orders] == [OrderStatus.CANCELED]
    [failed] = _failures(sqlite_url)
    details = json.loads(failed.details)
    assert (failed.strategy_id, details["hook"], details["error"]) == ("bomb", "on_bar", "ZeroDivisionError: the fatal bar")
    assert "raise ZeroDivisionError" in details["traceback"] and details["canceled"] == [bomb_orders[0].order_id]
    assert [a["level"] for a in engine.alerts if a["source"] == "strategies" and "bomb FAILED" in a["message"]] == ["error"]
    snapshot_rows = {s["strategy_id"]: s for s in _snapshot(engine)["strategies"]}
    assert snapshot_rows["bomb"]["state"] == "FAILED" and snapshot_rows["bomb"]["fault"].startswith("on_bar: ZeroDivisionError")
    crash(engine)

    again = start_engine(sqlite_url, tmp_path)  # the fatal bar is in the past of the log: no crash loop
    assert again.state == "running"
    assert again.manager.state("bomb") is StrategyState.FAILED and again.manager.state("steady") is StrategyState.RUNNING
    assert "bomb" not in again.kernel.strategies
    calls = len(Bomb.calls)
    feed_bars(again, 6, 3)
    assert Bomb.calls[calls:] == []  # its code never ran again: not on_start, not on_bar
    assert again.kernel.state.position("steady", "AAPL") == 8
    assert len(_failures(sqlite_url)) == 1
    assert any("bomb is FAILED" in a["message"] for a in again.alerts)
    again.shutdown()


def _snapshot(engine: EngineService) -> dict[str, Any]:
    from qlcore.engine.snapshot import build_snapshot

    return build_snapshot(engine)


def test_a_strategy_over_its_bar_budget_fails_and_the_others_trade(sqlite_url, tmp_path):
    clock = FakeClock()
    Slow.clock = clock
    engine = start_engine(sqlite_url, tmp_path, monotonic=clock, strategy_bar_budget_s=1.0)
    engine.manager.deploy(f"{__name__}:Slow", {"seconds": 2.0}, symbols=["MSFT"], allocation=50_000, strategy_id="slow")
    engine.manager.deploy(f"{__name__}:Slow", {"seconds": 0.5}, symbols=["AAPL"], allocation=50_000, strategy_id="quick")
    engine.manager.deploy(f"{__name__}:Steady", symbols=["AAPL", "MSFT"], allocation=50_000, strategy_id="steady")
    feed_bars(engine, 1, 3)

    assert engine.manager.state("slow") is StrategyState.FAILED
    assert engine.manager.state("quick") is StrategyState.RUNNING  # 0.5 s a bar is within 1 s
    assert engine.kernel.state.position("steady", "MSFT") == 3 and engine.kernel.state.position("steady", "AAPL") == 3
    [failed] = _failures(sqlite_url)
    details = json.loads(failed.details)
    assert (details["hook"], details["elapsed_s"], details["budget_s"]) == ("on_bar", 2.0, 1.0)
    engine.shutdown()


def test_a_raising_on_fill_fails_the_strategy_not_thestart_engine(sqlite_url, tmp_path):
    engine = start_engine(sqlite_url, tmp_path)
    engine.manager.deploy(f"{__name__}:Bomb", {"at": 0, "fill_raises": True, "buy_qty": 4}, symbols=["MSFT"],
                          allocation=50_000, strategy_id="bomb")
    engine.manager.deploy(f"{__name__}:Steady", symbols=["MSFT"], allocation=50_000, strategy_id="steady")
    feed_bars(engine, 1, 3)

    assert engine.manager.state("bomb") is StrategyState.FAILED
    assert json.loads(_failures(sqlite_url)[0].details)["hook"] == "on_fill"
    assert engine.kernel.state.position("bomb", "MSFT") == 4  # the fill itself stands
    assert engine.kernel.state.position("steady", "MSFT") == 3
    engine.shutdown()


def test_a_failed_strategy_is_flattened_when_so_configured(sqlite_url, tmp_path):
    engine = start_engine(sqlite_url, tmp_path, flatten_failed=True)
    engine.manager.deploy(f"{__name__}:Bomb", {"at": 2, "buy_qty": 6}, symbols=["AAPL"], allocation=50_000, strategy_id="bomb")
    feed_bars(engine, 1, 3)

    assert engine.manager.state("bomb") is StrategyState.FAILED
    assert engine.kernel.state.position("bomb", "AAPL") == 0
    assert len(json.loads(_failures(sqlite_url)[0].details)["flatten_orders"]) == 1
    engine.shutdown()


def test_a_strategy_failing_on_start_is_logged_failed_and_not_started_again(sqlite_url, tmp_path):
    engine = start_engine(sqlite_url, tmp_path)
    outcome = command(engine, "alice", "strategy.deploy", {"strategy_id": "bomb", "strategy": f"{__name__}:Bomb",
                                                           "params": {"start_raises": True}})
    assert outcome.status == "accepted" and "FAILED in on_start: RuntimeError: on_start went wrong" in outcome.reason
    assert engine.manager.state("bomb") is StrategyState.FAILED
    crash(engine)

    again = start_engine(sqlite_url, tmp_path)
    feed_bars(again, 1, 2)
    assert Bomb.calls == ["on_start"]  # once, at the deployment; never at the restart
    assert again.manager.state("bomb") is StrategyState.FAILED
    again.shutdown()


def test_a_strategy_whose_on_start_raises_at_a_restart_is_failed_in_the_log_once(sqlite_url, tmp_path):
    engine = start_engine(sqlite_url, tmp_path)
    engine.manager.deploy(f"{__name__}:Bomb", {"at": 0}, symbols=["AAPL"], allocation=50_000, strategy_id="bomb")
    engine.manager.pause("bomb")
    engine.manager.resume("bomb")
    feed_bars(engine, 1, 2)
    crash(engine)

    original = Bomb.on_start

    def broken(self: Bomb) -> None:
        Bomb.calls.append("on_start")
        raise RuntimeError("cannot start after the restart")

    Bomb.on_start = broken  # type: ignore[method-assign]
    try:
        again = start_engine(sqlite_url, tmp_path)  # the pause and resume after its deployment are skipped
        assert again.state == "running" and again.manager.state("bomb") is StrategyState.FAILED
        again.step()  # its resting order is cancelled once the log agrees with the venue
        assert [o.status for o in again.kernel.state.orders.values() if o.strategy_id == "bomb"] == [OrderStatus.CANCELED]
        again.shutdown()
        assert len(_failures(sqlite_url)) == 1
        third = start_engine(sqlite_url, tmp_path)
        assert third.manager.state("bomb") is StrategyState.FAILED
        third.shutdown()
        assert Bomb.calls.count("on_start") == 2  # the first start, and the failed one: not the third
    finally:
        Bomb.on_start = original  # type: ignore[method-assign]


def test_a_raising_save_state_fails_the_strategy_and_the_engine_saves_the_others(sqlite_url, tmp_path):
    engine = start_engine(sqlite_url, tmp_path)
    engine.manager.deploy(f"{__name__}:Unsaveable", symbols=["AAPL"], allocation=50_000, strategy_id="u")
    engine.manager.deploy("rebalance", {"every": 5}, symbols=["AAPL", "MSFT"], allocation=50_000, strategy_id="r")
    feed_bars(engine, 1, 2)
    engine._save_derived()

    assert engine.manager.state("u") is StrategyState.FAILED
    assert json.loads(_failures(sqlite_url)[0].details)["hook"] == "save_state"
    from qlcore.engine import derived_state

    saved = derived_state.load(engine.db, "t", derived_state.STRATEGIES, engine.config.stream)
    assert saved is not None and set(saved.body["strategies"]) == {"r"}
    engine.shutdown()


def test_a_failed_strategy_is_cleared_only_by_stopping_it(sqlite_url, tmp_path):
    engine = start_engine(sqlite_url, tmp_path)
    engine.manager.deploy(f"{__name__}:Bomb", {"at": 2, "buy_qty": 3}, symbols=["AAPL"], allocation=50_000, strategy_id="bomb")
    feed_bars(engine, 1, 3)
    resumed = command(engine, "alice", "strategy.resume", {"strategy_id": "bomb"})
    assert resumed.status == "refused" and "cannot resume in state FAILED; allowed: stop" in resumed.reason
    stopped = command(engine, "alice", "strategy.stop", {"strategy_id": "bomb", "flatten": True}, turns=3)
    assert stopped.status == "accepted" and engine.manager.state("bomb") is StrategyState.STOPPED
    assert engine.kernel.state.position("bomb", "AAPL") == 0
    assert Bomb.calls.count("on_bar") == 2  # stopping a failed strategy runs none of its code
    engine.shutdown()


def test_the_fault_policy_rejects_a_bad_budget():
    from qlcore.strategies.faults import FaultPolicy

    with pytest.raises(ValueError, match="strategy bar budget: expected seconds >= 0 or none, got -1"):
        FaultPolicy(bar_budget_s=-1)
    assert FaultPolicy(bar_budget_s=0).bar_budget_s == 0
