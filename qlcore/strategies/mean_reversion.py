"""Mean reversion on a rolling z-score: buy when price is far below its mean, sell when it comes back."""
from __future__ import annotations

import math
from decimal import Decimal
from itertools import accumulate
from typing import Any

import numpy as np

from qlcore.events.types import OrderFilled
from qlcore.model.market import Bar
from qlcore.strategies.base import InvalidParameterError, Param, Strategy
from qlcore.strategies.indicators import RollingZScore
from qlcore.strategies.sma_cross import scaled_closes

# n * (max - min) of the scaled closes in a window below this keeps n*s2 - s1*s1 (which is at most
# (n * (max - min))**2 / 4, Popoviciu's inequality) below 2**63: then int64 arithmetic, exact
# modulo 2**64, gives it exactly. 6e9 is just under 2**32 * sqrt(2).
_EXACT_INT64_SPREAD = 6.0e9


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
        # the order each symbol is waiting on; a denied, cancelled or expired one frees the symbol
        self._pending: dict[str, str | None] = {s: self.working_order(s) for s in self.symbols}

    def on_bar(self, bar: Bar) -> None:
        z = self._z[bar.symbol].update(bar.close)
        if z != z:  # NaN: window not full yet
            return
        pending = self._pending[bar.symbol]
        if pending is not None:
            if self.kernel.state.orders[pending].is_open:
                return
            self._pending[bar.symbol] = None
        held = self.position(bar.symbol) > 0
        if not held and z < -self.entry_z:
            self._pending[bar.symbol] = self.buy(self.quantity, bar.symbol)
        elif held and z > -self.exit_z:
            self._pending[bar.symbol] = self.close(bar.symbol)

    def on_fill(self, fill: OrderFilled) -> None:
        if not self.kernel.state.orders[fill.order_id].is_open:
            self._pending[fill.symbol] = None

    def warmup_bars(self) -> int:
        return self.window

    def on_warmup(self, bar: Bar) -> None:
        self._z[bar.symbol].update(bar.close)

    # --- vectorized form (research) -------------------------------------------------------------
    @classmethod
    def vectorized_signals(cls, close: np.ndarray, **params: Any) -> tuple[np.ndarray, np.ndarray]:
        """Entries and exits over whole closes: True at the bars where `on_bar` buys / closes.

        Entries apply when flat, exits when long, as in `on_bar`; bar t's signal fills at bar
        t+1's open in the engine (shifting is the caller's job). The z-scores are
        `vectorized_zscore`'s, equal to `RollingZScore`'s bit for bit.
        """
        strategy = cls(**params)
        z = cls.vectorized_zscore(close, strategy.window)
        with np.errstate(invalid="ignore"):
            return z < -strategy.entry_z, z > -strategy.exit_z

    @staticmethod
    def vectorized_zscore(close: np.ndarray, window: int) -> np.ndarray:
        """`RollingZScore(window)` over whole closes: the same floats, NaN where it gives NaN.

        `RollingZScore` computes ``(n*x - s1) / sqrt(n*s2 - s1*s1)`` from exact integer sums. Here
        s1 and s2 come from int64 prefix sums, exact modulo 2**64, which is enough wherever the
        window's spread proves both numerator and variance term below 2**63 (see
        `_EXACT_INT64_SPREAD`); the other windows are recomputed with Python integers. The
        integers then go to float the way Python converts them (correctly rounded), and the same
        float operations follow.
        """
        if window < 2:
            raise InvalidParameterError(f"mean_reversion: window must be >= 2, got {window}")
        x = scaled_closes(close)
        n, length = window, len(x)
        z = np.full(length, np.nan)
        if length < n:
            return z
        prefix = np.concatenate(([0], np.cumsum(x)))
        prefix2 = np.concatenate(([0], np.cumsum(x * x)))
        s1 = prefix[n:] - prefix[:-n]  # s1[k] is the window ending at bar n - 1 + k
        s2 = prefix2[n:] - prefix2[:-n]
        num = n * x[n - 1 :] - s1
        var = n * s2 - s1 * s1
        if n * (float(x.max()) - float(x.min())) < _EXACT_INT64_SPREAD:
            inexact = np.empty(0, dtype=np.intp)  # every window is narrow enough
        else:
            windows = np.lib.stride_tricks.sliding_window_view(x, n)
            spread = windows.max(axis=1).astype(np.float64) - windows.min(axis=1).astype(np.float64)
            inexact = np.flatnonzero(~(n * spread < _EXACT_INT64_SPREAD))
        num_f = num.astype(np.float64)
        var_f = var.astype(np.float64)
        positive = var > 0
        if len(inexact):
            xs = x.tolist()
            p1 = [0, *accumulate(xs)]
            p2 = [0, *accumulate(v * v for v in xs)]
            for k in inexact.tolist():
                s1_k = p1[k + n] - p1[k]
                var_k = n * (p2[k + n] - p2[k]) - s1_k * s1_k
                num_f[k] = float(n * xs[k + n - 1] - s1_k)
                var_f[k] = float(var_k) if var_k > 0 else math.nan
                positive[k] = var_k > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            z[n - 1 :] = np.where(positive, num_f / np.sqrt(np.where(positive, var_f, 1.0)), np.nan)
        return z
