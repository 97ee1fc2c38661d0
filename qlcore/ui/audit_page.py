"""The audit page: search the audit log, trace an order's lineage, the chain's verification, command outcomes."""
from __future__ import annotations

from typing import Any

import orjson
import pandas as pd
import panel as pn
import param
from panel.viewable import Viewer
from param.parameters import NoNone

from qlcore.ui.components import html_pane, table
from qlcore.ui.format import esc, ts_text
from qlcore.ui.live import AppContext
from qlcore.ui.page import section, start_page


class AuditSearch(Viewer):
    context = param.ClassSelector(class_=AppContext, allow_None=NoNone)

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        w = pn.widgets
        self.text = w.TextInput(name="Subject or details contain", width=240)
        self.actor = w.TextInput(name="Actor starts with", placeholder="user:alice", width=180)
        self.action = w.TextInput(name="Action starts with", placeholder="ui.", width=160)
        self.search_btn = w.Button(name="Search", button_type="primary")
        self.results = table(pd.DataFrame(), height=360, name="audit-results")
        self.search_btn.on_click(lambda _: self.search())
        self.search()

    def search(self) -> None:
        entries = self.context.read_model.audit_search(
            (self.text.value or "").strip(), actor=(self.actor.value or "").strip(),
            action=(self.action.value or "").strip(), limit=300,
        )
        self.results.value = pd.DataFrame([{
            "seq": e.seq, "time": ts_text(e.ts), "actor": e.actor, "action": e.action, "subject": e.subject,
            "details": _details(e.details),
        } for e in entries], columns=["seq", "time", "actor", "action", "subject", "details"])

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(pn.FlexBox(self.text, self.actor, self.action, self.search_btn), self.results,
                         sizing_mode="stretch_width")


def _details(text: str) -> str:
    """The entry's details on one line: the action's parameters (a halt's reason) and its outcome first."""
    try:
        d = orjson.loads(text)
    except orjson.JSONDecodeError:
        return text[:300]
    if isinstance(d, dict) and "params" in d:
        params = ", ".join(f"{k}={v}" for k, v in (d.get("params") or {}).items())
        rest = ", ".join(f"{k}={v}" for k, v in d.items() if k not in ("params", "action"))
        return f"{params} | {rest}"[:300]
    return text[:300]


class OrderTrace(Viewer):
    context = param.ClassSelector(class_=AppContext, allow_None=NoNone)

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.order_id = pn.widgets.TextInput(name="Order id", placeholder="paper-O-12 or <stream>/<order id>", width=280)
        self.trace_btn = pn.widgets.Button(name="Trace", button_type="primary")
        self.out = html_pane("", sizing_mode="stretch_width", name="trace")
        self.trace_btn.on_click(lambda _: self.trace())

    def trace(self) -> None:
        try:
            lineages = self.context.read_model.trace(self.order_id.value or "")
        except ValueError as exc:
            self.out.object = f"<span class='pnl-neg'>{esc(exc)}</span>"
            return
        if not lineages:
            self.out.object = f"<i>no audit entries for order {esc(self.order_id.value)}</i>"
            return
        self.out.object = "".join(f"<pre>{esc(lin.render())}</pre>" for lin in lineages)

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(pn.Row(self.order_id, self.trace_btn), self.out, sizing_mode="stretch_width")


class ChainStatus(Viewer):
    context = param.ClassSelector(class_=AppContext, allow_None=NoNone)

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.out = html_pane("", sizing_mode="stretch_width", name="chain")
        self.verify_btn = pn.widgets.Button(name="Verify chain", button_type="primary")
        self.verify_btn.on_click(lambda _: self.verify())
        self.verify()

    def verify(self) -> None:
        v = self.context.read_model.audit_verify()
        cls = "pnl-pos" if v.ok else "pnl-neg"
        self.out.object = f"<span class='{cls}' id='chain-status'>{'VERIFIED' if v.ok else 'BROKEN'}: {esc(v)}</span>"

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Row(self.verify_btn, self.out, sizing_mode="stretch_width")


def commands_table(context: AppContext) -> pn.widgets.Tabulator:
    return table(pd.DataFrame([{
        "id": c.id, "submitted": ts_text(c.ts_submitted), "user": c.user, "kind": c.kind, "status": c.status,
        "outcome": c.reason or "", "payload": ", ".join(f"{k}={v}" for k, v in c.payload.items()),
    } for c in context.read_model.commands(100)]), height=260, name="audit-commands")


def create(context: AppContext) -> pn.template.BootstrapTemplate:
    page = start_page(context, "audit", "Audit")
    page.add(
        section("Chain verification", ChainStatus(context=context)),
        section("Audit log", AuditSearch(context=context)),
        section("Trace an order", OrderTrace(context=context)),
        section("Commands and their outcomes", commands_table(context)),
    )
    return page.template
