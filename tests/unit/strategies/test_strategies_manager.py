"""The strategy manager: lifecycle table, bar routing, order gating, flattening and live statistics."""
from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qlcore.brokers import SimulatedBroker
from qlcore.engine.clock import BacktestClock
from qlcore.engine.kernel import Kernel
from qlcore.events.types import Event, OrderFilled, OrderInitialized
from qlcore.model.enums import OrderSide, OrderStatus, OrderType
from qlcore.model.instruments import Instrument
from qlcore.model.market import Bar
from qlcore.model.money import ZERO, to_decimal
from qlcore.portfolio.metrics import compute_metrics
from qlcore.risk.chain import RiskChain, RiskSettings
from qlcore.risk.config import RiskConfig
from qlcore.risk.hook import RiskHook
from qlcore.strategies import Param, Strategy, UnknownParameterError, UnknownStrategyError
from qlcore.strategies.manager import (
    TRANSITIONS,
    Action,
    InvalidStrategyTransition,
    StrategyDeployed,
    StrategyFailed,
    StrategyManager,
    StrategyPaused,
    StrategyResumed,
    StrategyState,
    StrategyStopped,
)

DAY = 86_400 * 10**9
T0 = 1_700_000_000 * 10**9 // DAY * DAY


class Probe(Strategy):
    """Counts its bars; every `every` bars buys `quantity` when flat and closes when long.

    With `limit_below` > 0 it instead rests a buy limit that far under the close on every bar.
    """

    name = "probe"
    params = {
        "quantity": Param(Decimal(10), Decimal),
        "every": Param(1, int, min=1),
        "limit_below": Param(Decimal(0), Decimal, min=Decimal(0)),
    }
    quantity: Decimal
    every: int
    limit_below: Decimal

    def on_start(self) -> None:
        self.bars: list[int] = []
        self.fills = 0
        self.stopped = False

    def on_bar(self, bar: Bar) -> None:
        self.bars.append(bar.ts)
        if self.limit_below:
            self.buy(self.quantity, bar.symbol, limit=to_decimal(round(bar.close, 2)) - self.limit_below)
        elif len(self.bars) % self.every == 0 and not self.open_orders(bar.symbol):
            if self.position(bar.symbol):
                self.close(bar.symbol)
            else:
                self.buy(self.quantity, bar.symbol)

    def on_fill(self, fill: OrderFilled) -> None:
        self.fills += 1

    def on_stop(self) -> None:
        self.stopped = True


PROBE = f"{__name__}:Probe"


class Harness:
    """A kernel on simulated time and broker, driven like `qlcore.engine.backtest._drive`."""

    def __init__(self, symbols: Iterable[str] = ("AAA", "BBB"), rules: RiskHook | None = None) -> None:
        self.clock = BacktestClock(T0)
        self.broker = SimulatedBroker()
        # no cash check: the harness trades an unfunded account; capital and deployment limits still apply
        chain = RiskChain(RiskSettings(limits=RiskConfig()), rules=rules)
        self.kernel = Kernel(
            clock=self.clock, broker=self.broker, instruments={s: Instrument(s) for s in symbols}, risk=chain
        )
        if rules is None:  # orders before the first bar are valued (capital) at a reference price
            for sym in symbols:
                chain.engine.set_reference_price(sym, Decimal(100), T0)
        self.manager = StrategyManager(self.kernel)
        self.fills: list[OrderFilled] = []
        self.kernel.fill_listeners.append(self.fills.append)
        self.step = 0

    def bars(self, n: int, symbols: Iterable[str] = ("AAA",), price: float = 100.0) -> None:
        for _ in range(n):
            self.step += 1
            ts = T0 + self.step * DAY
            close = price + (self.step % 7) - 3 + self.step * 0.25
            for sym in symbols:
                bar = Bar(sym, ts, close - 0.5, close + 1.0, close - 1.0, close, 1_000.0)
                self.clock.now = ts
                self.broker.on_bar(bar)
                self.kernel.risk.on_bar(bar)  # type: ignore[attr-defined]
                self.manager.on_bar(bar)


