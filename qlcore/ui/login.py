"""The desk's doors: the login and logout pages, who a request is, and the headers of every response.

- ``/login`` renders an autoescaped template (nothing from the URL is shown) with an XSRF token;
  its POST is refused unless it carries that token and comes from the desk's own origin, is
  throttled per user name and address (`LoginThrottle`: a locked-out attempt is refused without
  running the password hash), and verifies the password off the server's event loop, one check per
  user name at a time (parallel guessers of one name queue behind nobody else's login).
- A successful login sets the signed ``user`` cookie (`Logins`): HttpOnly, SameSite=Strict, Secure
  under TLS, valid one day. ``/logout`` ends every session of the user on the server.
- `request_user` is the auth hook of every page and websocket: the request's own cookie, verified
  now; a websocket is refused when its cookie proves another user than the session it asks for.
- `SecurityHeaders` adds a Content-Security-Policy (everything from the desk itself, no frames) and
  the usual hardening headers to every response.

Every login, refused login, lockout, logout and refused websocket is on the audit trail.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import tornado.web
from sqlalchemy import Engine
from tornado.ioloop import IOLoop
from tornado.websocket import WebSocketHandler

from qlcore.control.users import UserStore
from qlcore.ui.actions import (
    AUDIT_LOGIN,
    AUDIT_LOGIN_LOCKED,
    AUDIT_LOGIN_REFUSED,
    AUDIT_LOGOUT,
    AUDIT_SESSION_REFUSED,
    audit_append,
)
from qlcore.ui.sessions import LOGIN_COOKIE, Logins, websocket_session_id
from qlcore.ui.throttle import LoginThrottle

LOGIN_TEMPLATE = Path(__file__).with_name("templates") / "login.html"
LOGIN_URL, LOGOUT_URL = "/login", "/logout"

# The dashboards are Bokeh/Panel pages: their scripts and styles are inline or served by the desk
# (no CDN); they talk to the desk over its own websocket. Nothing may frame them.
PAGE_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline' 'unsafe-eval'; "
            "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; font-src 'self' data:; "
            "connect-src 'self' {ws}; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'")
# The login page runs no script at all.
LOGIN_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; "
             "base-uri 'none'; frame-ancestors 'none'")


@dataclass
class Doors:
    """What the login, logout and auth hooks share: users, logins, throttle, audit store, TLS or not."""

    users: UserStore
    logins: Logins
    audit: Engine
    throttle: LoginThrottle = field(default_factory=LoginThrottle)
    secure: bool = False  # served over TLS: cookies are Secure, and HSTS is sent
    hasher: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(2, thread_name_prefix="login"))
    _hashing: set[str] = field(default_factory=set)  # user names whose password is being checked

    def request_user(self, handler: Any) -> str | None:
        """The auth hook of every page and websocket: who the request's own cookie proves now."""
        user = self.logins.verify(handler.get_cookie(LOGIN_COOKIE))
        if user is None or not isinstance(handler, WebSocketHandler):
            return user
        session_id = websocket_session_id(handler)
        if self.logins.may_join(session_id, user):
            return user
        self.record(user, AUDIT_SESSION_REFUSED, handler.request.remote_ip,
                    {"session": session_id, "reason": "the session belongs to another user"})
        return None

    def record(self, user: str, action: str, address: str | None, details: dict[str, Any] | None = None) -> None:
        name = (user or "").strip()[:64] or "anonymous"
        audit_append(self.audit, f"user:{name}", action, "dashboard/login", {"remote_ip": address, **(details or {})})


class _Page(tornado.web.RequestHandler):
    doors: Doors  # set on the subclass `handlers` makes

    def set_default_headers(self) -> None:
        self.set_header("Cache-Control", "no-store")

    def _cookie(self, name: str, value: str) -> None:
        self.set_cookie(name, value, expires_days=self.doors.logins.ttl_s / 86400, httponly=True,
                        samesite="Strict", secure=self.doors.secure, path="/")


