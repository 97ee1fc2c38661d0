"""The simulated broker: fills working orders against bars, with fees and slippage.

Conventions (the same as backtrader's defaults, so results compare one to one):

* An order sent while bar *t* is processed first meets bar *t+1* of its symbol.
* MARKET fills at that bar's open.
* LIMIT buy at L: the open if open <= L (the market gapped through the limit: the better price),
  else L if low <= L. A sell mirrors it with high.
* STOP buy at S: the open if open >= S (gap: the worse price), else S if high >= S. A sell mirrors
  it with low. A triggered stop is a market order: slippage applies.
* STOP_LIMIT: triggers like a stop at price T (open or S); fills at T if T is within the limit,
  otherwise it rests as a limit order from the next bar.
* Slippage (bps) moves MARKET and STOP fills against the order: buys pay more, sells get less.
  Limit fills get their limit or better and no slippage.
* Fee = notional x fee_bps / 10,000, and at least `min_fee` on an order's first fill.
* Time in force: GTC rests until filled or cancelled; DAY expires when a bar of a later date arrives
  (so on daily bars it gets exactly one bar); IOC and FOK get one bar, then are cancelled.
  Bars carry no depth, so an order fills whole or not at all (FOK and IOC behave alike here).
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import cast

from qlcore.brokers.base import ExecutionReports
from qlcore.model.enums import OrderSide, OrderType, TimeInForce
from qlcore.model.market import Bar
from qlcore.model.money import BPS, ONE, ZERO, to_decimal
from qlcore.model.orders import Order

_NS_PER_DAY = 86_400_000_000_000


@dataclass(frozen=True, slots=True)
class FillModel:
    """Costs of trading in the simulation."""

    fee_bps: Decimal = ZERO
    min_fee: Decimal = ZERO
    slippage_bps: Decimal = ZERO

    def __post_init__(self) -> None:
        for name in ("fee_bps", "min_fee", "slippage_bps"):
            value = getattr(self, name)
            if not isinstance(value, Decimal):
                object.__setattr__(self, name, value := to_decimal(value))
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")


class _Working:
    __slots__ = ("buy", "day", "fills", "limit", "order_id", "quantity", "stop", "tif", "triggered", "type")

    def __init__(self, order: Order) -> None:
        self.order_id = order.order_id
        self.buy = order.side is OrderSide.BUY
        self.type = order.order_type
        self.quantity = order.leaves_quantity
        self.limit = float(order.price) if order.price is not None else None
        self.stop = float(order.trigger_price) if order.trigger_price is not None else None
        self.tif = order.time_in_force
        self.day: int | None = None  # the trading day of the first bar this order met
        self.triggered = False
        self.fills = 0


class SimulatedBroker:
    """Matches working orders against each bar of their symbol (see the module docstring)."""

    def __init__(self, fill_model: FillModel | None = None, venue: str = "SIM") -> None:
        self.fill_model = fill_model or FillModel()
        self.venue = venue
        self._reports: ExecutionReports | None = None
        self._working: dict[str, list[_Working]] = {}
        self._by_id: dict[str, tuple[str, _Working]] = {}
        self._trade_seq = 0
        self._order_seq = 0
        fm = self.fill_model
        self._slip_buy = ONE + fm.slippage_bps / BPS
        self._slip_sell = ONE - fm.slippage_bps / BPS
        self._fee_rate = fm.fee_bps / BPS

    def bind(self, reports: ExecutionReports) -> None:
        self._reports = reports

    @property
    def working_count(self) -> int:
        return len(self._by_id)

    def submit(self, order: Order) -> None:
        reports = self._reports
        assert reports is not None, "broker is not bound to an engine"
        self._order_seq += 1
        reports.on_accepted(order.order_id, f"{self.venue}-{self._order_seq}")
        w = _Working(order)
        self._working.setdefault(order.symbol, []).append(w)
        self._by_id[order.order_id] = (order.symbol, w)

    def cancel(self, order_id: str) -> None:
        reports = self._reports
        assert reports is not None
        entry = self._by_id.pop(order_id, None)
        if entry is None:
            reports.on_cancel_rejected(order_id, "order is not working at the venue")
            return
        symbol, w = entry
        self._working[symbol].remove(w)
        reports.on_canceled(order_id, "canceled by request")

    def on_bar(self, bar: Bar) -> None:
        working = self._working.get(bar.symbol)
        if not working:
            return
        reports = self._reports
        assert reports is not None
        day = bar.ts // _NS_PER_DAY
        done: list[_Working] = []
        for w in list(working):
            if w.day is None:
                w.day = day
            elif w.tif is TimeInForce.DAY and day != w.day:
                done.append(w)
                reports.on_expired(w.order_id)
                continue
            price, market_like = self._match(w, bar)
            if price is not None:
                self._fill(w, price, market_like)
                done.append(w)
            elif w.tif is TimeInForce.IOC or w.tif is TimeInForce.FOK:
                done.append(w)
                reports.on_canceled(w.order_id, f"{w.tif.value}: not filled on the first bar")
        for w in done:
            working.remove(w)
            self._by_id.pop(w.order_id, None)

    def _match(self, w: _Working, bar: Bar) -> tuple[float | None, bool]:
        o = bar.open
        t = w.type
        if t is OrderType.MARKET:
            return o, True
        if t is OrderType.LIMIT or (t is OrderType.STOP_LIMIT and w.triggered):
            lim = cast(float, w.limit)  # limit and stop-limit orders always carry a price
            if w.buy:
                return (o, False) if o <= lim else ((lim, False) if bar.low <= lim else (None, False))
            return (o, False) if o >= lim else ((lim, False) if bar.high >= lim else (None, False))
        stop = cast(float, w.stop)  # stop and stop-limit orders always carry a trigger price
        if w.buy:
            trig = o if o >= stop else (stop if bar.high >= stop else None)
        else:
            trig = o if o <= stop else (stop if bar.low <= stop else None)
        if trig is None:
            return None, False
        if t is OrderType.STOP:
            return trig, True
        # STOP_LIMIT, triggered on this bar
        w.triggered = True
        lim = cast(float, w.limit)
        if (w.buy and trig <= lim) or (not w.buy and trig >= lim):
            return trig, False
        return None, False

    def _fill(self, w: _Working, price_f: float, market_like: bool) -> None:
        price = Decimal(repr(price_f))
        if market_like and self.fill_model.slippage_bps:
            price *= self._slip_buy if w.buy else self._slip_sell
        fee = w.quantity * price * self._fee_rate
        if w.fills == 0 and fee < self.fill_model.min_fee:
            fee = self.fill_model.min_fee
        w.fills += 1
        self._trade_seq += 1
        self._reports.on_filled(  # type: ignore[union-attr]
            w.order_id, f"{self.venue}-T{self._trade_seq}", w.quantity, price, fee
        )
