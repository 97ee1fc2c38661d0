"""Bar matching rules shared by the simulated broker and the paper venue.

Conventions (the same as backtrader's defaults, so results compare one to one):

* An order sent while bar *t* is processed first meets bar *t+1* of its symbol: never a bar whose
  time is not after the order's creation (`too_early`). That holds across symbols too: an order for
  B sent from A's bar at time t does not meet B's bar at t, even when B's bar comes after A's in the
  step (its open is not a price anyone could trade at when the order was made).
* MARKET fills at that bar's open.
* LIMIT buy at L: the open if open <= L (the market gapped through the limit: the better price),
  else L if low <= L. A sell mirrors it with high.
* STOP buy at S: the open if open >= S (gap: the worse price), else S if high >= S. A sell mirrors
  it with low. A triggered stop is a market order: slippage applies, and whatever it has left
  (a partial fill at the paper venue) fills at the open of the following bars.
* STOP_LIMIT: triggers like a stop at price T (open or S); fills at T if T is within the limit,
  otherwise it rests as a limit order from the next bar.
* Slippage (bps) moves MARKET and STOP fills against the order: buys pay more, sells get less.
  Limit fills get their limit or better and no slippage.
* Fee = notional x fee_bps / 10,000, and at least `min_fee` on an order's first fill.
* Time in force: GTC rests until filled or cancelled; DAY expires when a bar of a later date arrives
  (so on daily bars it gets exactly one bar); IOC and FOK get one bar, then are cancelled.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import cast

from qlcore.model.enums import OrderSide, OrderType, TimeInForce
from qlcore.model.market import Bar
from qlcore.model.money import BPS, ONE, ZERO, to_decimal

NS_PER_DAY = 86_400_000_000_000


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


class WorkingOrder:
    """What matching needs to know about an order resting at a venue."""

    __slots__ = (
        "buy", "created", "day", "fills", "leaves", "limit", "order_id", "stop", "tif", "triggered", "type",
    )

    def __init__(
        self,
        order_id: str,
        side: OrderSide,
        order_type: OrderType,
        leaves: Decimal,
        price: Decimal | None,
        trigger_price: Decimal | None,
        time_in_force: TimeInForce,
        created: int,
    ) -> None:
        self.order_id = order_id
        self.created = created  # the order's creation time (ns): it meets only later bars
        self.buy = side is OrderSide.BUY
        self.type = order_type
        self.leaves = leaves
        self.limit = float(price) if price is not None else None
        self.stop = float(trigger_price) if trigger_price is not None else None
        self.tif = time_in_force
        self.day: int | None = None  # the trading day of the first bar this order met
        self.triggered = False
        self.fills = 0


class Pricing:
    """A fill model turned into the two numbers every fill needs: its price and its fee."""

    __slots__ = ("_fee_rate", "_min_fee", "_slip", "_slip_buy", "_slip_sell")

    def __init__(self, fill_model: FillModel) -> None:
        self._slip = bool(fill_model.slippage_bps)
        self._slip_buy = ONE + fill_model.slippage_bps / BPS
        self._slip_sell = ONE - fill_model.slippage_bps / BPS
        self._fee_rate = fill_model.fee_bps / BPS
        self._min_fee = fill_model.min_fee

    def fill(self, w: WorkingOrder, price_f: float, market_like: bool, quantity: Decimal) -> tuple[Decimal, Decimal]:
        """Price and fee of a fill of `quantity` of `w` at the matched bar price `price_f`.

        The price moves by slippage for market-like fills; the fee is at least `min_fee` on the
        order's first fill (`w.fills == 0`).
        """
        price = Decimal(repr(price_f))
        if market_like and self._slip:
            price *= self._slip_buy if w.buy else self._slip_sell
        fee = quantity * price * self._fee_rate
        if not w.fills and fee < self._min_fee:
            fee = self._min_fee
        return price, fee


def too_early(w: WorkingOrder, bar: Bar) -> bool:
    """True when `bar` is not after the order's creation: the order does not meet it at all."""
    return bar.ts <= w.created


def expired_before(w: WorkingOrder, bar: Bar) -> bool:
    """Note the first bar's day; True when a DAY order meets a bar of a later day (it expires)."""
    day = bar.ts // NS_PER_DAY
    if w.day is None:
        w.day = day
        return False
    return w.tif is TimeInForce.DAY and day != w.day


def match(w: WorkingOrder, bar: Bar) -> tuple[float | None, bool]:
    """The bar price `w` trades at on `bar` (None: no trade), and whether it is market-like (slippage)."""
    o = bar.open
    t = w.type
    if t is OrderType.MARKET:
        return o, True
    if t is OrderType.LIMIT or (t is OrderType.STOP_LIMIT and w.triggered):
        lim = cast(float, w.limit)  # limit and stop-limit orders always carry a price
        if w.buy:
            return (o, False) if o <= lim else ((lim, False) if bar.low <= lim else (None, False))
        return (o, False) if o >= lim else ((lim, False) if bar.high >= lim else (None, False))
    if w.triggered:  # a stop triggered on an earlier bar is a market order now
        return o, True
    stop = cast(float, w.stop)  # stop and stop-limit orders always carry a trigger price
    if w.buy:
        trig = o if o >= stop else (stop if bar.high >= stop else None)
    else:
        trig = o if o <= stop else (stop if bar.low <= stop else None)
    if trig is None:
        return None, False
    w.triggered = True
    if t is OrderType.STOP:
        return trig, True
    # STOP_LIMIT, triggered on this bar
    lim = cast(float, w.limit)
    if (w.buy and trig <= lim) or (not w.buy and trig >= lim):
        return trig, False
    return None, False


def one_bar_only(w: WorkingOrder) -> bool:
    """IOC and FOK orders get one bar; whatever is left after it is cancelled."""
    return w.tif is TimeInForce.IOC or w.tif is TimeInForce.FOK
