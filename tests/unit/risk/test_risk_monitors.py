"""Real-time monitors: each limit at the limit and just over it, actions on the modes, and automatic halts."""
from __future__ import annotations

import itertools
import math
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from risk_desk import SYMBOLS, T0, Desk, denied, passed

from qlcore.brokers.simulated import FillModel, SimulatedBroker
from qlcore.data.sample import load_sample
from qlcore.engine.clock import BacktestClock
from qlcore.engine.kernel import Kernel
from qlcore.events.facts import LimitBreached, TradingModeChanged
from qlcore.events.types import AccountFunded, Event, MarksUpdated
from qlcore.model.enums import OrderSide, OrderStatus, OrderType
from qlcore.model.instruments import Instrument
from qlcore.model.market import Bar
from qlcore.model.money import ZERO, canonical
from qlcore.risk.chain import RiskChain, RiskSettings
from qlcore.risk.config import RiskConfig
from qlcore.risk.modes import (
    ACCOUNT,
    ModeConfig,
    ModeGate,
    NotAuthorisedError,
    TradingMode,
    TradingModes,
)
from qlcore.risk.monitors import Limit, MonitorConfig, MonitorConfigError, RiskMonitors, ScopeLimits
from qlcore.strategies import Strategy
from qlcore.strategies.manager import StrategyManager

D = Decimal
M = TradingMode
DAY = 86_400 * 10**9


class Watched:
    """A desk with ModeGate over its RiskEngine and monitors on its kernel; every event on the bus kept."""

    def __init__(self, monitors: dict, *, cash: str = "1000000", risk: dict | None = None) -> None:
        self.desk = Desk(risk or {}, cash=cash)
        self.kernel = self.desk.kernel
        self.modes = TradingModes.for_kernel(self.kernel, ModeConfig(frozenset({"alice"})))
        self.kernel.risk = ModeGate(self.modes, self.desk.risk)
        self.monitors = RiskMonitors(self.kernel, self.modes, MonitorConfig.from_mapping(monitors))
        self.events: list[Event] = []
        self.kernel.bus.subscribe(self.events.append)

    def mark(self, symbol: str, px: str, dt: int = 1) -> list[LimitBreached]:
        """A bar `dt` ns later, closing at `px`, seen by the broker and the monitors."""
        self.desk.clock.now += dt
        p = float(px)
        bar = Bar(symbol, self.desk.clock.now, p, p, p, p, 1000.0)
        self.desk.broker.on_bar(bar)
        self.desk.risk.on_bar(bar)
        return self.monitors.on_bar(bar)

    def breaches(self) -> list[tuple]:
        return [(e.scope, e.monitor, e.limit, e.value, e.action) for e in self.events if isinstance(e, LimitBreached)]

    def changes(self) -> list[tuple]:
        return [(e.scope, e.old, e.new, e.actor) for e in self.events if isinstance(e, TradingModeChanged)]


def bought(monitors: dict, qty: int = 1000, px: str = "100", **kw) -> Watched:
    w = Watched(monitors, **kw)
    w.desk.fill("BUY", qty, "AAPL", px)
    return w


# --- configuration ---------------------------------------------------------------------------------
def test_config_reads_the_monitors_table_with_actions_and_strategy_overrides():
    cfg = MonitorConfig.from_toml(
        """
        [monitors]
        var_confidence = "0.99"
        var_window = 100
        [monitors.account]
        drawdown = { limit = "0.10", action = "HALTED" }
        daily_loss = "50000"
        [monitors.strategy_default]
        drawdown = "0.2"
        daily_loss = "1000"
        [monitors.strategy.s1]
        daily_loss = { limit = "5000", action = "HALTED" }
        """
    )
    assert cfg.var_confidence == D("0.99") and cfg.var_window == 100 and cfg.var_min_samples == 20
    assert cfg.account == ScopeLimits(drawdown=Limit(D("0.10"), M.HALTED), daily_loss=Limit(D(50000), M.REDUCING))
    assert cfg.for_strategy("s1") == ScopeLimits(Limit(D("0.2")), Limit(D(5000), M.HALTED))
    assert cfg.for_strategy("s2") == ScopeLimits(Limit(D("0.2")), Limit(D(1000)))


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"var_cofidence": 0.9}, r"unknown key\(s\) \['var_cofidence'\]"),
        ({"account": {"drawdwn": "0.1"}}, r"\[account\]: unknown or misplaced key\(s\) \['drawdwn'\]"),
        ({"strategy": {"s1": {"var": "100"}}}, r"\[strategy.s1\]: unknown or misplaced key\(s\) \['var'\]"),
        ({"account": {"drawdown": "1.5"}}, r"drawdown: a fraction must be <= 1, got 1.5"),
        ({"account": {"daily_loss": "-1"}}, r"daily_loss: must be >= 0, got -1"),
        ({"account": {"var": {"limit": "1", "action": "ACTIVE"}}}, r"var: action must be 'REDUCING' or 'HALTED'"),
        ({"account": {"var": {"action": "HALTED"}}}, r"var: missing 'limit'"),
        ({"var_confidence": "1"}, r"var_confidence: must be in \(0, 1\)"),
        ({"var_window": 10, "var_min_samples": 11}, r"var_min_samples: must be in 1..var_window"),
    ],
)
def test_config_errors_name_the_key_and_why(table, message):
    with pytest.raises(MonitorConfigError, match=message):
        MonitorConfig.from_mapping(table)


