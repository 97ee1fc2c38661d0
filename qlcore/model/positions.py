"""Positions with average-cost accounting, long and short, in exact Decimals."""
from __future__ import annotations

from decimal import Decimal

from qlcore.model.money import ZERO


class Position:
    """Net quantity (signed: long > 0, short < 0), cost basis and realized P&L of one instrument.

    `cost` is the signed cost of the open quantity (quantity x average price), so the average price
    is `cost / quantity`. Realized P&L is gross of fees; fees are kept apart in `fees`.
    """

    __slots__ = ("cost", "fees", "quantity", "realized_pnl", "strategy_id", "symbol", "trades")

    def __init__(self, strategy_id: str, symbol: str) -> None:
        self.strategy_id = strategy_id
        self.symbol = symbol
        self.quantity = ZERO
        self.cost = ZERO
        self.realized_pnl = ZERO
        self.fees = ZERO
        self.trades = 0

    @property
    def avg_price(self) -> Decimal | None:
        return self.cost / self.quantity if self.quantity else None

    @property
    def is_flat(self) -> bool:
        return not self.quantity

    def apply_fill(self, signed_quantity: Decimal, price: Decimal, fee: Decimal = ZERO) -> Decimal:
        """Apply a fill (+buy / -sell); return the P&L it realized."""
        qty = self.quantity
        realized = ZERO
        self.fees += fee
        self.trades += 1
        buying = signed_quantity > ZERO
        if qty and (qty > ZERO) != buying:
            # reducing, closing or flipping
            held = abs(qty)
            closing = min(abs(signed_quantity), held)
            removed = self.cost if closing == held else self.cost * closing / held
            signed_closing = closing if buying else -closing
            realized = -signed_closing * price - removed
            self.cost -= removed
            qty += signed_closing
            signed_quantity -= signed_closing
        if signed_quantity:
            self.cost += signed_quantity * price
            qty += signed_quantity
        self.quantity = qty
        if not qty:
            self.cost = ZERO
        self.realized_pnl += realized
        return realized

    def unrealized_pnl(self, mark: Decimal) -> Decimal:
        return self.quantity * mark - self.cost if self.quantity else ZERO

    def market_value(self, mark: Decimal) -> Decimal:
        return self.quantity * mark

    def snapshot(self) -> tuple:
        return (self.strategy_id, self.symbol, self.quantity, self.cost, self.realized_pnl, self.fees)

    def __repr__(self) -> str:
        return (
            f"Position({self.strategy_id}/{self.symbol} qty={self.quantity} avg={self.avg_price} "
            f"realized={self.realized_pnl})"
        )
