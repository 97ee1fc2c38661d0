"""Compliance rules: same interface as the risk rules, reported apart (`kind = "compliance"`)."""
from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, cast

from qlcore.model.enums import OrderSide
from qlcore.model.orders import Order
from qlcore.risk.base import Denial, RiskContext, Rule, qty, seconds

if TYPE_CHECKING:
    from qlcore.risk.config import ResolvedLimits

_BUY = OrderSide.BUY


class RestrictedList(Rule):
    name, kind = "restricted_list", "compliance"

    def enabled(self, lim: ResolvedLimits) -> bool:
        return bool(lim.restricted)

    def check(self, order: Order, ctx: RiskContext) -> Denial | None:
        return self.deny("no orders in restricted instruments", f"{order.symbol} is restricted", order, ctx)


class MessageLimit(Rule):
    """Order requests per window, account-wide, counting denied requests too (they are messages)."""

    name, kind = "message_limit", "compliance"

    def enabled(self, lim: ResolvedLimits) -> bool:
        return lim.max_messages_per_window is not None

    def check(self, order: Order, ctx: RiskContext) -> Denial | None:
        lim = ctx.lim
        messages = ctx.book.messages  # this request is already in it
        start = ctx.ts - lim.message_window_ns
        while messages and messages[0] <= start:
            messages.popleft()
        n = len(messages)
        limit = cast(int, lim.max_messages_per_window)  # enabled() checked it is set
        if n <= limit:
            return None
        return self.deny(
            f"{limit} messages per {seconds(lim.message_window_ns)}",
            f"this request is message {n} in the window",
            order,
            ctx,
        )


class WashTrade(Rule):
    """An order that would trade against a resting order of the same account on the other side."""

    name, kind = "wash_trade", "compliance"

    def enabled(self, lim: ResolvedLimits) -> bool:
        return bool(lim.wash_trade)

    def check(self, order: Order, ctx: RiskContext) -> Denial | None:
        resting = ctx.book.resting.get(order.symbol)
        if not resting:
            return None
        buy = order.side is _BUY
        px = order.price  # None: a market (or stop) order crosses any price
        for t in resting.values():
            if t.buy is buy:
                continue
            other = t.order.price
            if other is None or px is None or (px >= other if buy else px <= other):
                at = "MKT" if other is None else str(other)
                return self.deny(
                    f"no crossing own resting {t.order.side.value} {t.order.order_id} @ {at}",
                    f"order {order.side.value} @ {'MKT' if px is None else px} would cross it",
                    order,
                    ctx,
                )
        return None


class OrderToTradeRatio(Rule):
    """Orders sent today / max(fills today, 1), the order included (UTC day of the engine clock)."""

    name, kind = "order_to_trade_ratio", "compliance"

    def enabled(self, lim: ResolvedLimits) -> bool:
        return lim.max_order_to_trade_ratio is not None

    def check(self, order: Order, ctx: RiskContext) -> Denial | None:
        book = ctx.book
        orders = book.orders_today + 1
        fills = book.trades_today
        limit = cast(Decimal, ctx.lim.max_order_to_trade_ratio)  # enabled() checked it is set
        if orders <= limit * (fills or 1):
            return None
        ratio = qty((Decimal(orders) / (fills or 1)).quantize(Decimal("0.01")))
        return self.deny(qty(limit), f"ratio {ratio} ({orders} orders / {fills} fills today)", order, ctx)