# --- each monitor: at the limit passes, just over breaches ------------------------------------------
def test_account_drawdown_at_the_limit_passes_and_just_over_halts_with_limit_and_value():
    w = bought({"account": {"drawdown": {"limit": "0.01", "action": "HALTED"}}})
    assert w.mark("AAPL", "101") == []  # new peak 1,001,000
    assert w.mark("AAPL", "90.99") == []  # 1,001,000 -> 990,990: exactly 1%
    (breach,) = w.mark("AAPL", "90.98")
    assert breach == LimitBreached(w.desk.clock.now, ACCOUNT, "drawdown", "0.01", str(D(10020) / D(1001000)), "HALTED")
    assert w.modes.account is M.HALTED
    assert w.changes() == [(ACCOUNT, "ACTIVE", "HALTED", "risk-monitor")]
    assert w.modes.reason() == (
        f"limit drawdown of account breached: {D(10020) / D(1001000)} > 0.01 (equity 990980, peak 1001000)"
    )
    assert w.mark("AAPL", "80") == []  # one breach, one event: no repeat while it lasts
    assert len(w.breaches()) == 1


def test_account_daily_loss_at_the_limit_passes_and_just_over_reduces_and_a_new_day_starts_afresh():
    w = bought({"account": {"daily_loss": "5000"}})
    assert w.mark("AAPL", "100") == []
    assert w.mark("AAPL", "95") == []
    (breach,) = w.mark("AAPL", "94.99")
    assert (breach.scope, breach.monitor, breach.limit, breach.value, breach.action) == (
        ACCOUNT, "daily_loss", "5000", "5010", "REDUCING"
    )
    assert w.modes.account is M.REDUCING
    w.modes.resume(ACCOUNT, "alice")
    # the next day's baseline is the previous day's last equity: 994,990
    assert w.mark("AAPL", "90", DAY) == []  # loss 4,990 today
    assert w.monitors.readings[(ACCOUNT, "daily_loss")].value == D(4990)
    (breach,) = w.mark("AAPL", "89.98")
    assert breach.value == "5010"


def test_gross_exposure_at_the_limit_passes_and_just_over_breaches():
    w = bought({"account": {"gross_exposure": "100000"}})
    assert w.mark("AAPL", "100") == []
    (breach,) = w.mark("AAPL", "100.01")
    assert (breach.monitor, breach.limit, breach.value) == ("gross_exposure", "100000", "100010")
    assert "limit gross_exposure of account breached: 100010 > 100000" in w.modes.reason()


def test_concentration_at_the_limit_passes_and_just_over_breaches_above_the_minimum_gross():
    w = Watched({"concentration_min_gross": "60000", "account": {"concentration": "0.5"}})
    w.desk.fill("BUY", 500, "AAPL", "100")
    assert w.mark("AAPL", "100") == []  # all in one instrument, but 50,000 is below the minimum gross
    assert (ACCOUNT, "concentration") not in w.monitors.readings
    w.desk.fill("BUY", 500, "MSFT", "100")
    assert w.mark("MSFT", "100") == []
    assert w.monitors.readings[(ACCOUNT, "concentration")].value == D("0.5")
    (breach,) = w.mark("MSFT", "100.02")
    assert (breach.monitor, breach.value) == ("concentration", canonical(D(50010) / D(100010)))


