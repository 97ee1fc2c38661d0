"""Rendering backtest results: HTML tables, the result card, the equity plot, report files."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qlcore.portfolio.metrics import compute_metrics, drawdown
from qlcore.portfolio.report import metrics_table_html, plot_equity, result_html, write_report

ROOT = Path(__file__).resolve().parents[3]


def _equity(n: int = 300, seed: int = 3, freq: str = "D") -> pd.Series:
    rng = np.random.default_rng(seed)
    values = 1_234_567.0 * np.cumprod(np.r_[1.0, 1.0 + rng.normal(0.0, 0.01, n - 1)])
    return pd.Series(values, index=pd.date_range("2023-01-02", periods=n, freq=freq))


def _trades(n: int) -> pd.DataFrame:
    ts = pd.date_range("2023-02-01", periods=n, freq="D")
    return pd.DataFrame(
        {
            "symbol": [f"SYM{i:02d}" for i in range(n)],
            "entry_ts": ts,
            "exit_ts": ts + pd.Timedelta(days=1),
            "side": ["long", "short"] * (n // 2) + ["long"] * (n % 2),
            "quantity": [10.0] * n,
            "entry_price": [100.0] * n,
            "exit_price": [101.0] * n,
            "pnl": [9.5 if i % 3 else -20.25 for i in range(n)],
            "fees": [0.5] * n,
        }
    )


def test_metrics_table_formats_percent_money_and_sign() -> None:
    equity = pd.Series(
        [1_000_000.0, 1_100_000.0, 880_000.0],
        index=pd.date_range("2024-01-01", periods=3, freq="D"),
    )
    m = compute_metrics(equity)
    table = metrics_table_html(m, title="Run <1>")
    assert "Run &lt;1&gt;" in table
    assert "1,000,000.00" in table and "880,000.00" in table
    assert '<span style="color:#cf222e">-12.00%</span>' in table  # total return, red
    assert '<span style="color:#cf222e">-20.00%</span>' in table  # max drawdown
    assert "n/a" in table  # no trades: win rate and profit factor are not available


def test_metrics_table_colours_a_gain_green() -> None:
    m = compute_metrics(pd.Series([100.0, 150.0], index=pd.date_range("2024-01-01", periods=2)))
    assert '<span style="color:#1a7f37">50.00%</span>' in metrics_table_html(m)


def test_result_html_shows_run_hash_final_equity_metrics_and_last_trades() -> None:
    equity = _equity()
    trades = _trades(30)
    m = compute_metrics(equity, trades=trades)
    state_hash = "0123456789abcdef" * 4

    page = result_html(
        title="SMA cross <AAPL>",
        metrics=m,
        params={"fast": 10, "slow": 50},
        run_id="run-2024-0001",
        state_hash=state_hash,
        final_equity="1,301,234.56 USD",
        trades=trades,
        max_trades=20,
    )

    assert "SMA cross &lt;AAPL&gt;" in page
    assert "run-2024-0001" in page
    assert ">0123456789ab</code>" in page  # short hash shown, full hash on hover
    assert "1,301,234.56 USD" in page
    for text in (
        f"{m.total_return:.2%}",
        f"{m.cagr:.2%}",
        f"{m.annual_volatility:.2%}",
        f"{m.max_drawdown:.2%}",
        f"{m.sharpe:.2f}",
        f"{m.sortino:.2f}",
        f"{m.final_equity:,.2f}",
        f"{m.win_rate:.2%}",
    ):
        assert text in page, text
    assert ">fast<" in page and ">50<" in page
    assert "last 20 of 30 trades" in page
    assert "SYM29" in page and "SYM10" in page
    assert "SYM09" not in page


def test_result_html_without_run_or_trades_says_so() -> None:
    page = result_html(
        title="t", metrics=compute_metrics(_equity(10)), params={}, run_id=None,
        state_hash=None, final_equity="10.00", trades=None,
    )
    assert "not stored" in page and "no trades" in page and "no parameters" in page


def test_plot_equity_draws_every_bar_of_a_short_series() -> None:
    import holoviews as hv

    equity = _equity(300)
    layout = plot_equity(equity, title="My run")
    assert isinstance(layout, hv.Layout)
    curve, area = layout
    assert isinstance(curve, hv.Curve) and isinstance(area, hv.Area)
    assert len(curve) == len(area) == 300
    np.testing.assert_array_equal(curve.dimension_values(1), equity.to_numpy())
    np.testing.assert_allclose(area.dimension_values(1), drawdown(equity).to_numpy() * 100)
    assert curve.kdims[0].name == area.kdims[0].name == "time"


def test_plot_equity_renders_with_bokeh_and_a_shared_time_axis() -> None:
    import holoviews as hv

    fig = hv.render(plot_equity(_equity(200)), backend="bokeh")
    (top, *_), (bottom, *_) = fig.children
    assert top.x_range is bottom.x_range
    assert top.y_range is not bottom.y_range


def test_plot_equity_downsamples_a_million_bars_keeping_extremes() -> None:
    equity = _equity(1_000_000, seed=11, freq="min")
    values = equity.to_numpy()
    dd = drawdown(equity).to_numpy()

    curve, area = plot_equity(equity)

    assert 1_000 < len(curve) <= 5_000 and len(area) == len(curve)
    plotted = curve.dimension_values(1)
    assert plotted[0] == values[0] and plotted[-1] == values[-1]
    assert plotted.max() == values.max() and plotted.min() == values.min()
    assert area.dimension_values(1).min() == dd.min() * 100
    x = curve.dimension_values(0)
    assert (np.diff(x.astype("datetime64[ns]").astype(np.int64)) > 0).all()


def test_plot_equity_rejects_an_empty_series() -> None:
    with pytest.raises(ValueError, match="empty"):
        plot_equity(pd.Series([], index=pd.DatetimeIndex([]), dtype=float))


def test_write_report_writes_every_section(tmp_path: Path) -> None:
    sections = [
        ("Run A <fast>", "<p>first body</p>"),
        ("Run B", result_html(
            title="B", metrics=compute_metrics(_equity(20)), params={"k": 1}, run_id="run-b",
            state_hash="ff" * 32, final_equity="99.00", trades=_trades(3),
        )),
    ]
    out = write_report(tmp_path / "reports" / "today.html", sections)
    assert out == tmp_path / "reports" / "today.html"
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    assert "<h2>Run A &lt;fast&gt;</h2>" in text and "<h2>Run B</h2>" in text
    assert "<p>first body</p>" in text and "run-b" in text
    assert text.index("Run A") < text.index("Run B")


def test_importing_report_does_not_import_holoviews() -> None:
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    code = "import sys, qlcore.portfolio.report; print('holoviews' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True, text=True, check=False, env={**os.environ, "PYTHONPATH": path},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_equity_svg_draws_the_curve_and_labels_its_range():
    from qlcore.portfolio.report import equity_svg

    idx = pd.date_range("2020-01-01", periods=5, freq="D")
    svg = equity_svg(pd.Series([100.0, 110.0, 99.0, 120.0, 115.0], index=idx))
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert ">120<" in svg and ">99<" in svg  # max and min equity
    assert ">-10.0%<" in svg  # deepest drawdown: 99 / 110 - 1
    assert "2020-01-01" in svg and "2020-01-05" in svg
    assert svg.count("<polyline") == 1 and svg.count("<polygon") == 1
    assert equity_svg(pd.Series([1.0], index=idx[:1])) == ""
