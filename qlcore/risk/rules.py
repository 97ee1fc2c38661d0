"""Risk rules: the order itself, then what it would do to the book. The fixed order of the chain
is `ALL_RULES`: compliance first, then these.

Conventions shared by the rules:

* The price of an order is its limit price, else its trigger price (a stop becomes a market order
  there), else the instrument's reference price. A rule that needs a price and has none denies.
* Position limits are worst-case: a buy is checked as position + every open buy of the same
  scope + this order, a sell as position - every open sell - this order. Open orders on the other
  side are not netted, since they may never fill. An order that brings the worst case back
  towards zero passes even when the book is already over a limit.
* Exposure is valued at reference prices: gross = sum over instruments of the larger of
  |position + open buys| and |position - open sells|, net = sum of position x price (checked as
  position + open buys for a buy, position - open sells for a sell). An order is denied only if
  it would take the figure above the limit *and* increase it.
* Time is the engine clock of the order (`order.ts_init`, ns): a backtest is as deterministic as
  its data, whatever the wall clock says.
"""
from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, cast

from qlcore.model.enums import OrderSide
from qlcore.model.money import ZERO
from qlcore.model.orders import Order
from qlcore.risk.base import Denial, RiskContext, Rule, money, qty, seconds
from qlcore.risk.compliance import MessageLimit, OrderToTradeRatio, RestrictedList, WashTrade

if TYPE_CHECKING:
    from qlcore.risk.calendar import SessionCalendar
    from qlcore.risk.config import ResolvedLimits

_BUY = OrderSide.BUY
_BPS = Decimal(10_000)


# --- risk: the order itself --------------------------------------------------------------------
class TradingHours(Rule):
    name = "trading_hours"

    def enabled(self, lim: ResolvedLimits) -> bool:
        return lim.calendar is not None

    def check(self, order: Order, ctx: RiskContext) -> Denial | None:
        cal = cast("SessionCalendar", ctx.lim.session)  # set by the engine when `calendar` is
        if cal.is_open(ctx.ts):
            return None
        limit, value = cal.explain(ctx.ts)
        return self.deny(limit, value, order, ctx)


class MaxOrderQuantity(Rule):
    name = "max_order_quantity"

    def enabled(self, lim: ResolvedLimits) -> bool:
        return lim.max_order_quantity is not None

    def check(self, order: Order, ctx: RiskContext) -> Denial | None:
        limit = cast(Decimal, ctx.lim.max_order_quantity)  # enabled() checked it is set
        if order.quantity <= limit:
            return None
        return self.deny(qty(limit), f"order {qty(order.quantity)}", order, ctx)


class PriceCollar(Rule):
    """A limit price within N bps of the reference price (orders without a limit price pass)."""

    name = "price_collar"

    def enabled(self, lim: ResolvedLimits) -> bool:
        return lim.price_collar_bps is not None

    def check(self, order: Order, ctx: RiskContext) -> Denial | None:
        px = order.price
        if px is None:
            return None
        bps = cast(Decimal, ctx.lim.price_collar_bps)  # enabled() checked it is set
        ref = ctx.ref
        if ref is None:
            return self.deny(f"{qty(bps)} bps of the reference price", f"no reference price for {order.symbol}", order, ctx)
        diff = px - ref if px > ref else ref - px
        if diff * _BPS <= bps * ref:
            return None
        band = ref * bps / _BPS
        off = qty((diff * _BPS / ref).quantize(Decimal("0.01")))
        return self.deny(
            f"{qty(bps)} bps of reference {money(ref)} ({money(ref - band)}..{money(ref + band)})",
            f"order price {px} ({off} bps)",
            order,
            ctx,
        )


class MaxOrderNotional(Rule):
    name = "max_order_notional"

    def enabled(self, lim: ResolvedLimits) -> bool:
        return lim.max_order_notional is not None

    def check(self, order: Order, ctx: RiskContext) -> Denial | None:
        limit = cast(Decimal, ctx.lim.max_order_notional)  # enabled() checked it is set
        notional = ctx.notional
        if notional is None:
            return self.no_price(money(limit), order, ctx)
        if notional <= limit:
            return None
        return self.deny(money(limit), f"order {money(notional)}", order, ctx)


class DuplicateOrder(Rule):
    """The same strategy, instrument, side, quantity and prices as an order sent within the window."""

    name = "duplicate_order"

    def enabled(self, lim: ResolvedLimits) -> bool:
        return lim.duplicate_window_ns is not None

    def check(self, order: Order, ctx: RiskContext) -> Denial | None:
        sent = ctx.book.recent.get(ctx.key)
        if not sent:
            return None
        window = cast(int, ctx.lim.duplicate_window_ns)  # enabled() checked it is set
        start = ctx.ts - window
        while sent and sent[0][0] <= start:
            sent.popleft()
        side, quantity, price, trigger = order.side, order.quantity, order.price, order.trigger_price
        for ts, prev in sent:
            if prev.side is side and prev.quantity == quantity and prev.price == price and prev.trigger_price == trigger:
                return self.deny(
                    f"window {seconds(window)}",
                    f"same as {prev.order_id} sent {seconds(ctx.ts - ts)} earlier",
                    order,
                    ctx,
                )
        return None


