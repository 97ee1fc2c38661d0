"""Performance metrics of a backtest equity curve, with empyrical-reloaded's definitions.

Returns are simple per-bar returns ``r = equity.pct_change()`` with the first bar dropped, so
``n = bars - 1`` returns; ``P`` is the number of bars per year (``periods_per_year``).
The conventions below are those of ``empyrical`` (reloaded 0.7), read from its source:

- total return: ``prod(1 + r) - 1`` (``cum_returns_final``), i.e. ``equity[-1] / equity[0] - 1``.
- CAGR: ``(1 + total_return) ** (P / n) - 1``; years are counted as returns / P, not as calendar
  time (``annual_return`` / ``cagr``).
- annual volatility: sample standard deviation (``ddof=1``) of r times ``sqrt(P)``
  (``annual_volatility`` with ``alpha=2``); NaN with fewer than two returns.
- Sharpe: ``mean(r - rf) / std(r - rf, ddof=1) * sqrt(P)``, ``rf`` a per-bar rate
  (``sharpe_ratio``); NaN with fewer than two returns.
- Sortino: ``mean(r - mar) * P / (sqrt(mean(min(r - mar, 0) ** 2)) * sqrt(P))``; the downside
  deviation averages the squared shortfalls over *all* returns, ``ddof=0`` (``sortino_ratio`` /
  ``downside_risk``); the minimum acceptable return ``mar`` is our per-bar ``risk_free``.
- max drawdown: ``min(equity / cummax(equity) - 1)``; the running peak includes the first bar
  (``max_drawdown`` anchors its cumulative returns at the starting value).

Deliberate differences, each tested:

- zero dispersion: when every excess return is equal (constant equity, or a perfectly steady
  growth rate) Sharpe is NaN, where empyrical gives NaN for 0/0 but +/-inf for a non-zero constant;
  annual volatility is then exactly 0.0.
- a single bar: total return and max drawdown are 0.0 (empyrical gives NaN for no returns),
  CAGR and everything annualised are NaN.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["Metrics", "compute_metrics", "drawdown", "infer_periods_per_year"]

TRADING_DAYS_PER_YEAR = 252

_NS_PER_DAY = 86_400 * 10**9
# Median bar spacing (in days) below which the next coarser frequency is assumed, with its
# empyrical annualization factor. Anything under ~20 hours is intraday.
_SPACING_FACTORS: tuple[tuple[float, float], ...] = (
    (6.0, 252.0),  # daily bars, weekends and holidays included in the gaps
    (25.0, 52.0),  # weekly
    (80.0, 12.0),  # monthly
    (300.0, 4.0),  # quarterly
)
_INTRADAY_BELOW_DAYS = 20 / 24


@dataclass(frozen=True, slots=True)
class Metrics:
    """Summary statistics of one equity curve (and optionally its trades and positions)."""

    start: pd.Timestamp
    end: pd.Timestamp
    bars: int
    periods_per_year: float  # NaN for a single bar when not given
    initial_equity: float
    final_equity: float
    total_return: float
    cagr: float
    annual_volatility: float
    sharpe: float
    sortino: float
    max_drawdown: float  # a negative fraction: -0.25 is 25% below the running peak
    max_drawdown_duration: pd.Timedelta  # peak to regained peak, or to the last bar
    max_drawdown_bars: int  # the same in bars, maximised on its own
    n_trades: int
    win_rate: float
    profit_factor: float
    avg_trade_pnl: float
    exposure: float  # share of bars with a non-zero position; NaN when not given

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict: NaN -> None, +/-inf -> "inf"/"-inf", timestamps as ISO 8601 strings.

        ``max_drawdown_duration`` is an ISO 8601 duration string (``"P12DT0H0M0S"``);
        ``max_drawdown_duration_days`` adds the same duration as a float number of days.
        """
        out: dict[str, Any] = {}
        for f in fields(self):
            out[f.name] = _jsonable(getattr(self, f.name))
        out["max_drawdown_duration_days"] = self.max_drawdown_duration / pd.Timedelta(days=1)
        return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, pd.Timedelta):
        return value.isoformat()
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    return value


