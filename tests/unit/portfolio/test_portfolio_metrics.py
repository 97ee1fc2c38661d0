"""Backtest metrics: cross-checked against empyrical-reloaded, hand-computed cases, properties."""
from __future__ import annotations

import json
import math
from dataclasses import fields
from decimal import Decimal

import empyrical as ep
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qlcore.portfolio.metrics import (
    Metrics,
    compute_metrics,
    drawdown,
    infer_periods_per_year,
)

REL = 1e-10
SESSION_BARS = 78  # 5-minute bars from 09:30 to 16:00


def _daily(values, start: str = "2024-01-01") -> pd.Series:
    return pd.Series(values, index=pd.date_range(start, periods=len(values), freq="D"), dtype=float)


def _aapl() -> pd.Series:
    from bokeh.sampledata.stocks import AAPL

    return pd.Series(AAPL["close"], index=pd.to_datetime(AAPL["date"]), dtype=float)


def _random_walk() -> pd.Series:
    rng = np.random.default_rng(20240601)
    returns = rng.normal(0.0004, 0.012, 2_000)
    index = pd.bdate_range("2015-01-02", periods=len(returns) + 1)
    return pd.Series(100_000 * np.cumprod(np.r_[1.0, 1.0 + returns]), index=index)


def _intraday() -> pd.Series:
    """Regular-session 5-minute bars over 30 New York trading days."""
    days = pd.bdate_range("2024-03-04", periods=30)
    stamps = [
        d + pd.Timedelta(hours=9, minutes=35) + pd.Timedelta(minutes=5 * i)
        for d in days
        for i in range(SESSION_BARS)
    ]
    index = pd.DatetimeIndex(stamps).tz_localize("America/New_York")
    rng = np.random.default_rng(7)
    returns = rng.normal(0.0, 0.0015, len(index) - 1)
    return pd.Series(50_000 * np.cumprod(np.r_[1.0, 1.0 + returns]), index=index)


CASES = {
    # name: (equity loader, periods_per_year passed to compute_metrics, empyrical kwargs)
    "aapl_daily": (_aapl, None, {"period": "daily"}),
    "random_walk_daily": (_random_walk, None, {"period": "daily"}),
    "intraday_5min": (_intraday, 252.0 * SESSION_BARS, {"annualization": 252.0 * SESSION_BARS}),
}


def _approx(expected: float):
    return pytest.approx(expected, rel=REL, abs=0)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("risk_free", [0.0, 0.0001])
def test_metrics_match_empyrical(case: str, risk_free: float) -> None:
    load, ppy, ann = CASES[case]
    equity = load()
    returns = equity.pct_change().iloc[1:]

    m = compute_metrics(equity, periods_per_year=ppy, risk_free=risk_free)

    assert m.periods_per_year == ep.stats.annualization_factor(
        ann.get("period", "daily"), ann.get("annualization")
    )
    assert m.total_return == _approx(ep.cum_returns_final(returns))
    assert m.cagr == _approx(ep.cagr(returns, **ann))
    assert m.cagr == _approx(ep.annual_return(returns, **ann))
    assert m.annual_volatility == _approx(ep.annual_volatility(returns, **ann))
    assert m.sharpe == _approx(ep.sharpe_ratio(returns, risk_free=risk_free, **ann))
    assert m.sortino == _approx(ep.sortino_ratio(returns, required_return=risk_free, **ann))
    assert m.max_drawdown == _approx(ep.max_drawdown(returns))
    assert m.bars == len(equity)
    assert (m.start, m.end) == (equity.index[0], equity.index[-1])
    assert (m.initial_equity, m.final_equity) == (equity.iloc[0], equity.iloc[-1])


@pytest.mark.parametrize("case", sorted(CASES))
def test_drawdown_series_matches_empyrical(case: str) -> None:
    equity = CASES[case][0]()
    ours = drawdown(equity)
    theirs = ep.stats.drawdown_series(equity.pct_change().iloc[1:])
    assert ours.iloc[0] == 0.0
    np.testing.assert_allclose(ours.iloc[1:].to_numpy(), theirs.to_numpy(), rtol=REL, atol=1e-15)


