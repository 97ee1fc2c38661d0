"""Runaway protection: order and fill floods, child orders beyond the parent intent, human re-enabling."""
from __future__ import annotations

import json
from decimal import Decimal

import pytest
from risk_desk import Desk, denied, passed

from qlcore.brokers.simulated import SimulatedBroker
from qlcore.engine.clock import BacktestClock
from qlcore.engine.kernel import Kernel
from qlcore.events.facts import StrategyDisabled, TradingModeChanged
from qlcore.events.types import AccountFunded, Event, OrderFilled
from qlcore.model.enums import OrderStatus
from qlcore.model.instruments import Instrument
from qlcore.model.market import Bar
from qlcore.risk import RiskEngine
from qlcore.risk.chain import RiskChain, RiskSettings
from qlcore.risk.config import RiskConfig
from qlcore.risk.modes import ModeConfig, ModeGate, NotAuthorisedError, TradingMode, TradingModes
from qlcore.risk.runaway import RunawayConfig, RunawayConfigError, RunawayGuard, RunawayLimits
from qlcore.strategies import Param, Strategy
from qlcore.strategies.manager import StrategyManager, StrategyState

D = Decimal
M = TradingMode
DAY = 86_400 * 10**9
T0 = 1_700_000_000 * 10**9 // DAY * DAY


class Looper(Strategy):
    """A bug: re-sends `per_bar` resting buy orders far below the market on every bar."""

    name = "looper"
    params = {"per_bar": Param(20, int, min=1)}
    per_bar: int

    def on_bar(self, bar: Bar) -> None:
        for _ in range(self.per_bar):
            self.buy(1, bar.symbol, limit=D(repr(bar.close)) / 2)


class Steady(Strategy):
    """Buys 10 when flat and sells when long, one order at a time."""

    name = "steady"

    def on_bar(self, bar: Bar) -> None:
        if self.open_orders(bar.symbol):
            return
        if self.position(bar.symbol):
            self.close(bar.symbol)
        else:
            self.buy(10, bar.symbol)


class Burst(Strategy):
    """Sends `per_bar` market orders on every bar: many fills at once."""

    name = "burst"
    params = {"per_bar": Param(5, int, min=1)}
    per_bar: int

    def on_bar(self, bar: Bar) -> None:
        for _ in range(self.per_bar):
            self.buy(1, bar.symbol)


class Engine:
    """Kernel + simulated broker + manager, with ModeGate(RunawayGuard(RiskEngine)) in the order path."""

    def __init__(self, config: dict) -> None:
        self.clock = BacktestClock(T0)
        self.broker = SimulatedBroker()
        # the one chain: lifecycle (the manager's) -> modes -> runaway guard -> rules
        settings = RiskSettings(RiskConfig(), ModeConfig(frozenset({"alice"})), runaway=RunawayConfig.from_mapping(config))
        chain = RiskChain(settings)
        self.kernel = Kernel(clock=self.clock, broker=self.broker, instruments={"AAA": Instrument("AAA")}, risk=chain)
        self.kernel.emit(AccountFunded(T0, "main", D(1_000_000)))
        self.chain, self.modes, self.guard = chain, chain.modes, chain.runaway
        chain.disable_listeners.append(self.disable)
        self.manager = StrategyManager(self.kernel)
        self.events: list[Event] = []
        self.kernel.bus.subscribe(self.events.append)
        self.fills: list[OrderFilled] = []
        self.kernel.fill_listeners.append(self.fills.append)
        self.step = 0

    def disable(self, strategy_id: str, reason: str) -> None:
        self.manager.pause(strategy_id, cancel_open_orders=True, actor="runaway-protection")

    def bars(self, n: int) -> None:
        for _ in range(n):
            self.step += 1
            ts = T0 + self.step * DAY
            close = 100.0 + (self.step % 5)
            bar = Bar("AAA", ts, close - 0.5, close + 1.0, close - 1.0, close, 1_000.0)
            self.clock.now = ts
            self.broker.on_bar(bar)
            self.chain.on_bar(bar)
            self.manager.on_bar(bar)
            self.chain.after_bar()


def steady_trades(engine: Engine) -> list[tuple]:
    return [(f.ts, f.side, f.quantity, f.price) for f in engine.fills if f.strategy_id == "steady"]


