"""Notebook helpers: parameters as papermill passes them, recorded results, limits, modes."""
from __future__ import annotations

from decimal import Decimal

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output

from qlcore.data import load_sample
from qlcore.engine import BacktestConfig, BacktestEngine
from qlcore.research import (
    RECORD_MIME,
    as_dict,
    as_list,
    check_limits,
    check_mode,
    data_summary,
    project_path,
    read_records,
)
from qlcore.research.notebook import jsonable
from qlcore.strategies import create_strategy


@pytest.mark.parametrize(
    "value, expected",
    [(["IBM"], ["IBM"]), ('["IBM", "MSFT"]', ["IBM", "MSFT"]), ("IBM, MSFT", ["IBM", "MSFT"]), ("IBM", ["IBM"]), (None, []), (("A",), ["A"])],
)
def test_list_parameters_accept_what_papermill_passes(value, expected):
    assert as_list(value) == expected


def test_dict_parameters_accept_json_text():
    assert as_dict('{"fast": 20, "slow": 60}') == {"fast": 20, "slow": 60}
    assert as_dict({"fast": 20}) == {"fast": 20}
    with pytest.raises(ValueError, match="expected a JSON object"):
        as_dict("[1, 2]")


def test_recorded_values_are_read_back_from_an_executed_notebook(tmp_path):
    nb = new_notebook(cells=[new_code_cell("record(...)"), new_code_cell("record(...)")])
    first = {"name": "results", "value": {"trades": 3}}
    second = {"name": "results", "value": {"trades": 4}}
    other = {"name": "note", "value": "ok"}
    nb.cells[0].outputs = [new_output("display_data", data={RECORD_MIME: first, "text/plain": "recorded"})]
    nb.cells[1].outputs = [
        new_output("display_data", data={RECORD_MIME: second, "text/plain": "recorded"}),
        new_output("display_data", data={RECORD_MIME: other, "text/plain": "recorded"}),
    ]
    path = tmp_path / "out.ipynb"
    nbformat.write(nb, path)
    assert read_records(path) == {"results": {"trades": 4}, "note": "ok"}


def test_recorded_values_are_plain_json():
    import pandas as pd

    value = {"equity": Decimal("107065.8176003"), "sharpe": float("nan"), "when": pd.Timestamp("2013-03-01"), "n": __import__("numpy").int64(3)}
    assert jsonable(value) == {"equity": "107065.8176003", "sharpe": None, "when": "2013-03-01T00:00:00", "n": 3}


def test_limits_are_checked_against_the_backtest():
    engine = BacktestEngine(BacktestConfig())
    result = engine.add_strategy(create_strategy("sma_cross", {"fast": 10, "slow": 30})).run({"IBM": load_sample("IBM")})
    table = check_limits(result, {"max_drawdown": 0.01, "max_position_value": 50_000, "min_trades": 500})
    assert table.set_index("limit")["ok"].to_dict() == {"max_drawdown": False, "max_position_value": True, "min_trades": False}
    assert table.set_index("limit").loc["max_drawdown", "value"] == pytest.approx(-result.metrics.max_drawdown)
    with pytest.raises(KeyError, match=r"unknown limit.*max_leverage"):
        check_limits(result, {"max_leverage": 2})


def test_modes_backtest_and_paper_run_and_others_are_refused_clearly():
    assert check_mode("backtest") == "backtest"
    assert check_mode("paper") == "paper"
    with pytest.raises(ValueError, match="expected one of backtest, paper"):
        check_mode("live")


def test_data_summary_and_project_paths():
    summary = data_summary({"IBM": load_sample("IBM")})
    assert summary.iloc[0]["bars"] == 3270 and summary.iloc[0]["frequency"] == "1D"
    assert project_path("notebooks").is_dir()
    assert project_path("pyproject.toml").name == "pyproject.toml"
