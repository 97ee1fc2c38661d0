"""Synthetic bars: deterministic, valid, on the tick grid, fast."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qlcore.data import check_bars, synthetic_bars, validate_bars


def test_same_seed_gives_the_same_frame_bit_for_bit():
    a, b = synthetic_bars(5000, seed=42), synthetic_bars(5000, seed=42)
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert a.to_numpy().tobytes() == b.to_numpy().tobytes()
    assert a.attrs == b.attrs


def test_different_seeds_give_different_frames():
    a, b = synthetic_bars(1000, seed=1), synthetic_bars(1000, seed=2)
    assert not np.array_equal(a["close"].to_numpy(), b["close"].to_numpy())
    assert a.attrs["sha256"] != b.attrs["sha256"]
    assert (a.attrs["source"], b.attrs["source"]) == ("synthetic:seed=1", "synthetic:seed=2")


def test_hundred_thousand_bars_are_valid_ohlc():
    df = synthetic_bars(100_000, seed=3)
    o, h, lo, c, v = (df[col].to_numpy() for col in ("open", "high", "low", "close", "volume"))
    assert (lo > 0).all()
    assert (lo <= np.minimum(o, c)).all() and (np.maximum(o, c) <= h).all()
    assert (v >= 0).all() and (v == np.floor(v)).all()
    assert check_bars(df) == []


def test_prices_sit_on_the_tick_grid():
    df = synthetic_bars(20_000, seed=5, tick=0.01)
    prices = df[["open", "high", "low", "close"]].to_numpy()
    # exactly the double a two-decimal literal would give, e.g. float("100.01")
    assert np.array_equal(prices, np.round(prices, 2))
    quarter = synthetic_bars(20_000, seed=5, tick=0.25, start_price=4000.0)
    assert (np.mod(quarter[["open", "high", "low", "close"]].to_numpy(), 0.25) == 0).all()


def test_prices_never_fall_below_one_tick():
    df = synthetic_bars(10_000, seed=0, start_price=0.02, tick=0.01)
    assert df[["open", "high", "low", "close"]].to_numpy().min() >= 0.01


def test_each_bar_opens_at_the_previous_close():
    df = synthetic_bars(1000, seed=9, start_price=250.0)
    assert df["open"].iloc[0] == 250.0
    assert np.array_equal(df["open"].to_numpy()[1:], df["close"].to_numpy()[:-1])


def test_timestamps_are_regular_at_the_frequency():
    df = synthetic_bars(500, freq="5min", start="2021-03-01 10:00")
    assert df.index[0] == pd.Timestamp("2021-03-01 10:00")
    assert (np.diff(df.index.asi8) == pd.Timedelta("5min").value).all()
    assert df.index.name == "ts" and df.index.dtype == "datetime64[ns]"
    assert df.attrs["frequency"] == "5min"
    assert synthetic_bars(30, freq="1D").attrs["frequency"] == "1D"


def test_symbol_and_attrs():
    df = synthetic_bars(10, symbol="XYZ")
    assert df.attrs["symbol"] == "XYZ"
    assert set(df.attrs) == {"symbol", "source", "sha256", "frequency"}
    assert len(df.attrs["sha256"]) == 64


@pytest.mark.parametrize(
    "kwargs",
    [{"n": 0}, {"n": -5}, {"n": 2.5}, {"n": 10, "tick": 0}, {"n": 10, "start_price": -1.0}],
)
def test_bad_arguments_are_rejected(kwargs):
    with pytest.raises(ValueError):
        synthetic_bars(**kwargs)


def test_a_million_bars_are_made():  # the time it takes: benchmarks/bench_data.py
    df = synthetic_bars(1_000_000)
    assert len(df) == 1_000_000 and df.index.is_unique


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(min_value=1, max_value=400),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    freq=st.sampled_from(["1s", "1min", "5min", "1h", "1D"]),
    start_price=st.floats(min_value=0.001, max_value=1e6, allow_nan=False),
    tick=st.sampled_from([0.0001, 0.01, 0.05, 0.25, 1.0, 5.0]),
)
def test_any_generated_frame_passes_validation(n, seed, freq, start_price, tick):
    df = synthetic_bars(n, seed=seed, freq=freq, start_price=start_price, tick=tick)
    validate_bars(df)
    assert len(df) == n
    assert (df[["open", "high", "low", "close"]].to_numpy() >= tick).all()
