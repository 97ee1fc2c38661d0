"""No look-ahead, in any broker: an order never fills on a bar whose time is not after its creation.

Random multi-symbol data (each symbol on its own timeline, with ties between symbols), random
strategies that send any order type for any symbol from any symbol's bar; the backtest (simulated
broker) and the paper venue (next-bar convention, with and without latency) must fill every order
on a bar strictly after the order was made. Two hand-written cases pin the cross-symbol hole: an
order for B sent from A's bar at t does not take B's open at t, whichever symbol comes first.
"""
from __future__ import annotations

import random
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qlcore.brokers.paper import PaperVenue
from qlcore.data.feed import ReplayFeed
from qlcore.engine import BacktestConfig, BacktestEngine
from qlcore.engine.clock import BacktestClock
from qlcore.engine.kernel import Kernel
from qlcore.engine.service import EngineConfig, EngineService
from qlcore.events.types import OrderFilled
from qlcore.model.enums import OrderSide, TimeInForce
from qlcore.model.instruments import Instrument
from qlcore.model.market import Bar
from qlcore.risk.chain import RiskSettings
from qlcore.store.db import dispose_all
from qlcore.strategies.base import Param, Strategy

HOUR = 3_600_000_000_000
T0 = pd.Timestamp("2024-01-02").value

# one planned order: (target symbol index, side, kind, price offset in % of the close, time in force)
Plan = tuple[int, OrderSide, str, int, TimeInForce]


class Planned(Strategy):
    """Sends, on its k-th bar (any symbol), the orders planned for k, for any symbol it trades."""

    name = "planned"

    def __init__(self, plan: dict[int, list[Plan]], **kw: Any) -> None:
        super().__init__(**kw)
        self.plan = plan
        self.seen = 0
        self.last_close: dict[str, float] = {}

    def on_bar(self, bar: Bar) -> None:
        self.last_close[bar.symbol] = bar.close
        for target, side, kind, offset, tif in self.plan.get(self.seen, []):
            symbol = self.symbols[target % len(self.symbols)]
            ref = self.last_close.get(symbol, bar.close)
            price = Decimal(repr(round(ref * (1 + offset / 100), 2))).max(Decimal("0.01"))
            kw: dict[str, Any] = {"tif": tif}
            if kind in ("limit", "stop_limit"):
                kw["limit"] = price
            if kind in ("stop", "stop_limit"):
                kw["stop"] = price
            self.order(side, 10, symbol, **kw)
        self.seen += 1


@st.composite
def market(draw: st.DrawFn, hours_span: int = 72) -> tuple[dict[str, pd.DataFrame], dict[int, list[Plan]]]:
    n_symbols = draw(st.integers(2, 4))
    frames = {}
    for i in range(n_symbols):
        # hours on a grid (3 days by default): symbols share some times (ties) and not others
        hours = sorted(draw(st.sets(st.integers(0, hours_span - 1), min_size=1, max_size=14)))
        rows = []
        for _ in hours:
            o = draw(st.integers(50, 150))
            c = draw(st.integers(50, 150))
            rows.append((o, max(o, c) + draw(st.integers(0, 5)), min(o, c) - draw(st.integers(0, 5)), c, 1e6))
        index = pd.DatetimeIndex([pd.Timestamp(T0 + h * HOUR) for h in hours], name="ts")
        frames[f"S{i}"] = pd.DataFrame(rows, index=index, columns=["open", "high", "low", "close", "volume"], dtype=float)
    total = sum(len(f) for f in frames.values())
    order = st.tuples(
        st.integers(0, n_symbols - 1),
        st.sampled_from(list(OrderSide)),
        st.sampled_from(["market", "limit", "stop", "stop_limit"]),
        st.integers(-6, 6),
        st.sampled_from(list(TimeInForce)),
    )
    plan = draw(st.dictionaries(st.integers(0, total - 1), st.lists(order, min_size=1, max_size=3), max_size=total))
    return frames, plan


def assert_fills_after_creation(fills: list[tuple[str, int]], created: dict[str, int]) -> None:
    for order_id, ts in fills:
        assert ts > created[order_id], f"order {order_id} made at {created[order_id]} filled on a bar at {ts}"