def test_intraday_frequency_is_inferred_from_bars_per_session() -> None:
    assert infer_periods_per_year(_intraday().index) == 252.0 * SESSION_BARS


@pytest.mark.parametrize(
    ("index", "expected"),
    [
        (pd.bdate_range("2020-01-01", periods=300), 252.0),
        (pd.date_range("2020-01-01", periods=300, freq="D"), 252.0),
        (pd.date_range("2020-01-01", periods=24 * 20, freq="h"), 252.0 * 24),
        (pd.date_range("2020-01-03", periods=100, freq="W-FRI"), 52.0),
        (pd.date_range("2020-01-31", periods=36, freq="ME"), 12.0),
        (pd.date_range("2020-03-31", periods=12, freq="QE"), 4.0),
        (pd.date_range("2000-12-31", periods=10, freq="YE"), 1.0),
    ],
)
def test_periods_per_year_follows_bar_spacing(index: pd.DatetimeIndex, expected: float) -> None:
    assert infer_periods_per_year(index) == expected


def test_bars_per_day_are_counted_on_local_dates_not_utc() -> None:
    # Sydney's 10:00-15:00 session spans midnight UTC; counted in UTC it would look like
    # two short days per session.
    days = pd.bdate_range("2024-02-05", periods=20)
    stamps = [d + pd.Timedelta(hours=h) for d in days for h in range(10, 16)]
    index = pd.DatetimeIndex(stamps).tz_localize("Australia/Sydney")
    assert infer_periods_per_year(index) == 252.0 * 6


def test_periods_per_year_cannot_be_inferred_from_one_timestamp() -> None:
    with pytest.raises(ValueError, match="periods_per_year"):
        infer_periods_per_year(pd.DatetimeIndex(["2024-01-01"]))


# --- hand-computed drawdowns --------------------------------------------------------------


def test_drawdown_is_equity_over_running_peak_minus_one() -> None:
    equity = _daily([100, 120, 90, 60, 120, 130, 65, 100])
    expected = [0, 0, -0.25, -0.5, 0, 0, -0.5, 100 / 130 - 1]
    np.testing.assert_allclose(drawdown(equity).to_numpy(), expected, rtol=0, atol=1e-15)
    assert compute_metrics(equity).max_drawdown == -0.5


def test_drawdown_duration_runs_from_peak_to_the_bar_that_regains_it() -> None:
    # peak 120 on day 1, regained exactly on day 4; the later 130 peak is never regained (2 days)
    m = compute_metrics(_daily([100, 120, 90, 60, 120, 130, 65, 100]))
    assert m.max_drawdown_duration == pd.Timedelta(days=3)
    assert m.max_drawdown_bars == 3


def test_drawdown_never_recovered_lasts_until_the_last_bar() -> None:
    m = compute_metrics(_daily([100, 90, 100, 80, 85, 90, 95]))
    assert m.max_drawdown_duration == pd.Timedelta(days=4)
    assert m.max_drawdown_bars == 4
    assert m.max_drawdown == pytest.approx(-0.2, rel=1e-15)


def test_drawdown_duration_and_bars_are_each_the_longest_of_their_kind() -> None:
    # first drawdown: 2 bars but 10 days (a data gap); second: 3 bars in 3 days
    index = pd.DatetimeIndex(
        ["2024-01-01", "2024-01-10", "2024-01-11", "2024-01-12", "2024-01-13", "2024-01-14"]
    )
    m = compute_metrics(pd.Series([100.0, 90, 100, 90, 95, 100], index=index))
    assert m.max_drawdown_duration == pd.Timedelta(days=10)
    assert m.max_drawdown_bars == 3


def test_rising_equity_has_no_drawdown() -> None:
    m = compute_metrics(_daily([100, 101, 102, 150]))
    assert (m.max_drawdown, m.max_drawdown_bars) == (0.0, 0)
    assert m.max_drawdown_duration == pd.Timedelta(0)


# --- trades and exposure -----------------------------------------------------------------


def _trades(pnl) -> pd.DataFrame:
    n = len(pnl)
    ts = pd.date_range("2024-01-01", periods=n, freq="D")
    return pd.DataFrame(
        {
            "symbol": ["AAPL"] * n,
            "entry_ts": ts,
            "exit_ts": ts + pd.Timedelta(hours=6),
            "side": ["long"] * n,
            "quantity": [10.0] * n,
            "entry_price": [100.0] * n,
            "exit_price": [101.0] * n,
            "pnl": pnl,
            "fees": [1.0] * n,
        }
    )