def _var_path(limit: str) -> tuple[Watched, list[LimitBreached], Decimal]:
    w = bought({"var_confidence": "0.8", "var_window": 5, "var_min_samples": 5,
                "account": {"var": {"limit": limit, "action": "HALTED"}}})
    prices = ["100", "101", "99", "100", "97", "98", "99.5"]
    out: list[LimitBreached] = []
    for px in prices:
        out += w.mark("AAPL", px)
    # independent: equities at each bar; returns between the closed periods (all but the last bar)
    equities = [D(900000) + 1000 * D(px) for px in prices]
    returns = [b / a - 1 for a, b in itertools.pairwise(equities[:-1])]
    assert len(returns) == 5
    k = math.ceil(5 * (1 - 0.8))  # the worst return
    expected = -sorted(returns)[k - 1] * equities[-1]
    return w, out, expected


def test_historical_var_at_the_limit_passes_and_just_over_breaches():
    w, out, expected = _var_path("0")
    assert w.monitors.var() == expected  # the 3% fall 1,000,000 -> 997,000, at 999,500
    w, out, _ = _var_path(str(expected))
    assert out == [] and w.modes.account is M.ACTIVE
    w, out, _ = _var_path(str(expected - D("0.01")))
    (breach,) = out
    assert (breach.monitor, breach.value, breach.action) == ("var", canonical(expected), "HALTED")


def test_no_var_before_enough_returns():
    w = bought({"var_min_samples": 3, "account": {"var": "0"}})
    assert w.mark("AAPL", "90") == [] and w.mark("AAPL", "80") == [] and w.mark("AAPL", "70") == []
    assert w.mark("AAPL", "70") == []
    assert w.monitors.var() is None  # three closed periods give two returns
    (breach,) = w.mark("AAPL", "70")
    assert breach.monitor == "var" and w.monitors.var() == (1 - D(970000) / D(980000)) * D(970000)


def test_strategy_drawdown_moves_only_that_strategy_and_counts_fees():
    clock = BacktestClock(T0)
    broker = SimulatedBroker(FillModel(fee_bps=D(10)))
    kernel = Kernel(clock=clock, broker=broker, instruments={s: Instrument(s) for s in SYMBOLS})
    kernel.emit(AccountFunded(T0, "main", D(1_000_000)))
    modes = TradingModes.for_kernel(kernel, ModeConfig(frozenset({"alice"})))
    kernel.risk = ModeGate(modes, kernel.risk)
    monitors = RiskMonitors(kernel, modes, MonitorConfig.from_mapping(
        {"strategy_default": {"drawdown": "0.05"}, "strategy": {"s1": {"drawdown": {"limit": "0.05", "action": "HALTED"}}}}
    ))
    monitors.add_strategy("s1", 100_000)
    monitors.add_strategy("s2", 100_000)
    kernel.submit_order("s1", "AAPL", OrderSide.BUY, 1000)
    kernel.submit_order("s2", "MSFT", OrderSide.BUY, 10)

    def bar(symbol: str, px: str) -> list[LimitBreached]:
        clock.now += 1
        b = Bar(symbol, clock.now, float(px), float(px), float(px), float(px), 1.0)
        broker.on_bar(b)
        return monitors.on_bar(b)

    bar("MSFT", "100")
    assert bar("AAPL", "100") == []  # s1: 100,000 - fee 100 = 99,900
    # s1 equity 100,000 + 1000 x (p - 100) - 100; peak 100,000 (the allocation): 5% is p = 95.1
    assert bar("AAPL", "95.1") == []
    assert monitors.readings[("s1", "drawdown")].value == D("0.05")
    (breach,) = bar("AAPL", "95.09")
    assert (breach.scope, breach.monitor, breach.value, breach.action) == ("s1", "drawdown", "0.0501", "HALTED")
    assert modes.mode("s1") is M.HALTED and modes.mode("s2") is M.ACTIVE and modes.account is M.ACTIVE
    denial = kernel.order(kernel.submit_order("s1", "AAPL", OrderSide.SELL, 1)).reason
    assert denial.startswith("strategy s1 mode HALTED: new orders are denied (limit drawdown of s1 breached: 0.0501")
    assert kernel.order(kernel.submit_order("s2", "MSFT", OrderSide.BUY, 1)).status is not OrderStatus.DENIED


def test_strategies_not_added_are_not_monitored_and_bad_allocations_are_refused():
    w = bought({"strategy_default": {"drawdown": "0.01"}})
    assert w.mark("AAPL", "50") == []
    with pytest.raises(ValueError, match="allocation must be > 0, got 0"):
        w.monitors.add_strategy("s1", 0)
    with pytest.raises(ValueError, match="'account' is the account's scope"):
        w.monitors.add_strategy("account", 10)


