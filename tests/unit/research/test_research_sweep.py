"""Sweeps: the grid, the skipped sets, chunking, and agreement with the event-driven engine."""
from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from qlcore.data import load_sample
from qlcore.engine import BacktestConfig, BacktestEngine
from qlcore.research import METRICS, NoVectorizedFormError, sweep
from qlcore.strategies import UnknownParameterError, create_strategy
from qlcore.strategies.sma_cross import SmaCross


@pytest.fixture(scope="module")
def ibm() -> pd.DataFrame:
    return load_sample("IBM")


def engine_run(name: str, params: dict, df: pd.DataFrame, fee_bps: int):
    engine = BacktestEngine(BacktestConfig(fee_bps=Decimal(fee_bps)))
    return engine.add_strategy(create_strategy(name, params)).run({"IBM": df})


@pytest.mark.parametrize(
    "name, params",
    [
        ("sma_cross", {"fast": 10, "slow": 30}),
        ("sma_cross", {"fast": 5, "slow": 120, "quantity": 250}),
        ("mean_reversion", {"window": 20, "entry_z": 2.0, "exit_z": 0.0}),
        ("mean_reversion", {"window": 60, "entry_z": 1.5, "exit_z": 0.5, "quantity": 40}),
    ],
)
def test_a_sweep_row_equals_the_engine_run_of_that_set(ibm, name, params):
    result = sweep(name, [params], ibm, fee_bps=10, progress=False)
    row = result.table.iloc[0]
    engine = engine_run(name, params, ibm, 10)
    m = engine.metrics
    assert row["final_equity"] == pytest.approx(float(engine.final_equity), rel=1e-9)
    assert row["n_trades"] == m.n_trades and row["n_trades"] > 3
    for metric in ("total_return", "cagr", "sharpe", "max_drawdown", "win_rate"):
        assert row[metric] == pytest.approx(getattr(m, metric), rel=1e-9), metric
    assert row["fees"] == pytest.approx(float(sum(engine.fills["fee"], Decimal(0))), rel=1e-9)
    assert not row["ruined"]


def test_the_table_is_tidy_one_row_per_symbol_and_set(ibm):
    msft = load_sample("MSFT")
    result = sweep("sma_cross", {"fast": [5, 10], "slow": [20, 40, 60]}, {"IBM": ibm, "MSFT": msft}, progress=False)
    assert list(result.table.columns) == ["symbol", "fast", "slow", *METRICS, "ruined"]
    assert len(result.table) == 2 * 6
    assert result.table.groupby("symbol").size().to_dict() == {"IBM": 6, "MSFT": 6}
    assert result.bars == {"IBM": len(ibm), "MSFT": len(msft)}


def test_invalid_sets_are_skipped_and_reported_with_the_reason(ibm):
    result = sweep("sma_cross", {"fast": [10, 30, 50], "slow": [30, 40]}, ibm, progress=False)
    assert sorted(zip(result.table["fast"], result.table["slow"], strict=True)) == [(10, 30), (10, 40), (30, 40)]
    skipped = sorted(zip(result.skipped["fast"], result.skipped["slow"], strict=True))
    assert skipped == [(30, 30), (50, 30), (50, 40)]
    assert result.skipped["reason"].str.contains("must be below slow").all()


def test_unknown_parameters_raise_with_the_valid_names(ibm):
    with pytest.raises(UnknownParameterError, match=r"unknown parameter\(s\) fats; valid parameters: fast .*slow .*quantity"):
        sweep("sma_cross", {"fats": [5], "slow": [20]}, ibm, progress=False)


def test_a_strategy_without_a_vectorized_form_is_refused_by_name(ibm):
    with pytest.raises(NoVectorizedFormError, match=r"rebalance has no vectorized form.*mean_reversion, sma_cross"):
        sweep("rebalance", {"every": [5]}, ibm, progress=False)


def test_chunks_do_not_change_the_results(ibm):
    grid = {"fast": range(2, 30, 3), "slow": range(20, 80, 7)}
    whole = sweep("sma_cross", grid, ibm, fee_bps=5, progress=False)
    chunked = sweep("sma_cross", grid, ibm, fee_bps=5, chunk_size=7, progress=False)
    pd.testing.assert_frame_equal(whole.table, chunked.table)


