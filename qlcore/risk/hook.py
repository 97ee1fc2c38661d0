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


class ChainPart:
    """A part of the risk chain (trading modes, runaway protection) that can also stand alone in front
    of an `inner` hook. Inside a `RiskChain` the chain calls `deny`, then, once the whole chain has
    passed the order, `let_through`."""

    inner: RiskHook | None = None

    def deny(self, order: Order, state: TradingState) -> str | None:
        """This part's verdict alone: None, or the reason."""
        raise NotImplementedError

    def let_through(self, order: Order) -> None:
        """The order passed the whole chain (parts that index orders let through record it)."""

    def check(self, order: Order, state: TradingState) -> str | None:
        reason = self.deny(order, state)
        if reason is None and self.inner is not None:
            reason = self.inner.check(order, state)
        if reason is None:
            self.let_through(order)
        return reason
