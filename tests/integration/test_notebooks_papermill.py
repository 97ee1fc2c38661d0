"""The notebooks as papermill and reviewers use them: parameters from a shell, results read back.

nbval runs every notebook as stored (`--nbval-lax`, see pyproject.toml); this file drives the
strategy template with other parameters, as a scheduler would, and checks the notebooks' shape.
"""
from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import nbformat
import pytest

from qlcore.data import load_sample
from qlcore.engine import BacktestConfig, BacktestEngine
from qlcore.research import read_records
from qlcore.strategies import create_strategy

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").rglob("*.ipynb"))
PAPERMILL = Path(sys.executable).with_name("papermill")


def test_the_notebooks_are_there():
    names = {p.relative_to(ROOT / "notebooks").as_posix() for p in NOTEBOOKS}
    assert {
        "research/01_data_tour.ipynb",
        "research/02_sma_sweep.ipynb",
        "research/03_parity.ipynb",
        "strategies/sma_cross.ipynb",
    } <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_each_notebook_has_parameters_and_checked_stored_outputs(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "one cell tagged 'parameters' (papermill)"
    checked = [c for c in code if c.source.startswith("# NBVAL_CHECK_OUTPUT")]
    assert checked, "key figures are checked by nbval"
    assert all(c.outputs for c in checked), "stored with outputs: nbval compares them"
    assert not any(o.output_type == "error" for c in code for o in c.outputs)


def test_the_strategy_template_runs_from_a_shell_with_other_parameters(tmp_path):
    out = tmp_path / "out.ipynb"
    cmd = [str(PAPERMILL), "notebooks/strategies/sma_cross.ipynb", str(out), "-p", "symbols", '["IBM"]', "-p", "fast", "20"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]

    results = read_records(out)["results"]
    assert results["params"] == {"fast": 20, "slow": 30, "quantity": 100}
    assert results["symbols"] == ["IBM"] and results["mode"] == "backtest"
    engine = BacktestEngine(BacktestConfig(fee_bps=Decimal(10)))
    expected = engine.add_strategy(create_strategy("sma_cross", {"fast": 20, "slow": 30})).run({"IBM": load_sample("IBM")})
    assert Decimal(results["final_equity"]) == expected.final_equity
    assert results["trades"] == expected.metrics.n_trades
    assert results["parity"] == "IDENTICAL"
    assert all(limit["ok"] for limit in results["limits"].values())


def test_the_strategy_template_in_paper_mode_runs_on_the_paper_engine_and_reports_like_a_backtest(tmp_path):
    from qlcore.ops.runner import NotebookRun, run_notebook
    from qlcore.research.paper import run_paper

    out = tmp_path / "out.ipynb"
    params = {"symbols": ["IBM"], "mode": "paper"}
    outcome = run_notebook(NotebookRun(ROOT / "notebooks" / "strategies" / "sma_cross.ipynb", out, params,
                                       timeout_s=600), tmp_path / "run")  # the runner submit and the scheduler use
    assert (outcome.status, outcome.error) == ("succeeded", None)

    results = read_records(out)["results"]
    assert results["mode"] == "paper" and results["symbols"] == ["IBM"]
    paper = run_paper({"IBM": load_sample("IBM")}, "sma_cross", {"fast": 10, "slow": 30, "quantity": 100},
                      initial_cash=100_000, fee_bps=10)
    assert paper.metrics.n_trades > 0
    assert results["trades"] == paper.metrics.n_trades
    assert Decimal(results["final_equity"]) == paper.final_equity
    assert set(results["limits"]) == {"max_drawdown", "max_position_value", "min_trades"}
    plot_cell = nbformat.read(out, as_version=4).cells[7]  # result.plot(): the same plot object as a backtest's
    assert plot_cell.source == "result.plot()" and plot_cell.outputs
