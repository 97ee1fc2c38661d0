"""Snapshot -> HTML for the monitor's live panels. Pure functions of one engine view, so a server renders
each once per snapshot version and every open page reuses the text (see `AppContext.rendered`)."""
from __future__ import annotations

from typing import Any

from qlcore.ui.format import dec, esc, money, pct, pnl_html, qty, ts_text
from qlcore.ui.readmodel import EngineView

MAX_ORDERS = 50  # the newest orders shown (open ones always are)


def html_table(columns: list[str], rows: list[list[str]], *, table_id: str, numeric: frozenset[str] = frozenset(),
               max_height: int = 320) -> str:
    """A scrollable table; cells are already escaped or formatted HTML."""
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    num = [c in numeric for c in columns]
    body = "".join(
        "<tr>" + "".join(f"<td class='num'>{v}</td>" if n else f"<td>{v}</td>" for v, n in zip(row, num, strict=True))
        + "</tr>"
        for row in rows
    )
    empty = "" if rows else f"<tr><td colspan='{len(columns)}'><i>none</i></td></tr>"
    return (f"<div class='ql-scroll' style='max-height:{max_height}px'><table class='ql' id='{table_id}'>"
            f"<thead><tr>{head}</tr></thead><tbody>{body}{empty}</tbody></table></div>")


def _snap(view: EngineView | None, key: str) -> Any:
    return None if view is None else view.snapshot.get(key)


def account_html(view: EngineView | None) -> str:
    a = {} if view is None else view.account
    cards = [
        ("Equity", money(a.get("equity"))), ("P&L today", pnl_html(a.get("pnl_today"))),
        ("Realized", pnl_html(a.get("realized_pnl"))), ("Unrealized", pnl_html(a.get("unrealized_pnl"))),
        ("Fees", money(a.get("fees"))), ("Cash", money(a.get("cash"))),
        ("Gross exposure", money(a.get("gross_exposure"))), ("Net exposure", money(a.get("net_exposure"))),
        ("Buying power", money(a.get("buying_power"))),
    ]
    body = "".join(f"<div class='ql-card'><div class='label'>{k}</div><div class='value'>{v}</div></div>" for k, v in cards)
    return f"<div class='ql-cards' id='account'>{body}</div>"


def state_badge(state: Any) -> str:
    return f"<span class='ql-badge {esc(state)}'>{esc(state)}</span>"


def _strategy_state(s: dict[str, Any]) -> str:
    """Its lifecycle state; its trading mode when that is not ACTIVE; why it FAILED."""
    cell = state_badge(s.get("state"))
    if s.get("mode") not in (None, "ACTIVE"):
        cell += f" {state_badge(s.get('mode'))}"
    if s.get("fault"):
        cell += f"<div class='ql-fault'>{esc(s['fault'])}</div>"
    return cell


def strategies_html(view: EngineView | None) -> str:
    rows = [[
        esc(s.get("strategy_id")), _strategy_state(s), esc(",".join(s.get("symbols") or [])),
        money(s.get("capital")), pnl_html(s.get("pnl")), money(s.get("exposure")), qty(s.get("trades")),
        money(s.get("sharpe")), pct(s.get("max_drawdown")), qty(s.get("open_orders")),
    ] for s in _snap(view, "strategies") or []]
    cols = ["strategy", "state", "symbols", "capital", "P&L", "exposure", "trades", "sharpe", "max DD", "open orders"]
    return html_table(cols, rows, table_id="strategies",
                      numeric=frozenset({"capital", "P&L", "exposure", "trades", "sharpe", "max DD", "open orders"}))


