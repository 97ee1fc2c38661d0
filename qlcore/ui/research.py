"""The research page: stored backtest runs, their equity curves side by side with their metrics, and
the parity verdicts (of `qlcore parity` and of submitted notebooks)."""
from __future__ import annotations

from typing import Any

import holoviews as hv
import pandas as pd
import panel as pn
import param
from panel.viewable import Viewer
from param.parameters import NoNone

from qlcore.ui.components import html_pane, table
from qlcore.ui.format import esc, money
from qlcore.ui.live import AppContext
from qlcore.ui.page import section, start_page

METRICS = ("total_return", "cagr", "sharpe", "sortino", "max_drawdown", "n_trades", "win_rate")


class RunComparison(Viewer):
    """Pick runs in the table; their curves and metrics are shown side by side."""

    context = param.ClassSelector(class_=AppContext, allow_None=NoNone)

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._runs = {r.run_id: r for r in self.context.read_model.runs(100)}
        df = pd.DataFrame([{
            "run": r.run_id, "created": r.created_at, "strategies": ",".join(s["id"] for s in r.strategies),
            "data": ",".join(d["symbol"] for d in r.data), "final equity": money(r.final_equity),
            "total return": _fmt("total_return", (r.metrics or {}).get("total_return")),
            "sharpe": _fmt("sharpe", (r.metrics or {}).get("sharpe")),
        } for r in self._runs.values()], columns=["run", "created", "strategies", "data", "final equity",
                                                  "total return", "sharpe"])
        self.table = table(df, height=None, max_height=320, selectable="checkbox", name="runs")
        self.table.selection = list(range(min(2, len(df))))
        self.curves = pn.pane.HoloViews(sizing_mode="stretch_width", height=320)
        self.metrics = html_pane(sizing_mode="stretch_width", name="metrics")
        self.table.param.watch(lambda *_: self._compare(), "selection")
        self._compare()

    def _compare(self) -> None:
        ids = [self.table.value.iloc[i]["run"] for i in self.table.selection if i < len(self.table.value)]
        if not ids:
            self.curves.object = None
            self.metrics.object = "<i>select runs to compare</i>"
            return
        rm = self.context.read_model
        curves = []
        for run_id in ids:
            eq = rm.run_equity(run_id)
            label = f"{run_id} {','.join(s['id'] for s in self._runs[run_id].strategies)}"
            # float for the plot only: the metrics table keeps the stored text
            curves.append(hv.Curve((eq.index, eq.astype(float).values), "time", "equity", label=label))
        self.curves.object = hv.Overlay(curves).opts(
            hv.opts.Curve(responsive=True, height=300, tools=["hover"], yformatter="%.0f"),
            hv.opts.Overlay(legend_position="top_left"),
        )
        head = "".join(f"<th>{esc(r)}</th>" for r in ids)
        rows = "".join(
            f"<tr><td>{m}</td>" + "".join(
                f"<td class='num'>{_fmt(m, (self._runs[r].metrics or {}).get(m))}</td>" for r in ids) + "</tr>"
            for m in METRICS
        )
        rows += "<tr><td>final equity</td>" + "".join(
            f"<td class='num'>{money(self._runs[r].final_equity)}</td>" for r in ids) + "</tr>"
        self.metrics.object = f"<table class='ql' id='metrics'><tr><th>metric</th>{head}</tr>{rows}</table>"

    def __panel__(self) -> pn.viewable.Viewable:
        if not self._runs:
            return html_pane("<i>no runs stored yet: try <code>qlcore backtest --strategy sma_cross "
                                "--symbols AAPL</code></i>", name="no-runs")
        return pn.Column(self.table, self.curves, self.metrics, sizing_mode="stretch_width")


def _fmt(name: str, value: Any) -> str:
    if not isinstance(value, int | float):
        return "—" if value is None else esc(value)
    if name in ("total_return", "cagr", "max_drawdown", "win_rate"):
        return f"{value:.2%}"
    if name == "n_trades":
        return f"{int(value):,}"
    return f"{value:,.2f}"


def parity_table(context: AppContext) -> pn.viewable.Viewable:
    verdicts = context.read_model.parity_verdicts()
    if not verdicts:
        return html_pane("<i>no parity verdicts yet (run <code>qlcore parity</code> "
                         "or submit a notebook that records one)</i>")
    columns = ["created_at", "verdict", "source", "subject", "by", "detail"]
    return table(pd.DataFrame(verdicts)[columns].rename(columns={"created_at": "created"}), height=220, name="parity")


def create(context: AppContext) -> pn.template.BootstrapTemplate:
    hv.extension("bokeh", logo=False)
    page = start_page(context, "research", "Research")
    page.add(section("Backtest runs", RunComparison(context=context)), section("Parity verdicts", parity_table(context)))
    return page.template