# --- the lifecycle table ----------------------------------------------------------------------------
def test_transition_table_has_exactly_the_lifecycle_edges():
    S, A = StrategyState, Action
    assert TRANSITIONS == {
        (S.DEPLOYED, A.START): S.RUNNING,
        (S.DEPLOYED, A.STOP): S.STOPPED,
        (S.RUNNING, A.PAUSE): S.PAUSED,
        (S.RUNNING, A.STOP): S.STOPPED,
        (S.PAUSED, A.RESUME): S.RUNNING,
        (S.PAUSED, A.STOP): S.STOPPED,
        (S.DEPLOYED, A.FAIL): S.FAILED,
        (S.RUNNING, A.FAIL): S.FAILED,
        (S.PAUSED, A.FAIL): S.FAILED,
        (S.FAILED, A.STOP): S.STOPPED,
    }


class Fragile(Probe):
    """A probe whose on_start, on_bar and save_state raise while `explode` is set."""

    name = "fragile"
    explode = False

    def _check(self) -> None:
        if self.explode:
            raise RuntimeError("boom")

    def on_start(self) -> None:
        self._check()
        super().on_start()

    def on_bar(self, bar: Bar) -> None:
        self._check()
        super().on_bar(bar)

    def save_state(self) -> dict[str, Any] | None:
        self._check()
        return None


def test_illegal_actions_raise_naming_strategy_state_and_action():
    h = Harness()
    h.manager.deploy(PROBE, symbols=["AAA"], allocation=Decimal(10_000), strategy_id="p1")
    with pytest.raises(InvalidStrategyTransition, match=r"strategy p1: cannot resume in state RUNNING"):
        h.manager.resume("p1")
    h.manager.pause("p1")
    with pytest.raises(InvalidStrategyTransition, match=r"strategy p1: cannot pause in state PAUSED"):
        h.manager.pause("p1")
    h.manager.stop("p1")
    for action in (h.manager.pause, h.manager.resume, h.manager.stop):
        with pytest.raises(InvalidStrategyTransition, match=r"in state STOPPED; allowed: none") as err:
            action("p1")
        assert err.value.strategy_id == "p1" and err.value.state is StrategyState.STOPPED
    assert h.manager.state("p1") is StrategyState.STOPPED


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(list(Action)), max_size=12))
def test_any_action_sequence_follows_the_table_and_illegal_ones_change_nothing(actions):
    h = Harness()
    probe = h.manager.deploy(f"{__name__}:Fragile", symbols=["AAA"], allocation=100_000, strategy_id="p1", start=False)

    def fail() -> None:
        # the strategy's own code raises in whatever hook its state calls next; in FAILED or STOPPED
        # nothing calls it, so nothing changes
        probe.explode = True
        try:
            state = h.manager.state("p1")
            if state is StrategyState.DEPLOYED:
                h.manager.start("p1")
            elif state is StrategyState.RUNNING:
                h.bars(1)
            else:
                h.manager.saved_states()
        finally:
            probe.explode = False

    do = {
        Action.START: lambda: h.manager.start("p1"),
        Action.PAUSE: lambda: h.manager.pause("p1"),
        Action.RESUME: lambda: h.manager.resume("p1"),
        Action.STOP: lambda: h.manager.stop("p1"),
        Action.FAIL: fail,
    }
    expected = StrategyState.DEPLOYED
    for action in actions:
        target = TRANSITIONS.get((expected, action))
        if action is Action.FAIL:
            fail()
            expected = target or expected  # the manager takes FAIL itself: never raised at the caller
        elif target is None:
            with pytest.raises(InvalidStrategyTransition):
                do[action]()
        else:
            do[action]()
            expected = target
        assert h.manager.state("p1") is expected
    lifecycle = [type(e) for e in h.manager.events[1:]]
    assert lifecycle.count(StrategyStopped) == (expected is StrategyState.STOPPED)
    assert lifecycle.count(StrategyFailed) == (StrategyState.FAILED in _path(actions))


def _path(actions: list[Action]) -> list[StrategyState]:
    """The states the table takes a freshly deployed strategy through, illegal actions skipped."""
    state, path = StrategyState.DEPLOYED, [StrategyState.DEPLOYED]
    for action in actions:
        state = TRANSITIONS.get((state, action), state)
        path.append(state)
    return path