def backtest_fills(frames: dict[str, pd.DataFrame], plan: dict[int, list[Plan]]) -> tuple[list[tuple[str, int]], dict[str, int]]:
    engine = BacktestEngine(BacktestConfig(initial_cash=Decimal(10**9)), run_id="lookahead")
    engine.add_strategy(Planned(plan, strategy_id="p"))
    result = engine.run(frames)
    fills = [(str(f.order_id), pd.Timestamp(f.ts).value) for f in result.fills.itertuples()]
    return fills, {row.order_id: pd.Timestamp(row.ts_init).value for row in result.orders.itertuples()}


def venue_fills(
    frames: dict[str, pd.DataFrame], plan: dict[int, list[Plan]], latency_ms: float
) -> tuple[list[tuple[str, int]], dict[str, int]]:
    """The paper engine's order of work on a bar: the venue matches, then the strategy sees the bar;
    the venue's reports are delivered after each bar. Fill times are the venue ledger's bar times."""
    clock = BacktestClock(0)
    with tempfile.TemporaryDirectory() as tmp:
        venue = PaperVenue(Path(tmp) / "venue.sqlite", latency_ms=latency_ms)
        try:
            kernel = Kernel(clock=clock, broker=venue, instruments={s: Instrument(s) for s in frames})
            strategy = Planned(plan, strategy_id="p")
            strategy.bind(kernel, tuple(frames))
            kernel.strategies["p"] = strategy
            for bar in bars_in_time_order(frames):
                clock.now = bar.ts
                venue.on_bar(bar)
                strategy.on_bar(bar)
                venue.flush()
            fills = [(f.client_order_id, f.ts) for f in venue.fills()]
        finally:
            venue.close()
    return fills, {oid: o.ts_init for oid, o in kernel.state.orders.items()}


def bars_in_time_order(frames: dict[str, pd.DataFrame]) -> list[Bar]:
    """Every bar by time; ties in the order the symbols were given (the backtest's timeline)."""
    bars = [
        (ts.value, i, Bar(sym, ts.value, *map(float, row)))
        for i, (sym, df) in enumerate(frames.items())
        for ts, row in zip(df.index, df[["open", "high", "low", "close", "volume"]].itertuples(index=False), strict=True)
    ]
    return [b for _, _, b in sorted(bars, key=lambda x: (x[0], x[1]))]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(market())
def test_no_backtest_fill_on_a_bar_not_after_the_order(case) -> None:
    frames, plan = case
    fills, created = backtest_fills(frames, plan)
    assert_fills_after_creation(fills, created)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(market(), st.sampled_from([0.0, 1.0, 90 * 60_000.0]))
def test_no_paper_venue_fill_on_a_bar_not_after_the_order(case, latency_ms) -> None:
    frames, plan = case
    fills, created = venue_fills(frames, plan, latency_ms)
    assert_fills_after_creation(fills, created)


def two_symbols(first: str) -> dict[str, pd.DataFrame]:
    """A and B with bars at the same two days; `first` comes first in each step."""
    index = pd.DatetimeIndex([pd.Timestamp("2024-01-02"), pd.Timestamp("2024-01-03")], name="ts")
    a = pd.DataFrame({"open": [10.0, 11.0], "high": [12.0, 12.0], "low": [9.0, 10.0], "close": [11.0, 11.5],
                      "volume": [1e6, 1e6]}, index=index)
    b = pd.DataFrame({"open": [50.0, 60.0], "high": [55.0, 65.0], "low": [45.0, 55.0], "close": [52.0, 62.0],
                      "volume": [1e6, 1e6]}, index=index)
    return {"A": a, "B": b} if first == "A" else {"B": b, "A": a}


class BuyBFromA(Strategy):
    name = "buy_b_from_a"

    def on_bar(self, bar: Bar) -> None:
        if bar.symbol == "A" and bar.ts == pd.Timestamp("2024-01-02").value:
            self.buy(1, "B")


