"""What every pre-trade rule shares: the `Rule` interface, the `Denial` it returns, the context it reads.

A rule is a small class with one `check(order, ctx) -> Denial | None`. It reads the order, the
limits in force for it (`ctx.lim`) and the risk engine's projections (`ctx.book`, `ctx.state`);
it changes nothing. A denial names the rule, the limit and the value:

    max_order_notional: limit 10000.00, order 10012.50 (AAPL BUY 100 @ 100.125)
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, ClassVar

from qlcore.model.orders import Order

if TYPE_CHECKING:
    from qlcore.model.state import TradingState
    from qlcore.risk.book import RiskBook
    from qlcore.risk.config import ResolvedLimits

_NS = Decimal(1_000_000_000)


@dataclass(frozen=True, slots=True)
class Denial:
    """Why an order may not go out: the rule, its limit, the value that breaks it, the order."""

    rule: str
    limit: str
    value: str
    detail: str = ""
    kind: str = "risk"  # or "compliance"

    @property
    def reason(self) -> str:
        text = f"{self.rule}: limit {self.limit}, {self.value}"
        return f"{text} ({self.detail})" if self.detail else text

    def __str__(self) -> str:
        return self.reason


class RiskContext:
    """What the rules see besides the order. One instance per engine, refilled for each order."""

    __slots__ = ("after", "book", "key", "lim", "notional", "px", "ref", "state", "ts")

    def __init__(self, book: RiskBook) -> None:
        self.book = book
        self.state: TradingState = None  # type: ignore[assignment]
        self.lim: ResolvedLimits = None  # type: ignore[assignment]
        self.ts = 0
        self.ref: Decimal | None = None  # the instrument's reference price
        self.px: Decimal | None = None  # the order's price (limit, trigger or reference)
        self.notional: Decimal | None = None
        self.key: tuple[str, str] = ("", "")  # (strategy id, symbol) of the order
        self.after: tuple[Decimal, Decimal] | None = None  # cache of the exposure rules


# --- formatting --------------------------------------------------------------------------------
def money(d: Decimal) -> str:
    """At least two decimals, more when they matter: 10012.50, 10000.001."""
    n = d.normalize()
    return f"{n:.2f}" if n.as_tuple().exponent >= -2 else format(n, "f")  # type: ignore[operator]


def qty(d: Decimal) -> str:
    return format(d.normalize(), "f") if d else "0"


def seconds(ns: int) -> str:
    return f"{qty(Decimal(ns) / _NS)}s"


def describe(order: Order, ref: Decimal | None = None) -> str:
    """AAPL BUY 100 @ 100.125, or AAPL BUY 100 @ MKT (ref 100.00)."""
    if order.price is not None:
        px = f"@ {order.price}"
    elif order.trigger_price is not None:
        px = f"STOP {order.trigger_price}"
    else:
        px = "@ MKT" + (f" (ref {money(ref)})" if ref is not None else "")
    return f"{order.symbol} {order.side.value} {qty(order.quantity)} {px}"


class Rule:
    """Base of every pre-trade rule."""

    name: ClassVar[str] = ""
    kind: ClassVar[str] = "risk"

    def enabled(self, lim: ResolvedLimits) -> bool:
        """Is this rule on for these limits? Rules that are off are left out of the chain."""
        raise NotImplementedError

    def check(self, order: Order, ctx: RiskContext) -> Denial | None:
        raise NotImplementedError

    def deny(self, limit: str, value: str, order: Order, ctx: RiskContext) -> Denial:
        return Denial(self.name, limit, value, describe(order, ctx.ref), self.kind)

    def no_price(self, limit: str, order: Order, ctx: RiskContext) -> Denial:
        return self.deny(limit, f"no limit or reference price for {order.symbol} to value the order", order, ctx)

    def __repr__(self) -> str:
        return f"<{self.kind} rule {self.name}>"
