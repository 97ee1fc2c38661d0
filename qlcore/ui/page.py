"""The frame every dashboard page shares: template, styles, the session's live status and user."""
from __future__ import annotations

from dataclasses import dataclass

import panel as pn

from qlcore.control.users import Role
from qlcore.ui.components import StatusBar
from qlcore.ui.format import CSS
from qlcore.ui.live import AppContext, LiveStatus

EXTENSIONS = ("tabulator",)


@dataclass
class Page:
    template: pn.template.BootstrapTemplate
    live: LiveStatus
    user: str | None
    role: Role | None

    def add(self, *objects: object) -> None:
        main = self.template.main
        assert main is not None
        main.extend(objects)


def start_page(context: AppContext, app: str, title: str) -> Page:
    """A page for the current session: template (served from this machine, no CDN), status bar, live refresh."""
    pn.extension(*EXTENSIONS, notifications=True)
    user, role = context.session_user()
    live = LiveStatus(context)
    live.start()
    template = pn.template.BootstrapTemplate(
        title=f"Quantum Leap · {title}", header_background="#24292f", collapsed_sidebar=True,
    )
    template.config.raw_css.append(CSS)
    status = StatusBar(live=live, app=app, user=user or "", role=role.label if role else "no role")
    assert template.main is not None
    template.main.append(status)
    return Page(template, live, user, role)


def section(title: str, *objects: object, **kw: object) -> pn.Card:
    """A titled card that fills the width (and wraps on a phone)."""
    return pn.Card(*objects, title=title, sizing_mode="stretch_width", collapsible=False, **kw)
