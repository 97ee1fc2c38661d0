"""The risk hook: every order passes here between the strategy and the broker."""
from __future__ import annotations

from typing import Protocol

from qlcore.model.orders import Order
from qlcore.model.state import TradingState


class RiskHook(Protocol):
    def check(self, order: Order, state: TradingState) -> str | None:
        """Return None to allow the order, or the reason (rule, limit, value) to deny it."""
        ...


class AllowAll:
    """No pre-trade limits (the default for research backtests)."""

    def check(self, order: Order, state: TradingState) -> str | None:
        return None
