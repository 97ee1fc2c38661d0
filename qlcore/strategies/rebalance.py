"""Multi-asset periodic rebalance to equal weights."""
from __future__ import annotations

from decimal import ROUND_FLOOR, Decimal
from typing import Any

from qlcore.model.market import Bar
from qlcore.model.money import ZERO, to_decimal
from qlcore.strategies.base import InvalidParameterError, Param, Strategy


class Rebalance(Strategy):
    name = "rebalance"
    description = "every `every` bars, trade each symbol to an equal share of `invest` x equity (whole lots)"
    params = {
        "every": Param(21, int, "bars between rebalances (21 ~ monthly on daily bars)", min=1),
        "invest": Param(Decimal("0.95"), Decimal, "fraction of equity kept invested", min=Decimal(0), max=Decimal(1)),
    }

    every: int
    invest: Decimal

    def validate(self) -> None:
        if self.invest <= 0:
            raise InvalidParameterError("rebalance: invest must be > 0")

    def on_start(self) -> None:
        if not self.symbols:
            raise InvalidParameterError("rebalance: needs at least one symbol")
        self._last: dict[str, Decimal] = {}
        self._ts: int | None = None
        self._bars = 0
        self._saved_ts: int | None = None  # the last bar time counted in a loaded state

    def on_bar(self, bar: Bar) -> None:
        self._count(bar)
        # rebalance once all symbols of this timestamp are seen: on the last symbol's bar
        if bar.symbol != self.symbols[-1] or len(self._last) < len(self.symbols):
            return
        if (self._bars - 1) % self.every:
            return
        self._rebalance()

    def _count(self, bar: Bar) -> None:
        self._last[bar.symbol] = to_decimal(bar.close)
        if bar.ts != self._ts:
            self._ts = bar.ts
            self._bars += 1

    # the cadence goes on across a restart: the count and last prices are saved, the bars seen
    # after the save are counted again in the warm-up
    def save_state(self) -> dict[str, Any]:
        return {"bars": self._bars, "ts": self._ts, "last": {s: str(p) for s, p in self._last.items()}}

    def load_state(self, state: dict[str, Any]) -> None:
        bars, ts, last = int(state["bars"]), state["ts"], {s: Decimal(p) for s, p in state["last"].items()}
        self._bars, self._ts, self._last = bars, ts, last  # all or nothing
        self._saved_ts = ts

    def on_warmup(self, bar: Bar) -> None:
        if self._saved_ts is None or bar.ts > self._saved_ts:  # not counted before the state was saved
            self._count(bar)

    def _rebalance(self) -> None:
        state = self.kernel.state
        equity = state.cash + sum(
            (state.position(self.strategy_id, s) * p for s, p in self._last.items()), ZERO
        )
        budget = equity * self.invest / len(self.symbols)
        for symbol in self.symbols:
            price = self._last[symbol]
            lot = self.kernel.instruments[symbol].lot_size
            target = (budget / price / lot).to_integral_value(rounding=ROUND_FLOOR) * lot
            if self.open_orders(symbol):
                continue
            self.target_position(max(target, ZERO), symbol)
