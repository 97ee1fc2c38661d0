"""`qlcore serve`: the four dashboards behind a login checked against the hashed users file.

The server's doors are `qlcore.ui.login`: its own login and logout pages (Panel's basic auth
compares plaintext passwords and reflects its error text), `Doors.request_user` as the auth hook of
every page and websocket, and hardening headers on every response. Session tokens carry no
cookies (a page's script can read its token). Websocket connections are accepted only from the
served host and port. Bokeh's and Panel's JavaScript and CSS are served by this server (no CDN:
the desk machines may have no internet). With ``--ssl-certfile``/``--ssl-keyfile`` it serves HTTPS
and its cookies are Secure.
"""
from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qlcore.control.keys import DESK_SERVICE, issue_service_key
from qlcore.control.users import USERS_FILE, UserStore, cookie_secret, ensure_admin

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
    ssl_certfile: Path | None = None  # serve HTTPS with this certificate (and key): cookies become Secure
    ssl_keyfile: Path | None = None
    lockout_s: float = 300.0  # how long a user name or address is locked out after too many failed logins

    @property
    def tls(self) -> bool:
        return self.ssl_certfile is not None

    def origins(self) -> list[str]:
        """The websocket origins to accept: the served host and port only (both loopback names on loopback)."""
        if self.allow_origins:
            return list(self.allow_origins)
        hosts = ["127.0.0.1", "localhost"] if self.address in LOOPBACK or self.address == "" else [self.address]
        return [f"{h}:{self.port}" for h in hosts]


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
    from qlcore.ui.actions import audit_user_changes
    from qlcore.ui.live import AppContext
    from qlcore.ui.login import Doors, auth_provider, security_headers
    from qlcore.ui.sessions import LOGIN_COOKIE
    from qlcore.ui.throttle import LoginThrottle

    data_dir = config.data_dir or project_data_dir()
    users_file = config.users_file or data_dir / USERS_FILE
    # the first admin and the desk's own key are audited as the OS user who runs the server
    users = UserStore(users_file, on_change=audit_user_changes(lambda: connect(config.url), f"os:{getpass.getuser()}"))
    password = ensure_admin(users)
    issue_service_key(users, DESK_SERVICE, acts_for_users=True)  # the key that signs the users' actions
    if password is not None:
        echo(f"first run: created user 'admin' with password {password}")
        echo(f"  (also in {users_file.parent / 'initial-admin-password'}, mode 0600; change it: qlcore users passwd admin)")
    secret = cookie_secret(data_dir)
    os.environ.setdefault("BOKEH_RESOURCES", "server")
    import panel as pn

    db = connect(config.url)
    context = AppContext.create(db, users_file, engine_id=config.engine_id, period_ms=config.period_ms,
                                cookie_secret=secret)
    doors = Doors(users, context.logins, db, throttle=LoginThrottle(lockout_s=config.lockout_s), secure=config.tls)
    if config.num_procs > 1:
        db.dispose()  # the processes are forked: none may inherit an open connection
        _workers_die_with_the_parent()
    host = "localhost" if config.address in ("127.0.0.1", "", "0.0.0.0") else config.address
    scheme = "https" if config.tls else "http"
    echo(f"serving the dashboards at {scheme}://{host}:{config.port}/monitor (control, research, audit)")
    tls = {"ssl_certfile": str(config.ssl_certfile), "ssl_keyfile": str(config.ssl_keyfile)} if config.tls else {}
    server = pn.serve(
        apps(context),
        port=config.port,
        address=config.address,
        websocket_origin=config.origins(),
        cookie_secret=secret,
        auth_provider=auth_provider(doors),
        # a session token is readable by the page's script: it must not carry the login cookie
        exclude_cookies=[LOGIN_COOKIE, "_xsrf", "id_token"],
        exclude_headers=["Cookie", "Authorization"],
        show=config.show,
        start=False,
        title={"monitor": "Monitor", "control": "Control", "research": "Research", "audit": "Audit"},
        threaded=False,
        verbose=False,
        num_procs=config.num_procs,
        **tls,
    )
    # (from here on, with --num-procs N, every forked server process runs this for its own application)
    app = server._tornado
    app.add_transform(security_headers(config.tls))
    app.settings["xsrf_cookie_kwargs"] = {"httponly": True, "samesite": "Strict", "secure": config.tls, "path": "/"}
    if start:
        server.start()
        server.io_loop.start()
    return server


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