def test_deploy_without_start_stays_deployed_and_gets_no_bars():
    h = Harness()
    probe = h.manager.deploy(PROBE, symbols=["AAA"], allocation=100_000, strategy_id="p1", start=False)
    assert h.manager.state("p1") is StrategyState.DEPLOYED
    h.bars(2)
    assert not hasattr(probe, "bars")  # on_start never ran, on_bar never called
    with pytest.raises(InvalidStrategyTransition, match="cannot pause in state DEPLOYED"):
        h.manager.pause("p1")
    h.manager.start("p1", actor="carol")
    h.bars(1)
    assert h.manager.state("p1") is StrategyState.RUNNING and len(probe.bars) == 1
    started = h.manager.events[-1]
    assert isinstance(started, StrategyResumed) and json.loads(started.details) == {"first_start": True}
    with pytest.raises(InvalidStrategyTransition, match="cannot start in state RUNNING"):
        h.manager.start("p1")


# --- deploying ----------------------------------------------------------------------------------------
def test_deploy_binds_starts_and_records_an_event_with_the_deployment():
    h = Harness()
    probe = h.manager.deploy(
        "sma_cross", {"fast": "3", "slow": 5}, symbols=["AAA"], allocation="25000",
        limits={"max_position": 100}, strategy_id="s1", actor="alice",
    )
    assert h.kernel.strategies["s1"] is probe and probe.symbols == ("AAA",)
    assert h.manager.state("s1") is StrategyState.RUNNING
    (event,) = h.manager.events
    assert isinstance(event, StrategyDeployed)
    assert (event.ts, event.strategy_id, event.actor) == (T0, "s1", "alice")
    assert json.loads(event.details) == {
        "strategy": "sma_cross",
        "params": {"fast": 3, "slow": 5, "quantity": "100"},
        "symbols": ["AAA"],
        "allocation": "25000",
        "limits": {"max_position": "100"},
        "start": True,
    }


def test_deploy_refuses_bad_requests_and_says_what_is_valid():
    h = Harness()
    with pytest.raises(UnknownStrategyError, match="built-in strategies: mean_reversion, rebalance, sma_cross"):
        h.manager.deploy("nope", symbols=["AAA"], allocation=1)
    with pytest.raises(UnknownParameterError, match=r"unknown parameter\(s\) fats; valid parameters: fast"):
        h.manager.deploy("sma_cross", {"fats": 3}, symbols=["AAA"], allocation=1)
    with pytest.raises(ValueError, match="unknown symbol\\(s\\) ZZZ; known: AAA, BBB"):
        h.manager.deploy("sma_cross", symbols=["ZZZ"], allocation=1)
    with pytest.raises(ValueError, match="capital allocation must be > 0, got 0"):
        h.manager.deploy("sma_cross", symbols=["AAA"], allocation=0)
    with pytest.raises(ValueError, match="unknown limit\\(s\\) max_loss; valid limits: max_order_quantity"):
        h.manager.deploy("sma_cross", symbols=["AAA"], allocation=1, limits={"max_loss": 5})
    h.manager.deploy("sma_cross", symbols=["AAA"], allocation=1, strategy_id="x")
    with pytest.raises(ValueError, match="strategy id 'x' is already deployed"):
        h.manager.deploy("sma_cross", symbols=["AAA"], allocation=1, strategy_id="x")
    assert h.manager.strategy_ids == ["x"] and [type(e) for e in h.manager.events] == [StrategyDeployed]


def test_a_failing_event_listener_leaves_the_state_unchanged():
    h = Harness()
    h.manager.deploy(PROBE, symbols=["AAA"], allocation=100_000, strategy_id="p1")

    def broken(event: Event) -> None:
        raise OSError("store is down")

    h.manager.event_listeners.append(broken)
    with pytest.raises(OSError, match="store is down"):
        h.manager.pause("p1")
    assert h.manager.state("p1") is StrategyState.RUNNING


# --- routing and gating ----------------------------------------------------------------------------------
def test_bars_go_only_to_running_strategies_subscribed_to_the_symbol():
    h = Harness()
    a = h.manager.deploy(PROBE, {"every": 1000}, symbols=["AAA"], allocation=100_000, strategy_id="a")
    b = h.manager.deploy(PROBE, {"every": 1000}, symbols=["BBB"], allocation=100_000, strategy_id="b")
    ab = h.manager.deploy(PROBE, {"every": 1000}, symbols=["AAA", "BBB"], allocation=100_000, strategy_id="ab")
    h.bars(3, symbols=["AAA"])
    assert (len(a.bars), len(b.bars), len(ab.bars)) == (3, 0, 3)
    h.bars(2, symbols=["AAA", "BBB"])
    assert (len(a.bars), len(b.bars), len(ab.bars)) == (5, 2, 7)