def positions_html(view: EngineView | None) -> str:
    rows = [[
        esc(p.get("strategy_id")), esc(p.get("symbol")), qty(p.get("quantity")), money(p.get("avg_price"), 4),
        money(p.get("mark")), money(p.get("market_value")), pnl_html(p.get("unrealized_pnl")),
        pnl_html(p.get("realized_pnl")),
    ] for p in _snap(view, "positions") or []]
    cols = ["strategy", "symbol", "quantity", "avg price", "mark", "market value", "unrealized", "realized"]
    return html_table(cols, rows, table_id="positions",
                      numeric=frozenset(cols[2:]))


_OPEN = frozenset({"SUBMITTED", "ACCEPTED", "PARTIALLY_FILLED", "PENDING_CANCEL"})


def orders_html(view: EngineView | None) -> str:
    """Open orders first, then the newest others, up to `MAX_ORDERS` rows."""
    orders = _snap(view, "orders") or []
    shown = [o for o in orders if o.get("status") in _OPEN]
    shown += [o for o in orders if o.get("status") not in _OPEN][: max(0, MAX_ORDERS - len(shown))]
    rows = [[
        ts_text(o.get("ts")), esc(o.get("order_id")), esc(o.get("strategy_id")), esc(o.get("symbol")),
        esc(o.get("side")), esc(o.get("order_type")), qty(o.get("quantity")), qty(o.get("filled")),
        money(o.get("price")), esc(o.get("status")),
    ] for o in shown]
    cols = ["time", "order", "strategy", "symbol", "side", "type", "quantity", "filled", "price", "status"]
    return html_table(cols, rows, table_id="orders", numeric=frozenset({"quantity", "filled", "price"}))


def risk_html(view: EngineView | None) -> str:
    """Where the limits in force came from, the monitors' readings with a utilisation bar (amber from
    75 %, red from 90 %), and the account-level limits in force."""
    risk = _snap(view, "risk") or {}
    source = risk.get("source") or {}
    if source.get("kind") == "off":
        head = f"<div id='risk-source' class='ql-alert-critical'><b>{esc(source.get('text'))}</b></div>"
    elif source:
        head = f"<div id='risk-source'>limits in force: {esc(source.get('text'))}</div>"
    else:
        head = "<div id='risk-source'><i>the engine did not say where its limits came from</i></div>"
    limits = risk.get("limits") or []
    rows = []
    for lim in limits:
        u = dec(lim.get("utilisation"))
        share = 0.0 if u is None else max(0.0, min(float(u), 1.0))  # a bar width, not money
        colour = "#cf222e" if share >= 0.9 else "#bf8700" if share >= 0.75 else "#1a7f37"
        bar = f"<div class='ql-bar'><div style='width:{share * 100:.0f}%;background:{colour}'></div></div>"
        rows.append([esc(lim.get("name")), esc(lim.get("scope")), money(lim.get("value")), money(lim.get("limit")),
                     bar, pct(lim.get("utilisation"), 0)])
    used = (html_table(["limit", "scope", "value", "limit", "use", "%"], rows, table_id="risk",
                       numeric=frozenset({"value", "%"})) if rows else "<i id='risk'>no monitor readings yet</i>")
    in_force = [[esc(r.get("name")), esc(r.get("limit")), esc(r.get("meaning"))] for r in risk.get("in_force") or []]
    table = html_table(["limit", "value", "bounds"], in_force, table_id="risk-in-force", max_height=240) if in_force else ""
    return head + used + table


def alerts_html(view: EngineView | None) -> str:
    alerts = (_snap(view, "alerts") or [])[:50]  # newest first, as published
    if not alerts:
        return "<i id='alerts'>no alerts</i>"
    rows = "".join(
        f"<tr class='ql-alert-{esc(str(a.get('level', '')).lower())}'><td>{ts_text(a.get('ts'))}</td>"
        f"<td>{esc(a.get('level'))}</td><td>{esc(a.get('source'))}</td><td>{esc(a.get('message'))}</td></tr>"
        for a in alerts
    )
    return f"<div class='ql-scroll' style='max-height:240px'><table class='ql' id='alerts'>{rows}</table></div>"