def test_a_looping_strategy_is_disabled_and_another_trades_exactly_as_without_it():
    config = {"max_orders": 30, "order_window_s": 2 * 86_400}  # two daily bars
    alone = Engine(config)
    alone.manager.deploy(f"{__name__}:Steady", symbols=["AAA"], allocation=100_000, strategy_id="steady")
    alone.bars(12)

    both = Engine(config)
    both.manager.deploy(f"{__name__}:Steady", symbols=["AAA"], allocation=100_000, strategy_id="steady")
    both.manager.deploy(f"{__name__}:Looper", symbols=["AAA"], allocation=100_000, strategy_id="loop")
    both.bars(12)
    loop_orders = [o for o in both.kernel.state.orders.values() if o.strategy_id == "loop"]
    statuses = [o.status for o in loop_orders]
    # 30 went out (20 on bar 1, 10 on bar 2); the 31st was denied and disabled it; the rest of
    # its loop on bar 2 met the HALTED strategy; then it was paused and got no more bars
    assert len(loop_orders) == 40
    assert statuses.count(OrderStatus.CANCELED) == 30 and statuses.count(OrderStatus.DENIED) == 10
    disabled = [e for e in both.events if isinstance(e, StrategyDisabled)]
    reason = (
        "runaway protection max_orders: strategy loop: more than 30 orders within 172800s "
        f"(order {loop_orders[30].order_id} would be number 31)"
    )
    assert disabled == [StrategyDisabled(T0 + 2 * DAY, "loop", "runaway-protection",
                                         json.dumps({"reason": reason, "rule": "max_orders"}, sort_keys=True))]
    assert loop_orders[30].reason == reason
    assert loop_orders[31].reason.startswith("strategy loop mode HALTED: new orders are denied (runaway protection")
    changes = [(e.scope, e.old, e.new, e.reason, e.actor) for e in both.events if isinstance(e, TradingModeChanged)]
    assert changes == [("loop", "ACTIVE", "HALTED", reason, "runaway-protection")]
    assert both.manager.state("loop") is StrategyState.PAUSED and both.manager.state("steady") is StrategyState.RUNNING
    assert both.broker.working_count == len(both.kernel.state.open_orders("steady"))

    # the other strategy: same fills and position as when it ran alone
    assert steady_trades(both) == steady_trades(alone) != []
    assert both.kernel.state.position("steady", "AAA") == alone.kernel.state.position("steady", "AAA")


def test_a_disabled_strategy_needs_an_authorised_user_to_come_back():
    eng = Engine({"max_orders": 5, "order_window_s": 1})
    eng.manager.deploy(f"{__name__}:Looper", {"per_bar": 6}, symbols=["AAA"], allocation=1000, strategy_id="loop")
    eng.bars(1)
    assert "loop" in eng.guard.disabled and eng.modes.mode("loop") is M.HALTED
    with pytest.raises(NotAuthorisedError, match="actor 'loop-owner-script' is not authorised"):
        eng.guard.enable("loop", "loop-owner-script")
    assert eng.modes.mode("loop") is M.HALTED
    event = eng.guard.enable("loop", "alice", "fixed the loop")
    assert (event.scope, event.new, event.actor, event.reason) == ("loop", "ACTIVE", "alice", "fixed the loop")
    assert eng.guard.disabled == {}
    eng.manager.resume("loop", actor="alice")
    eng.bars(1)  # counts started afresh: 5 pass, the 6th trips it again
    assert len(eng.guard.events) == 2 and eng.modes.mode("loop") is M.HALTED
    with pytest.raises(ValueError, match="strategy steady is not disabled"):
        eng.guard.enable("steady", "alice")


def test_too_many_fills_disable_the_strategy_and_the_pause_waits_for_a_safe_point():
    eng = Engine({"max_fills": 3, "fill_window_s": 60})
    eng.manager.deploy(f"{__name__}:Burst", symbols=["AAA"], allocation=10_000, strategy_id="burst")
    eng.bars(1)  # 5 market orders out
    eng.step += 1
    bar = Bar("AAA", T0 + eng.step * DAY, 100.0, 101.0, 99.0, 100.0, 1000.0)
    eng.clock.now = bar.ts
    eng.broker.on_bar(bar)  # 5 fills at one time: the 4th trips the limit inside the broker's report
    assert [f.strategy_id for f in eng.fills] == ["burst"] * 5
    (event,) = eng.guard.events
    assert event.strategy_id == "burst" and json.loads(event.details) == {
        "rule": "max_fills",
        "reason": "runaway protection max_fills: strategy burst: 4 fills within 60s, more than 3",
    }
    assert eng.modes.mode("burst") is M.HALTED
    assert eng.manager.state("burst") is StrategyState.RUNNING  # the callback has not run yet
    assert eng.guard.run_pending() == ["burst"]
    assert eng.manager.state("burst") is StrategyState.PAUSED
    assert eng.guard.run_pending() == []