def test_paused_strategy_gets_no_bars_and_its_new_orders_are_denied_then_resumes():
    h = Harness()
    probe = h.manager.deploy(PROBE, {"every": 1000}, symbols=["AAA"], allocation=100_000, strategy_id="p1")
    h.bars(3)
    h.manager.pause("p1", actor="bob")
    h.bars(4)
    assert len(probe.bars) == 3
    order_id = probe.buy(1)
    order = h.kernel.order(order_id)
    assert order.status is OrderStatus.DENIED
    assert order.reason == "strategy p1 is PAUSED: new orders are refused"
    h.manager.resume("p1", actor="bob")
    h.bars(2)
    assert len(probe.bars) == 5
    assert h.kernel.order(probe.buy(1)).status is OrderStatus.ACCEPTED
    assert [type(e) for e in h.manager.events] == [StrategyDeployed, StrategyPaused, StrategyResumed]
    assert all(e.actor == "bob" for e in h.manager.events[1:])  # type: ignore[attr-defined]


def test_pause_keeps_open_orders_unless_asked_to_cancel_them():
    h = Harness()
    keep = h.manager.deploy(PROBE, {"limit_below": 50}, symbols=["AAA"], allocation=100_000, strategy_id="keep")
    drop = h.manager.deploy(PROBE, {"limit_below": 50}, symbols=["AAA"], allocation=100_000, strategy_id="drop")
    h.bars(2)
    assert len(keep.open_orders()) == 2 and len(drop.open_orders()) == 2
    h.manager.pause("keep")
    h.manager.pause("drop", cancel_open_orders=True)
    assert len(keep.open_orders()) == 2 and h.broker.working_count == 2
    assert drop.open_orders() == []
    canceled = json.loads(h.manager.events[-1].details)["canceled"]  # type: ignore[attr-defined]
    assert [h.kernel.order(o).status for o in canceled] == [OrderStatus.CANCELED] * 2


def test_per_strategy_limits_deny_orders_with_the_limit_and_value():
    h = Harness()
    probe = h.manager.deploy(
        PROBE, {"every": 1000}, symbols=["AAA"], allocation=100_000, strategy_id="p1",
        limits={"max_order_quantity": 5, "max_position": 8},
    )
    too_big = h.kernel.order(probe.buy(6))
    assert too_big.status is OrderStatus.DENIED
    assert too_big.reason.startswith("max_order_quantity: limit 5, order 6 ")  # the risk rule, one meaning
    assert h.kernel.order(probe.buy(5)).status is OrderStatus.ACCEPTED
    h.bars(1)
    over = h.kernel.order(probe.buy(4))
    assert over.reason.startswith("max_position: limit 8 (strategy p1), worst case 9 = position 5 + open buys 0 + order 4")
    assert h.kernel.order(probe.sell(5)).status is OrderStatus.ACCEPTED  # reducing is allowed


def _long_aaa_short_bbb() -> tuple[Harness, Any]:
    """A probe strategy "p1" long 7 AAA and short 3 BBB."""
    h = Harness()
    probe = h.manager.deploy(PROBE, {"every": 1000}, symbols=["AAA", "BBB"], allocation=10_000, strategy_id="p1")
    probe.buy(7, "AAA")
    probe.sell(3, "BBB")
    h.bars(1, symbols=["AAA", "BBB"])
    return h, probe


