"""Every built-in strategy with a vectorized form trades identically in vectorbt and the engine.

On every embedded symbol and on the daily files in ../shared/data, for a few parameter sets each,
with and without fees: identical trades (times, prices, quantities, fees) and final equity equal to
1e-9 relative.
"""
from __future__ import annotations

from decimal import Decimal

import pytest

from qlcore.data import SAMPLE_SYMBOLS, load_csv, load_sample
from qlcore.research import has_vectorized_form, parity, sweep
from qlcore.strategies import BUILTINS

DAILY_FILES = ("orcl-1995-2014-daily.csv", "nvda-1999-2014-daily.csv", "yhoo-1996-2015-daily.csv")
CASES = {
    "sma_cross": [
        ({"fast": 10, "slow": 30}, 10),
        ({"fast": 5, "slow": 50, "quantity": 37}, 0),
        ({"fast": 20, "slow": 100}, 25),
    ],
    "mean_reversion": [
        ({"window": 20, "entry_z": 2.0, "exit_z": 0.0}, 10),
        ({"window": 10, "entry_z": 1.0, "exit_z": 0.5, "quantity": 13}, 0),
        ({"window": 50, "entry_z": 1.5, "exit_z": -0.5}, 5),
    ],
}


def test_the_cases_cover_every_builtin_with_a_vectorized_form():
    assert {name for name, cls in BUILTINS.items() if has_vectorized_form(cls)} == set(CASES)
    assert not has_vectorized_form(BUILTINS["rebalance"])


def check(strategy: str, frame, symbol: str) -> None:
    for params, fee_bps in CASES[strategy]:
        report = parity(strategy, params, {symbol: frame}, fee_bps=fee_bps)
        assert report.ok, report.summary()
        n_engine, n_vbt = report.trade_counts
        assert n_engine == n_vbt > 0, report.summary()


@pytest.mark.parametrize("strategy", sorted(CASES))
@pytest.mark.parametrize("symbol", SAMPLE_SYMBOLS)
def test_parity_on_the_embedded_samples(strategy, symbol):
    check(strategy, load_sample(symbol), symbol)


@pytest.mark.shared_data
@pytest.mark.parametrize("strategy", sorted(CASES))
@pytest.mark.parametrize("filename", DAILY_FILES)
def test_parity_on_the_shared_daily_files(strategy, filename, shared_data):
    frame = load_csv(shared_data / filename)
    check(strategy, frame, frame.attrs["symbol"])


def test_parity_on_several_symbols_in_one_account():
    frames = {s: load_sample(s) for s in SAMPLE_SYMBOLS}
    report = parity("sma_cross", {"fast": 10, "slow": 40}, frames, fee_bps=10)
    assert report.ok, report.summary()
    assert set(report.table["symbol"]) == set(SAMPLE_SYMBOLS)


@pytest.mark.shared_data
def test_a_sweep_row_on_a_shared_file_equals_the_engines_final_equity(shared_data):
    frame = load_csv(shared_data / "orcl-1995-2014-daily.csv")
    grid = {"fast": [5, 10, 20], "slow": [30, 60]}
    result = sweep("sma_cross", grid, frame, fee_bps=10, progress=False)
    for row in result.table.itertuples():
        report = parity("sma_cross", {"fast": row.fast, "slow": row.slow}, frame, fee_bps=10)
        assert report.ok
        assert row.final_equity == pytest.approx(float(report.engine_final_equity), rel=1e-9)
        assert row.n_trades == sum(report.table["exit_ts_engine"].notna())
        assert isinstance(report.engine_final_equity, Decimal)