def _checked_equity(equity: pd.Series) -> tuple[pd.DatetimeIndex, np.ndarray]:
    """The index and float values of a valid equity curve, or a ValueError saying what is wrong."""
    if not isinstance(equity, pd.Series):
        raise TypeError(f"equity must be a pandas Series, got {type(equity).__name__}")
    if len(equity) == 0:
        raise ValueError("equity is empty: metrics need at least one bar")
    index = equity.index
    if not isinstance(index, pd.DatetimeIndex):
        raise TypeError(f"equity must be indexed by a DatetimeIndex, got {type(index).__name__}")
    if not index.is_monotonic_increasing or not index.is_unique:
        ns = index.as_unit("ns").asi8
        bad = int(np.flatnonzero(np.diff(ns) <= 0)[0]) + 1
        raise ValueError(
            f"equity index must be strictly increasing; {index[bad]} does not follow "
            f"{index[bad - 1]}"
        )
    values = equity.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~(np.isfinite(values) & (values > 0.0))
    if bad.any():
        pos = int(np.argmax(bad))
        raise ValueError(
            f"equity must be positive and finite; first bad value {values[pos]!r} at {index[pos]}"
        )
    return index, values


def infer_periods_per_year(index: pd.DatetimeIndex) -> float:
    """Bars per year from the median bar spacing.

    Intraday (median spacing under ~20 hours): 252 times the median number of bars per calendar
    day (wall-clock dates of the index's time zone). Daily: 252. Coarser spacings use empyrical's
    factors: weekly 52, monthly 12, quarterly 4, yearly 1.
    """
    if not isinstance(index, pd.DatetimeIndex):
        raise TypeError(f"index must be a DatetimeIndex, got {type(index).__name__}")
    if len(index) < 2:
        raise ValueError(
            f"cannot infer the bar frequency from {len(index)} timestamp(s); pass periods_per_year"
        )
    ns = index.as_unit("ns").asi8
    spacing_days = float(np.median(np.diff(ns))) / _NS_PER_DAY
    if spacing_days <= 0:
        raise ValueError("cannot infer the bar frequency: median bar spacing is not positive")
    if spacing_days >= _INTRADAY_BELOW_DAYS:
        for upper, factor in _SPACING_FACTORS:
            if spacing_days < upper:
                return factor
        return 1.0
    wall = index.tz_localize(None) if index.tz is not None else index
    day = wall.as_unit("ns").asi8 // _NS_PER_DAY
    if len(day) > 1 and (np.diff(day) < 0).any():
        day = np.sort(day)
    starts = np.flatnonzero(np.r_[True, day[1:] != day[:-1]])
    bars_per_day = np.diff(np.r_[starts, len(day)])
    return float(TRADING_DAYS_PER_YEAR * np.median(bars_per_day))


def drawdown(equity: pd.Series) -> pd.Series:
    """Drawdown per bar: ``equity / running max - 1`` (0 at new highs, negative below them)."""
    index, values = _checked_equity(equity)
    return pd.Series(_drawdown(values), index=index, name="drawdown")


def _drawdown(values: np.ndarray) -> np.ndarray:
    return values / np.maximum.accumulate(values) - 1.0


def _longest_underwater(values: np.ndarray, ns: np.ndarray) -> tuple[int, int]:
    """(longest duration in ns, longest duration in bars) from a peak until equity regains it.

    An episode runs from the last high before a run of bars below the running peak to the first
    bar back at or above it, or to the last bar when the peak is never regained. Time and bar
    counts are maximised separately; with regular bars both pick the same episode.
    """
    under = values < np.maximum.accumulate(values)
    if not under.any():
        return 0, 0
    edges = np.diff(under.astype(np.int8))
    first = np.flatnonzero(edges == 1) + 1  # first underwater bar of each run (bar 0 is a high)
    last = np.flatnonzero(edges == -1)  # last underwater bar of each recovered run
    n = len(values)
    if len(last) < len(first):
        last = np.r_[last, n - 1]
    peak = first - 1
    end = np.minimum(last + 1, n - 1)  # the recovery bar, or the final bar if never recovered
    return int((ns[end] - ns[peak]).max()), int((end - peak).max())


def _trade_stats(trades: pd.DataFrame | None) -> tuple[int, float, float, float]:
    if trades is None or len(trades) == 0:
        return 0, math.nan, math.nan, math.nan
    if "pnl" not in trades.columns:
        raise ValueError(f"trades has no 'pnl' column; columns are {list(trades.columns)}")
    pnl = trades["pnl"].to_numpy(dtype=np.float64, na_value=np.nan)
    if np.isnan(pnl).any():
        row = trades.index[int(np.argmax(np.isnan(pnl)))]
        raise ValueError(f"trades.pnl is missing for the trade at index {row!r}")
    gross_profit = float(pnl[pnl > 0].sum())
    gross_loss = float(-pnl[pnl < 0].sum())
    if gross_loss > 0:
        profit_factor = gross_profit / gross_loss
    elif gross_profit > 0:
        profit_factor = math.inf
    else:  # every trade broke even: no profit, no loss
        profit_factor = math.nan
    return len(pnl), float(np.mean(pnl > 0)), profit_factor, float(pnl.mean())


