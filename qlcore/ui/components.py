"""The monitor's components: `Viewer`s over one session's `LiveStatus`, redrawn when the snapshot changes."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pandas as pd
import panel as pn
import param
from bokeh.models import ColumnDataSource, DatetimeTickFormatter, NumeralTickFormatter
from bokeh.plotting import figure
from panel.viewable import Viewer
from param.parameters import NoNone

from qlcore.ui.format import CSS, esc, money, qty, ts_text
from qlcore.ui.live import LiveStatus
from qlcore.ui.readmodel import EngineView
from qlcore.ui.render import (
    account_html,
    alerts_html,
    orders_html,
    positions_html,
    risk_html,
    strategies_html,
)

APPS = ("monitor", "control", "research", "audit")
HTML = {"type": "html"}


def html_pane(obj: str = "", **kw: Any) -> pn.pane.HTML:
    """An HTML pane that carries the dashboards' styles (panes render in their own shadow DOM)."""
    return pn.pane.HTML(obj, stylesheets=[CSS], **kw)


def table(df: pd.DataFrame, *, html_cols: tuple[str, ...] = (), height: int | None = 260, **kw: Any) -> pn.widgets.Tabulator:
    """A read-only, full-width Tabulator; `html_cols` hold pre-formatted (escaped) HTML."""
    return pn.widgets.Tabulator(
        df, show_index=False, disabled=True, sizing_mode="stretch_width", height=height, layout="fit_data_stretch",
        formatters={c: HTML for c in html_cols}, stylesheets=[CSS], **kw,
    )


class _LiveViewer(Viewer):
    live = param.ClassSelector(class_=LiveStatus, allow_None=NoNone)

    def shared(self, key: str, render: Callable[[EngineView | None], str]) -> str:
        """`render(view)` once per snapshot version for all the server's sessions (the pages show the same data)."""
        return self.live.context.rendered(key, self.view, render)

    @property
    def view(self) -> EngineView | None:
        return self.live.view

    def snap(self, key: str, default: Any = None) -> Any:
        v = self.live.view
        return default if v is None else v.snapshot.get(key, default)


class StatusBar(_LiveViewer):
    """Navigation, engine state, trading mode, heartbeat age and the STALE marker; the user and role."""

    app = param.String(default="monitor")
    user = param.String(default="")
    role = param.String(default="")

    def __init__(self, **params) -> None:
        super().__init__(**params)
        self._pane = html_pane(self._html(), sizing_mode="stretch_width", name="status")
        self.live.param.watch(lambda *_: _set_if_changed(self._pane, self._html()), ["view", "age_s", "stale", "error"])

    def _html(self) -> str:
        nav = " · ".join(f"<b>{a}</b>" if a == self.app else f'<a href="./{a}">{a}</a>' for a in APPS)
        v = self.view
        if v is None:
            engine = "<span class='ql-badge STALE'>NO ENGINE</span> no engine has published its status"
        else:
            mode = v.trading_mode
            engine = (f"engine <b>{esc(v.engine_id)}</b> {esc(v.state)} · trading "
                      f"<span class='ql-badge {esc(mode)}' id='trading-mode'>{esc(mode)}</span>")
            reason = v.account.get("mode_reason")
            if mode != "ACTIVE" and reason:
                engine += f" <i>({esc(reason)})</i>"
        # the snapshot's own time, for a reader (or the benchmark) to see how old what is shown is
        at = 0 if v is None else int(v.snapshot.get("updated_at") or 0)
        stamp = f"<span id='snapshot-at' data-ns='{at}' title='snapshot written {ts_text(at)} UTC'></span>"
        age = self.live.age_s
        beat = "heartbeat —" if age != age else f"heartbeat {age:.0f} s ago"
        stale = " <span class='ql-badge STALE' id='stale'>STALE</span>" if self.live.stale else ""
        err = f" <span class='pnl-neg'>{esc(self.live.error)}</span>" if self.live.error else ""
        who = f"{esc(self.user)} ({esc(self.role)}) · <a href='./logout'>log out</a>" if self.user else ""
        return (f"<div class='ql-status'><span>{nav}</span><span>{engine}</span>"
                f"<span>{beat}{stale}{err}{stamp}</span><span style='margin-left:auto'>{who}</span></div>")

    def __panel__(self) -> pn.viewable.Viewable:
        return self._pane


