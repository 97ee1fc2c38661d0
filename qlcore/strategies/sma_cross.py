"""Moving-average crossover: long `quantity` when the fast SMA crosses above the slow one, flat when below."""
from __future__ import annotations

from decimal import Decimal
from typing import Any

import numpy as np

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
        # from the kernel's state, not assumed flat: a strategy re-deployed by a restarted engine goes
        # on with the position and the open order it had
        self._long: dict[str, bool] = {s: self.position(s) > 0 for s in self.symbols}
        # the order each symbol is waiting on; a denied, cancelled or expired one frees the symbol
        self._pending: dict[str, str | None] = {s: self.working_order(s) for s in self.symbols}

    def on_bar(self, bar: Bar) -> None:
        symbol = bar.symbol
        signal = self._cross[symbol](round(bar.close * SCALE))
        if not signal:
            return
        pending = self._pending[symbol]
        if pending is not None:
            if self.kernel.state.orders[pending].is_open:
                return
            self._pending[symbol] = None
            self._long[symbol] = self.position(symbol) > 0
        if signal > 0 and not self._long[symbol]:
            self._pending[symbol] = self.buy(self.quantity, symbol)
        elif signal < 0 and self._long[symbol]:
            self._pending[symbol] = self.close(symbol)

    def on_fill(self, fill: OrderFilled) -> None:
        if not self.kernel.state.orders[fill.order_id].is_open:
            self._pending[fill.symbol] = None
        self._long[fill.symbol] = self.position(fill.symbol) > 0

    def warmup_bars(self) -> int:
        return self.slow

    def on_warmup(self, bar: Bar) -> None:
        self._cross[bar.symbol](round(bar.close * SCALE))

    # --- vectorized form (research) -------------------------------------------------------------
    @classmethod
    def vectorized_signals(cls, close: np.ndarray, **params: Any) -> tuple[np.ndarray, np.ndarray]:
        """Entries and exits over whole closes: True at the bars where `on_bar` buys / closes.

        The signals of `SmaCrossover`, exactly: the same integer sums (int64 prefix sums of the
        scaled closes) and the same cross rule. Bar t's signal is an order filled at bar t+1's
        open in the engine; shifting is the caller's job (`qlcore.research`). Entries apply when
        flat, exits when long, as in `on_bar`.
        """
        strategy = cls(**params)  # converts and checks the parameters like the engine does
        fast, slow = strategy.fast, strategy.slow
        x = scaled_closes(close)
        check_int64_bound(x, fast, slow)
        entries = np.zeros(len(x), dtype=bool)
        exits = np.zeros(len(x), dtype=bool)
        if len(x) < slow:
            return entries, exits
        # int64 arithmetic wraps modulo 2**64; the compared quantity is within the bound checked
        # above, so its sign is exact even when the prefix sums or the products wrap
        prefix = np.concatenate(([0], np.cumsum(x)))
        fast_sum = prefix[slow:] - prefix[slow - fast : len(x) + 1 - fast]
        slow_sum = prefix[slow:] - prefix[: len(x) + 1 - slow]
        sign = np.sign(fast_sum * slow - slow_sum * fast)  # sign[k] is bar slow - 1 + k
        # a cross is a change of sign against the last non-zero sign (0 is neither side)
        at = np.flatnonzero(sign)
        flips = at[1:][sign[at[1:]] != sign[at[:-1]]]
        bars = flips + slow - 1
        entries[bars[sign[flips] > 0]] = True
        exits[bars[sign[flips] < 0]] = True
        return entries, exits


INT64_LIMIT = 2**63


def scaled_closes(close: np.ndarray) -> np.ndarray:
    """Closes in integer units of 1/SCALE as int64: `round(close * SCALE)` (half to even) for each bar."""
    values = np.asarray(close, dtype=np.float64)
    scaled = np.rint(values * SCALE)
    bad = ~(np.abs(scaled) < INT64_LIMIT)  # NaN, inf, or beyond int64
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"close[{i}] = {values[i]!r} cannot be scaled to int64 units of 1/{SCALE}")
    return scaled.astype(np.int64)


def check_int64_bound(x: np.ndarray, fast: int, slow: int) -> None:
    """Raise unless `fast * slow * (max - min)` of the scaled closes stays below 2**63.

    ``fast_sum * slow - slow_sum * fast`` equals ``fast * slow * (fast mean - slow mean)``, so its
    magnitude is below that bound and int64 arithmetic (exact modulo 2**64) decides its sign
    exactly. For prices within $1,000 of each other that allows ``fast * slow`` up to 9.2e9.
    """
    if len(x) == 0:
        return
    spread = int(x.max()) - int(x.min())
    if fast * slow * spread >= INT64_LIMIT:
        raise OverflowError(
            f"sma_cross: fast*slow*(max-min) = {fast}*{slow}*{spread / SCALE:g} (x{SCALE}) exceeds "
            "int64; the vectorized signals would not be exact for these windows and prices"
        )