# --- stopping ---------------------------------------------------------------------------------------------
def test_stop_with_flatten_cancels_orders_and_leaves_every_position_at_zero():
    h, probe = _long_aaa_short_bbb()
    resting = probe.buy(1, "AAA", limit="1.00")
    assert (probe.position("AAA"), probe.position("BBB")) == (7, -3)
    flatten = h.manager.stop("p1", flatten=True, actor="ops")
    assert len(flatten) == 2 and probe.stopped
    assert h.kernel.order(resting).status is OrderStatus.CANCELED
    assert h.manager.state("p1") is StrategyState.STOPPED and "p1" not in h.kernel.strategies
    h.bars(1, symbols=["AAA", "BBB"])
    assert (probe.position("AAA"), probe.position("BBB")) == (0, 0)
    assert [h.kernel.order(o).status for o in flatten] == [OrderStatus.FILLED] * 2
    assert len(probe.bars) == 2  # one per symbol before the stop, none after
    stopped = h.manager.events[-1]
    assert isinstance(stopped, StrategyStopped) and stopped.actor == "ops"
    assert json.loads(stopped.details) == {"flatten": True, "canceled": [resting], "flatten_orders": flatten}
    stats = h.manager.stats("p1")
    assert stats.trade_count == 4 and stats.gross_exposure == 0 and stats.unrealized_pnl == 0


def test_stop_without_flatten_keeps_the_position():
    h = Harness()
    probe = h.manager.deploy(PROBE, {"every": 1000}, symbols=["AAA"], allocation=10_000, strategy_id="p1")
    probe.buy(7)
    h.bars(1)
    assert h.manager.stop("p1") == []
    h.bars(2)
    assert probe.position() == 7


# --- statistics -------------------------------------------------------------------------------------------
def cash_flow_pnl(fills: list[OrderFilled], closes: dict[str, Decimal], strategy_id: str) -> Decimal:
    """P&L from first principles: money paid and received, plus the holdings at the closes."""
    pnl, held = ZERO, Counter[str]()
    for f in fills:
        if f.strategy_id != strategy_id:
            continue
        signed = f.quantity if f.side.value == "BUY" else -f.quantity
        pnl -= signed * f.price + f.fee
        held[f.symbol] += signed  # type: ignore[assignment]
    return pnl + sum((q * closes[s] for s, q in held.items()), ZERO)


def test_stats_match_a_direct_computation_of_pnl_sharpe_and_drawdown():
    h = Harness()
    allocation = Decimal(5_000)
    h.manager.deploy(PROBE, {"every": 3, "quantity": 20}, symbols=["AAA"], allocation=allocation, strategy_id="p1")
    equity = [float(allocation)]
    dates = [pd.Timestamp(T0)]
    for _ in range(60):
        h.bars(1)
        close = to_decimal(h.manager._last_close["AAA"])
        equity.append(float(allocation + cash_flow_pnl(h.fills, {"AAA": close}, "p1")))
        dates.append(pd.Timestamp(T0 + h.step * DAY))
    h.manager.sample()  # close the last bar's period
    stats = h.manager.stats("p1")
    close = to_decimal(h.manager._last_close["AAA"])
    assert stats.pnl == cash_flow_pnl(h.fills, {"AAA": close}, "p1")
    assert stats.equity == allocation + stats.pnl
    assert stats.realized_pnl != 0 and stats.trade_count == len(h.fills) > 10
    position = h.kernel.state.position("p1", "AAA")
    assert stats.gross_exposure == abs(position * close) and stats.net_exposure == position * close
    ref = compute_metrics(pd.Series(equity, index=pd.DatetimeIndex(dates)), periods_per_year=252)
    assert stats.samples == len(equity) == 61
    assert stats.sharpe == pytest.approx(ref.sharpe, rel=1e-9)
    assert stats.max_drawdown == pytest.approx(ref.max_drawdown, rel=1e-9, abs=1e-12)
    assert ref.max_drawdown < 0  # the series does draw down: the comparison means something


def test_sharpe_is_nan_until_two_returns_and_for_flat_equity():
    h = Harness()
    h.manager.deploy(PROBE, {"every": 1000}, symbols=["AAA"], allocation=100_000, strategy_id="p1")
    assert math.isnan(h.manager.stats("p1").sharpe)
    h.bars(5)
    h.manager.sample()
    stats = h.manager.stats("p1")
    assert stats.samples == 6 and math.isnan(stats.sharpe) and stats.max_drawdown == 0.0


