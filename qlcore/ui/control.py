"""The control page: strategies, the order ticket with its pre-trade preview, cancel, flatten (which
also works while trading is halted), the emergency stop (with a confirmation, a required reason and an
optional flatten), resume trading of the account or of one strategy (admin: also re-enables a strategy
runaway protection disabled) and limits (admin). A FAILED strategy is cleared with Stop.

Controls a role may not use are not shown; whatever the browser sends, `Actions.run` checks the
session user's role again before a command is written, and audits refusals.
"""
from __future__ import annotations

from typing import Any

import pandas as pd
import panel as pn
import param
from panel.viewable import Viewer
from param.parameters import NoNone

from qlcore.control.users import Role
from qlcore.risk.config import FIELDS
from qlcore.ui.actions import ActionRefused, allowed
from qlcore.ui.components import html_pane, strategies_table, table
from qlcore.ui.format import esc, ts_text
from qlcore.ui.live import AppContext, LiveStatus
from qlcore.ui.page import section, start_page
from qlcore.ui.preview import preview_order


class ControlPanel(Viewer):
    """Every control of the page, bound to one session's live status; all actions go through `act`."""

    live = param.ClassSelector(class_=LiveStatus, allow_None=NoNone)
    role = param.ClassSelector(class_=Role, default=None, allow_None=True)

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.context: AppContext = self.live.context
        self.message = pn.pane.Alert("", alert_type="light", visible=False, sizing_mode="stretch_width", name="message")
        w = pn.widgets
        # strategies
        self.strategy = w.Select(name="Strategy", options=[], width=220, css_classes=["ql-strategy"])
        self.cancel_on_pause = w.Checkbox(name="cancel its open orders", value=False)
        self.flatten_on_stop = w.Checkbox(name="flatten on stop", value=False)
        self.pause_btn = w.Button(name="Pause", button_type="warning")
        self.resume_btn = w.Button(name="Resume", button_type="success")
        self.stop_btn = w.Button(name="Stop", button_type="danger")
        self.pause_btn.on_click(lambda _: self._strategy_action("strategy.pause"))
        self.resume_btn.on_click(lambda _: self._strategy_action("strategy.resume"))
        self.stop_btn.on_click(lambda _: self._strategy_action("strategy.stop"))
        # order ticket
        self.t_strategy = w.Select(name="Strategy", options=[], width=200, css_classes=["ql-ticket-strategy"])
        self.t_symbol = w.TextInput(name="Symbol", placeholder="AAPL", width=110, css_classes=["ql-ticket-symbol"])
        self.t_side = w.Select(name="Side", options=["BUY", "SELL"], width=90, css_classes=["ql-ticket-side"])
        self.t_qty = w.TextInput(name="Quantity", placeholder="10", width=110, css_classes=["ql-ticket-qty"])
        self.t_type = w.Select(name="Type", options=["MARKET", "LIMIT"], width=110, css_classes=["ql-ticket-type"])
        self.t_price = w.TextInput(name="Limit price", placeholder="for LIMIT", width=110, css_classes=["ql-ticket-price"])
        self.check_btn = w.Button(name="Check order", button_type="primary")
        self.send_btn = w.Button(name="Send order", button_type="success", disabled=True)
        self.preview = html_pane("", sizing_mode="stretch_width", name="preview")
        self.check_btn.on_click(lambda _: self._check())
        self.send_btn.on_click(lambda _: self._send())
        self._checked: dict[str, Any] | None = None
        for widget in (self.t_strategy, self.t_symbol, self.t_side, self.t_qty, self.t_type, self.t_price):
            widget.param.watch(lambda *_: self._ticket_changed(), "value")
        # orders and flatten
        self.open_order = w.Select(name="Open order", options=[], width=320)
        self.cancel_btn = w.Button(name="Cancel order", button_type="warning")
        self.cancel_btn.on_click(lambda _: self._cancel())
        self.flatten_scope = w.Select(name="Flatten", options=["whole account"], width=220)
        self.flatten_btn = w.Button(name="Flatten", button_type="danger")
        self.flatten_btn.on_click(lambda _: self._flatten())
        # emergency stop with a confirmation that needs a reason
        self.halt_btn = w.Button(name="EMERGENCY STOP", button_type="danger", height=48, width=220)
        self.halt_reason = w.TextInput(name="Reason (required)", placeholder="why trading must stop", width=320,
                                       css_classes=["ql-halt-reason"])
        self.halt_flatten = w.Checkbox(name="also close every position (flatten)", value=False,
                                       css_classes=["ql-halt-flatten"])
        self.halt_everywhere = w.Checkbox(name="every engine of the desk (admin)", value=False, visible=False,
                                          css_classes=["ql-halt-everywhere"])
        self.halt_confirm = w.Button(name="Confirm emergency stop", button_type="danger")
        self.halt_abort = w.Button(name="Do not stop", button_type="light")
        self.halt_dialog = pn.Column(
            html_pane("<b>Stop all trading?</b> Every open order is cancelled and the account is HALTED "
                         "until an admin resumes trading."),
            self.halt_reason, self.halt_flatten, self.halt_everywhere, pn.Row(self.halt_confirm, self.halt_abort),
            visible=False, styles={"border": "2px solid #cf222e", "padding": "8px", "border-radius": "6px"},
            name="halt-dialog",
        )
        self.halt_btn.on_click(lambda _: setattr(self.halt_dialog, "visible", True))
        self.halt_abort.on_click(lambda _: setattr(self.halt_dialog, "visible", False))
        self.halt_confirm.on_click(lambda _: self._halt())
        # admin: resume trading (the account, or one strategy halted at its scope or disabled), limits
        self.resume_scope = w.Select(name="Resume", options=["account"], width=200, css_classes=["ql-resume-scope"])
        self.resume_reason = w.TextInput(name="Reason", placeholder="why trading may resume", width=320)
        self.resume_trading_btn = w.Button(name="Resume trading", button_type="success")
        self.resume_trading_btn.on_click(lambda _: self._resume_trading())
        self.l_scope = w.Select(name="Scope", options=["account"], width=200)
        self.l_name = w.Select(name="Limit", options=sorted(FIELDS), width=240)
        self.l_value = w.TextInput(name="Value", width=140)
        self.l_reason = w.TextInput(name="Reason", width=240)
        self.limit_btn = w.Button(name="Set limit", button_type="primary")
        self.limit_btn.on_click(lambda _: self._set_limit())
        # recent commands and their outcomes
        self.commands = table(pd.DataFrame(), height=220, name="commands")
        self._commands_key: tuple[Any, ...] = ()
        self._refresh_choices()
        self._refresh_commands(force=True)  # its columns from the start, even with no command yet
        self.live.param.watch(lambda *_: self._refresh_choices(), "view")
        self.live.param.watch(lambda *_: self._refresh_commands(), "age_s")

    # --- actions ----------------------------------------------------------------------------------
    def act(self, kind: str, payload: dict[str, Any]) -> int | None:
        """Send one action as the session's user; show what came of it. The command id, or None if refused."""
        try:
            view = self.live.view  # the engine this page shows, not a fixed name
            result = self.context.actions.run(kind, payload, engine_id=view.engine_id if view else self.context.engine_id)
        except ActionRefused as exc:
            self._say(f"refused: {exc.reason}", "danger")
            return None
        self._say(f"{kind} sent as command #{result.command_id} by {result.user}", "success")
        self._refresh_commands(force=True)
        return result.command_id

    def _strategy_action(self, kind: str) -> None:
        sid = self.strategy.value
        if not sid:
            self._say("choose a strategy first", "warning")
            return
        payload: dict[str, Any] = {"strategy_id": sid}
        if kind == "strategy.pause" and self.cancel_on_pause.value:
            payload["cancel_open_orders"] = True
        if kind == "strategy.stop" and self.flatten_on_stop.value:
            payload["flatten"] = True
        self.act(kind, payload)

    def _ticket(self) -> dict[str, Any]:
        ticket: dict[str, Any] = {
            "strategy_id": self.t_strategy.value or "", "symbol": (self.t_symbol.value or "").strip().upper(),
            "side": self.t_side.value, "quantity": (self.t_qty.value or "").strip(), "order_type": self.t_type.value,
        }
        if self.t_type.value == "LIMIT":
            ticket["price"] = (self.t_price.value or "").strip()
        return ticket

    def _ticket_changed(self) -> None:
        self._checked = None
        self.send_btn.disabled = True

    def _check(self) -> None:
        ticket = self._ticket()
        missing = [k for k in ("strategy_id", "symbol", "quantity") if not ticket[k]]
        if missing:
            self.preview.object = f"<span class='pnl-neg'>fill in: {', '.join(missing)}</span>"
            return
        view = self.live.view
        try:
            result = preview_order(view.snapshot if view else {}, ticket)
        except ValueError as exc:
            self.preview.object = f"<span class='pnl-neg' id='preview-result'>{esc(exc)}</span>"
            return
        cls = "pnl-pos" if result.ok else "pnl-neg"
        self.preview.object = f"<span class='{cls}' id='preview-result'>{esc(result)}</span>"
        self._checked = ticket if result.ok else None
        self.send_btn.disabled = not result.ok

    def _send(self) -> None:
        ticket = self._ticket()
        if self._checked != ticket:
            self._say("check the order again: the ticket changed since its check", "warning")
            self._ticket_changed()
            return
        self.act("order.submit", ticket)
        self._ticket_changed()

    def _cancel(self) -> None:
        if not self.open_order.value:
            self._say("no open order chosen", "warning")
            return
        self.act("order.cancel", {"order_id": self.open_order.value})

    def _flatten(self) -> None:
        scope = self.flatten_scope.value
        self.act("flatten", {} if scope == "whole account" else {"strategy_id": scope})

    def _halt(self) -> None:
        reason = (self.halt_reason.value or "").strip()
        if not reason:
            self._say("an emergency stop needs a reason", "warning")
            return
        payload: dict[str, Any] = {"reason": reason, **({"flatten": True} if self.halt_flatten.value else {})}
        if self.halt_everywhere.value:
            sent = self._halt_everywhere(payload)
        else:
            sent = self.act("halt", payload) is not None
        if sent:
            self.halt_dialog.visible = False
            self.halt_reason.value = ""
            self.halt_flatten.value = False

    def _halt_everywhere(self, payload: dict[str, Any]) -> bool:
        engines = [v.engine_id for v in self.context.read_model.engines()]
        try:
            results = self.context.actions.run_everywhere("halt", payload, engines)
        except ActionRefused as exc:
            self._say(f"refused: {exc.reason}", "danger")
            return False
        self._say(f"halt sent to {len(results)} engines ({', '.join(engines)}) by {results[0].user}", "success")
        self._refresh_commands(force=True)
        return True

    def _resume_trading(self) -> None:
        reason = (self.resume_reason.value or "").strip()
        scope = self.resume_scope.value
        payload = {k: v for k, v in (("reason", reason), ("strategy_id", None if scope == "account" else scope)) if v}
        self.act("resume_trading", payload)

    def _set_limit(self) -> None:
        name, value, scope = self.l_name.value, (self.l_value.value or "").strip(), self.l_scope.value
        if not value:
            self._say("give the limit a value", "warning")
            return
        converted: Any = value
        if FIELDS[name].kind == "bool":
            converted = value.lower() in ("1", "true", "yes", "on")
        elif FIELDS[name].kind == "int":
            converted = int(value) if value.isdigit() else value
        payload: dict[str, Any] = {"reason": (self.l_reason.value or "").strip() or None}
        if scope == "account":  # the engine merges a change into the limits in force
            payload["limits"] = {"account": {name: converted}}
        else:
            payload.update(limits={name: converted}, strategy_id=scope)
        self.act("limits.set", {k: v for k, v in payload.items() if v is not None})

    # --- display ---------------------------------------------------------------------------------
    def _say(self, text: str, kind: str) -> None:
        self.message.param.update(object=text, alert_type=kind, visible=True)

    def _refresh_choices(self) -> None:
        view = self.live.view
        snap = view.snapshot if view else {}
        sids = [s.get("strategy_id") for s in snap.get("strategies") or []]
        opens = {
            f"{o['order_id']} {o.get('side')} {o.get('quantity')} {o.get('symbol')} ({o.get('status')})": o["order_id"]
            for o in snap.get("orders") or []
            if o.get("status") in ("SUBMITTED", "ACCEPTED", "PARTIALLY_FILLED")
        }
        _set_options(self.strategy, sids)
        _set_options(self.t_strategy, sids)
        _set_options(self.open_order, opens)
        _set_options(self.flatten_scope, ["whole account", *sids])
        _set_options(self.l_scope, ["account", *sids])
        _set_options(self.resume_scope, ["account", *sids])

    def _refresh_commands(self, force: bool = False) -> None:
        cmds = self.context.read_model.commands(15)
        key = tuple((c.id, c.status) for c in cmds)
        if key == self._commands_key and not force:
            return
        self._commands_key = key
        self.commands.value = pd.DataFrame([{
            "id": c.id, "submitted": ts_text(c.ts_submitted), "user": c.user, "kind": c.kind, "status": c.status,
            "outcome": c.reason or "", "payload": ", ".join(f"{k}={v}" for k, v in c.payload.items() if k != "limits"),
        } for c in cmds], columns=["id", "submitted", "user", "kind", "status", "outcome", "payload"])
        # (the columns are given: a table whose columns change with its first rows could show the new
        # header without the rows in the browser, seen under load)

    def __panel__(self) -> pn.viewable.Viewable:
        role = self.role
        trader = allowed(role, "halt")
        admin = allowed(role, "resume_trading")
        self.halt_everywhere.visible = admin
        note = html_pane(
            f"<i>Read-only: your role is {esc(role.label if role else 'none')}; control actions need trader.</i>",
            visible=not trader, name="read-only-note",
        )
        trader_controls = pn.Column(
            section("Emergency stop", pn.Row(self.halt_btn), self.halt_dialog),
            section("Strategies", pn.FlexBox(self.strategy, self.pause_btn, self.resume_btn, self.stop_btn,
                                             self.cancel_on_pause, self.flatten_on_stop)),
            section("Order ticket", pn.FlexBox(self.t_strategy, self.t_symbol, self.t_side, self.t_qty, self.t_type,
                                               self.t_price), pn.Row(self.check_btn, self.send_btn), self.preview),
            section("Orders and positions", pn.FlexBox(self.open_order, self.cancel_btn, self.flatten_scope,
                                                       self.flatten_btn)),
            visible=trader, sizing_mode="stretch_width", name="trader-controls",
        )
        admin_controls = pn.Column(
            section("Resume trading (admin)", pn.FlexBox(self.resume_scope, self.resume_reason, self.resume_trading_btn)),
            section("Risk limits (admin)", pn.FlexBox(self.l_scope, self.l_name, self.l_value, self.l_reason,
                                                      self.limit_btn)),
            visible=admin, sizing_mode="stretch_width", name="admin-controls",
        )
        return pn.Column(
            self.message, note, section("Strategies", strategies_table(self.live)), trader_controls,
            admin_controls, section("Recent commands", self.commands), sizing_mode="stretch_width",
        )


def _set_options(select: pn.widgets.Select, options: list[Any] | dict[str, Any]) -> None:
    """New choices, keeping the chosen one while it is still there (else the first)."""
    if select.options == options:
        return
    values = list(options.values()) if isinstance(options, dict) else list(options)
    keep = select.value if select.value in values else (values[0] if values else None)
    select.param.update(options=options, value=keep)


def create(context: AppContext) -> pn.template.BootstrapTemplate:
    """The control page for the current session; its controls follow the user's role."""
    page = start_page(context, "control", "Control")
    page.add(ControlPanel(live=page.live, role=page.role))
    return page.template
