"""Rendering a backtest result: HTML for notebooks and files, and an equity/drawdown plot.

holoviews is imported inside :func:`plot_equity` only, so importing qlcore stays fast.
"""
from __future__ import annotations

import html
import math
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from qlcore.portfolio.metrics import Metrics, _checked_equity, _drawdown

if TYPE_CHECKING:
    import holoviews

__all__ = ["metrics_table_html", "plot_equity", "result_html", "write_report"]

MAX_PLOT_POINTS = 5_000
SHORT_HASH_CHARS = 12

_GREEN = "#1a7f37"
_RED = "#cf222e"
_MUTED = "#6e7781"
_NA = "n/a"

_TABLE_STYLE = "border-collapse:collapse;font-size:13px;font-variant-numeric:tabular-nums"
_TH_STYLE = "text-align:left;padding:2px 12px 2px 0;font-weight:normal;color:#57606a"
_TD_STYLE = "text-align:right;padding:2px 0 2px 12px"


def _is_missing(x: float) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _pct(x: float) -> str:
    if _is_missing(x):
        return _NA
    if math.isinf(x):
        return "∞" if x > 0 else "-∞"
    return f"{x:.2%}"


def _money(x: float) -> str:
    return _NA if _is_missing(x) else f"{x:,.2f}"


def _ratio(x: float) -> str:
    if _is_missing(x):
        return _NA
    if math.isinf(x):
        return "∞" if x > 0 else "-∞"
    return f"{x:.2f}"


def _per_year(x: float) -> str:
    if _is_missing(x):
        return _NA
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:,.2f}"


def _signed(text: str, x: float) -> str:
    """``text`` coloured green above zero and red below it."""
    if _is_missing(x) or x == 0:
        return html.escape(text)
    return f'<span style="color:{_GREEN if x > 0 else _RED}">{html.escape(text)}</span>'


def _duration(td: pd.Timedelta, bars: int) -> str:
    if bars == 0:
        return "0"
    days = td / pd.Timedelta(days=1)
    if days >= 10:
        when = f"{days:,.0f} days"
    elif days >= 1:
        when = f"{days:.1f} days"
    else:
        when = str(td.floor("s"))
    return f"{when} ({bars:,} bars)"


def _rows_html(rows: Iterable[tuple[str, str]]) -> str:
    return "".join(
        f'<tr><th style="{_TH_STYLE}">{html.escape(label)}</th>'
        f'<td style="{_TD_STYLE}">{value}</td></tr>'
        for label, value in rows
    )


def metrics_table_html(metrics: Metrics, title: str = "Backtest") -> str:
    """A compact two-column HTML table of ``metrics``.

    Percentages have 2 decimals, money has thousands separators, returns are coloured by sign,
    NaN reads "n/a".
    """
    m = metrics
    esc = html.escape
    rows = [
        ("Period", f"{esc(str(m.start))} → {esc(str(m.end))}"),
        ("Bars", f"{m.bars:,} ({_per_year(m.periods_per_year)} per year)"),
        ("Initial equity", _money(m.initial_equity)),
        ("Final equity", _money(m.final_equity)),
        ("Total return", _signed(_pct(m.total_return), m.total_return)),
        ("CAGR", _signed(_pct(m.cagr), m.cagr)),
        ("Annual volatility", _pct(m.annual_volatility)),
        ("Sharpe", _ratio(m.sharpe)),
        ("Sortino", _ratio(m.sortino)),
        ("Max drawdown", _signed(_pct(m.max_drawdown), m.max_drawdown)),
        ("Longest drawdown", esc(_duration(m.max_drawdown_duration, m.max_drawdown_bars))),
        ("Trades", f"{m.n_trades:,}"),
        ("Win rate", _pct(m.win_rate)),
        ("Profit factor", _ratio(m.profit_factor)),
        ("Avg trade PnL", _signed(_money(m.avg_trade_pnl), m.avg_trade_pnl)),
        ("Exposure", _pct(m.exposure)),
    ]
    return (
        f'<table class="ql-metrics" style="{_TABLE_STYLE}">'
        f'<caption style="text-align:left;font-weight:bold;padding-bottom:4px">{esc(title)}'
        f"</caption><tbody>{_rows_html(rows)}</tbody></table>"
    )


