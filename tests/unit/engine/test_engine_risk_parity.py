"""One risk chain for every clock: a backtest and the paper engine, given the same risk file and the
same stream of bars, deny exactly the same orders with the same reasons."""
from __future__ import annotations

import math
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pandas as pd

from qlcore.engine import BacktestConfig, BacktestEngine
from qlcore.engine.service import EngineConfig, EngineService
from qlcore.model.enums import OrderStatus
from qlcore.model.market import Bar
from qlcore.risk.chain import RiskSettings
from qlcore.strategies import Param, Strategy

T0 = pd.Timestamp("2024-03-01", tz="UTC").value
DAY = 86_400 * 1_000_000_000
SYMBOLS = ("AAPL", "MSFT")
CASH = Decimal(25_000)  # below the strategies' capital together: buying power binds too

RISK_FILE = """
[account]
max_order_notional = "15000"
buying_power = true

[strategy.alpha]
capital = "20000"
max_position = 100

[strategy.beta]
capital = "30000"
allow_short = false
"""
CAPITAL = {"alpha": Decimal(20_000), "beta": Decimal(30_000)}


class Sizer(Strategy):
    """Buys and sells a cycle of sizes, some of them over one limit or another."""

    name = "sizer"
    params = {"offset": Param(0, int, "where in the cycle to start", min=0)}
    offset: int
    SIZES = (30, 50, 80, 120, 10, 200, 60, 40)

    def on_start(self) -> None:
        self.n = self.offset

    def on_bar(self, bar: Bar) -> None:
        self.n += 1
        qty = self.SIZES[self.n % len(self.SIZES)]
        if self.n % 4 == 3:
            self.sell(qty, bar.symbol)
        else:
            self.buy(qty, bar.symbol)


def _stream() -> list[Bar]:
    bars = []
    for i in range(40):
        for k, sym in enumerate(SYMBOLS):
            px = round((100.0 if k == 0 else 60.0) + 8 * math.sin(i / 3 + k), 2)
            bars.append(Bar(sym, T0 + i * DAY, px, px + 1, px - 1, px, 1e9))
    return bars


def _denials(orders) -> list[tuple]:
    """What was denied, to whom, when and why, in order (ids differ between the clocks by design)."""
    return sorted(
        (o.ts_init, o.strategy_id, o.symbol, o.side.value, o.quantity, o.reason)
        for o in orders if o.status is OrderStatus.DENIED
    )


class _Silent:
    """A feed with no bars: the test hands the engine its stream itself."""

    exhausted = False
    behind_s = 0.0

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def poll(self, max_steps: int | None = None) -> list[Bar]:
        return []

    def __iter__(self) -> Iterator[Bar]:
        return iter(())


def _paper(url: str, tmp_path: Path, risk_file: Path, bars: list[Bar]) -> list[tuple]:
    engine = EngineService(EngineConfig(
        engine_id="par", url=url, venue_path=tmp_path / "venue.sqlite", symbols=SYMBOLS,
        initial_cash=CASH, risk_config=risk_file, fill_on_arrival=False,  # fills at the next bar's open
    ), feed=_Silent())
    engine.start()
    engine.manager.deploy(f"{__name__}:Sizer", {}, symbols=["AAPL"], allocation=CAPITAL["alpha"], strategy_id="alpha")
    engine.manager.deploy(f"{__name__}:Sizer", {"offset": 3}, symbols=["MSFT", "AAPL"], allocation=CAPITAL["beta"],
                          strategy_id="beta")
    # One bar at a time, as the backtest takes it: the venue matches the bar and reports its fills,
    # then the chain and the strategies see it. (The engine's own loop reports fills in the turn after
    # the strategies saw the bar: a difference of fill timing, not of the chain.)
    for bar in bars:
        engine.clock.now = bar.ts
        engine.client.on_bar(bar)
        engine.venue.advance_to(bar.ts)
        engine.venue.flush()
        engine.chain.on_bar(bar)
        engine.manager.on_bar(bar)
        engine.chain.after_bar()
        engine.step()  # the orders go to the venue, which acknowledges them
    orders = list(engine.kernel.state.orders.values())
    engine.shutdown()
    return _denials(orders)


def _backtest(risk_file: Path, bars: list[Bar]) -> list[tuple]:
    frames = {}
    for sym in SYMBOLS:
        rows = [b for b in bars if b.symbol == sym]
        index = pd.DatetimeIndex([pd.Timestamp(b.ts, tz="UTC") for b in rows], name="ts")
        frames[sym] = pd.DataFrame(
            {"open": [b.open for b in rows], "high": [b.high for b in rows], "low": [b.low for b in rows],
             "close": [b.close for b in rows], "volume": [b.volume for b in rows]}, index=index,
        )
    engine = BacktestEngine(BacktestConfig(initial_cash=CASH), risk=RiskSettings.from_file(risk_file))
    engine.add_strategy(Sizer(strategy_id="alpha"), ["AAPL"])
    engine.add_strategy(Sizer(strategy_id="beta", offset=3), ["MSFT", "AAPL"])
    result = engine.run(frames)
    assert engine.chain is not None
    return _denials(engine.chain.engine.book.state.orders.values()) if result is not None else []


def test_a_backtest_denies_exactly_the_orders_the_paper_engine_denies(sqlite_url, tmp_path):
    risk_file = tmp_path / "risk.toml"
    risk_file.write_text(RISK_FILE)
    bars = _stream()
    paper = _paper(sqlite_url, tmp_path, risk_file, bars)
    backtest = _backtest(risk_file, bars)
    rules = {reason.split(":")[0] for *_, reason in paper}
    # the stream reaches every limit in the file: the comparison covers each of them
    assert {"max_order_notional", "capital", "max_position", "short_sale", "buying_power"} <= rules, rules
    assert backtest == paper
