"""Paper equals backtest: the paper engine on the replay feed makes the backtest's fills, to the cent.

Every embedded sample, every built-in strategy that applies (sma_cross and mean_reversion on each
symbol alone, rebalance on all four in one account), with fees, a minimum fee and slippage; and
`qlcore parity --paper` as a user runs it (exit 0 identical, 1 different, 2 bad input; recorded).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from qlcore.data.sample import SAMPLE_SYMBOLS
from qlcore.engine import BacktestConfig
from qlcore.research.paper_parity import PaperParityReport, paper_parity
from qlcore.store.db import connect
from qlcore.store.runs import list_parity
from qlcore.ui.readmodel import ReadModel

QLCORE = Path(sys.executable).with_name("qlcore")
COSTS = BacktestConfig(initial_cash=Decimal(100_000), fee_bps=Decimal(10), min_fee=Decimal(1), slippage_bps=Decimal(5))
CASES = [
    pytest.param("sma_cross", {"fast": 10, "slow": 30}, (symbol,), id=f"sma_cross-{symbol}") for symbol in SAMPLE_SYMBOLS
] + [
    pytest.param("mean_reversion", {"window": 20}, (symbol,), id=f"mean_reversion-{symbol}") for symbol in SAMPLE_SYMBOLS
] + [pytest.param("rebalance", {"every": 21}, SAMPLE_SYMBOLS, id="rebalance-all")]


@pytest.fixture(autouse=True)
def _no_fsync(monkeypatch):
    # the paper engine's store and ledger are thrown away after each check: durability is not tested here
    monkeypatch.setenv("QLCORE_SQLITE_SYNC", "NORMAL")


def assert_identical(report: PaperParityReport) -> None:
    assert report.ok, report.summary()
    assert report.differing_fills == [] and report.paper_fills == report.backtest_fills
    assert report.paper_final_equity == report.backtest_final_equity  # exactly, not only to the cent
    assert len(report.paper_fills) >= 10, "too few fills for the comparison to mean anything"


@pytest.mark.parametrize(("strategy", "params", "symbols"), CASES)
def test_the_paper_engine_makes_the_backtests_fills_on_each_sample(strategy, params, symbols, tmp_path):
    report = paper_parity(strategy, params, list(symbols), config=COSTS, workdir=tmp_path)
    assert_identical(report)
    assert report.symbols == list(symbols)
    assert all(fill[5] >= Decimal(1) for fill in report.paper_fills)  # fees charged, at least the minimum


def test_bars_the_gate_quarantines_are_named_and_left_out_of_both_sides(tmp_path):
    report = paper_parity("sma_cross", {"fast": 10, "slow": 30}, ["AAPL"], workdir=tmp_path)
    assert_identical(report)
    # the sample's real crash of 2000-09-29 reads as a spike to the gate
    assert report.quarantined[0].startswith("AAPL 2000-09-29: spike")
    assert report.bars + len(report.quarantined) == 3270


def test_a_differing_fill_is_named_with_both_sides():
    fill = (946857600000000000, "IBM", "BUY", Decimal(100), Decimal("10.5"), Decimal("1.05"))
    other = (*fill[:4], Decimal("10.51"), fill[5])
    report = PaperParityReport("sma_cross", {}, ["IBM"], BacktestConfig(), [fill, fill], [fill, other],
                               Decimal("1000.00"), Decimal("999.00"), bars=2)
    assert not report.ok and report.differing_fills == [1]
    assert report.max_fill_difference == Decimal("1.00") and report.equity_difference == Decimal("1.00")
    assert report.first_difference() == ("fill #2: backtest 2000-01-03 IBM BUY 100 @ 10.5 fee 1.05 vs paper "
                                         "2000-01-03 IBM BUY 100 @ 10.51 fee 1.05")
    assert report.to_dict()["verdict"] == "DIFFERENT"


FIRST_RUN_ONLY = '''
from qlcore.strategies.base import Strategy


class FirstRunOnly(Strategy):
    """Buys on its first five bars, in the first run of the process only: the paper engine runs first."""

    name = "first_run_only"
    runs = 0

    def on_start(self):
        type(self).runs += 1
        self.bars = 0

    def on_bar(self, bar):
        self.bars += 1
        if type(self).runs == 1 and self.bars <= 5:
            self.buy(1)
'''


def qlcore(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, QLCORE_DB_URL=f"sqlite:///{cwd / 'q.db'}", QLCORE_USER="alice")
    env["QLCORE_STRATEGIES_DIR"] = str(cwd)  # the project's strategies folder, where `module:Class` strategies load from
    return subprocess.run([str(QLCORE), "parity", "--paper", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=600)


def test_qlcore_parity_paper_exits_0_and_records_the_verdict(tmp_path):
    proc = qlcore("-s", "mean_reversion", "--symbols", "IBM", "--fee-bps", "10", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)
    assert shown["verdict"] == "IDENTICAL" and shown["trades_paper"] == shown["trades_backtest"] > 10
    assert shown["paper_final_equity"] == shown["backtest_final_equity"] and shown["equity_difference"] == "0"
    [record] = list_parity(connect(f"sqlite:///{tmp_path / 'q.db'}"))
    assert (record.user, record.strategy, record.symbols, record.verdict) == ("alice", "mean_reversion", ["IBM"], "IDENTICAL")
    assert record.report["kind"] == "paper" and record.report["fee_bps"] == 10
    [shown_on_page] = ReadModel(engine=connect(f"sqlite:///{tmp_path / 'q.db'}")).parity_verdicts()
    n = shown["trades_paper"]
    assert (shown_on_page["source"], shown_on_page["verdict"]) == ("qlcore parity --paper", "IDENTICAL")
    assert shown_on_page["detail"] == f"trades backtest {n}, paper {n}, differing 0"


def test_qlcore_parity_paper_exits_1_when_the_sides_trade_differently(tmp_path):
    (tmp_path / "probe_strategies.py").write_text(FIRST_RUN_ONLY)
    proc = qlcore("-s", "probe_strategies:FirstRunOnly", "--symbols", "IBM", "--start", "2010-01-01", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.startswith("paper parity DIFFERENT: first_run_only() on IBM")
    assert "fills         backtest 0, paper 5, differing 5" in proc.stdout
    [record] = list_parity(connect(f"sqlite:///{tmp_path / 'q.db'}"))
    assert record.verdict == "DIFFERENT"


def test_qlcore_parity_paper_exits_2_on_bad_input_and_stores_nothing(tmp_path):
    proc = qlcore("-s", "sma_cross", "--symbols", "IBM", "--slippage-bps", "-1", cwd=tmp_path)
    assert proc.returncode == 2 and "slippage_bps" in proc.stderr
    proc = qlcore("-s", "sma_cross", "--symbols", "IBM", "--param", "fast=50", "--param", "slow=20", cwd=tmp_path)
    assert proc.returncode == 2 and "fast (50) must be below slow (20)" in proc.stderr
    assert not (tmp_path / "q.db").exists() or list_parity(connect(f"sqlite:///{tmp_path / 'q.db'}")) == []