def _params_html(params: dict[str, Any]) -> str:
    if not params:
        return f'<p style="color:{_MUTED}">no parameters</p>'
    rows = [(str(k), html.escape(str(v))) for k, v in params.items()]
    return (
        f'<table class="ql-params" style="{_TABLE_STYLE}">'
        f"<tbody>{_rows_html(rows)}</tbody></table>"
    )


def _trades_html(trades: pd.DataFrame | None, max_trades: int) -> str:
    if trades is None or len(trades) == 0:
        return f'<p style="color:{_MUTED}">no trades</p>'
    shown = trades.tail(max_trades) if max_trades > 0 else trades.iloc[:0]
    caption = (
        f"last {len(shown):,} of {len(trades):,} trades" if len(shown) < len(trades)
        else f"{len(trades):,} trades"
    )
    table = shown.to_html(
        index=False,
        border=0,
        classes="ql-trades",
        float_format=lambda x: f"{x:,.6g}" if abs(x) < 1 else f"{x:,.2f}",
        na_rep="",
    )
    return f'<p style="color:{_MUTED};margin:4px 0">{caption}</p>{table}'


def result_html(
    *,
    title: str,
    metrics: Metrics,
    params: dict[str, Any],
    run_id: str | None,
    state_hash: str | None,
    final_equity: str,
    trades: pd.DataFrame | None,
    max_trades: int = 20,
    equity: pd.Series | None = None,
) -> str:
    """HTML of one backtest result (``BacktestResult._repr_html_``).

    A header (title, run id, short state hash with the full one on hover, final equity as given),
    an equity and drawdown chart when `equity` is given, the parameters, the metrics table and
    the last ``max_trades`` trades.
    """
    esc = html.escape
    run = esc(run_id) if run_id else "not stored"
    if state_hash:
        short = f'<code title="{esc(state_hash)}">{esc(state_hash[:SHORT_HASH_CHARS])}</code>'
    else:
        short = _NA
    header = (
        f'<div class="ql-header"><strong style="font-size:15px">{esc(title)}</strong>'
        f'<div style="color:{_MUTED};font-size:12px">run <code>{run}</code> · state {short}'
        f" · final equity <strong>{esc(final_equity)}</strong></div></div>"
    )
    body = (
        '<div style="display:flex;gap:32px;flex-wrap:wrap;align-items:flex-start;margin:8px 0">'
        f"{metrics_table_html(metrics, title='Metrics')}"
        f'<div><div style="font-weight:bold;padding-bottom:4px">Parameters</div>'
        f"{_params_html(params)}</div></div>"
    )
    chart = equity_svg(equity) if equity is not None else ""
    return (
        f'<div class="ql-result">{header}{chart}{body}'
        f'<div style="font-weight:bold">Trades</div>{_trades_html(trades, max_trades)}</div>'
    )