def test_an_order_for_b_sent_from_a_bar_fills_at_b_next_open_whatever_the_symbol_order() -> None:
    # no cash check: with A first, B has no price yet when the order is sent (a cash account denies a
    # market order it cannot value); the timing of the fill is what this test is about
    settings = RiskSettings.from_mapping({"account": {"buying_power": False}})
    for first in ("A", "B"):
        result = (BacktestEngine(run_id="ab", risk=settings).add_strategy(BuyBFromA(strategy_id="x"))
                  .run(two_symbols(first)))
        (fill,) = result.fills.itertuples()
        assert (fill.symbol, fill.price, fill.ts) == ("B", Decimal("60.0"), pd.Timestamp("2024-01-03")), first


def test_the_paper_venue_fills_the_cross_symbol_order_at_b_next_open(tmp_path: Path) -> None:
    for first in ("A", "B"):
        clock = BacktestClock(0)
        venue = PaperVenue(tmp_path / f"{first}.sqlite")
        kernel = Kernel(clock=clock, broker=venue, instruments={"A": Instrument("A"), "B": Instrument("B")})
        strategy = BuyBFromA(strategy_id="x")
        strategy.bind(kernel, ("A", "B"))
        fills: list[OrderFilled] = []
        kernel.fill_listeners.append(fills.append)
        for bar in bars_in_time_order(two_symbols(first)):
            clock.now = bar.ts
            venue.on_bar(bar)
            strategy.on_bar(bar)
            venue.flush()
        venue.close()
        (fill,) = fills
        assert (fill.symbol, fill.price, fill.ts) == ("B", Decimal("60.0"), pd.Timestamp("2024-01-03").value), first


class SeededOrders(Strategy):
    """Sends, from any bar, orders of any type for any of its symbols, drawn from its seed."""

    name = "seeded_orders"
    params = {"seed": Param(0, int, "seed of the orders")}
    seed: int

    def on_start(self) -> None:
        self.rng = random.Random(self.seed)
        self.last_close: dict[str, float] = {}

    def on_bar(self, bar: Bar) -> None:
        self.last_close[bar.symbol] = bar.close
        rng = self.rng
        for _ in range(rng.choice((0, 0, 1, 2))):
            symbol = rng.choice(self.symbols)
            price = Decimal(repr(round(self.last_close.get(symbol, bar.close) * (1 + rng.randint(-6, 6) / 100), 2)))
            kind = rng.choice(("market", "limit", "stop", "stop_limit"))
            kw: dict[str, Any] = {"tif": rng.choice(list(TimeInForce))}
            if kind in ("limit", "stop_limit"):
                kw["limit"] = price
            if kind in ("stop", "stop_limit"):
                kw["stop"] = price
            self.order(rng.choice(list(OrderSide)), 10, symbol, **kw)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(market(hours_span=16), st.integers(0, 2**32))  # a short grid: many ties between symbols
def test_no_paper_engine_fill_on_a_bar_not_after_the_order(case, seed) -> None:
    """The whole paper engine on a replay (gate, execution client, venue, per-bar report delivery)."""
    frames, _ = case
    with tempfile.TemporaryDirectory() as tmp:
        config = EngineConfig(engine_id="la", url=f"sqlite:///{tmp}/e.db", venue_path=Path(tmp) / "v.sqlite",
                              symbols=tuple(frames), exit_when_done=True, initial_cash=Decimal(10**9))
        engine = EngineService(config, feed=ReplayFeed(frames, step_seconds=None))
        fills: list[OrderFilled] = []
        engine.kernel.fill_listeners.append(fills.append)
        engine.start()
        engine.manager.deploy(f"{__name__}:SeededOrders", {"seed": seed}, symbols=list(frames), allocation=10**9,
                              strategy_id="p")
        engine.run()
        created = {oid: o.ts_init for oid, o in engine.kernel.state.orders.items()}
        engine_fills = [(f.order_id, f.ts) for f in fills]
        with PaperVenue(config.venue_path) as venue:  # the venue's own record: each fill's bar time
            ledger = [(f.client_order_id, f.ts) for f in venue.fills()]
        dispose_all()
    assert_fills_after_creation(ledger, created)
    assert_fills_after_creation(engine_fills, created)
    assert sorted(engine_fills) == sorted(ledger)  # each fill reached the strategies at its bar's time
