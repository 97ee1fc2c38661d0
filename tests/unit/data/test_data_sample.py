"""The embedded bokeh-sampledata stocks load as valid canonical frames."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from qlcore.data import SAMPLE_SYMBOLS, UnknownSymbolError, check_bars, load_sample
from qlcore.data.pipeline import csv_digest

# symbol -> (rows, first date, first close, last date, last close)
EXPECTED = {
    "AAPL": (3270, "2000-03-01", 130.31, "2013-03-01", 430.47),
    "GOOG": (2148, "2004-08-19", 100.335, "2013-03-01", 806.19),
    "IBM": (3270, "2000-03-01", 100.25, "2013-03-01", 202.91),
    "MSFT": (3270, "2000-03-01", 90.81, "2013-03-01", 27.95),
}


def test_sample_symbols_are_the_four_stocks():
    assert SAMPLE_SYMBOLS == ("AAPL", "GOOG", "IBM", "MSFT")


@pytest.mark.parametrize("symbol", SAMPLE_SYMBOLS)
def test_sample_loads_valid_with_known_span_and_closes(symbol):
    rows, first, first_close, last, last_close = EXPECTED[symbol]
    df = load_sample(symbol, adjusted=False)
    assert check_bars(df) == []
    assert len(df) == rows
    assert (df.index[0], df["close"].iloc[0]) == (pd.Timestamp(first), first_close)
    assert (df.index[-1], df["close"].iloc[-1]) == (pd.Timestamp(last), last_close)
    assert list(df.columns) == ["open", "high", "low", "close", "volume"]
    assert (df.dtypes == np.float64).all()
    assert df.index.name == "ts" and df.index.tz is None
    assert df.attrs == {
        "symbol": symbol,
        "source": f"sample:{symbol}:raw",
        "sha256": csv_digest(df),
        "frequency": "1D",
    }


def test_raw_sample_keeps_the_split_as_a_halving():
    from bokeh.sampledata.stocks import AAPL

    df = load_sample("AAPL", adjusted=False)
    assert df["close"].iloc[0] == AAPL["close"][0] != AAPL["adj_close"][0]
    # raw prices keep the 2:1 split of 2005-02-28 as a halving
    assert df.loc["2005-02-28", "close"] / df.loc["2005-02-25", "close"] == pytest.approx(
        0.504, abs=1e-3
    )


@pytest.mark.parametrize("symbol", SAMPLE_SYMBOLS)
def test_adjusted_sample_scales_ohlc_by_the_published_adjustment(symbol):
    from bokeh.sampledata import stocks

    raw_data = getattr(stocks, symbol)
    df = load_sample(symbol)
    raw = load_sample(symbol, adjusted=False)
    assert check_bars(df) == []
    assert df.attrs["source"] == f"sample:{symbol}"
    np.testing.assert_allclose(df["close"].to_numpy(), np.round(raw_data["adj_close"], 6), atol=1e-6)
    factor = df["close"] / raw["close"]
    for col in ("open", "high", "low"):
        np.testing.assert_allclose(df[col], raw[col] * factor, atol=1.01e-6)
    assert (df["volume"] == raw["volume"]).all()


def test_adjusted_sample_has_no_split_halving():
    df = load_sample("AAPL")
    assert df.loc["2005-02-28", "close"] / df.loc["2005-02-25", "close"] == pytest.approx(1.0082, abs=1e-3)


def test_sample_digest_is_stable_across_loads():
    assert load_sample("IBM").attrs["sha256"] == load_sample("IBM").attrs["sha256"]


def test_sample_cache_hands_out_independent_copies():
    first = load_sample("MSFT", adjusted=False)
    first.iloc[0, 0] = -1.0
    first.attrs["symbol"] = "CHANGED"
    again = load_sample("MSFT", adjusted=False)
    assert again.iloc[0, 0] == 89.62
    assert again.attrs["symbol"] == "MSFT"


def test_sample_symbol_is_case_insensitive():
    assert load_sample("goog").attrs["symbol"] == "GOOG"


def test_unknown_sample_symbol_lists_the_valid_ones():
    with pytest.raises(UnknownSymbolError) as caught:
        load_sample("TSLA")
    message = str(caught.value)
    assert "'TSLA'" in message
    assert all(symbol in message for symbol in SAMPLE_SYMBOLS)
    assert isinstance(caught.value, KeyError)
    assert caught.value.valid == SAMPLE_SYMBOLS