def _plot_positions(equity: np.ndarray, dd: np.ndarray, max_points: int) -> np.ndarray:
    """Positions to plot: all of them when few, else first, last and per-bucket extremes.

    Each bucket keeps its lowest and highest equity and its deepest drawdown, so the plot still
    shows every swing's range and the maximum drawdown exactly.
    """
    n = len(equity)
    if n <= max_points:
        return np.arange(n)
    size = -(-n // max(1, (max_points - 2) // 3))
    buckets = -(-n // size)  # so the last bucket holds at least one real bar
    pad = buckets * size - n

    def extreme(values: np.ndarray, fill: float, arg: Any) -> np.ndarray:
        grid = np.concatenate([values, np.full(pad, fill)]).reshape(buckets, size)
        return arg(grid, axis=1) + np.arange(buckets) * size

    picks = [
        np.array([0, n - 1]),
        extreme(equity, np.inf, np.argmin),
        extreme(equity, -np.inf, np.argmax),
        extreme(dd, np.inf, np.argmin),
    ]
    return np.unique(np.concatenate(picks))


def equity_svg(equity: pd.Series, *, width: int = 640, height: int = 180, max_points: int = 600) -> str:
    """A small static chart: the equity curve over its drawdown, as inline SVG (no JavaScript).

    For reports and notebook summaries, where an interactive plot would be heavy; `plot_equity`
    gives the interactive one.
    """
    values = equity.to_numpy(dtype=float)
    if len(values) < 2:
        return ""
    dd = values / np.maximum.accumulate(values) - 1.0
    keep = _plot_positions(values, dd, max_points)
    x = keep / (len(values) - 1) * (width - 60) + 50
    lo, hi = float(values.min()), float(values.max())
    span = hi - lo or 1.0
    eq_h, dd_h = height * 0.68, height * 0.22
    y = 8 + (hi - values[keep]) / span * (eq_h - 8)
    dd_min = float(dd.min()) or -1.0
    y_dd = eq_h + 10 + dd[keep] / dd_min * dd_h
    line = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(x, y, strict=True))
    top = eq_h + 10
    area = f"{x[0]:.1f},{top:.1f} " + " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(x, y_dd, strict=True)) + f" {x[-1]:.1f},{top:.1f}"
    first, last = equity.index[0], equity.index[-1]
    return (
        f'<svg class="ql-equity" width="{width}" height="{height + 16}" role="img" '
        f'aria-label="equity and drawdown" style="font:11px sans-serif">'
        f'<text x="46" y="12" text-anchor="end" fill="{_MUTED}">{hi:,.0f}</text>'
        f'<text x="46" y="{eq_h:.0f}" text-anchor="end" fill="{_MUTED}">{lo:,.0f}</text>'
        f'<polyline points="{line}" fill="none" stroke="#1f77b4" stroke-width="1.4"/>'
        f'<polygon points="{area}" fill="#d62728" fill-opacity="0.35"/>'
        f'<text x="46" y="{top + dd_h:.0f}" text-anchor="end" fill="#d62728">{dd_min:.1%}</text>'
        f'<text x="50" y="{height + 12}" fill="{_MUTED}">{first:%Y-%m-%d}</text>'
        f'<text x="{width - 10}" y="{height + 12}" text-anchor="end" fill="{_MUTED}">{last:%Y-%m-%d}</text>'
        "</svg>"
    )


def plot_equity(
    equity: pd.Series, title: str = "Equity", max_points: int = MAX_PLOT_POINTS
) -> holoviews.Layout:
    """Equity curve (``hv.Curve``) above its drawdown in % (``hv.Area``), bokeh options.

    Both share the x axis (``time``). Series longer than ``max_points`` are thinned to the
    first and last bars plus, per bucket, the lowest and highest equity and the deepest drawdown.
    In a notebook, load the backend first (``hv.extension("bokeh")`` or ``pn.extension()``).
    """
    import holoviews as hv
    import holoviews.plotting.bokeh  # registers the bokeh options used below

    index, values = _checked_equity(equity)
    dd = _drawdown(values)
    keep = _plot_positions(values, dd, max_points)
    x = index[keep]
    time_dim = hv.Dimension("time", label="Time")
    curve = hv.Curve(
        (x, values[keep]), time_dim, hv.Dimension("equity", label="Equity"), label="Equity"
    ).opts(
        backend="bokeh", responsive=True, height=320, line_width=1.5, tools=["hover"],
        title=title, xaxis=None, show_grid=True,
    )
    area = hv.Area(
        (x, dd[keep] * 100.0), time_dim, hv.Dimension("drawdown", label="Drawdown (%)"),
        label="Drawdown",
    ).opts(
        backend="bokeh", responsive=True, height=160, color=_RED, alpha=0.4, line_width=0.5,
        tools=["hover"], show_grid=True,
    )
    return (curve + area).opts(backend="bokeh", shared_axes=True).cols(1)


_PAGE_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;max-width:1100px;
color:#1f2328;padding:0 16px}
section{border-top:1px solid #d0d7de;padding:12px 0 20px}
h1{font-size:20px}h2{font-size:16px;margin:0 0 8px}
table.ql-trades{border-collapse:collapse;font-size:12px;font-variant-numeric:tabular-nums}
table.ql-trades th,table.ql-trades td{padding:2px 8px;border-bottom:1px solid #eaeef2;
text-align:right}
code{font-size:12px}
"""


def write_report(
    path: str | Path, sections: list[tuple[str, str]], *, title: str = "Backtest report"
) -> Path:
    """Write a standalone HTML page of ``(section title, html)`` sections and return its path.

    Section titles are escaped; section bodies are inserted as HTML (e.g. :func:`result_html`).
    Missing parent folders are created.
    """
    out = Path(path)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_PAGE_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for heading, body in sections:
        h2 = f"<h2>{html.escape(heading)}</h2>" if heading else ""
        parts.append(f"<section>{h2}{body}</section>")
    parts.append("</body></html>\n")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(parts), encoding="utf-8")
    return out