class OrderRate(Rule):
    """Orders sent by the strategy within its order window (a throttle on approved orders)."""

    name = "order_rate"

    def enabled(self, lim: ResolvedLimits) -> bool:
        return lim.max_orders_per_window is not None

    def check(self, order: Order, ctx: RiskContext) -> Denial | None:
        lim = ctx.lim
        sent = ctx.book.sent_by_strategy.get(order.strategy_id)
        if not sent:
            return None
        start = ctx.ts - lim.order_window_ns
        while sent and sent[0] <= start:
            sent.popleft()
        limit = cast(int, lim.max_orders_per_window)  # enabled() checked it is set
        if len(sent) < limit:
            return None
        return self.deny(
            f"{limit} orders per {seconds(lim.order_window_ns)} (strategy {order.strategy_id})",
            f"order would be number {len(sent) + 1} in the window",
            order,
            ctx,
        )


class AccountOrderRate(Rule):
    name = "account_order_rate"

    def enabled(self, lim: ResolvedLimits) -> bool:
        return lim.max_account_orders_per_window is not None

    def check(self, order: Order, ctx: RiskContext) -> Denial | None:
        lim = ctx.lim
        sent = ctx.book.sent
        start = ctx.ts - lim.account_order_window_ns
        while sent and sent[0] <= start:
            sent.popleft()
        limit = cast(int, lim.max_account_orders_per_window)  # enabled() checked it is set
        if len(sent) < limit:
            return None
        return self.deny(
            f"{limit} orders per {seconds(lim.account_order_window_ns)} (account)",
            f"order would be number {len(sent) + 1} in the window",
            order,
            ctx,
        )


class MaxOpenOrders(Rule):
    name = "max_open_orders"

    def enabled(self, lim: ResolvedLimits) -> bool:
        return lim.max_open_orders is not None

    def check(self, order: Order, ctx: RiskContext) -> Denial | None:
        limit = cast(int, ctx.lim.max_open_orders)  # enabled() checked it is set
        n = ctx.book.open_by_strategy.get(order.strategy_id, 0)
        if n < limit:
            return None
        return self.deny(f"{limit} (strategy {order.strategy_id})", f"open {n} + this order", order, ctx)


class MaxAccountOpenOrders(Rule):
    name = "max_account_open_orders"

    def enabled(self, lim: ResolvedLimits) -> bool:
        return lim.max_account_open_orders is not None

    def check(self, order: Order, ctx: RiskContext) -> Denial | None:
        limit = cast(int, ctx.lim.max_account_open_orders)  # enabled() checked it is set
        n = ctx.book.open_total
        if n < limit:
            return None
        return self.deny(f"{limit} (account)", f"open {n} + this order", order, ctx)


# --- risk: what the order would do to the book ---------------------------------------------------
class ShortSale(Rule):
    """With shorting off, a sell may not take the strategy's worst-case position below zero."""

    name = "short_sale"

    def enabled(self, lim: ResolvedLimits) -> bool:
        return not lim.allow_short

    def check(self, order: Order, ctx: RiskContext) -> Denial | None:
        if order.side is _BUY:
            return None
        pos = ctx.state.position(order.strategy_id, order.symbol)
        open_sells = ctx.book.sell_open.get(ctx.key, ZERO)
        after = pos - open_sells - order.quantity
        if after >= 0:
            return None
        return self.deny(
            "position >= 0 (shorting not allowed)",
            f"would be {qty(after)} (position {qty(pos)} - open sells {qty(open_sells)} - order {qty(order.quantity)})",
            order,
            ctx,
        )


def _how(order: Order, pos: Decimal, buys: Decimal, sells: Decimal) -> str:
    q = qty(order.quantity)
    if order.side is _BUY:
        return f"position {qty(pos)} + open buys {qty(buys)} + order {q}"
    return f"position {qty(pos)} - open sells {qty(sells)} - order {q}"


class MaxPosition(Rule):
    """|The strategy's worst-case position in the instrument| after the order."""

    name = "max_position"

    def enabled(self, lim: ResolvedLimits) -> bool:
        return lim.max_position is not None

    def check(self, order: Order, ctx: RiskContext) -> Denial | None:
        limit = cast(Decimal, ctx.lim.max_position)  # enabled() checked it is set
        key = ctx.key
        pos = ctx.state.position(order.strategy_id, order.symbol)
        if order.side is _BUY:
            after = pos + ctx.book.buy_open.get(key, ZERO) + order.quantity
            if after <= limit:
                return None
        else:
            after = pos - ctx.book.sell_open.get(key, ZERO) - order.quantity
            if after >= -limit:
                return None
        how = _how(order, pos, ctx.book.buy_open.get(key, ZERO), ctx.book.sell_open.get(key, ZERO))
        return self.deny(f"{qty(limit)} (strategy {order.strategy_id})", f"worst case {qty(after)} = {how}", order, ctx)


