"""A trading desk for risk tests: the real kernel, the simulated broker and a `RiskEngine`."""
from __future__ import annotations

from decimal import Decimal

import pandas as pd

from qlcore.brokers.simulated import SimulatedBroker
from qlcore.engine.clock import BacktestClock
from qlcore.engine.kernel import Kernel
from qlcore.events.types import AccountFunded
from qlcore.model.enums import OrderSide, OrderStatus, OrderType
from qlcore.model.instruments import Instrument
from qlcore.model.market import Bar
from qlcore.model.orders import Order
from qlcore.risk import RiskConfig, RiskEngine

# Wednesday 2024-01-03, 10:00 in New York: inside the XNYS session
T0 = pd.Timestamp("2024-01-03 15:00", tz="UTC").value
SYMBOLS = ("AAPL", "MSFT", "IBM")


class Desk:
    """Orders go through `Kernel.submit_order`, so a denial is the kernel's `OrderDenied`."""

    def __init__(self, config: dict | RiskConfig, *, cash: str = "1000000", prices: dict | None = None,
                 attach: bool = False) -> None:
        self.risk = RiskEngine(config)
        self.clock = BacktestClock(T0)
        self.broker = SimulatedBroker()
        self.kernel = Kernel(
            clock=self.clock, broker=self.broker, instruments={s: Instrument(s) for s in SYMBOLS}, risk=self.risk
        )
        if attach:
            self.risk.attach(self.kernel)
        self.kernel.emit(AccountFunded(self.clock.now, "main", Decimal(cash)))
        for sym, px in (prices if prices is not None else {"AAPL": "100.00"}).items():
            self.price(sym, px)

    @property
    def state(self):
        return self.kernel.state

    def price(self, symbol: str, px: str) -> None:
        self.risk.set_reference_price(symbol, Decimal(px), self.clock.now)

    def order(self, side: str, qty, symbol: str = "AAPL", strategy: str = "s1", *, limit=None, stop=None) -> Order:
        if limit is not None and stop is not None:
            otype = OrderType.STOP_LIMIT
        elif limit is not None:
            otype = OrderType.LIMIT
        elif stop is not None:
            otype = OrderType.STOP
        else:
            otype = OrderType.MARKET
        oid = self.kernel.submit_order(strategy, symbol, OrderSide(side), qty, otype, limit, stop)
        return self.kernel.state.orders[oid]

    def buy(self, qty, symbol: str = "AAPL", strategy: str = "s1", **kw) -> Order:
        return self.order("BUY", qty, symbol, strategy, **kw)

    def sell(self, qty, symbol: str = "AAPL", strategy: str = "s1", **kw) -> Order:
        return self.order("SELL", qty, symbol, strategy, **kw)

    def bar(self, symbol: str, px: str, *, low: str | None = None, high: str | None = None) -> None:
        """A bar at the clock's time: market orders fill at `px`; the close becomes the reference price."""
        p = float(px)
        lo = float(low) if low is not None else p
        hi = float(high) if high is not None else p
        bar = Bar(symbol, self.clock.now, p, hi, lo, p, 1000.0)
        self.broker.on_bar(bar)
        self.risk.on_bar(bar)

    def fill(self, side: str, qty, symbol: str = "AAPL", px: str = "100.00", strategy: str = "s1") -> Order:
        """A market order filled at `px` (the price becomes the reference price too)."""
        order = self.order(side, qty, symbol, strategy)
        assert order.status is not OrderStatus.DENIED, order.reason
        self.clock.now += 60_000_000_000  # an order fills on a bar after its creation (no look-ahead)
        self.bar(symbol, px)
        assert order.status is OrderStatus.FILLED
        return order


def passed(order: Order) -> bool:
    return order.status is not OrderStatus.DENIED


def denied(order: Order) -> str:
    assert order.status is OrderStatus.DENIED, f"{order} was not denied"
    return order.reason
