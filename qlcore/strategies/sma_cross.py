"""Moving-average crossover: long `quantity` when the fast SMA crosses above the slow one, flat when below."""
from __future__ import annotations

from decimal import Decimal

from qlcore.events.types import OrderFilled
from qlcore.model.market import Bar
from qlcore.strategies.base import InvalidParameterError, Param, Strategy
from qlcore.strategies.indicators import SCALE, SmaCrossover


class SmaCross(Strategy):
    name = "sma_cross"
    description = "long when the fast SMA crosses above the slow SMA, flat when it crosses below"
    params = {
        "fast": Param(10, int, "fast SMA period (bars)", min=1),
        "slow": Param(30, int, "slow SMA period (bars)", min=2),
        "quantity": Param(Decimal(100), Decimal, "shares bought on a cross up", min=Decimal("0")),
    }

    fast: int
    slow: int
    quantity: Decimal

    def validate(self) -> None:
        if self.fast >= self.slow:
            raise InvalidParameterError(f"sma_cross: fast ({self.fast}) must be below slow ({self.slow})")

    def on_start(self) -> None:
        self._cross = {symbol: SmaCrossover(self.fast, self.slow).update for symbol in self.symbols}
        self._long: dict[str, bool] = dict.fromkeys(self.symbols, False)
        self._pending: dict[str, bool] = dict.fromkeys(self.symbols, False)

    def on_bar(self, bar: Bar) -> None:
        symbol = bar.symbol
        signal = self._cross[symbol](round(bar.close * SCALE))
        if not signal or self._pending[symbol]:
            return
        if signal > 0 and not self._long[symbol]:
            self._pending[symbol] = True
            self.buy(self.quantity, symbol)
        elif signal < 0 and self._long[symbol]:
            self._pending[symbol] = True
            self.close(symbol)

    def on_fill(self, fill: OrderFilled) -> None:
        self._pending[fill.symbol] = False
        self._long[fill.symbol] = self.position(fill.symbol) > 0