class MaxAccountPosition(Rule):
    """|All strategies' worst-case position in the instrument| after the order."""

    name = "max_account_position"

    def enabled(self, lim: ResolvedLimits) -> bool:
        return lim.max_account_position is not None

    def check(self, order: Order, ctx: RiskContext) -> Denial | None:
        limit = cast(Decimal, ctx.lim.max_account_position)  # enabled() checked it is set
        book = ctx.book
        sym = order.symbol
        pos = book.sym_qty.get(sym, ZERO)
        if order.side is _BUY:
            after = pos + book.sym_buy_open.get(sym, ZERO) + order.quantity
            if after <= limit:
                return None
        else:
            after = pos - book.sym_sell_open.get(sym, ZERO) - order.quantity
            if after >= -limit:
                return None
        how = _how(order, pos, book.sym_buy_open.get(sym, ZERO), book.sym_sell_open.get(sym, ZERO))
        return self.deny(f"{qty(limit)} (account)", f"worst case {qty(after)} = {how}", order, ctx)


def _symbol_after(order: Order, ctx: RiskContext, p: Decimal) -> tuple[Decimal, Decimal]:
    """(net if all buys fill, net if all sells fill) of the order's instrument, the order included."""
    after = ctx.after
    if after is None:
        book = ctx.book
        sym = order.symbol
        q = book.sym_qty.get(sym, ZERO)
        if order.side is _BUY:
            after = (q + book.sym_buy_open.get(sym, ZERO) + order.quantity) * p, (q - book.sym_sell_open.get(sym, ZERO)) * p
        else:
            after = (q + book.sym_buy_open.get(sym, ZERO)) * p, (q - book.sym_sell_open.get(sym, ZERO) - order.quantity) * p
        ctx.after = after
    return after


def _gross_after(order: Order, ctx: RiskContext) -> Decimal | None:
    """The account's worst-case gross exposure with the order (None: no price to value it)."""
    p = ctx.ref if ctx.ref is not None else ctx.px
    if p is None:
        return None
    book = ctx.book
    hi, lo = _symbol_after(order, ctx, p)
    return book.gross - book.contribution(order.symbol)[1] + (hi if hi >= -lo else -lo)


class MaxGrossExposure(Rule):
    name = "max_gross_exposure"

    def enabled(self, lim: ResolvedLimits) -> bool:
        return lim.max_gross_exposure is not None

    def check(self, order: Order, ctx: RiskContext) -> Denial | None:
        limit = cast(Decimal, ctx.lim.max_gross_exposure)  # enabled() checked it is set
        gross = _gross_after(order, ctx)
        if gross is None:
            return self.no_price(money(limit), order, ctx)
        book = ctx.book
        if gross <= limit or gross <= book.gross:
            return None
        return self.deny(money(limit), f"gross exposure after the order {money(gross)} (now {money(book.gross)})", order, ctx)


class MaxNetExposure(Rule):
    name = "max_net_exposure"

    def enabled(self, lim: ResolvedLimits) -> bool:
        return lim.max_net_exposure is not None

    def check(self, order: Order, ctx: RiskContext) -> Denial | None:
        limit = cast(Decimal, ctx.lim.max_net_exposure)  # enabled() checked it is set
        p = ctx.ref if ctx.ref is not None else ctx.px
        if p is None:
            return self.no_price(money(limit), order, ctx)
        book = ctx.book
        hi, lo = _symbol_after(order, ctx, p)
        contrib = book.contribution(order.symbol)
        if order.side is _BUY:
            net = book.hi - contrib[2] + hi
            if net <= limit or net <= book.hi:
                return None
            return self.deny(money(limit), f"net exposure if all buys fill {money(net)}", order, ctx)
        net = book.lo - contrib[3] + lo
        if net >= -limit or net >= book.lo:
            return None
        return self.deny(money(limit), f"net exposure if all sells fill {money(net)}", order, ctx)


