"""Who a request or a dashboard session is, proven on the server at every use.

A login sets one signed, HttpOnly, SameSite=Strict cookie ``user`` whose value is ``name|epoch``,
signed with the server's cookie secret and stamped with its time. `Logins.verify` accepts it only
while all of these hold, read from the users file at that moment:

- the signature is the server's and the stamp is younger than `LOGIN_TTL_S` (one rule, one day);
- the user still exists and their epoch is still the cookie's (logout, a new password and a lower
  role move it on: every older cookie of that user is dead).

A dashboard session (one browser page) is bound to the cookie of the request that opened it — the
page's own HTTP request, or its websocket's when the websocket opens the session — never to the
cookies copied into the session token, which a page's script can read. A websocket whose own
cookie proves another user than the session's is refused (`may_join`), and every action checks
the bound cookie again (`current_user`), so a session ends within a poll when its login does.
"""
from __future__ import annotations

import threading
from typing import Any

from qlcore.control.users import User, UserStore

LOGIN_COOKIE = "user"
LOGIN_TTL_S = 24 * 3600


class Logins:
    """The login cookie (make and verify) and which browser session holds which login."""

    def __init__(self, users: UserStore, secret: str | None, *, ttl_s: float = LOGIN_TTL_S) -> None:
        self.users = users
        self.secret = secret
        self.ttl_s = ttl_s
        self._bound: dict[str, bytes] = {}  # session id -> the signed cookie that opened it
        self._lock = threading.Lock()

    # --- the cookie -------------------------------------------------------------------------------
    def cookie_value(self, user: User) -> str:
        """What the login cookie says (before signing): the user and their session epoch."""
        return f"{user.name}|{user.epoch}"

    def sign(self, user: User) -> bytes:
        """The signed login cookie for `user` (what a successful login sets)."""
        from tornado.web import create_signed_value

        if not self.secret:
            raise RuntimeError("no cookie secret: logins are off")
        return create_signed_value(self.secret, LOGIN_COOKIE, self.cookie_value(user))

    def verify(self, signed: str | bytes | None) -> str | None:
        """The user the signed cookie proves now, or None (forged, older than a day, ended, user removed)."""
        name, epoch = self._decode(signed)
        user = self.users.users().get(name) if name else None
        if user is None or not epoch.isdigit() or int(epoch) != user.epoch:
            return None
        return user.name

    def _decode(self, signed: str | bytes | None) -> tuple[str, str]:
        """(name, epoch) of a cookie with the server's signature and a fresh stamp, else ("", "")."""
        from tornado.web import decode_signed_value

        if not signed or not self.secret:
            return "", ""
        raw = decode_signed_value(self.secret, LOGIN_COOKIE, signed, max_age_days=self.ttl_s / 86400)
        if raw is None:
            return "", ""
        name, _, epoch = raw.decode("utf-8", "replace").rpartition("|")
        return name, epoch

    # --- browser sessions -------------------------------------------------------------------------
    def bind(self, session_id: str, signed: str | bytes | None) -> str | None:
        """Bind a new dashboard session to the cookie of the request that opened it; the user it proves."""
        user = self.verify(signed)
        if user is not None and signed:
            with self._lock:
                self._bound[session_id] = signed.encode() if isinstance(signed, str) else signed
        return user

    def release(self, session_id: str) -> None:
        with self._lock:
            self._bound.pop(session_id, None)

    def bound_user(self, session_id: str) -> str | None:
        """The user a live session was opened by, as its cookie proves now (None once the login ended)."""
        with self._lock:
            signed = self._bound.get(session_id)
        return self.verify(signed)

    def may_join(self, session_id: str | None, user: str) -> bool:
        """May a websocket proven to be `user` connect to `session_id`? Not to another user's session."""
        if session_id is None:
            return False
        with self._lock:
            signed = self._bound.get(session_id)
        if signed is None:
            return True  # a new session: it is bound to this websocket's own cookie when it opens
        return self._decode(signed)[0] == user

    # --- the current Panel session ----------------------------------------------------------------
    def open_current(self) -> str | None:
        """Bind the current Panel session (on its first call) to its opening request's own cookie; its user."""
        import panel as pn

        doc = pn.state.curdoc
        if doc is None or doc.session_context is None:
            return None
        context = doc.session_context
        with self._lock:
            known = context.id in self._bound
        if known:
            return self.bound_user(context.id)
        user = self.bind(context.id, _own_cookie(context))
        if user is not None:
            doc.on_session_destroyed(lambda ctx: self.release(ctx.id))
        return user

    def current_user(self) -> str | None:
        """The user of the current Panel session as proven now (None: not logged in, or the login ended)."""
        import panel as pn

        doc = pn.state.curdoc
        context = None if doc is None else doc.session_context
        return None if context is None else self.bound_user(context.id)


def _own_cookie(context: Any) -> str | None:
    """The login cookie of the HTTP request or websocket that opened the session itself: not the copy of
    cookies inside the session token (which is excluded from tokens anyway, and which a client can forge)."""
    proxy = getattr(context, "_request", None)
    request = getattr(proxy, "_request", None)
    cookies = getattr(request, "cookies", None)
    if not cookies or LOGIN_COOKIE not in cookies:
        return None
    morsel = cookies[LOGIN_COOKIE]
    return morsel if isinstance(morsel, str) else morsel.value


def websocket_session_id(handler: Any) -> str | None:
    """The session id a websocket asks for (the token in its ``Sec-WebSocket-Protocol`` header)."""
    from bokeh.util.token import get_session_id

    header = handler.request.headers.get("Sec-WebSocket-Protocol", "")
    parts = [p.strip() for p in header.split(",")]
    if len(parts) != 2 or parts[0] != "bokeh":
        return None
    try:
        return str(get_session_id(parts[1]))
    except Exception:  # a malformed token: no session to join
        return None


def disconnect(doc: Any) -> None:
    """Close every websocket of the session showing `doc` (its login has ended): the browser's page
    stops updating and can send nothing more. (Bokeh has no public call for this; its session keeps
    its connections in ``_subscribed_connections``.)"""
    session = getattr(doc.session_context, "_session", None)
    for connection in list(getattr(session, "_subscribed_connections", ())):
        connection._socket.close(4001, "the login of this page has ended")
