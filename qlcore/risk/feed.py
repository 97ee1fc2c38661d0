"""Reference prices for the risk engine in a backtest, from the bars themselves."""
from __future__ import annotations

from typing import TYPE_CHECKING

from qlcore.model.market import Bar
from qlcore.strategies.base import Strategy

if TYPE_CHECKING:
    from qlcore.risk.engine import RiskEngine


class ReferencePriceFeed(Strategy):
    """Hands every bar's close to a `RiskEngine` and never trades.

    Strategies see a bar in the order they were added, so add this one first: the orders the
    others send on a bar are then checked against that bar's close.
    """

    name = "risk_prices"
    description = "feeds bar closes to the risk engine as reference prices (never trades)"

    def __init__(self, risk: RiskEngine, *, strategy_id: str = "risk-prices") -> None:
        super().__init__(strategy_id=strategy_id)
        self._on_bar = risk.on_bar

    def on_bar(self, bar: Bar) -> None:
        self._on_bar(bar)