def desk_with_guard(config: dict | None = None) -> tuple[Desk, RunawayGuard, TradingModes]:
    desk = Desk({})
    modes = TradingModes.for_kernel(desk.kernel, ModeConfig(frozenset({"alice"})))
    guard = RunawayGuard(modes, desk.risk, RunawayConfig.from_mapping(config or {}))
    desk.kernel.risk = ModeGate(modes, guard)
    return desk, guard, modes


def test_child_orders_beyond_the_declared_intent_disable_the_strategy():
    desk, guard, modes = desk_with_guard()
    guard.declare_intent("s1", "AAPL", 100)
    a = desk.buy(40, limit="99")
    b = desk.buy(40, limit="99")
    assert passed(a) and passed(b) and guard.intent_used("s1", "AAPL") == 80
    desk.kernel.cancel_order(a.order_id)  # cancel and replace: the canceled child no longer counts
    assert guard.intent_used("s1", "AAPL") == 40
    assert passed(desk.buy(40, limit="98"))
    assert passed(desk.sell(500, symbol="AAPL", strategy="s2"))  # another strategy: no intent
    assert passed(desk.sell(5))  # the other side is not a child of a buy intent
    reason = denied(desk.buy(30, limit="98"))
    assert reason == (
        f"runaway protection intent: strategy s1: child order O-{len(desk.kernel.state.orders)} BUY 30 AAPL "
        "would take its children to 110, beyond its declared intent BUY 100"
    )
    assert modes.mode("s1") is M.HALTED and guard.disabled["s1"] == reason
    assert denied(desk.buy(1, symbol="MSFT")).startswith("strategy s1 mode HALTED")
    assert passed(desk.buy(1, strategy="s2"))


def test_intent_counts_filled_children_and_a_new_declaration_replaces_the_old():
    desk, guard, _ = desk_with_guard()
    guard.declare_intent("s1", "AAPL", -50)
    desk.fill("SELL", 30)
    assert guard.intent_used("s1", "AAPL") == 30
    assert passed(desk.sell(20))
    guard.declare_intent("s1", "AAPL", -10)
    assert passed(desk.sell(10))
    assert "beyond its declared intent SELL 10" in denied(desk.sell(1))
    with pytest.raises(ValueError, match="quantity must not be zero"):
        guard.declare_intent("s1", "AAPL", 0)
    with pytest.raises(KeyError, match="no intent declared for strategy s1 in MSFT"):
        guard.intent_used("s1", "MSFT")


def test_the_disabled_set_is_a_fold_over_the_events():
    eng = Engine({"max_orders": 2})
    eng.manager.deploy(f"{__name__}:Looper", {"per_bar": 3}, symbols=["AAA"], allocation=1000, strategy_id="loop")
    eng.bars(1)
    modes = TradingModes(eng.kernel.emit, eng.clock).replay(eng.events)
    rebuilt = RunawayGuard(modes, RiskEngine({})).replay(eng.events)
    assert rebuilt.disabled == eng.guard.disabled != {}
    assert modes.modes == eng.modes.modes == {"loop": M.HALTED}


def test_config_reads_the_runaway_table_with_per_strategy_overrides_and_names_bad_keys():
    cfg = RunawayConfig.from_toml(
        "[runaway]\nmax_orders = 50\nmax_fills = 100\nfill_window_s = 60\n"
        "[runaway.strategy.mm]\nmax_orders = 500\n"
    )
    assert cfg.for_strategy("x") == RunawayLimits(50, D(1), 100, D(60))
    assert cfg.for_strategy("mm") == RunawayLimits(500, D(1), 100, D(60))
    with pytest.raises(RunawayConfigError, match=r"\[runaway\]: unknown key\(s\) \['max_order'\]"):
        RunawayConfig.from_mapping({"max_order": 5})
    with pytest.raises(RunawayConfigError, match=r"\[runaway.strategy.mm\] max_fills: expected a whole number >= 1"):
        RunawayConfig.from_mapping({"strategy": {"mm": {"max_fills": 0}}})
    with pytest.raises(RunawayConfigError, match=r"order_window_s: expected a number of seconds > 0, got 'x'"):
        RunawayConfig.from_mapping({"order_window_s": "x"})