# --- an automatic halt on real bars ------------------------------------------------------------------
class BuyAndHold(Strategy):
    """Buys 100,000 shares on its first bar and holds them."""

    name = "buy_and_hold"

    def on_start(self) -> None:
        self.bars = 0

    def on_bar(self, bar: Bar) -> None:
        self.bars += 1
        if self.bars == 1:
            self.buy(D(100_000))


def test_drawdown_on_real_bars_halts_the_account_until_an_authorised_user_resumes():
    bars = load_sample("AAPL").iloc[:300]
    clock = BacktestClock(int(bars.index[0].value))
    broker = SimulatedBroker()
    chain = RiskChain(RiskSettings(RiskConfig(), ModeConfig(frozenset({"alice"}))))
    kernel = Kernel(clock=clock, broker=broker, instruments={"AAPL": Instrument("AAPL")}, risk=chain)
    kernel.emit(AccountFunded(clock.now, "main", D(1_000_000)))
    modes = chain.modes
    manager = StrategyManager(kernel)
    monitors = RiskMonitors(kernel, modes, MonitorConfig.from_mapping(
        {"account": {"drawdown": {"limit": "0.15", "action": "HALTED"}}, "strategy_default": {"drawdown": "0.25"}}
    ))
    monitors.add_strategy("bh", 500_000)
    events: list[Event] = []
    kernel.bus.subscribe(events.append)
    manager.deploy(f"{__name__}:BuyAndHold", symbols=["AAPL"], allocation=500_000, strategy_id="bh")

    halted_at = None
    for i, row in enumerate(bars.itertuples()):
        bar = Bar("AAPL", row.Index.value, row.open, row.high, row.low, row.close, row.volume)
        clock.now = bar.ts
        broker.on_bar(bar)
        chain.on_bar(bar)
        monitors.on_bar(bar)
        manager.on_bar(bar)
        if modes.account is M.HALTED:
            halted_at = i
            break

    # independently, from the bars: the block fills at bar 1's open; first breach of each limit
    opens, closes = bars["open"].tolist(), bars["close"].tolist()
    cost = 100_000 * D(repr(opens[1]))
    peak, strategy_peak = D(1_000_000), D(500_000)
    expected, strategy_breach = None, None
    strategy_crossings: list[int] = []
    was_over = False
    for i in range(1, len(bars)):
        value = 100_000 * D(repr(closes[i]))
        equity, strategy_equity = D(1_000_000) - cost + value, D(500_000) - cost + value
        peak, strategy_peak = max(peak, equity), max(strategy_peak, strategy_equity)
        over = (strategy_peak - strategy_equity) / strategy_peak > D("0.25")
        if over and not was_over:
            strategy_crossings.append(int(bars.index[i].value))
            strategy_breach = i if strategy_breach is None else strategy_breach
        was_over = over
        if (peak - equity) / peak > D("0.15"):
            expected = i
            break
    assert expected is not None and strategy_breach is not None and strategy_breach < expected
    assert halted_at == expected
    breaches = [(e.ts, e.scope, e.monitor, e.limit, e.action) for e in events if isinstance(e, LimitBreached)]
    # a breach fires when the value crosses the limit; the strategy's may cross more than once
    ts = bars.index.asi8
    assert breaches[0] == (ts[strategy_breach], "bh", "drawdown", "0.25", "REDUCING")
    assert breaches[-1] == (ts[expected], ACCOUNT, "drawdown", "0.15", "HALTED")
    assert [b[1:] for b in breaches[1:-1]] == [("bh", "drawdown", "0.25", "REDUCING")] * (len(breaches) - 2)
    assert [b[0] for b in breaches[:-1]] == strategy_crossings
    changes = [(e.scope, e.new) for e in events if isinstance(e, TradingModeChanged)]
    assert changes == [("bh", "REDUCING"), (ACCOUNT, "HALTED")]

    # halted: even a reducing order is denied; cancels would still pass (nothing is open)
    reason = kernel.order(kernel.submit_order("bh", "AAPL", OrderSide.SELL, 1)).reason
    assert reason.startswith("account mode HALTED: new orders are denied (limit drawdown of account breached: ")
    with pytest.raises(NotAuthorisedError, match="'risk-desk-bot'"):
        modes.resume(ACCOUNT, "risk-desk-bot")
    assert modes.account is M.HALTED
    modes.resume(ACCOUNT, "alice", "loss reviewed")
    assert modes.account is M.ACTIVE
    # re-armed from today's equity: the same bar does not halt it again; the strategy stays REDUCING
    assert monitors.on_bar(bar) == []
    assert modes.account is M.ACTIVE and modes.mode("bh") is M.REDUCING
    assert kernel.order(kernel.submit_order("bh", "AAPL", OrderSide.SELL, 1)).status is not OrderStatus.DENIED