class LivePanel(_LiveViewer):
    """An HTML panel drawn by `render(view)`: once per snapshot version for all sessions, sent only when it changed."""

    key = param.String(doc="the shared rendering's name")
    render = param.Callable(doc="EngineView | None -> HTML")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._pane = html_pane(self._html(), sizing_mode="stretch_width")
        self.live.param.watch(lambda *_: _set_if_changed(self._pane, self._html()), "view")

    def _html(self) -> str:
        return self.shared(self.key, self.render)

    def __panel__(self) -> pn.viewable.Viewable:
        return self._pane


def _set_if_changed(pane: pn.pane.HTML, text: str) -> None:
    if pane.object != text:
        pane.object = text


def account_summary(live: LiveStatus) -> LivePanel:
    """Equity, P&L today (coloured), realized and unrealized P&L, fees, cash, exposure, buying power."""
    return LivePanel(live=live, key="account", render=account_html)


def strategies_table(live: LiveStatus) -> LivePanel:
    """State, P&L, exposure and trades by strategy."""
    return LivePanel(live=live, key="strategies", render=strategies_html)


def positions_table(live: LiveStatus) -> LivePanel:
    return LivePanel(live=live, key="positions", render=positions_html)


def risk_panel(live: LiveStatus) -> LivePanel:
    return LivePanel(live=live, key="risk", render=risk_html)


def alerts_panel(live: LiveStatus) -> LivePanel:
    return LivePanel(live=live, key="alerts", render=alerts_html)


class EquityCurve(_LiveViewer):
    """The account's equity over time; new points are streamed to the browser, not redrawn."""

    def __init__(self, **params) -> None:
        super().__init__(**params)
        self._source = ColumnDataSource({"t": [], "equity": []})
        fig = figure(height=260, sizing_mode="stretch_width", x_axis_type="datetime", toolbar_location=None,
                     title="Equity")
        fig.line("t", "equity", source=self._source, line_width=2)
        fig.yaxis.formatter = NumeralTickFormatter(format="0,0")
        fig.xaxis.formatter = DatetimeTickFormatter(hours="%H:%M", minutes="%H:%M", seconds="%H:%M:%S")
        self._fig = fig
        self._last_ts: int | None = None
        self._update()
        self.live.param.watch(lambda *_: self._update(), "view")

    def _update(self) -> None:
        curve = self.snap("equity_curve", []) or []
        if not curve:
            return
        first = int(curve[0][0])
        if self._last_ts is not None and first <= self._last_ts:
            new = [p for p in curve if int(p[0]) > self._last_ts]
            if new:
                self._source.stream(_points(new), rollover=5000)
        else:
            self._source.data = _points(curve)
        self._last_ts = int(curve[-1][0])

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.pane.Bokeh(self._fig, sizing_mode="stretch_width")


def _points(curve: list[list[Any]]) -> dict[str, Any]:
    # float for the plot only: the axis needs numbers, the tables keep Decimal text
    return {"t": [pd.Timestamp(int(ts), unit="ns") for ts, _ in curve], "equity": [float(eq) for _, eq in curve]}


def fills_frame(fills: list[dict[str, Any]]) -> pd.DataFrame:
    cols = ["time", "trade", "order", "strategy", "symbol", "side", "quantity", "price", "fee"]
    return pd.DataFrame([{
        "time": ts_text(f.get("ts")), "trade": f.get("trade_id"), "order": f.get("order_id"),
        "strategy": f.get("strategy_id"), "symbol": f.get("symbol"), "side": f.get("side"),
        "quantity": qty(f.get("quantity")), "price": money(f.get("price")), "fee": money(f.get("fee")),
    } for f in fills], columns=cols)


class Blotter(_LiveViewer):
    """Orders as the engine holds them now (open ones first), and fills streamed into a Tabulator as they
    arrive (shown newest first): only the new rows travel to the browser.

    A Tabulator update has a fixed cost of several ms per page whatever its rows, the largest part of a
    monitor page's work under a busy engine, so the fills are streamed only while their tab is shown (at
    most every `stream_every_s`); a page showing the orders keeps the new fills and sends them when the
    user opens the tab."""

    max_fills = param.Integer(default=500)
    stream_every_s = param.Number(default=1.0)

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._orders = LivePanel(live=self.live, key="orders", render=orders_html)
        fills = sorted(self.snap("fills", []) or [], key=lambda f: int(f.get("ts") or 0))
        self._seen = {f.get("trade_id") for f in fills}
        self._pending: list[dict[str, Any]] = []
        self._streamed_at = 0.0
        # newest first in the browser: streamed rows land at the end of the data, the sorter puts them on top
        self._fills = table(fills_frame(fills[-self.max_fills:]), name="fills",
                            sorters=[{"field": "time", "dir": "desc"}])
        self._tabs = pn.Tabs(("Orders", self._orders), ("Fills", self._fills), sizing_mode="stretch_width")
        self.live.param.watch(lambda *_: self._update(), ["view", "age_s"])
        self._tabs.param.watch(lambda *_: self._update(), "active")

    def _update(self) -> None:
        fills = self.snap("fills", []) or []
        new = [f for f in fills if f.get("trade_id") not in self._seen]
        if new:
            self._pending = (self._pending + new)[-self.max_fills:]
            # the snapshot keeps the recent fills only: what is not in it now cannot come back
            self._seen = {f.get("trade_id") for f in fills}
        shown = self._tabs.active == 1
        if shown and self._pending and time.monotonic() - self._streamed_at >= self.stream_every_s:
            batch = sorted(self._pending, key=lambda f: int(f.get("ts") or 0))
            self._pending = []
            self._streamed_at = time.monotonic()
            self._fills.stream(fills_frame(batch), rollover=self.max_fills)

    def __panel__(self) -> pn.viewable.Viewable:
        return self._tabs


