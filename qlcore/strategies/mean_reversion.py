"""Mean reversion on a rolling z-score: buy when price is far below its mean, sell when it comes back."""
from __future__ import annotations

from decimal import Decimal

from qlcore.events.types import OrderFilled
from qlcore.model.market import Bar
from qlcore.strategies.base import InvalidParameterError, Param, Strategy
from qlcore.strategies.indicators import RollingZScore


class MeanReversion(Strategy):
    name = "mean_reversion"
    description = "long when the close's z-score over `window` bars drops below -entry_z; flat when it rises above -exit_z"
    params = {
        "window": Param(20, int, "look-back of the rolling mean and std (bars)", min=2),
        "entry_z": Param(2.0, float, "enter long when z < -entry_z", min=0.0),
        "exit_z": Param(0.0, float, "exit when z > -exit_z", min=-10.0),
        "quantity": Param(Decimal(100), Decimal, "shares per entry", min=Decimal("0")),
    }

    window: int
    entry_z: float
    exit_z: float
    quantity: Decimal

    def validate(self) -> None:
        if self.exit_z > self.entry_z:
            raise InvalidParameterError(
                f"mean_reversion: exit_z ({self.exit_z}) must not exceed entry_z ({self.entry_z})"
            )

    def on_start(self) -> None:
        self._z = {s: RollingZScore(self.window) for s in self.symbols}
        self._pending = dict.fromkeys(self.symbols, False)

    def on_bar(self, bar: Bar) -> None:
        z = self._z[bar.symbol].update(bar.close)
        if z != z or self._pending[bar.symbol]:  # NaN: window not full yet
            return
        held = self.position(bar.symbol) > 0
        if not held and z < -self.entry_z:
            self._pending[bar.symbol] = True
            self.buy(self.quantity, bar.symbol)
        elif held and z > -self.exit_z:
            self._pending[bar.symbol] = True
            self.close(bar.symbol)

    def on_fill(self, fill: OrderFilled) -> None:
        self._pending[fill.symbol] = False