# --- property: the full chain never ends beyond a hard limit ----------------------------------------
HARD = {"max_position": "300", "max_account_position": "400", "max_gross_exposure": "60000"}
PRICES = {"AAPL": "100", "MSFT": "50", "IBM": "120"}

order_st = st.tuples(
    st.sampled_from(["s1", "s2"]),
    st.sampled_from(list(PRICES)),
    st.sampled_from([OrderSide.BUY, OrderSide.SELL]),
    st.integers(1, 250),
    st.sampled_from(["market", "limit_near", "limit_far"]),
)
step_st = st.one_of(
    order_st,
    st.tuples(st.just("bar"), st.sampled_from(list(PRICES))),
    st.tuples(st.just("mode"), st.sampled_from([ACCOUNT, "s1", "s2"]), st.sampled_from(["REDUCING", "HALTED"])),
    st.tuples(st.just("resume"), st.sampled_from([ACCOUNT, "s1", "s2"])),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(step_st, min_size=1, max_size=40))
def test_random_order_streams_through_the_full_chain_never_end_beyond_a_hard_limit(steps):
    w = Watched({"account": {"gross_exposure": "40000", "drawdown": "0.5"}}, risk={"account": HARD},
                cash="10000000")
    for sym, px in PRICES.items():
        w.desk.price(sym, px)
    for step in steps:
        if step[0] == "bar":
            w.mark(step[1], PRICES[step[1]])
        elif step[0] == "mode":
            w.modes.restrict(step[1], step[2], reason="test", actor="prop")
        elif step[0] == "resume":
            if w.modes.mode(step[1]) is not M.ACTIVE:
                w.modes.resume(step[1], "alice")
        else:
            sid, sym, side, qty, kind = step
            px = D(PRICES[sym])
            limit = None if kind == "market" else (px if kind == "limit_near" else px * D("0.9"))
            mode_before = (w.modes.account, w.modes.mode(sid))
            held = w.kernel.state.position(sid, sym)
            net = w.kernel.state.net_position(sym)
            oid = w.kernel.submit_order(sid, sym, side, qty, OrderType.MARKET if limit is None else OrderType.LIMIT,
                                        limit)
            order = w.kernel.order(oid)
            if M.HALTED in mode_before:
                assert order.status is OrderStatus.DENIED
            signed = qty if side is OrderSide.BUY else -qty
            if mode_before[1] is M.REDUCING and passed(order):
                assert abs(held + signed) < abs(held) and (held + signed) * held >= 0
            if mode_before[0] is M.REDUCING and passed(order):
                assert abs(net + signed) < abs(net)
        state = w.kernel.state
        gross = ZERO
        for sym in PRICES:
            net = state.net_position(sym)
            assert abs(net) <= D(HARD["max_account_position"])
            gross += abs(net) * D(PRICES[sym])
            for sid in ("s1", "s2"):
                assert abs(state.position(sid, sym)) <= D(HARD["max_position"])
        assert gross <= D(HARD["max_gross_exposure"])


def test_an_order_increasing_a_reducing_strategy_is_denied_even_when_the_inner_engine_would_pass():
    w = Watched({}, risk={"account": HARD})
    w.desk.fill("BUY", 100)
    w.modes.set_mode("s1", M.REDUCING, reason="test", actor="prop")
    assert "would increase" in denied(w.desk.buy(1))
    assert passed(w.desk.buy(1, strategy="s2"))


def test_attached_monitors_evaluate_on_marks_and_on_fills():
    w = Watched({"account": {"gross_exposure": "50000"}})
    w.monitors.attach()
    w.desk.fill("BUY", 400, "AAPL", "100")  # the fill itself is evaluated: 40,000
    assert w.monitors.readings[(ACCOUNT, "gross_exposure")].value == D(40000)
    w.kernel.emit(MarksUpdated(w.desk.clock.now, (("AAPL", D("125.01")),)))
    assert w.breaches() == [(ACCOUNT, "gross_exposure", "50000", "50004", "REDUCING")]
    assert w.modes.account is M.REDUCING
