"""Numba kernels of the sweep: exact crossover signals for many (fast, slow) pairs, and metrics
per column straight from vectorbt's order records.

`sma_cross_signals_nb` repeats `SmaCrossover.update` (qlcore/strategies/indicators.py) for one
column at a time: the same integer running sums of the scaled closes and the same rule for a
cross. The sums are int64 and wrap around on overflow; the sign they decide is still exact, because
``fast_sum * slow - slow_sum * fast`` lies within ``fast * slow * (max - min)`` of the scaled
closes, which the caller checks against 2**63 (`qlcore.strategies.sma_cross.check_int64_bound`),
and two's-complement arithmetic is exact modulo 2**64.

`order_stats_nb` rebuilds each column's equity at every bar's close (cash + position x close)
from the order records and measures it with the definitions of
`qlcore.portfolio.metrics.compute_metrics`, so a sweep row and an engine run report the same
figures. No (bars x columns) float matrix is ever built.

Both are compiled with ``cache=True``: a second process loads the machine code.
"""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def sma_cross_signals_nb(x, fasts, slows, delay, entries, exits):
    """Set `entries[t + delay, j]` / `exits[t + delay, j]` where pair j crosses up / down on bar t."""
    n = x.shape[0]
    for j in range(fasts.shape[0]):
        fast = fasts[j]
        slow = slows[j]
        fast_sum = np.int64(0)
        slow_sum = np.int64(0)
        last = 0
        for t in range(n):
            xt = x[t]
            fast_sum += xt
            slow_sum += xt
            if t >= fast:
                fast_sum -= x[t - fast]
            if t >= slow:
                slow_sum -= x[t - slow]
            if t < slow - 1:
                continue
            diff = fast_sum * slow - slow_sum * fast
            sign = 1 if diff > 0 else (-1 if diff < 0 else 0)
            if t == slow - 1:
                last = sign
                continue
            if sign == 0 or sign == last:
                continue
            if last != 0 and t + delay < n:
                if sign > 0:
                    entries[t + delay, j] = True
                else:
                    exits[t + delay, j] = True
            last = sign


@njit(cache=True, nogil=True)
def order_stats_nb(col, idx, size, price, fees, side, close, n_cols, init_cash, ann):
    """Per column: final equity, total return, Sharpe, max drawdown, closed trades, winners, fees, ruined.

    Orders are vectorbt's records (sorted by column, then bar; side 0 buys, 1 sells), executed
    before the bar's close. Like `BacktestResult`, the metrics stop before the first bar whose
    equity is not positive (`ruined` is then 1). Sharpe uses returns from the second bar on,
    ddof=1, times sqrt(ann); NaN with fewer than two returns or none that differ.
    """
    n = close.shape[0]
    final = np.empty(n_cols)
    total = np.full(n_cols, np.nan)
    sharpe = np.full(n_cols, np.nan)
    max_dd = np.full(n_cols, np.nan)
    trades = np.zeros(n_cols, dtype=np.int64)
    winners = np.zeros(n_cols, dtype=np.int64)
    fees_paid = np.zeros(n_cols)
    ruined = np.zeros(n_cols, dtype=np.int64)
    equity = np.empty(n)
    k = 0
    for j in range(n_cols):
        cash = init_cash
        pos = 0.0
        open_cash = 0.0
        alive = n
        for t in range(n):
            while k < col.shape[0] and col[k] == j and idx[k] == t:
                notional = size[k] * price[k]
                before = pos
                if side[k] == 0:
                    if before == 0.0:
                        open_cash = cash
                    cash -= notional + fees[k]
                    pos += size[k]
                else:
                    cash += notional - fees[k]
                    pos -= size[k]
                    if pos == 0.0 and before != 0.0:
                        trades[j] += 1
                        if cash > open_cash:
                            winners[j] += 1
                fees_paid[j] += fees[k]
                k += 1
            v = cash + pos * close[t]
            equity[t] = v
            if alive == n and not v > 0.0:
                alive = t
        final[j] = equity[n - 1]
        if alive < n:
            ruined[j] = 1
        if alive == 0:
            continue
        peak = equity[0]
        dd = 0.0
        s = 0.0
        lo = np.inf
        hi = -np.inf
        for t in range(1, alive):
            r = equity[t] / equity[t - 1] - 1.0
            s += r
            lo = min(lo, r)
            hi = max(hi, r)
            if equity[t] > peak:
                peak = equity[t]
            d = equity[t] / peak - 1.0
            if d < dd:
                dd = d
        total[j] = equity[alive - 1] / equity[0] - 1.0
        max_dd[j] = dd
        m = alive - 1
        if m >= 2 and hi > lo:
            mean = s / m
            ss = 0.0
            for t in range(1, alive):
                e = equity[t] / equity[t - 1] - 1.0 - mean
                ss += e * e
            sharpe[j] = mean / np.sqrt(ss / (m - 1)) * np.sqrt(ann)
    return final, total, sharpe, max_dd, trades, winners, fees_paid, ruined