EQUITY = _daily([100, 101, 99, 103, 104])


def test_trade_statistics_by_hand() -> None:
    m = compute_metrics(EQUITY, trades=_trades([100.0, -50.0, 25.0, -25.0, 0.0]))
    assert m.n_trades == 5
    assert m.win_rate == 0.4  # a break-even trade is not a win
    assert m.profit_factor == pytest.approx(125 / 75, rel=1e-15)
    assert m.avg_trade_pnl == 10.0


def test_profit_factor_edges() -> None:
    assert compute_metrics(EQUITY, trades=_trades([5.0, 1.0])).profit_factor == math.inf
    assert compute_metrics(EQUITY, trades=_trades([-5.0, -1.0])).profit_factor == 0.0
    flat = compute_metrics(EQUITY, trades=_trades([0.0, 0.0]))
    assert math.isnan(flat.profit_factor)
    assert flat.win_rate == 0.0


@pytest.mark.parametrize("trades", [None, _trades([]).astype({"pnl": float})])
def test_no_trades_gives_zero_count_and_nan_ratios(trades) -> None:
    m = compute_metrics(EQUITY, trades=trades)
    assert m.n_trades == 0
    assert all(math.isnan(x) for x in (m.win_rate, m.profit_factor, m.avg_trade_pnl))


def test_decimal_pnl_is_accepted() -> None:
    m = compute_metrics(EQUITY, trades=_trades([Decimal("10.5"), Decimal("-3.5")]))
    assert (m.n_trades, m.win_rate, m.profit_factor, m.avg_trade_pnl) == (2, 0.5, 3.0, 3.5)


def test_trades_without_pnl_are_rejected() -> None:
    with pytest.raises(ValueError, match="'pnl'"):
        compute_metrics(EQUITY, trades=_trades([1.0]).drop(columns="pnl"))


def test_exposure_is_share_of_bars_with_a_position() -> None:
    position = pd.Series([0.0, 1.5, -2.0, 0.0, 0.0], index=EQUITY.index)
    assert compute_metrics(EQUITY, exposure=position).exposure == 0.4
    assert math.isnan(compute_metrics(EQUITY).exposure)


def test_exposure_on_another_index_is_rejected() -> None:
    with pytest.raises(ValueError, match="exposure"):
        compute_metrics(EQUITY, exposure=pd.Series([1.0, 0.0, 1.0]))


# --- edge cases --------------------------------------------------------------------------


def test_constant_equity_has_zero_volatility_and_nan_ratios() -> None:
    equity = _daily([1000.0] * 50)
    m = compute_metrics(equity)
    assert m.annual_volatility == 0.0
    assert math.isnan(m.sharpe) and math.isnan(m.sortino)
    assert (m.total_return, m.cagr, m.max_drawdown, m.max_drawdown_bars) == (0.0, 0.0, 0.0, 0)
    assert math.isnan(ep.sharpe_ratio(equity.pct_change().iloc[1:]))  # empyrical agrees here


def test_steady_growth_sharpe_is_nan_where_empyrical_gives_inf() -> None:
    # Documented difference: zero dispersion means no Sharpe ratio, not an infinite one.
    equity = _daily([1.0, 2.0, 4.0, 8.0, 16.0])  # every return is exactly 1.0
    returns = equity.pct_change().iloc[1:]
    m = compute_metrics(equity)
    assert math.isnan(m.sharpe)
    assert ep.sharpe_ratio(returns) == math.inf
    assert m.annual_volatility == 0.0 == ep.annual_volatility(returns)
    assert m.sortino == math.inf == ep.sortino_ratio(returns)  # no downside at all


def test_single_bar_has_zero_return_and_nan_annualised_metrics() -> None:
    m = compute_metrics(_daily([250.0]))
    assert (m.bars, m.total_return, m.max_drawdown, m.max_drawdown_bars) == (1, 0.0, 0.0, 0)
    assert all(
        math.isnan(x)
        for x in (m.periods_per_year, m.cagr, m.annual_volatility, m.sharpe, m.sortino)
    )
    # empyrical has no returns to work with and gives NaN; we report the unchanged equity as 0.
    assert math.isnan(ep.cum_returns_final(pd.Series([], dtype=float)))


