"""Parity reports: the verdict, the first differing trade, and that the check can fail."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from qlcore.data import load_sample
from qlcore.research import Conventions, NoVectorizedFormError, compare_trades, parity
from qlcore.strategies import InvalidParameterError
from qlcore.strategies.sma_cross import SmaCross


@pytest.fixture(scope="module")
def ibm() -> pd.DataFrame:
    return load_sample("IBM")


class SkipsThirdEntry(SmaCross):
    """Broken on purpose, on the vectorbt side only: its vectorized form drops the third entry."""

    name = "skips_third_entry"

    @classmethod
    def vectorized_signals(cls, close, **params):
        entries, exits = super().vectorized_signals(close, **params)
        entries = entries.copy()
        entries[np.flatnonzero(entries)[2]] = False
        return entries, exits


def test_sma_cross_on_ibm_is_identical_trade_for_trade(ibm):
    report = parity("sma_cross", {"fast": 10, "slow": 30}, ibm, fee_bps=10)
    assert report.ok and report.verdict == "IDENTICAL"
    assert report.first_difference is None and report.differences.empty
    n_engine, n_vbt = report.trade_counts
    assert n_engine == n_vbt == len(report.table) > 20
    assert report.equity_rel_diff <= 1e-9
    assert report.equity["engine"].to_numpy() == pytest.approx(report.equity["vectorbt"].to_numpy(), rel=1e-9)


def test_filling_at_the_signal_bars_close_in_vectorbt_only_fails_at_the_first_trade(ibm):
    report = parity("sma_cross", {"fast": 10, "slow": 30}, ibm, fee_bps=10, conventions=Conventions(signal_delay=0, price="close"))
    assert not report.ok and report.verdict == "DIFFERENT"
    first = report.first_difference
    assert first is not None and first.index == 0 and first.number == 1
    assert {"entry_ts", "entry_price"} <= set(first.fields)
    # vectorbt now buys a bar earlier, at that bar's close
    engine_entry = pd.Timestamp(first.engine["entry_ts"])
    vbt_entry = pd.Timestamp(first.vectorbt["entry_ts"])
    assert vbt_entry == ibm.index[ibm.index.get_loc(engine_entry) - 1]
    assert first.vectorbt["entry_price"] == ibm["close"].loc[vbt_entry]
    assert first.engine["entry_price"] == ibm["open"].loc[engine_entry]


def test_a_strategy_whose_vectorized_form_drops_an_entry_fails_at_that_trade(ibm):
    report = parity(SkipsThirdEntry, {"fast": 10, "slow": 30}, ibm)
    assert not report.ok
    first = report.first_difference
    assert first.index == 2, str(first)  # the third trade: the first two still match
    assert report.table["match"].iloc[:2].all()
    assert "entry_ts" in first.fields
    n_engine, n_vbt = report.trade_counts
    assert n_engine == n_vbt + 1
    assert "first difference: trade #3 (IBM): entry_ts engine" in report.summary()


def test_the_html_table_highlights_the_first_differing_row(ibm):
    report = parity(SkipsThirdEntry, {"fast": 10, "slow": 30}, ibm)
    page = report._repr_html_()
    assert "parity DIFFERENT" in page
    highlighted = page.split("<tr class='first'>")[1].split("</tr>")[0]
    assert highlighted.startswith("<td>3</td><td>IBM</td>")
    assert page.count("<tr class='first'>") == 1
    assert "first difference: trade #3" in page


def test_the_plot_overlays_both_equity_curves(ibm):
    import holoviews as hv

    report = parity(SkipsThirdEntry, {"fast": 10, "slow": 30}, ibm)
    plot = report.plot()
    curves = [el for el in plot if isinstance(el, hv.Curve)]
    assert [c.label for c in curves] == ["event-driven engine", "vectorbt"]
    assert any(isinstance(el, hv.VLine) for el in plot)  # marks the first difference


def test_a_report_is_json_ready(ibm):
    report = parity("mean_reversion", {"window": 20}, ibm, fee_bps=5)
    data = json.loads(report.to_json())
    assert data["ok"] is True and data["first_difference"] is None
    assert data["trades_engine"] == data["trades_vectorbt"] > 5
    assert data["engine_final_equity"] == str(report.engine_final_equity)


def test_an_order_vectorbt_cannot_afford_is_a_difference_with_a_note(ibm):
    # 2,000 IBM shares cost more than the cash: the engine's cash account denies the order whole
    # (buying_power), vectorbt buys what the cash allows
    report = parity("sma_cross", {"fast": 10, "slow": 30}, ibm, quantity=2_000)
    assert not report.ok
    assert report.first_difference.fields == ("trade",) and report.first_difference.engine["quantity"] is None
    assert any("for lack of cash" in note and "denies such an order whole" in note for note in report.notes)


def test_bad_requests_are_refused_before_any_run(ibm):
    with pytest.raises(NoVectorizedFormError, match="rebalance has no vectorized form"):
        parity("rebalance", {}, ibm)
    with pytest.raises(InvalidParameterError, match="must be below slow"):
        parity("sma_cross", {"fast": 50, "slow": 20}, ibm)
    from qlcore.engine.config import ConfigError

    with pytest.raises(ConfigError, match="fee_bps"):
        parity("sma_cross", {}, ibm, fee_bps="ten")


def test_compare_trades_reports_a_missing_trade_as_a_whole_trade_difference():
    trades = pd.DataFrame(
        {
            "symbol": ["X", "X"],
            "entry_ts": pd.to_datetime(["2020-01-02", "2020-02-03"]),
            "exit_ts": pd.to_datetime(["2020-01-10", pd.NaT]),
            "quantity": [10.0, 10.0],
            "entry_price": [1.5, 1.25],
            "exit_price": [1.75, np.nan],
            "fees": [0.01, 0.005],
            "closed": [True, False],
        }
    )
    table = compare_trades(trades, trades.iloc[:1])
    assert table["match"].tolist() == [True, False]
    assert table["differs"].iloc[1] == "trade"
    slightly = trades.assign(fees=trades["fees"] * (1 + 1e-12))
    assert compare_trades(trades, slightly)["match"].all()  # fees within 1e-9 relative
    moved = trades.assign(entry_price=[1.5, 1.2500001])
    assert compare_trades(trades, moved)["differs"].tolist() == ["", "entry_price"]