class LoginHandler(_Page):
    """GET: the login form. POST: same origin and XSRF token, throttle, password, cookie, redirect."""

    def get(self) -> None:
        self._form("", 200)

    async def post(self) -> None:
        if not _same_origin(self.request):
            raise tornado.web.HTTPError(403, "login refused: posted from another site")
        self.check_xsrf_cookie()
        name = self.get_body_argument("username", "").strip()[:64]
        password = self.get_body_argument("password", "")
        address = self.request.remote_ip or "?"
        doors = self.doors
        wait = doors.throttle.locked_for(name, address)
        if wait > 0:  # no hash, no audit entry: the lockout itself was audited once
            self.set_header("Retry-After", str(int(wait) + 1))
            return self._form(f"Too many failed logins for this user or from this address: "
                              f"try again in {int(wait) + 1} s.", 429)
        if name in doors._hashing:  # one password check per user name at a time: parallel guessers wait
            return self._form("A login for this user is being checked: try again in a moment.", 429)
        doors._hashing.add(name)
        try:
            user = await IOLoop.current().run_in_executor(doors.hasher, doors.users.verify, name, password)
        finally:
            doors._hashing.discard(name)
        if user is None:
            doors.record(name, AUDIT_LOGIN_REFUSED, address)
            for lockout in doors.throttle.failed(name, address):
                doors.record(name, AUDIT_LOGIN_LOCKED, address, {"locked": lockout.key, "seconds": lockout.seconds})
            return self._form("Invalid username or password.", 401)
        doors.throttle.succeeded(name)
        doors.record(name, AUDIT_LOGIN, address, {"role": user.role.label})
        self._cookie(LOGIN_COOKIE, doors.logins.sign(user).decode())
        self.redirect(_local(self.get_body_argument("next", "")) or "/")

    def _form(self, error: str, status: int) -> None:
        self.set_status(status)
        self.set_header("Content-Security-Policy", LOGIN_CSP)
        nxt = _local(self.get_argument("next", ""))
        self.finish(_template().render(login_endpoint=LOGIN_URL, errormessage=error,
                                       xsrf_token=self.xsrf_token.decode(), next_url=nxt))


class LogoutHandler(_Page):
    """Ends every session of the user on the server (their epoch moves on), then clears the cookie."""

    def get(self) -> None:
        user = self.doors.logins.verify(self.get_cookie(LOGIN_COOKIE))
        if user is not None:
            self.doors.users.end_sessions(user)
            self.doors.record(user, AUDIT_LOGOUT, self.request.remote_ip)
        for name in (LOGIN_COOKIE, "id_token", "next_url"):
            self.clear_cookie(name, path="/")
        self.set_header("Content-Security-Policy", LOGIN_CSP)
        self.finish(_template().render(login_endpoint=LOGIN_URL, errormessage="", logged_out=True,
                                       xsrf_token=self.xsrf_token.decode(), next_url=""))


def handlers(doors: Doors) -> tuple[type[LoginHandler], type[LogoutHandler]]:
    """The login and logout handler classes bound to `doors` (Bokeh registers classes, not instances)."""
    return (type("DeskLoginHandler", (LoginHandler,), {"doors": doors}),
            type("DeskLogoutHandler", (LogoutHandler,), {"doors": doors}))


def auth_provider(doors: Doors) -> Any:
    """The Bokeh auth provider of `qlcore serve`: our login and logout pages and `request_user`."""
    from bokeh.server.auth_provider import AuthProvider

    login, logout = handlers(doors)

    class DeskAuth(AuthProvider):
        @property
        def get_user(self) -> Any:
            return doors.request_user

        @property
        def login_url(self) -> str:
            return LOGIN_URL

        @property
        def login_handler(self) -> type:
            return login

        @property
        def logout_url(self) -> str:
            return LOGOUT_URL

        @property
        def logout_handler(self) -> type:
            return logout

    return DeskAuth()


class SecurityHeaders(tornado.web.OutputTransform):
    """Hardening headers on every response of the server (a page's own CSP, like the login's, wins)."""

    secure = False  # set on the subclass `security_headers` makes

    def transform_first_chunk(self, status_code: int, headers: Any, chunk: bytes, finishing: bool) -> tuple[int, Any, bytes]:
        host = self.request.host
        if "Content-Security-Policy" not in headers:
            headers["Content-Security-Policy"] = PAGE_CSP.format(ws=f"{'wss' if self.secure else 'ws'}://{host}")
        headers["X-Frame-Options"] = "DENY"
        headers["X-Content-Type-Options"] = "nosniff"
        headers["Referrer-Policy"] = "same-origin"
        headers["Cross-Origin-Opener-Policy"] = "same-origin"
        if self.secure:
            headers["Strict-Transport-Security"] = "max-age=31536000"
        return status_code, headers, chunk

    def __init__(self, request: Any) -> None:
        super().__init__(request)
        self.request = request


def security_headers(secure: bool) -> type[SecurityHeaders]:
    return type("DeskSecurityHeaders", (SecurityHeaders,), {"secure": secure})


def _same_origin(request: Any) -> bool:
    """Does a POST come from the desk's own pages? (Browsers say where a request comes from.)"""
    if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
        return False
    source = request.headers.get("Origin") or request.headers.get("Referer")
    if source is None:
        return True  # not a browser; the XSRF token is still required
    return urlparse(source).netloc.lower() == request.host.lower()


def _local(url: str) -> str:
    """`url` if it is a path on this server (never another site), else ""."""
    if not url.startswith("/") or url.startswith("//") or "\\" in url or any(ord(c) < 32 for c in url):
        return ""
    return url


@cache
def _template() -> Any:
    from jinja2 import Environment

    env = Environment(autoescape=True)  # every value rendered into the page is escaped
    return env.from_string(LOGIN_TEMPLATE.read_text(encoding="utf-8"))
