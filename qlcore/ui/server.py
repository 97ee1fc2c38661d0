"""`qlcore serve`: the four dashboards behind a login checked against the hashed users file.

Panel's own basic auth compares plaintext passwords, so the server plugs in its own login handler
(`HashedLoginHandler`) that verifies against `UserStore`; on success Panel's handler sets the signed
``user`` cookie that `pn.state.user` reads, signed with the generated cookie secret. Websocket
connections are accepted only from the served host and port. Bokeh's and Panel's JavaScript and
CSS are served by this server (no CDN: the desk machines may have no internet).
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qlcore.ui.auth import USERS_FILE, UserStore, cookie_secret, ensure_admin

LOGIN_TEMPLATE = Path(__file__).with_name("templates") / "login.html"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True, slots=True)
class ServeConfig:
    """Where to listen and what to read: a frozen set of options (see `qlcore serve --help`)."""

    port: int = 5006
    address: str = "127.0.0.1"
    url: str | None = None
    data_dir: Path | None = None
    users_file: Path | None = None
    engine_id: str | None = None
    period_ms: int = 100
    show: bool = False
    allow_origins: tuple[str, ...] = ()
    num_procs: int = 1  # server processes sharing the port (each with its own sessions and poller)

    def origins(self) -> list[str]:
        """The websocket origins to accept: the served host and port only (both loopback names on loopback)."""
        if self.allow_origins:
            return list(self.allow_origins)
        hosts = ["127.0.0.1", "localhost"] if self.address in LOOPBACK or self.address == "" else [self.address]
        return [f"{h}:{self.port}" for h in hosts]


def _auth_provider(users: UserStore, engine: Any) -> Any:
    from panel.auth import BasicAuthProvider, BasicLoginHandler

    from qlcore.ui.actions import AUDIT_LOGIN, AUDIT_LOGIN_REFUSED, audit_append

    class HashedLoginHandler(BasicLoginHandler):
        def _validate(self, username: str, password: str) -> bool:
            user = users.verify(username, password)
            # every login and every refused one is on the audit trail, with the address it came from
            name = (username or "").strip()[:64] or "anonymous"
            details = {"remote_ip": self.request.remote_ip, **({"role": user.role.label} if user else {})}
            audit_append(engine, f"user:{name}", AUDIT_LOGIN if user else AUDIT_LOGIN_REFUSED, "dashboard/login", details)
            return user is not None

    class HashedAuthProvider(BasicAuthProvider):
        @property
        def login_handler(self) -> type:
            HashedLoginHandler._login_endpoint = self._login_endpoint
            HashedLoginHandler._login_template = self._login_template
            return HashedLoginHandler

    return HashedAuthProvider(login_template=str(LOGIN_TEMPLATE))


def apps(context: Any) -> dict[str, Callable[[], Any]]:
    """The four pages, each built fresh per session from the shared context."""
    from qlcore.ui.audit_page import create as audit
    from qlcore.ui.control import create as control
    from qlcore.ui.monitor import create as monitor
    from qlcore.ui.research import create as research

    return {
        "monitor": lambda: monitor(context),
        "control": lambda: control(context),
        "research": lambda: research(context),
        "audit": lambda: audit(context),
    }


def serve(config: ServeConfig, *, echo: Callable[[str], None] = print, start: bool = True) -> Any:
    """Prepare users and secrets, then serve the dashboards (blocks while `start`); the Bokeh server."""
    from qlcore.store.db import connect, project_data_dir
    from qlcore.ui.live import AppContext

    data_dir = config.data_dir or project_data_dir()
    users_file = config.users_file or data_dir / USERS_FILE
    users = UserStore(users_file)
    password = ensure_admin(users)
    if password is not None:
        echo(f"first run: created user 'admin' with password {password}")
        echo(f"  (also in {users_file.parent / 'initial-admin-password'}, mode 0600; change it: qlcore users passwd admin)")
    secret = cookie_secret(data_dir)
    os.environ.setdefault("BOKEH_RESOURCES", "server")
    import panel as pn

    db = connect(config.url)
    context = AppContext.create(db, users_file, engine_id=config.engine_id, period_ms=config.period_ms)
    if config.num_procs > 1:
        db.dispose()  # the processes are forked: none may inherit an open connection
        _workers_die_with_the_parent()
    host = "localhost" if config.address in ("127.0.0.1", "", "0.0.0.0") else config.address
    echo(f"serving the dashboards at http://{host}:{config.port}/monitor (control, research, audit)")
    return pn.serve(
        apps(context),
        port=config.port,
        address=config.address,
        websocket_origin=config.origins(),
        cookie_secret=secret,
        auth_provider=_auth_provider(users, db),
        show=config.show,
        start=start,
        title={"monitor": "Monitor", "control": "Control", "research": "Research", "audit": "Audit"},
        threaded=False,
        verbose=False,
        num_procs=config.num_procs,
    )


def _workers_die_with_the_parent() -> None:
    """Forked server processes get SIGTERM when the process that forked them ends, however it
    ends: a supervisor that signals `qlcore serve` alone (systemd's main pid, `kill PID`) stops them
    all, instead of leaving them serving on the port. Linux only (prctl); elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    parent = os.getpid()
    libc = ctypes.CDLL(None, use_errno=True)

    def in_child() -> None:
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent ended before the line above: nobody will signal
            os._exit(0)

    os.register_at_fork(after_in_child=in_child)


def default_context() -> Any:
    """The context for apps served without `qlcore serve` (``panel serve dashboards/monitor.py``): the
    default store and users file, shared by the server's sessions. Without a login nobody has a role,
    so such a server is read-only."""
    import panel as pn

    from qlcore.store.db import connect, project_data_dir
    from qlcore.ui.live import AppContext

    key = "qlcore.ui.context"
    if key not in pn.state.cache:
        pn.state.cache[key] = AppContext.create(connect(), project_data_dir() / USERS_FILE)
    return pn.state.cache[key]
