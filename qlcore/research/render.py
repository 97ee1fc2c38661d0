"""HTML and holoviews renderings of sweep results and parity reports (for notebooks)."""
from __future__ import annotations

import html
import math
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    import holoviews as hv

    from qlcore.research.parity import ParityReport
    from qlcore.research.sweep import SweepResult

_OK, _BAD = "#1a7f37", "#cf222e"
_STYLE = (
    "<style>.ql-parity td,.ql-parity th{padding:2px 8px;text-align:right;font-family:monospace}"
    ".ql-parity tr.first td{background:#ffd7d5;font-weight:bold}"
    ".ql-parity td.diff{color:#cf222e;font-weight:bold}"
    ".ql-parity th.side{font-weight:normal;color:#57606a}</style>"
)
_ROWS_SHOWN = 40  # trades shown around the first difference (or from the start)


def _fmt(value: Any) -> str:
    if value is None or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, pd.Timestamp):
        return str(value.date()) if value == value.normalize() else str(value)
    if isinstance(value, float):
        return f"{value:,.10g}" if abs(value) < 1e9 else f"{value:,.2f}"  # enough digits to see a difference
    return html.escape(str(value))


def parity_html(report: ParityReport) -> str:
    from qlcore.research.parity import FIELDS, SIDES

    color = _OK if report.ok else _BAD
    first = report.first_difference
    n_engine, n_vbt = report.trade_counts
    params = ", ".join(f"{k}={v}" for k, v in report.params.items())
    head = [
        f"<div class='ql-parity'>{_STYLE}",
        f"<h3 style='color:{color}'>parity {report.verdict}: {html.escape(report.strategy)}({html.escape(params)}) "
        f"on {html.escape(', '.join(report.symbols))}</h3>",
        "<p>",
        f"trades: engine {n_engine}, vectorbt {n_vbt}, differing {len(report.differences)}<br>",
        f"final equity: engine {report.engine_final_equity:,.6f}, vectorbt {report.vectorbt_final_equity:,.6f} "
        f"(relative difference {report.equity_rel_diff:.1e}, tolerance {report.rel_tol:.0e})<br>",
        f"fees {report.fee_bps:g} bps; vectorbt: {html.escape(report.conventions.describe())}",
    ]
    if first is not None:
        head.append(f"<br><b style='color:{_BAD}'>first difference: {html.escape(str(first))}</b>")
    head += [f"<br>note: {html.escape(n)}" for n in report.notes]
    head.append("</p>")

    table = report.table
    lo = 0 if first is None else max(0, first.index - 5)
    shown = table.iloc[lo : lo + _ROWS_SHOWN]
    rows = ["<table><tr><th></th><th></th>" + "".join(f"<th colspan=2>{f}</th>" for f in FIELDS) + "<th></th></tr>"]
    rows.append(
        "<tr><th>trade</th><th>symbol</th>" + "".join(f"<th class='side'>{s}</th>" for _ in FIELDS for s in SIDES) + "<th>differs</th></tr>"
    )
    if lo > 0:
        rows.append(f"<tr><td colspan={2 * len(FIELDS) + 3}>… {lo} matching trades before …</td></tr>")
    for i, r in shown.iterrows():
        differs = set(str(r["differs"]).split(", ")) if r["differs"] else set()
        cls = " class='first'" if first is not None and i == first.index else ""
        cells = [f"<td>{r['trade']}</td><td>{html.escape(str(r['symbol']))}</td>"]
        for f in FIELDS:
            mark = " class='diff'" if f in differs or "trade" in differs else ""
            cells += [f"<td{mark}>{_fmt(r[f'{f}_{s}'])}</td>" for s in SIDES]
        cells.append(f"<td>{html.escape(str(r['differs']))}</td>")
        rows.append(f"<tr{cls}>{''.join(cells)}</tr>")
    rest = len(table) - lo - len(shown)
    if rest > 0:
        rows.append(f"<tr><td colspan={2 * len(FIELDS) + 3}>… {rest} more trades …</td></tr>")
    rows.append("</table></div>")
    return "".join(head) + "".join(rows)


