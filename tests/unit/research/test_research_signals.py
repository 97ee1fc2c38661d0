"""Vectorized signals against the incremental indicators, bar by bar, on paths full of ties."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qlcore.research.signals import signal_matrices
from qlcore.strategies.indicators import SCALE, RollingZScore, SmaCrossover
from qlcore.strategies.mean_reversion import MeanReversion
from qlcore.strategies.sma_cross import SmaCross, check_int64_bound, scaled_closes

# few distinct prices: equal averages, flat windows and touches happen all the time
TICKS = [10.0, 10.01, 10.02, 10.03, 9.99, 10.5, 0.1, 0.3]
paths_with_ties = st.lists(st.sampled_from(TICKS), min_size=1, max_size=150)
windows = st.tuples(st.integers(1, 12), st.integers(1, 25)).map(lambda p: (p[0], p[0] + p[1]))


def incremental_cross(prices: list[float], fast: int, slow: int) -> np.ndarray:
    ind = SmaCrossover(fast, slow)
    return np.array([ind.update(round(p * SCALE)) for p in prices], dtype=int)


def incremental_zscore(prices: list[float], window: int) -> np.ndarray:
    z = RollingZScore(window)
    return np.array([z.update(p) for p in prices])


def same_floats(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal bit for bit, NaN where the other is NaN."""
    return bool(((a == b) | (np.isnan(a) & np.isnan(b))).all())


@settings(max_examples=300, deadline=None)
@given(prices=paths_with_ties, pair=windows)
def test_sma_cross_vectorized_signals_equal_the_incremental_crossover(prices, pair):
    fast, slow = pair
    signal = incremental_cross(prices, fast, slow)
    entries, exits = SmaCross.vectorized_signals(np.array(prices), fast=fast, slow=slow)
    np.testing.assert_array_equal(entries, signal > 0)
    np.testing.assert_array_equal(exits, signal < 0)


@settings(max_examples=100, deadline=None)
@given(prices=paths_with_ties, pairs=st.lists(windows, min_size=1, max_size=6), delay=st.integers(0, 2))
def test_the_batch_kernel_equals_the_classmethod_column_by_column(prices, pairs, delay):
    close = np.array(prices)
    sets = pd.DataFrame({"fast": [f for f, _ in pairs], "slow": [s for _, s in pairs]})
    entries, exits = signal_matrices(SmaCross, close, sets, delay)
    assert entries.flags.f_contiguous and entries.shape == (len(close), len(pairs))
    for j, (fast, slow) in enumerate(pairs):
        e, x = SmaCross.vectorized_signals(close, fast=fast, slow=slow)
        expected_e = np.r_[np.zeros(delay, bool), e][: len(close)]
        expected_x = np.r_[np.zeros(delay, bool), x][: len(close)]
        np.testing.assert_array_equal(entries[:, j], expected_e)
        np.testing.assert_array_equal(exits[:, j], expected_x)


@settings(max_examples=300, deadline=None)
@given(prices=paths_with_ties, window=st.integers(2, 30))
def test_vectorized_zscore_equals_the_incremental_zscore_bit_for_bit(prices, window):
    expected = incremental_zscore(prices, window)
    got = MeanReversion.vectorized_zscore(np.array(prices), window)
    assert same_floats(got, expected)


@settings(max_examples=100, deadline=None)
@given(prices=paths_with_ties, window=st.integers(2, 15), entry=st.sampled_from([0.0, 0.5, 1.0, 2.0]), gap=st.sampled_from([0.0, 0.5, 3.0]))
def test_mean_reversion_signals_are_the_thresholds_of_the_zscore(prices, window, entry, gap):
    z = incremental_zscore(prices, window)
    entries, exits = MeanReversion.vectorized_signals(np.array(prices), window=window, entry_z=entry, exit_z=entry - gap)
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(entries, z < -entry)
        np.testing.assert_array_equal(exits, z > -(entry - gap))


def test_zscore_is_exact_where_int64_would_overflow_the_variance():
    # a $60,000 stock moving by dollars: n * spread over 6e9 in units of 1e-6, so n*s2 - s1^2
    # passes 2**63 and those windows take the Python-integer path
    rng = np.random.default_rng(7)
    prices = list(np.round(60_000 + np.cumsum(rng.normal(0, 400, 400)), 2))
    window = 40
    x = scaled_closes(np.array(prices))
    spreads = [x[k : k + window].max() - x[k : k + window].min() for k in range(len(x) - window + 1)]
    assert max(window * s for s in spreads) > 6e9  # the exact fallback is exercised
    got = MeanReversion.vectorized_zscore(np.array(prices), window)
    assert same_floats(got, incremental_zscore(prices, window))


def test_cross_signals_stay_exact_when_the_int64_products_wrap():
    # around $1,000,000 the window sums times the other window's length pass 2**63 and wrap;
    # their difference does not, so the sign, and every signal, is still exact
    t = np.arange(9_000)
    prices = list(np.round(1_000_000 + 500 * np.sin(2 * np.pi * t / 2_500), 2))
    fast, slow = 3_000, 4_000
    assert round(1_000_000 * SCALE) * fast * slow > 2**63
    signal = incremental_cross(prices, fast, slow)
    entries, exits = SmaCross.vectorized_signals(np.array(prices), fast=fast, slow=slow)
    assert (signal != 0).any()
    np.testing.assert_array_equal(entries, signal > 0)
    np.testing.assert_array_equal(exits, signal < 0)


def test_cross_signals_refuse_windows_and_prices_beyond_the_exact_bound():
    x = scaled_closes(np.array([1.0, 1_000_000.0]))
    with pytest.raises(OverflowError, match="exceeds int64"):
        check_int64_bound(x, 3_000, 4_000)


def test_scaling_rounds_half_to_even_like_python_round():
    closes = np.array([0.0000005, 0.0000015, 2.5e-6, 10.0000005, 123.456789, 1e-7])
    assert scaled_closes(closes).tolist() == [round(c * SCALE) for c in closes]


@pytest.mark.parametrize("bad", [math.nan, math.inf, 1e14])
def test_scaling_names_the_bar_it_cannot_represent(bad):
    with pytest.raises(ValueError, match=r"close\[1\]"):
        scaled_closes(np.array([1.0, bad]))


def test_vectorized_signals_check_parameters_like_the_engine():
    from qlcore.strategies import InvalidParameterError, UnknownParameterError

    with pytest.raises(InvalidParameterError, match=r"fast .* must be below slow"):
        SmaCross.vectorized_signals(np.ones(50), fast=30, slow=10)
    with pytest.raises(UnknownParameterError, match="valid parameters: fast"):
        SmaCross.vectorized_signals(np.ones(50), fats=3)
