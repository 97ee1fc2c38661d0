"""The risk engine in a real backtest: denials are `OrderDenied` events in the store, and replay agrees."""
from __future__ import annotations

import pandas as pd

from qlcore.engine import BacktestConfig, BacktestEngine
from qlcore.events import EventStore
from qlcore.events.replay import replay
from qlcore.events.types import OrderDenied, OrderFilled, OrderInitialized
from qlcore.risk import RiskEngine
from qlcore.strategies import Strategy


def daily_bars(closes: list[float], start: str = "2024-07-01", symbol: str = "XYZ") -> pd.DataFrame:
    idx = pd.date_range(start, periods=len(closes), freq="D", name="ts")
    df = pd.DataFrame({"open": closes, "high": closes, "low": closes, "close": closes, "volume": 1000.0}, index=idx)
    df.attrs["symbol"] = symbol
    return df


class BuyEveryBar(Strategy):
    name = "buy_every_bar"

    def __init__(self, qty: int, **kw) -> None:
        super().__init__(**kw)
        self.qty = qty

    def on_bar(self, bar) -> None:
        self.buy(self.qty)


def run(store_url: str, risk: RiskEngine, closes: list[float], qty: int = 40):
    store = EventStore(store_url)
    engine = BacktestEngine(BacktestConfig(initial_cash=100_000), store=store, risk=risk)
    engine.add_strategy(risk.price_feed())  # first, so orders see the bar's close
    engine.add_strategy(BuyEveryBar(qty, strategy_id="buyer"))
    result = engine.run(daily_bars(closes))
    return store, result


def test_denied_orders_are_stored_as_order_denied_events(store_url):
    risk = RiskEngine({"account": {"max_position": 100, "max_order_notional": "4000"}})
    store, result = run(store_url, risk, [100.0, 100.0, 100.0, 100.0, 101.0])
    events = store.events(result.run_id)
    denials = [e for e in events if isinstance(e, OrderDenied)]
    inits = {e.order_id: e for e in events if isinstance(e, OrderInitialized)}
    fills = [e for e in events if isinstance(e, OrderFilled)]
    # bar 1: 40 sent; bar 2: 40 + 40 open = 80; bar 3: 80 + 40 = 120 > 100: denied; bar 5: 40 @ 101 > 4000
    assert sum(f.quantity for f in fills) == 80
    assert [d.reason.split(":")[0] for d in denials] == ["max_position", "max_position", "max_order_notional"]
    assert denials[0].reason.startswith(
        "max_position: limit 100 (strategy buyer), worst case 120 = position 80 + open buys 0 + order 40"
    )
    assert denials[2].reason == "max_order_notional: limit 4000.00, order 4040.00 (XYZ BUY 40 @ MKT (ref 101.00))"
    assert all(inits[d.order_id].strategy_id == "buyer" for d in denials)
    replayed = replay(store, result.run_id)
    assert replayed.verified
    assert sorted(o.order_id for o in replayed.state.orders.values() if o.status.value == "DENIED") == sorted(
        d.order_id for d in denials
    )


def test_backtest_orders_on_exchange_holidays_are_denied(sqlite_url):
    # daily bars stamped at midnight: the calendar checks the session date
    risk = RiskEngine({"account": {"calendar": "XNYS", "calendar_mode": "date"}})
    store, result = run(sqlite_url, risk, [100.0] * 6, qty=1)  # 2024-07-01 (Mon) .. 07-06 (Sat)
    denials = [e for e in store.events(result.run_id) if isinstance(e, OrderDenied)]
    assert [pd.Timestamp(d.ts).date().isoformat() for d in denials] == ["2024-07-04", "2024-07-06"]
    assert "2024-07-04 is not an XNYS session" in denials[0].reason


def test_backtest_wires_the_risk_engine_without_helper_strategies(store_url):
    """The backtest feeds each bar to the risk engine and attaches it to the kernel's bus."""
    risk = RiskEngine({"account": {"max_position": 100, "max_order_notional": "4000"}})
    store = EventStore(store_url)
    engine = BacktestEngine(BacktestConfig(initial_cash=100_000), store=store, risk=risk)
    engine.add_strategy(BuyEveryBar(40, strategy_id="buyer"))  # no price_feed() strategy
    result = engine.run(daily_bars([100.0, 100.0, 100.0, 100.0, 101.0]))
    denials = [e for e in store.events(result.run_id) if isinstance(e, OrderDenied)]
    assert [d.reason.split(":")[0] for d in denials] == ["max_position", "max_position", "max_order_notional"]
    assert denials[2].reason == "max_order_notional: limit 4000.00, order 4040.00 (XYZ BUY 40 @ MKT (ref 101.00))"
    assert risk.book.attached
    assert [s["id"] for s in result.strategies] == ["buyer"]