def parity_plot(report: ParityReport) -> hv.Overlay:
    """Both equity curves overlaid; a dotted line at the first differing trade's entry."""
    import holoviews as hv
    import holoviews.plotting.bokeh  # registers the bokeh options used below

    eq = report.equity
    time_dim, equity_dim = hv.Dimension("time", label="Time"), hv.Dimension("equity", label="Equity")
    plot = hv.Curve((eq.index, eq["engine"]), time_dim, equity_dim, label="event-driven engine").opts(
        backend="bokeh", line_width=4, alpha=0.5, tools=["hover"]
    ) * hv.Curve((eq.index, eq["vectorbt"]), time_dim, equity_dim, label="vectorbt").opts(
        backend="bokeh", line_width=1.5, line_dash="dashed", tools=["hover"]
    )
    first = report.first_difference
    if first is not None:
        when = first.engine.get("entry_ts") or first.vectorbt.get("entry_ts")
        if when is not None:
            plot = plot * hv.VLine(pd.Timestamp(when)).opts(backend="bokeh", color=_BAD, line_dash="dotted")
    title = f"parity {report.verdict}: {report.strategy} on {', '.join(report.symbols)}"
    return plot.opts(backend="bokeh", title=title, responsive=True, height=350, legend_position="top_left", show_grid=True)


def sweep_html(result: SweepResult) -> str:
    best = result.best()
    bars = ", ".join(f"{s} ({n:,} bars)" for s, n in result.bars.items())
    parts = [
        f"<h3>{html.escape(result.strategy)} sweep: {len(result.table):,} runs</h3>",
        f"<p>{html.escape(bars)}; fee {result.fee_bps:g} bps, {html.escape(result.sizing)}, "
        f"initial cash {result.init_cash:,.0f}; vectorbt: {html.escape(result.conventions.describe())}<br>",
        f"{len(result.skipped):,} parameter sets skipped",
    ]
    if len(result.skipped):
        parts.append(f", e.g. {html.escape(str(result.skipped['reason'].iloc[0]))}")
    parts.append(f"</p><p>top {len(best)} by {html.escape(result.metric)}:</p>")
    money = {c: "{:,.2f}".format for c in ("fees", "final_equity")}
    parts.append(best.to_html(index=False, float_format=lambda v: f"{v:,.4g}", formatters=money))
    return "".join(parts)


def sweep_heatmap(result: SweepResult, x: str, y: str, metric: str, symbol: str | None) -> hv.HeatMap:
    """`metric` over two swept parameters (the mean over any other swept parameters)."""
    import holoviews as hv
    import holoviews.plotting.bokeh  # registers the bokeh options used below

    for name in (x, y):
        if name not in result.params:
            raise KeyError(f"{name!r} was not swept; swept parameters: {', '.join(result.params)}")
    table = result.table if symbol is None else result.table[result.table["symbol"] == symbol]
    grid = table.groupby([x, y], as_index=False)[metric].mean()
    return hv.HeatMap(grid, [x, y], metric).opts(
        backend="bokeh", colorbar=True, cmap="RdYlGn", tools=["hover"], responsive=True, height=400,
        title=f"{result.strategy}: {metric} over ({x}, {y})" + (f" on {symbol}" if symbol else ""),
    )


def prices_plot(frames: dict[str, pd.DataFrame], normalize: bool = True) -> hv.Overlay:
    """Closes of every symbol overlaid; rebased to 1.0 at each symbol's first bar by default."""
    import holoviews as hv
    import holoviews.plotting.bokeh  # registers the bokeh options used below

    curves = []
    for symbol, df in frames.items():
        close = df["close"] / df["close"].iloc[0] if normalize else df["close"]
        curves.append(hv.Curve((df.index, close), "time", "close", label=symbol).opts(backend="bokeh", tools=["hover"]))
    ylabel = "close (first bar = 1)" if normalize else "close"
    return hv.Overlay(curves).opts(
        backend="bokeh", title="Prices", responsive=True, height=350, logy=normalize, ylabel=ylabel,
        legend_position="top_left", show_grid=True,
    )


def returns_plot(frames: dict[str, pd.DataFrame], bins: int = 80) -> hv.Layout:
    """Histograms of bar-to-bar close returns, one per symbol, side by side."""
    import holoviews as hv
    import holoviews.plotting.bokeh  # registers the bokeh options used below
    import numpy as np

    plots = []
    for symbol, df in frames.items():
        r = df["close"].pct_change().dropna().to_numpy()
        freq, edges = np.histogram(r, bins=bins)
        plots.append(
            hv.Histogram((edges, freq), kdims="return", vdims="bars").opts(
                backend="bokeh", title=f"{symbol}: {r.std():.2%} per bar", width=300, height=250, tools=["hover"]
            )
        )
    return hv.Layout(plots).cols(4)
