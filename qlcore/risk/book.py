"""The risk engine's own projection of the trading state, kept up to date incrementally.

The rules must not scan every order and position on every order (a long run has hundreds of
thousands of orders), so the book keeps what they read: open-order counts and quantities per side,
the account's net position per instrument, exposures at reference prices, P&L since the day's
start, and the recent history the throttles need.

How it stays right without being told about every event:

* Orders become open only through the risk check, so the book tracks every order it approved
  (plus the open ones it finds when it first sees a state). Attached to a kernel's bus, it takes
  in each fill, cancel, expiry and rejection of a tracked order as it is published; without a bus
  it compares, on each check, every tracked order's status and filled quantity with what it last
  saw (cost O(open orders)). Both go through the same `update`.
* Positions change only by fills. The fills found on tracked orders predict the account's cash;
  if the state's cash differs (a deposit, or a late fill on an order no longer open), the book
  rebuilds its position figures from the state. So a missed change costs one rebuild, never a
  wrong answer.
* Exposure is a sum of per-instrument contributions, each recomputed when that instrument's
  position, open orders or reference price changes.
"""
from __future__ import annotations

from collections import deque
from decimal import Decimal

from qlcore.model.enums import OrderSide, OrderStatus, OrderType
from qlcore.model.money import ZERO
from qlcore.model.orders import Order
from qlcore.model.state import TradingState
from qlcore.risk.calendar import NS_PER_DAY

_INIT = OrderStatus.INITIALIZED
_BUY = OrderSide.BUY
_RESTING = (OrderType.LIMIT, OrderType.MARKET)  # in the book at the venue (stops wait for a trigger)
_ZERO4 = (ZERO, ZERO, ZERO, ZERO)


class Tracked:
    """What the book last saw of one open order."""

    __slots__ = (
        "buy",
        "fees",
        "filled",
        "key",
        "leaves",
        "notional",
        "order",
        "px",
        "status",
        "strategy_id",
        "symbol",
        "trades",
    )

    def __init__(self, order: Order, px: Decimal | None) -> None:
        self.order = order
        self.status = order.status
        self.filled = order.filled_quantity
        self.notional = order.notional_filled
        self.fees = order.fees
        self.trades = len(order.trade_ids)
        self.buy = order.side is _BUY
        self.strategy_id = order.strategy_id
        self.symbol = order.symbol
        self.key = (order.strategy_id, order.symbol)
        self.leaves = ZERO
        self.px = px if px is not None else ZERO  # price of the cash it commits (buys)