class BuyingPower(Rule):
    """A buy's notional + estimated fee within cash not already committed to open buys."""

    name = "buying_power"

    def enabled(self, lim: ResolvedLimits) -> bool:
        return bool(lim.buying_power)

    def check(self, order: Order, ctx: RiskContext) -> Denial | None:
        if order.side is not _BUY:
            return None
        available = ctx.state.cash - ctx.book.committed
        notional = ctx.notional
        if notional is None:
            return self.no_price(f"available cash {money(available)}", order, ctx)
        lim = ctx.lim
        fee = notional * lim.fee_rate
        if fee < lim.min_fee:
            fee = lim.min_fee
        if notional + fee <= available:
            return None
        return self.deny(
            f"available cash {money(available)}",
            f"order {money(notional)} + fee {money(fee)} = {money(notional + fee)}",
            order,
            ctx,
        )


class StrategyCapital(Rule):
    """A strategy's capital bounds its worst-case gross exposure: the sum over its instruments of the
    larger of |position + open buys| and |position - open sells|, at reference prices, the order
    included. Denied only if that would exceed the capital *and* grow (an order that reduces the
    exposure of a strategy already over its capital, after prices moved, passes). The book keeps
    each strategy's exposure up to date, so the check costs O(1)."""

    name = "capital"

    def enabled(self, lim: ResolvedLimits) -> bool:
        return lim.capital is not None

    def check(self, order: Order, ctx: RiskContext) -> Denial | None:
        limit = cast(Decimal, ctx.lim.capital)  # enabled() checked it is set
        sid = order.strategy_id
        p = ctx.ref if ctx.ref is not None else ctx.px
        if p is None:
            return self.no_price(f"{money(limit)} (strategy {sid})", order, ctx)
        book = ctx.book
        key = ctx.key
        q = ctx.state.position(sid, order.symbol)
        hi = q + book.buy_open.get(key, ZERO)
        lo = q - book.sell_open.get(key, ZERO)
        if order.side is _BUY:
            hi += order.quantity
        else:
            lo -= order.quantity
        now = book.strategy_gross.get(sid, ZERO)
        after = now - book.strategy_contrib.get(key, ZERO) + (hi if hi >= -lo else -lo) * p
        if after <= limit or after <= now:
            return None
        return self.deny(
            f"{money(limit)} (strategy {sid})", f"gross exposure after the order {money(after)} (now {money(now)})",
            order, ctx,
        )


class Margin(Rule):
    """A margin account: worst-case gross exposure (as `MaxGrossExposure`) within leverage x equity,
    equity being cash + positions at reference prices. Denied only if it would exceed *and* grow."""

    name = "margin"

    def enabled(self, lim: ResolvedLimits) -> bool:
        return lim.leverage is not None

    def check(self, order: Order, ctx: RiskContext) -> Denial | None:
        leverage = cast(Decimal, ctx.lim.leverage)  # enabled() checked it is set
        book = ctx.book
        equity = ctx.state.cash + book.net
        limit = leverage * equity
        what = f"leverage {qty(leverage)} x equity {money(equity)} = {money(limit)}"
        gross = _gross_after(order, ctx)
        if gross is None:
            return self.no_price(what, order, ctx)
        if gross <= limit or gross <= book.gross:
            return None
        return self.deny(what, f"gross exposure after the order {money(gross)} (now {money(book.gross)})", order, ctx)


class MaxDailyLoss(Rule):
    """Below -limit of P&L since the day's start, only orders that reduce the account's position pass."""

    name = "max_daily_loss"

    def enabled(self, lim: ResolvedLimits) -> bool:
        return lim.max_daily_loss is not None

    def check(self, order: Order, ctx: RiskContext) -> Denial | None:
        limit = cast(Decimal, ctx.lim.max_daily_loss)  # enabled() checked it is set
        book = ctx.book
        today = book.realized - book.fees + book.net - book.cost - book.baseline
        if today >= -limit:
            return None
        q = book.sym_qty.get(order.symbol, ZERO)
        if (q < 0 if order.side is _BUY else q > 0) and order.quantity <= abs(q):
            return None  # reduces the position: allowed while over the loss limit
        return self.deny(
            f"loss {money(limit)}",
            f"P&L today {money(today)}; the order would not reduce position {qty(q)}",
            order,
            ctx,
        )


# The fixed order of the chain: compliance first, then the order itself, then its effect on the book.
COMPLIANCE_RULES: tuple[Rule, ...] = (RestrictedList(), MessageLimit(), WashTrade(), OrderToTradeRatio())
RISK_RULES: tuple[Rule, ...] = (
    TradingHours(),
    MaxOrderQuantity(),
    PriceCollar(),
    MaxOrderNotional(),
    DuplicateOrder(),
    OrderRate(),
    AccountOrderRate(),
    MaxOpenOrders(),
    MaxAccountOpenOrders(),
    ShortSale(),
    MaxPosition(),
    MaxAccountPosition(),
    MaxGrossExposure(),
    MaxNetExposure(),
    StrategyCapital(),
    BuyingPower(),
    Margin(),
    MaxDailyLoss(),
)
ALL_RULES: tuple[Rule, ...] = COMPLIANCE_RULES + RISK_RULES