def test_two_bars_have_a_return_but_no_volatility() -> None:
    m = compute_metrics(_daily([100.0, 110.0]), periods_per_year=252)
    assert m.total_return == pytest.approx(0.1, rel=1e-15)
    assert m.cagr == pytest.approx(1.1**252 - 1, rel=1e-12)
    assert math.isnan(m.annual_volatility) and math.isnan(m.sharpe)


def test_empty_equity_is_rejected() -> None:
    with pytest.raises(ValueError, match="empty"):
        compute_metrics(pd.Series([], index=pd.DatetimeIndex([]), dtype=float))


@pytest.mark.parametrize("bad", [0.0, -5.0, float("nan"), float("inf")])
def test_non_positive_equity_is_rejected_naming_the_first_bad_bar(bad: float) -> None:
    equity = _daily([100.0, 50.0, bad, 10.0, bad])
    with pytest.raises(ValueError, match="2024-01-03"):
        compute_metrics(equity)
    with pytest.raises(ValueError, match="2024-01-03"):
        drawdown(equity)


def test_equity_without_datetime_index_is_rejected() -> None:
    with pytest.raises(TypeError, match="DatetimeIndex"):
        compute_metrics(pd.Series([1.0, 2.0]))


def test_equity_out_of_order_is_rejected() -> None:
    index = pd.to_datetime(["2024-01-02", "2024-01-01", "2024-01-03"])
    equity = pd.Series([1.0, 2.0, 3.0], index=index)
    with pytest.raises(ValueError, match="strictly increasing"):
        compute_metrics(equity)


def test_non_positive_periods_per_year_is_rejected() -> None:
    with pytest.raises(ValueError, match="periods_per_year"):
        compute_metrics(EQUITY, periods_per_year=0)


def test_to_dict_is_json_ready() -> None:
    m = compute_metrics(EQUITY, trades=_trades([5.0, 1.0]))
    d = m.to_dict()
    assert json.loads(json.dumps(d, allow_nan=False)) == d
    assert d["profit_factor"] == "inf"
    assert d["exposure"] is None
    assert d["start"] == "2024-01-01T00:00:00"
    assert d["max_drawdown_duration"] == "P2DT0H0M0S"  # peak 101 on Jan 2, regained Jan 4
    assert d["max_drawdown_duration_days"] == 2.0
    assert d["bars"] == 5 and isinstance(d["bars"], int)
    assert set(d) == {f.name for f in fields(Metrics)} | {"max_drawdown_duration_days"}


def test_metrics_are_immutable() -> None:
    m = compute_metrics(EQUITY)
    with pytest.raises(AttributeError):
        m.sharpe = 1.0  # type: ignore[misc]


def test_a_million_bars_are_all_counted() -> None:  # the time it takes: benchmarks/bench_data.py
    rng = np.random.default_rng(1)
    n = 1_000_000
    equity = pd.Series(
        1e6 * np.exp(np.cumsum(rng.normal(0, 1e-4, n))),
        index=pd.date_range("2020-01-01", periods=n, freq="min"),
    )
    m = compute_metrics(equity, exposure=pd.Series(np.ones(n), index=equity.index))
    assert m.bars == n and m.exposure == 1.0


# --- properties --------------------------------------------------------------------------


positive_equity = st.lists(
    st.floats(min_value=1e-3, max_value=1e9, allow_nan=False, allow_infinity=False),
    min_size=1,
    max_size=200,
)


@settings(max_examples=200, deadline=None)
@given(positive_equity)
def test_drawdown_and_total_return_properties(values: list[float]) -> None:
    equity = _daily(values)
    m = compute_metrics(equity, periods_per_year=252)
    dd = drawdown(equity)
    assert -1.0 <= m.max_drawdown <= 0.0
    assert (dd <= 0.0).all()
    assert m.max_drawdown == dd.min()
    assert m.total_return == values[-1] / values[0] - 1
    assert 0 <= m.max_drawdown_bars <= len(values) - 1
    assert not math.isinf(m.sharpe)
