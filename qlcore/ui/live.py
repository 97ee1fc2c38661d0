"""What every page shares: the server's context (read model, actions, users) and each session's live status.

`LiveStatus` is one per browser session: a periodic callback reads the engine's status through
the shared `ReadModel` (one query per period for all sessions, thanks to its cache) and sets
`view` only when the snapshot changed, so components redraw on new data and the header's
heartbeat age and stale marker tick every period.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import param
from sqlalchemy import Engine

from qlcore.control.keys import DESK_SERVICE, issue_service_key
from qlcore.control.users import Role, UserStore
from qlcore.ui.actions import Actions
from qlcore.ui.readmodel import EngineView, ReadModel
from qlcore.ui.sessions import Logins, disconnect

PERIOD_MS = 100  # how often the server reads the engine's status; one cheap query, whatever the pages


@dataclass(frozen=True, slots=True)
class AppContext:
    """What a server gives its pages: built once, shared by every session."""

    read_model: ReadModel
    actions: Actions
    users: UserStore
    logins: Logins
    engine_id: str | None = None
    period_ms: int = PERIOD_MS
    _rendered: dict[str, tuple[str, str]] = field(default_factory=dict, repr=False, compare=False)
    _poller: list[Poller] = field(default_factory=list, repr=False, compare=False)

    @property
    def poller(self) -> Poller:
        """The server's one poller of the engine's status (made on first use)."""
        if not self._poller:
            self._poller.append(Poller(self))
        return self._poller[0]

    @classmethod
    def create(cls, engine: Engine, users_file: Path, *, engine_id: str | None = None,
               period_ms: int = PERIOD_MS, cookie_secret: str | None = None) -> AppContext:
        """The context of a server; without `cookie_secret` nobody can log in, so its pages are read-only."""
        users = UserStore(users_file)
        logins = Logins(users, cookie_secret)
        # a server that can log users in signs their actions with the desk service's key (made on first use)
        desk = None if cookie_secret is None else issue_service_key(users, DESK_SERVICE, acts_for_users=True)
        return cls(ReadModel(engine=engine), Actions(engine, users, logins=logins, signer=desk), users, logins,
                   engine_id, period_ms)

    def rendered(self, key: str, view: EngineView | None, render: Callable[[EngineView | None], str]) -> str:
        """`render(view)`, computed once per snapshot version and shared by every session of the server."""
        version = "" if view is None else view.version
        hit = self._rendered.get(key)
        if hit is not None and hit[0] == version:
            return hit[1]
        text = render(view)
        self._rendered[key] = (version, text)
        return text

    def session_user(self) -> tuple[str | None, Role | None]:
        """The user the current session's own login cookie proves (bound when the session opens) and their role now."""
        user = self.logins.open_current()
        return user, self.users.role_of(user)


class LiveStatus(param.Parameterized):
    """One session's view of the engine: `view` changes with the snapshot, `age_s`/`stale` as time passes."""

    view = param.ClassSelector(class_=EngineView, default=None, allow_None=True)
    age_s = param.Number(default=math.nan)
    stale = param.Boolean(default=True)
    error = param.String(default="")

    def __init__(self, context: AppContext, **params) -> None:
        super().__init__(**params)
        self.context = context
        self.refresh()

    def refresh(self) -> None:
        """Read the engine's status now (the shared poller calls `apply` instead)."""
        try:
            view = self.context.read_model.status(self.context.engine_id)
        except Exception as exc:  # a store outage shows on the page as stale, with why
            self.apply(None, f"store: {type(exc).__name__}: {exc}")
            return
        self.apply(view)

    def apply(self, view: EngineView | None, error: str = "") -> None:
        """Show `view`: components redraw when its snapshot version is new; the age and marker always follow."""
        updates: dict[str, object] = {"error": error}
        if error:
            updates["stale"] = True
        elif view is None:
            updates.update(stale=True, age_s=math.nan)
        else:
            updates.update(stale=view.stale, age_s=round(view.age_s, 1))
            if self.view is None or view.version != self.view.version:
                updates["view"] = view
        self.param.update(**updates)

    def start(self) -> None:
        """Follow the engine for as long as this session lives, through the server's one poller."""
        import panel as pn

        doc = pn.state.curdoc
        if doc is None or doc.session_context is None:  # not served (a notebook, a test): poll on our own
            from panel.io.callbacks import PeriodicCallback

            PeriodicCallback(callback=self.refresh, period=self.context.period_ms, background=True).start()
            return
        self.context.poller.add(self, doc)


class Poller:
    """One loop per server reads the engine's status every `period_ms` and hands each open page the newest
    view on its own document's next tick (with the document's lock), instead of every page polling.

    A page is updated when the snapshot's version changes, when the stale marker flips, and about once a
    second for the heartbeat age. At most one update per page waits at a time and it applies the newest
    view when it runs, so a busy server skips versions instead of queueing them. Pages leave when their
    session ends, and once a second every page's login is checked again: a page whose login has ended
    (logout, expiry, user removed or demoted) is disconnected."""

    def __init__(self, context: AppContext) -> None:
        self.context = context
        self._sessions: dict[int, _Page] = {}
        self._latest: tuple[EngineView | None, str] = (None, "")
        self._callback: Any = None
        self._checked_at = 0

    def add(self, live: LiveStatus, doc: Any) -> None:
        key = id(live)
        self._sessions[key] = _Page(live, doc)
        doc.on_session_destroyed(lambda _ctx: self._sessions.pop(key, None))
        if self._callback is None:
            from tornado.ioloop import IOLoop, PeriodicCallback

            self._callback = PeriodicCallback(self._tick, self.context.period_ms)
            IOLoop.current().add_callback(self._callback.start)

    def __len__(self) -> int:
        return len(self._sessions)

    def _tick(self) -> None:
        if not self._sessions:
            return
        self._end_revoked_pages()
        error = ""
        view: EngineView | None = None
        try:
            view = self.context.read_model.status(self.context.engine_id)
        except Exception as exc:  # shown on every page as stale, with why
            error = f"store: {type(exc).__name__}: {exc}"
        self._latest = (view, error)
        state = ("" if view is None else view.version, view is None or view.stale or bool(error),
                 int(time.monotonic()))
        for page in list(self._sessions.values()):
            if state != page.shown and not page.pending:
                page.pending = True
                page.doc.add_next_tick_callback(partial(self._apply, page))

    def _end_revoked_pages(self) -> None:
        logins = self.context.logins
        second = int(time.monotonic())
        if not logins.secret or second == self._checked_at:  # no logins on this server: nothing to end
            return
        self._checked_at = second
        for key, page in list(self._sessions.items()):
            session = page.doc.session_context
            if session is not None and logins.bound_user(session.id) is None:
                self._sessions.pop(key, None)
                disconnect(page.doc)

    def _apply(self, page: _Page) -> None:
        # as the session's own document, and every change of this update in one message to the browser
        from panel.io import hold
        from panel.io.state import set_curdoc

        view, error = self._latest
        page.pending = False
        page.shown = ("" if view is None else view.version, view is None or view.stale or bool(error),
                      int(time.monotonic()))
        with set_curdoc(page.doc), hold(page.doc):
            page.live.apply(view, error)


@dataclass
class _Page:
    live: LiveStatus
    doc: Any
    shown: tuple[str, bool, int] = ("", True, 0)
    pending: bool = False
