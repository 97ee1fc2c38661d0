"""Incremental indicators: O(1) per update.

Prices are accumulated as integers in units of 1e-6 (the finest step in our market data) (`SCALE`), so running sums are exact: no drift
over a million bars, and the vectorized research form (numpy int64 cumsum) gives the very same
values, bar for bar. That is what lets the event-driven engine and vectorbt agree trade for trade.
"""
from __future__ import annotations

import math
from collections import deque

SCALE = 1_000_000


def scaled(price: float) -> int:
    """A price in integer units of 1/SCALE."""
    return round(price * SCALE)


class SMA:
    """Simple moving average over `period` values, with an exact running sum."""

    __slots__ = ("count", "period", "total", "window")

    def __init__(self, period: int) -> None:
        if period < 1:
            raise ValueError(f"SMA period must be >= 1, got {period}")
        self.period = period
        self.window: deque[int] = deque()
        self.total = 0
        self.count = 0

    def update_scaled(self, x: int) -> None:
        window = self.window
        window.append(x)
        self.total += x
        if len(window) > self.period:
            self.total -= window.popleft()
        self.count += 1

    def update(self, price: float) -> None:
        self.update_scaled(round(price * SCALE))

    @property
    def ready(self) -> bool:
        return self.count >= self.period

    @property
    def value(self) -> float:
        return self.total / (len(self.window) * SCALE) if self.window else math.nan


class CrossOver:
    """+1 when `fast` crosses above `slow`, -1 when it crosses below, else 0.

    A cross is a change of sign of (fast - slow) against its last non-zero value, so touching and
    moving on is not a cross, and crossing through equality is (backtrader's `CrossOver` rule).
    Comparisons use the exact sums: fast_sum * slow_n vs slow_sum * fast_n.
    """

    __slots__ = ("fast", "last_sign", "slow", "started")

    def __init__(self, fast: SMA, slow: SMA) -> None:
        self.fast, self.slow = fast, slow
        self.last_sign = 0
        self.started = False

    def update(self) -> int:
        """Call after both averages were updated with the bar; return the cross signal."""
        fast, slow = self.fast, self.slow
        if slow.count < slow.period or fast.count < fast.period:
            return 0
        diff = fast.total * slow.period - slow.total * fast.period
        sign = (diff > 0) - (diff < 0)
        if not self.started:
            self.started = True
            self.last_sign = sign
            return 0
        signal = 0
        if sign and sign != self.last_sign and self.last_sign:
            signal = sign
        if sign:
            self.last_sign = sign
        return signal


class SmaCrossover:
    """`CrossOver(SMA(fast), SMA(slow))` fused into one update: the hot path of `sma_cross`.

    Both windows live in one ring buffer of `slow` scaled prices (the fast window is its newest
    `fast` entries). Same exact sums and the same cross rule as `CrossOver`.
    """

    __slots__ = ("buf", "count", "fast", "fast_sum", "last_sign", "pos", "slow", "slow_sum")

    def __init__(self, fast: int, slow: int) -> None:
        if not 1 <= fast < slow:
            raise ValueError(f"need 1 <= fast < slow, got fast={fast} slow={slow}")
        self.fast, self.slow = fast, slow
        self.buf = [0] * slow
        self.pos = 0
        self.count = 0
        self.fast_sum = 0
        self.slow_sum = 0
        self.last_sign = 0

    def update(self, x: int) -> int:
        """Add a scaled price; return +1 on a cross up, -1 on a cross down, else 0."""
        slow, fast, buf, pos = self.slow, self.fast, self.buf, self.pos
        count = self.count
        out_fast = buf[pos - fast]  # negative index wraps: the price leaving the fast window
        self.slow_sum += x - buf[pos]
        buf[pos] = x
        self.pos = pos + 1 if pos + 1 < slow else 0
        count += 1
        self.count = count
        if count <= fast:
            self.fast_sum += x
        else:
            self.fast_sum += x - out_fast
        if count < slow:
            return 0
        diff = self.fast_sum * slow - self.slow_sum * fast
        sign = (diff > 0) - (diff < 0)
        last = self.last_sign
        if count == slow:
            self.last_sign = sign
            return 0
        if not sign or sign == last:
            return 0
        self.last_sign = sign
        return sign if last else 0


class RollingZScore:
    """(x - mean) / population std over `period` values, from exact integer sums."""

    __slots__ = ("period", "s1", "s2", "window")

    def __init__(self, period: int) -> None:
        if period < 2:
            raise ValueError(f"z-score period must be >= 2, got {period}")
        self.period = period
        self.window: deque[int] = deque()
        self.s1 = 0
        self.s2 = 0

    def update(self, price: float) -> float:
        """Add a price and return its z-score (NaN until the window is full or when std is 0)."""
        x = round(price * SCALE)
        w = self.window
        w.append(x)
        self.s1 += x
        self.s2 += x * x
        if len(w) > self.period:
            old = w.popleft()
            self.s1 -= old
            self.s2 -= old * old
        elif len(w) < self.period:
            return math.nan
        n = self.period
        var_num = n * self.s2 - self.s1 * self.s1  # n^2 * variance, exact
        if var_num <= 0:
            return math.nan
        return (n * x - self.s1) / math.sqrt(var_num)