# --- scale --------------------------------------------------------------------------------------------------
def synthetic_closes(n_symbols: int, n_bars: int, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    steps = rng.normal(0.0, 0.01, size=(n_bars, n_symbols))
    return np.round(100.0 * np.exp(np.cumsum(steps, axis=0)), 2)


def test_500_strategies_over_50_symbols_run_with_right_states_and_stats():
    n_symbols, n_bars, per_symbol = 50, 300, 10
    symbols = [f"S{i:02d}" for i in range(n_symbols)]
    h = Harness(symbols)
    for i in range(n_symbols * per_symbol):
        fast = 2 + i % 5
        h.manager.deploy(
            "sma_cross", {"fast": fast, "slow": fast + 3 + (i // n_symbols) % 7, "quantity": 10},
            symbols=[symbols[i % n_symbols]], allocation=Decimal(100_000), strategy_id=f"sma-{i:03d}",
        )
    assert len(h.kernel.strategies) == 500
    inits: list[OrderInitialized] = []
    h.kernel.bus.subscribe(inits.append, OrderInitialized)  # type: ignore[arg-type]
    closes = synthetic_closes(n_symbols, n_bars)
    paused = [f"sma-{i:03d}" for i in range(0, 50)]
    stopped = [f"sma-{i:03d}" for i in range(50, 100)]
    pause_at, stop_at = 150, 200
    for t in range(n_bars):
        ts = T0 + (t + 1) * DAY
        if t == pause_at:
            for sid in paused:
                h.manager.pause(sid, cancel_open_orders=True)
            inits_before_pause = len(inits)
        if t == stop_at:
            for sid in stopped:
                h.manager.stop(sid, flatten=True)
        for j, sym in enumerate(symbols):
            c = float(closes[t, j])
            bar = Bar(sym, ts, c, c * 1.01, c * 0.99, c, 1e6)
            h.clock.now = ts
            h.broker.on_bar(bar)
            h.manager.on_bar(bar)
    h.manager.sample()  # how fast: benchmarks/bench_engine.py (500 strategies)

    states = Counter(h.manager.state(s) for s in h.manager.strategy_ids)
    assert states == {StrategyState.RUNNING: 400, StrategyState.PAUSED: 50, StrategyState.STOPPED: 50}
    paused_set = set(paused)
    assert not [o for o in inits[inits_before_pause:] if o.strategy_id in paused_set]
    for sid in stopped:
        assert all(h.kernel.state.position(sid, s) == 0 for s in symbols)
    last = {sym: to_decimal(float(closes[-1, j])) for j, sym in enumerate(symbols)}
    fills_by = Counter(f.strategy_id for f in h.fills)
    assert sum(fills_by.values()) > 1000
    for sid in h.manager.strategy_ids:
        stats = h.manager.stats(sid)
        assert stats.trade_count == fills_by[sid]
        assert stats.pnl == cash_flow_pnl(h.fills, last, sid)
    running = h.manager.stats("sma-499")
    assert running.samples == n_bars + 1 and running.state is StrategyState.RUNNING


class DenyBuys:
    """The kernel's own risk hook in these tests: refuses every buy."""

    def check(self, order, state):
        return "test rule no_buys: buy refused" if order.side.value == "BUY" else None


def test_flatten_orders_still_pass_the_kernels_own_risk_hook():
    h = Harness(rules=DenyBuys())
    probe = h.manager.deploy(PROBE, {"every": 1000}, symbols=["AAA"], allocation=10_000, strategy_id="p1")
    probe.sell(4)
    h.bars(1)
    (order_id,) = h.manager.stop("p1", flatten=True)
    order = h.kernel.order(order_id)
    assert (order.side.value, order.quantity, order.status) == ("BUY", 4, OrderStatus.DENIED)
    assert order.reason == "test rule no_buys: buy refused"


def test_close_position_sends_the_opposite_market_order_for_the_whole_position_and_nothing_when_flat():
    h, _ = _long_aaa_short_bbb()
    long_close = h.kernel.order(h.kernel.close_position("p1", "AAA", tags="t"))
    short_close = h.kernel.order(h.kernel.close_position("p1", "BBB", tags="t"))
    assert (long_close.side, long_close.quantity, long_close.order_type) == (OrderSide.SELL, 7, OrderType.MARKET)
    assert (short_close.side, short_close.quantity, short_close.tags) == (OrderSide.BUY, 3, "t")
    assert h.kernel.close_position("p1", "CCC", tags="t") is None  # never held
    h.bars(1, symbols=["AAA", "BBB"])
    assert h.kernel.close_position("p1", "AAA", tags="t") is None  # flat now