def test_a_subclass_with_its_own_vectorized_form_takes_the_generic_path(ibm):
    class Mirror(SmaCross):
        name = "mirror"

        @classmethod
        def vectorized_signals(cls, close, **params):
            return super().vectorized_signals(close, **params)

    grid = {"fast": [3, 8], "slow": [21, 55]}
    fast_path = sweep("sma_cross", grid, ibm, progress=False).table.drop(columns="symbol")
    generic = sweep(Mirror, grid, ibm, progress=False).table.drop(columns="symbol")
    pd.testing.assert_frame_equal(fast_path, generic)


def test_best_ranks_by_the_metric_and_best_params_are_plain_values(ibm):
    result = sweep("sma_cross", {"fast": [5, 10, 20], "slow": [30, 60]}, ibm, metric="total_return", top=2, progress=False)
    best = result.best()
    assert len(best) == 2
    assert best["total_return"].iloc[0] == result.table["total_return"].max()
    by_sharpe = result.best("sharpe", 6)
    assert list(by_sharpe["sharpe"]) == sorted(result.table["sharpe"], reverse=True)
    params = result.best_params()
    assert params == {"fast": int(best["fast"].iloc[0]), "slow": int(best["slow"].iloc[0])}
    assert all(type(v) is int for v in params.values())
    with pytest.raises(KeyError, match="unknown metric 'sortino'"):
        result.best("sortino")


def test_fraction_of_equity_buys_whole_shares_on_the_same_signals():
    from qlcore.data import synthetic_bars

    bars = synthetic_bars(2_000, freq="1D", seed=4)  # prices in whole cents
    fixed = sweep("sma_cross", [{"fast": 10, "slow": 30}], bars, progress=False).table.iloc[0]
    half = sweep("sma_cross", [{"fast": 10, "slow": 30}], bars, fraction=0.5, progress=False).table.iloc[0]
    assert half["n_trades"] == fixed["n_trades"] > 10
    assert half["final_equity"] != fixed["final_equity"]
    # with no fees, whole shares at whole cents keep the equity on the cent grid
    assert half["final_equity"] * 100 == pytest.approx(round(half["final_equity"] * 100), abs=1e-4)
    with pytest.raises(ValueError, match="quantity or fraction, not both"):
        sweep("sma_cross", [{"fast": 10, "slow": 30}], bars, fraction=0.5, quantity=10, progress=False)


def test_the_html_summary_names_the_top_sets_and_the_skipped_count(ibm):
    result = sweep("sma_cross", {"fast": [5, 40], "slow": [30]}, ibm, progress=False)
    page = result._repr_html_()
    assert "1 parameter sets skipped" in page and "must be below slow" in page
    assert "top 1 by sharpe" in page


def test_the_heatmap_refuses_a_parameter_that_was_not_swept(ibm):
    result = sweep("sma_cross", {"fast": [5, 10], "slow": [30, 60]}, ibm, progress=False)
    heatmap = result.heatmap("fast", "slow")
    assert heatmap.data.shape == (4, 3)
    assert not math.isnan(heatmap.data["sharpe"].iloc[0])
    with pytest.raises(KeyError, match="'quantity' was not swept"):
        result.heatmap("fast", "quantity")


def test_mean_reversion_sweep_shares_one_zscore_per_window(ibm):
    grid = {"window": [10, 20], "entry_z": [1.0, 2.0], "exit_z": [0.0, 0.5]}
    result = sweep("mean_reversion", grid, ibm, progress=False)
    assert len(result.table) == 8 and result.skipped.empty
    one = sweep("mean_reversion", [{"window": 20, "entry_z": 2.0, "exit_z": 0.5}], ibm, progress=False).table
    row = result.table[(result.table.window == 20) & (result.table.entry_z == 2.0) & (result.table.exit_z == 0.5)]
    np.testing.assert_array_equal(row[list(METRICS)].to_numpy(), one[list(METRICS)].to_numpy())