class HealthPanel(_LiveViewer):
    """Heartbeat age, feed freshness, broker connection, store reachability."""

    def __init__(self, **params) -> None:
        super().__init__(**params)
        self._store = (True, "")
        self._store_at = 0.0
        self._pane = html_pane(self._html(), sizing_mode="stretch_width")
        self.live.param.watch(lambda *_: _set_if_changed(self._pane, self._html()), ["view", "stale"])

    def _html(self) -> str:
        now = time.monotonic()
        if now - self._store_at > 5:
            rm = self.live.context.read_model
            self._store, self._store_at = rm.cached("store_ok", 5.0, rm.store_ok), now
        v = self.view
        feed = self.snap("feed", {}) or {}
        broker = self.snap("broker", {}) or {}
        cmds = self.snap("commands", {}) or {}
        ok_store, store_text = self._store
        rows = [
            ("engine", "—" if v is None else f"{esc(v.state)} (pid {v.pid} on {esc(v.host)})",
             v is not None and not self.live.stale),
            ("heartbeat", "—" if v is None else f"{v.age_s:.1f} s ago", v is not None and not self.live.stale),
            ("feed", f"last bar {ts_text(feed.get('last_bar_ts'))}, {feed.get('bars', 0):,} bars, "
                     f"{feed.get('quarantined', 0):,} quarantined"
                     + (f", stale: {esc(', '.join(feed.get('stale') or []))}" if feed.get("stale") else ""),
             not feed.get("stale")),
            ("broker", f"{esc(broker.get('venue', '—'))} {'connected' if broker.get('connected') else 'DISCONNECTED'}, "
                       f"{broker.get('working_orders', 0)} working orders", bool(broker.get("connected"))),
            ("commands", f"last id {cmds.get('last_id', '—')}, processed {cmds.get('processed', '—')}", True),
            ("store", esc(store_text), ok_store),
        ]
        body = "".join(
            f"<tr><td class='{'pnl-pos' if ok else 'pnl-neg'}'>{'OK' if ok else 'FAIL'}</td><td>{k}</td><td>{t}</td></tr>"
            for k, t, ok in rows
        )
        return f"<table class='ql' id='health'>{body}</table>"

    def __panel__(self) -> pn.viewable.Viewable:
        return self._pane


class JobsPanel(_LiveViewer):
    """The scheduler's latest job runs and the latest stored backtest runs (refreshed every few seconds)."""

    every_s = param.Number(default=5.0)

    def __init__(self, **params) -> None:
        super().__init__(**params)
        self._jobs = table(pd.DataFrame(), height=180, name="jobs")
        self._runs = table(pd.DataFrame(), height=180, name="runs")
        self._at = 0.0
        self._update()
        self.live.param.watch(lambda *_: self._update(), "age_s")

    def _update(self) -> None:
        now = time.monotonic()
        if now - self._at < self.every_s:
            return
        self._at = now
        rm = self.live.context.read_model
        jobs = rm.cached("job_runs", self.every_s, lambda: rm.job_runs(10))
        runs = rm.cached("runs", self.every_s, lambda: pd.DataFrame([{
            "run": r.run_id, "created": r.created_at, "strategies": ",".join(s["id"] for s in r.strategies),
            "status": r.status, "final equity": money(r.final_equity),
        } for r in rm.runs(10)], columns=["run", "created", "strategies", "status", "final equity"]))
        if not jobs.equals(self._jobs.value):
            self._jobs.value = jobs
        if not runs.equals(self._runs.value):
            self._runs.value = runs

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Tabs(("Jobs", self._jobs), ("Backtest runs", self._runs), sizing_mode="stretch_width")
