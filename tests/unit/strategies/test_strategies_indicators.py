"""Incremental indicators against independent references."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from qlcore.strategies.indicators import SCALE, SMA, CrossOver, RollingZScore, SmaCrossover


def test_sma_matches_pandas_rolling_mean_on_real_prices():
    from qlcore.data import load_sample

    close = load_sample("IBM")["close"]
    sma = SMA(20)
    values = []
    for x in close:
        sma.update(x)
        values.append(sma.value if sma.ready else math.nan)
    ref = close.rolling(20).mean()
    np.testing.assert_allclose(values[19:], ref.iloc[19:], rtol=1e-12)


def test_sma_sum_is_exact_over_a_million_updates():
    sma = SMA(3)
    for _ in range(1_000_000):
        sma.update(0.1)
    assert sma.total == 3 * round(0.1 * SCALE)
    assert sma.value == pytest.approx(0.1, abs=1e-15)


def reference_cross(prices: list[float], fast: int, slow: int) -> list[int]:
    """Cross signals from exact rational means, backtrader's last-non-zero-sign rule."""
    from fractions import Fraction

    xs = [Fraction(round(p * SCALE)) for p in prices]
    out, last = [], None
    for i in range(len(xs)):
        if i < slow - 1:
            out.append(0)
            continue
        diff = sum(xs[i - fast + 1 : i + 1]) / fast - sum(xs[i - slow + 1 : i + 1]) / slow
        sign = (diff > 0) - (diff < 0)
        if last is None:
            out.append(0)
            last = sign
            continue
        out.append(sign if sign and last and sign != last else 0)
        if sign:
            last = sign
    return out


prices_with_ties = st.lists(st.sampled_from([10.0, 10.01, 10.02, 10.03, 9.99, 10.5]), min_size=1, max_size=120)


@settings(max_examples=300, deadline=None)
@given(prices_with_ties, st.integers(1, 6), st.integers(2, 12))  # fast, slow
def test_fused_crossover_equals_the_two_sma_form_and_the_exact_reference(prices, fast, slow):
    assume(fast < slow)
    f, s = SMA(fast), SMA(slow)
    pair = CrossOver(f, s)
    fused = SmaCrossover(fast, slow)
    got_pair, got_fused = [], []
    for p in prices:
        f.update(p)
        s.update(p)
        got_pair.append(pair.update())
        got_fused.append(fused.update(round(p * SCALE)))
    expected = reference_cross(prices, fast, slow)
    assert got_fused == expected
    assert got_pair == expected


def test_crossover_through_equality_counts_and_touching_does_not():
    # fast=1 vs slow=2: the sign of (x_t - x_{t-1}) / 2
    prices = [1.0, 2.0, 2.0, 3.0, 3.0, 2.0, 2.0, 2.0, 3.0]
    x = SmaCrossover(1, 2)
    signals = [x.update(round(p * SCALE)) for p in prices]
    # up at 1 (first defined), flat ties keep the last sign; down at 5; up again at 8
    assert signals == [0, 0, 0, 0, 0, -1, 0, 0, 1]


def test_rolling_zscore_matches_pandas_population_std():
    from qlcore.data import load_sample

    close = load_sample("MSFT")["close"].iloc[:600]
    z = RollingZScore(20)
    got = np.array([z.update(x) for x in close])
    mean = close.rolling(20).mean()
    std = close.rolling(20).std(ddof=0)
    ref = ((close - mean) / std).to_numpy()
    assert np.isnan(got[:19]).all()
    np.testing.assert_allclose(got[19:], ref[19:], rtol=1e-7, atol=1e-9)


def test_zscore_of_a_flat_window_is_nan_not_an_error():
    z = RollingZScore(3)
    assert [math.isnan(z.update(5.0)) for _ in range(5)] == [True] * 5


@pytest.mark.parametrize("period", [0, -1])
def test_bad_periods_are_refused(period):
    with pytest.raises(ValueError, match="period"):
        SMA(period)
    with pytest.raises(ValueError):
        SmaCrossover(3, 3)
    with pytest.raises(ValueError, match="z-score period"):
        RollingZScore(1)


def test_sma_running_sum_stays_exact_over_repeated_decimals():
    # 0.1 + 0.2 + 0.3 repeated: a float running sum drifts, the integer sum is exact
    prices = pd.Series([0.1, 0.2, 0.3] * 1000)
    sma = SMA(3)
    for p in prices:
        sma.update(p)
    assert sma.total == round(0.6 * SCALE)