class RiskBook:
    """Projections the rules read. `bind` to a state, then `sync` before each check."""

    def __init__(self) -> None:
        self.state: TradingState | None = None
        self.attached = False  # True: order events arrive through the bus, no polling
        self.prices: dict[str, Decimal] = {}
        self._fed: set[str] = set()  # symbols priced by a feed (not by their last fill)
        self.tracking_strategies = False  # per-strategy exposure is kept only while a capital limit is in force
        self._reset()

    def _reset(self) -> None:
        self.tracked: dict[str, Tracked] = {}
        self.open_by_strategy: dict[str, int] = {}
        self.open_total = 0
        self.buy_open: dict[tuple[str, str], Decimal] = {}
        self.sell_open: dict[tuple[str, str], Decimal] = {}
        # per strategy, for its capital: the strategies that traded or ordered each instrument, and their
        # worst-case gross exposure (max(|position + open buys|, |position - open sells|) x reference
        # price) per (strategy, instrument) and in all, kept up to date as `recompute` runs
        self.strategies_by_symbol: dict[str, set[str]] = {}
        self.strategy_contrib: dict[tuple[str, str], Decimal] = {}
        self.strategy_gross: dict[str, Decimal] = {}
        self.sym_buy_open: dict[str, Decimal] = {}
        self.sym_sell_open: dict[str, Decimal] = {}
        self.committed = ZERO  # cash that open buys would spend
        self.resting: dict[str, dict[str, Tracked]] = {}
        self.sym_qty: dict[str, Decimal] = {}
        self._pos_cache: dict[tuple[str, str], tuple[Decimal, Decimal, Decimal]] = {}
        self.realized = self.fees = self.cost = ZERO
        self._contrib: dict[str, tuple[Decimal, Decimal, Decimal, Decimal]] = {}
        # totals over instruments at reference prices: net, worst-case gross, net if every open
        # buy fills (hi), net if every open sell fills (lo)
        self.net = self.gross = self.hi = self.lo = ZERO
        self.day = -1
        self.day_end = 0  # first ns of the next UTC day
        self.baseline = ZERO  # P&L at the start of the day
        self.orders_today = 0
        self.trades_today = 0
        self._cash = self._expected = ZERO
        self._dirty: set[str] = set()
        self.messages: deque[int] = deque()
        self.sent: deque[int] = deque()
        self.sent_by_strategy: dict[str, deque[int]] = {}
        self.recent: dict[tuple[str, str], deque[tuple[int, Order]]] = {}  # for duplicates

    # --- binding and rebuilding ------------------------------------------------------------------
    def bind(self, state: TradingState) -> None:
        """Start following `state`: find its open orders and positions (one full scan)."""
        self._reset()
        self.state = state
        self.attached = False
        for symbol, mark in state.marks.items():
            if symbol not in self._fed:
                self.prices[symbol] = mark
        for order in state.orders.values():
            if order.status.is_open:
                px = order.price if order.price is not None else order.trigger_price
                self.track(order, px if px is not None else self.prices.get(order.symbol))
        self.rebuild_positions()
        self.baseline = self.pnl()

    def rebuild_positions(self) -> None:
        state = self.state
        assert state is not None
        self.sym_qty = {}
        self._pos_cache = {}
        realized = fees = cost = ZERO
        for key, pos in state.positions.items():
            self._note_symbol(*key)
            self.sym_qty[key[1]] = self.sym_qty.get(key[1], ZERO) + pos.quantity
            self._pos_cache[key] = (pos.cost, pos.realized_pnl, pos.fees)
            realized += pos.realized_pnl
            fees += pos.fees
            cost += pos.cost
            if key[1] not in self.prices and pos.quantity:
                self.prices[key[1]] = pos.cost / pos.quantity
        self.realized, self.fees, self.cost = realized, fees, cost
        self._cash = self._expected = state.cash
        for symbol in set(self.sym_qty) | set(self._contrib) | set(self.sym_buy_open) | set(self.sym_sell_open) | set(
            self.strategies_by_symbol
        ):
            self.recompute(symbol)
        self._dirty.clear()

    # --- following the state ----------------------------------------------------------------------
    def track(self, order: Order, px: Decimal | None) -> None:
        """An approved order (about to be sent): count it as open from now on."""
        t = Tracked(order, px)
        self.tracked[order.order_id] = t
        self._note_symbol(t.strategy_id, t.symbol)
        self.open_by_strategy[t.strategy_id] = self.open_by_strategy.get(t.strategy_id, 0) + 1
        self.open_total += 1
        if order.order_type in _RESTING:
            book = self.resting.get(t.symbol)
            if book is None:
                book = self.resting[t.symbol] = {}
            book[order.order_id] = t
        self._set_leaves(t, order.quantity - order.filled_quantity)
        self._dirty.add(t.symbol)  # its exposure is refreshed before the next order is checked

    def track_strategies(self) -> None:
        """Keep each strategy's worst-case gross exposure from now on (a capital limit came into force)."""
        if self.tracking_strategies:
            return
        self.tracking_strategies = True
        if self.state is None:
            return
        for key in self.state.positions:
            self._note_symbol(*key)
        for t in self.tracked.values():
            self._note_symbol(t.strategy_id, t.symbol)
        for symbol in list(self.strategies_by_symbol):
            self.recompute(symbol)

    def _note_symbol(self, strategy_id: str, symbol: str) -> None:
        if not self.tracking_strategies:
            return
        strategies = self.strategies_by_symbol.get(symbol)
        if strategies is None:
            strategies = self.strategies_by_symbol[symbol] = set()
        strategies.add(strategy_id)

    def _recompute_strategies(self, symbol: str, p: Decimal | None) -> None:
        positions = self.state.positions  # type: ignore[union-attr]
        for sid in self.strategies_by_symbol.get(symbol, ()):
            key = (sid, symbol)
            if p is None:
                new = ZERO
            else:
                pos = positions.get(key)
                q = pos.quantity if pos is not None else ZERO
                hi = q + self.buy_open.get(key, ZERO)
                lo = q - self.sell_open.get(key, ZERO)
                new = (hi if hi >= -lo else -lo) * p  # max(|hi|, |lo|), as hi >= lo
            old = self.strategy_contrib.get(key, ZERO)
            if new != old:
                self.strategy_contrib[key] = new
                self.strategy_gross[sid] = self.strategy_gross.get(sid, ZERO) + new - old

    def _set_leaves(self, t: Tracked, leaves: Decimal) -> None:
        d = leaves - t.leaves
        if not d:
            return
        t.leaves = leaves
        if t.buy:
            self.buy_open[t.key] = self.buy_open.get(t.key, ZERO) + d
            self.sym_buy_open[t.symbol] = self.sym_buy_open.get(t.symbol, ZERO) + d
            self.committed += d * t.px
        else:
            self.sell_open[t.key] = self.sell_open.get(t.key, ZERO) + d
            self.sym_sell_open[t.symbol] = self.sym_sell_open.get(t.symbol, ZERO) + d

    def update(self, t: Tracked) -> None:
        """Take in what changed on one tracked order: fills, leaves, and whether it is still open."""
        o = t.order
        status = o.status
        filled = o.filled_quantity
        t.status = status
        if filled is t.filled and status.is_open:
            return  # acknowledged, cancel requested: nothing the book counts has changed
        if filled is not t.filled:
            dq = filled - t.filled
            t.filled = filled
            if dq:
                dn = o.notional_filled - t.notional
                self._expected -= (dn if t.buy else -dn) + (o.fees - t.fees)
                self.sym_qty[t.symbol] = self.sym_qty.get(t.symbol, ZERO) + (dq if t.buy else -dq)
                self.trades_today += len(o.trade_ids) - t.trades
                self._position_changed(t.key)
                if t.symbol not in self._fed:
                    self.prices[t.symbol] = dn / dq  # mark to the last trade when nothing feeds prices
                t.notional, t.fees, t.trades = o.notional_filled, o.fees, len(o.trade_ids)
                self._dirty.add(t.symbol)
        if status.is_open or status is _INIT:
            if t.leaves != o.quantity - filled:
                self._set_leaves(t, o.quantity - filled)
                self._dirty.add(t.symbol)
            return
        if t.leaves:
            self._set_leaves(t, ZERO)
            self._dirty.add(t.symbol)
        del self.tracked[o.order_id]
        self.open_by_strategy[t.strategy_id] -= 1
        self.open_total -= 1
        book = self.resting.get(t.symbol)
        if book is not None:
            book.pop(o.order_id, None)

    def sync(self) -> None:
        """Catch up with the state since the last call: fills, cancels, deposits."""
        if not self.attached:
            changed = [
                t for t in self.tracked.values() if t.order.status is not t.status or t.order.filled_quantity is not t.filled
            ]
            for t in changed:
                self.update(t)
        self.settle()

    def settle(self) -> None:
        """Check the cash the fills explain against the state's, and refresh changed exposures."""
        cash = self.state.cash  # type: ignore[union-attr]
        if cash is not self._cash:
            if cash != self._expected:
                self.rebuild_positions()  # a deposit or a fill the book did not see: start over
                return
            self._cash = cash
        dirty = self._dirty
        if dirty:
            for symbol in dirty:
                self.recompute(symbol)
            dirty.clear()

    def _position_changed(self, key: tuple[str, str]) -> None:
        pos = self.state.positions.get(key)  # type: ignore[union-attr]
        if pos is None:
            return
        old = self._pos_cache.get(key, (ZERO, ZERO, ZERO))
        new = (pos.cost, pos.realized_pnl, pos.fees)
        self._pos_cache[key] = new
        self.cost += new[0] - old[0]
        self.realized += new[1] - old[1]
        self.fees += new[2] - old[2]

    def recompute(self, symbol: str) -> None:
        """Refresh one instrument's contribution to the exposure totals."""
        p = self.prices.get(symbol)
        old = self._contrib.get(symbol, _ZERO4)
        if p is None:
            new = _ZERO4
        else:
            net = self.sym_qty.get(symbol, ZERO) * p
            buys = self.sym_buy_open.get(symbol)
            sells = self.sym_sell_open.get(symbol)
            hi = net + buys * p if buys else net
            lo = net - sells * p if sells else net
            new = (net, hi if hi >= -lo else -lo, hi, lo)  # gross: max(|hi|, |lo|), and hi >= lo
        if symbol in self.strategies_by_symbol:
            self._recompute_strategies(symbol, p)
        if new[0] != old[0]:
            self.net += new[0] - old[0]
        if new[1] != old[1]:
            self.gross += new[1] - old[1]
        if new[2] != old[2]:
            self.hi += new[2] - old[2]
        if new[3] != old[3]:
            self.lo += new[3] - old[3]
        self._contrib[symbol] = new

    def contribution(self, symbol: str) -> tuple[Decimal, Decimal, Decimal, Decimal]:
        return self._contrib.get(symbol, _ZERO4)

    # --- prices and days ------------------------------------------------------------------------
    def set_price(self, symbol: str, price: Decimal, ts: int) -> None:
        if ts >= self.day_end:
            self.roll(ts)
        self.prices[symbol] = price
        self._fed.add(symbol)
        if symbol in self._contrib:
            self.recompute(symbol)

    def roll(self, ts: int) -> None:
        """A new UTC day: today's P&L starts from here, daily counters restart."""
        if self.state is not None:
            self.sync()
        self.baseline = self.pnl()
        self.orders_today = self.trades_today = 0
        self.day = ts // NS_PER_DAY
        self.day_end = (self.day + 1) * NS_PER_DAY

    def pnl(self) -> Decimal:
        """Realized + unrealized - fees, at reference prices."""
        return self.realized - self.fees + self.net - self.cost
