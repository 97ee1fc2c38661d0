"""Who acts is who the connection's own login proves, now: not the cookies inside a session token,
not a login older than a day, not a login that was logged out or whose user was removed."""
from __future__ import annotations

import time

import pytest
import websocket
from bokeh.util.token import get_token_payload
from desk_doors import Served, audit, qlcore_cli, sent_to_login, wait_for
from tornado.web import create_signed_value

from qlcore.control.users import UserStore, cookie_secret


def test_a_session_token_carries_no_login_cookie(desk: Served) -> None:
    tina = desk.login("tina")
    payload = get_token_payload(desk.page_token(tina))
    assert payload["cookies"] == {} and "Cookie" not in payload["headers"]
    assert tina.cookies["user"] not in str(payload)


def test_a_viewer_cannot_join_a_traders_session_with_her_token(desk: Served) -> None:
    tina, vic = desk.login("tina"), desk.login("vic")
    token = desk.page_token(tina)  # what a script on tina's page could read and send away
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        desk.websocket(token, vic.cookies["user"])
    assert refused.value.status_code == 403
    [entry] = [e for e in audit(desk, "ui.session_refused") if e.actor == "user:vic"]
    assert entry.data["reason"] == "the session belongs to another user"
    own = desk.websocket(token, tina.cookies["user"])  # the token itself is fine in tina's own hands
    try:
        assert '"ACK"' in own.recv()
    finally:
        own.close()


def test_a_token_without_the_connections_own_login_is_refused(desk: Served) -> None:
    tina = desk.login("tina")
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        desk.websocket(desk.page_token(tina), None)
    assert refused.value.status_code == 403


def test_a_login_cookie_older_than_a_day_is_refused(desk: Served) -> None:
    ada = UserStore(desk.data_dir / "users.toml").users()["ada"]
    two_days_ago = time.time() - 2 * 86400
    old = create_signed_value(cookie_secret(desk.data_dir), "user", f"ada|{ada.epoch}", clock=lambda: two_days_ago)
    s = desk.session()
    page = s.get(f"{desk.base}/control", headers={"Cookie": f"user={old.decode()}"}, allow_redirects=False, timeout=60)
    assert sent_to_login(page)
    fresh = create_signed_value(cookie_secret(desk.data_dir), "user", f"ada|{ada.epoch}")
    page = s.get(f"{desk.base}/control", headers={"Cookie": f"user={fresh.decode()}"}, allow_redirects=False, timeout=60)
    assert page.status_code == 200  # the same cookie made now is accepted: it is the age that was refused


def test_a_cookie_used_after_logout_is_refused(desk: Served) -> None:
    lee = desk.login("lee")
    cookie = lee.cookies["user"]
    assert lee.get(f"{desk.base}/control", allow_redirects=False, timeout=60).status_code == 200
    assert lee.get(f"{desk.base}/logout", timeout=60).status_code == 200
    replay = desk.session()
    page = replay.get(f"{desk.base}/control", headers={"Cookie": f"user={cookie}"}, allow_redirects=False, timeout=60)
    assert sent_to_login(page)
    [entry] = [e for e in audit(desk, "ui.logout") if e.actor == "user:lee"]
    assert entry.data["remote_ip"] == "127.0.0.1"


def test_a_removed_users_open_session_ends_within_seconds(desk: Served) -> None:
    rita = desk.login("rita")
    token = desk.page_token(rita)
    ws = desk.websocket(token, rita.cookies["user"])
    try:
        assert '"ACK"' in ws.recv()
        qlcore_cli(desk, "users", "remove", "rita")

        def closed() -> bool:
            try:
                ws.settimeout(1)
                while True:  # the server's updates, until it closes the connection
                    if ws.recv() == "":
                        return True
            except websocket.WebSocketTimeoutException:
                return False
            except websocket.WebSocketConnectionClosedException:
                return True

        wait_for(closed, "the removed user's websocket was closed by the server", timeout=30)
    finally:
        ws.close()
    page = rita.get(f"{desk.base}/control", allow_redirects=False, timeout=60)
    assert sent_to_login(page)
    with pytest.raises(websocket.WebSocketBadStatusException):
        desk.websocket(token, rita.cookies["user"])