def _exposure(exposure: pd.Series | None, index: pd.DatetimeIndex) -> float:
    if exposure is None:
        return math.nan
    if len(exposure) != len(index) or not exposure.index.equals(index):
        raise ValueError(
            f"exposure must have the equity curve's index ({len(index)} bars); "
            f"got {len(exposure)} values on a different index"
        )
    values = exposure.to_numpy(dtype=np.float64, na_value=np.nan)
    if np.isnan(values).any():
        raise ValueError(f"exposure is missing at {index[int(np.argmax(np.isnan(values)))]}")
    return float(np.count_nonzero(values) / len(values))


def compute_metrics(
    equity: pd.Series,
    trades: pd.DataFrame | None = None,
    exposure: pd.Series | None = None,
    periods_per_year: float | None = None,
    risk_free: float = 0.0,
) -> Metrics:
    """Metrics of an equity curve, matching empyrical-reloaded's definitions (see module doc).

    Parameters
    ----------
    equity
        Account equity marked at each bar close, positive, on a strictly increasing DatetimeIndex.
    trades
        Closed trades with a ``pnl`` column (net of fees); ``None`` or empty means no trades.
    exposure
        Net position value or quantity per bar on the same index; exposure is the share of bars
        where it is non-zero. NaN when not given.
    periods_per_year
        Bars per year for annualising; inferred with :func:`infer_periods_per_year` when ``None``
        (NaN for a single bar, whose annualised metrics are NaN anyway).
    risk_free
        Risk-free return *per bar* (as empyrical's ``risk_free``), also the Sortino minimum
        acceptable return.
    """
    index, values = _checked_equity(equity)
    bars = len(values)
    if periods_per_year is None:
        ppy = infer_periods_per_year(index) if bars > 1 else math.nan
    else:
        ppy = float(periods_per_year)
        if not ppy > 0:
            raise ValueError(f"periods_per_year must be positive, got {periods_per_year!r}")

    returns = values[1:] / values[:-1] - 1.0
    n = len(returns)
    growth = values[-1] / values[0]
    total_return = float(growth - 1.0)
    with np.errstate(over="ignore"):  # an absurd growth over a few bars overflows to inf
        cagr = float(np.float64(growth) ** (ppy / n) - 1.0) if n >= 1 else math.nan

    annual_volatility = sharpe = sortino = math.nan
    if n >= 2:
        excess = returns - risk_free
        constant = excess.max() == excess.min()
        std = 0.0 if constant else float(np.std(returns, ddof=1))
        annual_volatility = std * math.sqrt(ppy)
        if not constant:
            sharpe = float(excess.mean() / np.std(excess, ddof=1) * math.sqrt(ppy))
        shortfall = np.minimum(excess, 0.0)
        downside = math.sqrt(float(np.mean(shortfall * shortfall))) * math.sqrt(ppy)
        with np.errstate(divide="ignore", invalid="ignore"):
            sortino = float(np.float64(excess.mean() * ppy) / downside)

    ns = index.as_unit("ns").asi8
    dd_ns, dd_bars = _longest_underwater(values, ns)
    n_trades, win_rate, profit_factor, avg_trade_pnl = _trade_stats(trades)

    return Metrics(
        start=index[0],
        end=index[-1],
        bars=bars,
        periods_per_year=ppy,
        initial_equity=float(values[0]),
        final_equity=float(values[-1]),
        total_return=total_return,
        cagr=cagr,
        annual_volatility=annual_volatility,
        sharpe=sharpe,
        sortino=sortino,
        max_drawdown=float(_drawdown(values).min()),
        max_drawdown_duration=pd.Timedelta(dd_ns, unit="ns"),
        max_drawdown_bars=dd_bars,
        n_trades=n_trades,
        win_rate=win_rate,
        profit_factor=profit_factor,
        avg_trade_pnl=avg_trade_pnl,
        exposure=_exposure(exposure, index),
    )
