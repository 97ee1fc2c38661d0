"""Users, roles and the one action path of the dashboards, on a real SQLite store (no browser)."""
from __future__ import annotations

import stat
from pathlib import Path

import pytest

from qlcore.control.commands import CommandQueue
from qlcore.control.users import (
    AuthError,
    Role,
    UserStore,
    check_password,
    cookie_secret,
    ensure_admin,
    hash_password,
)
from qlcore.store.db import connect
from qlcore.ui.actions import ACTIONS, AUDIT_ACTION, AUDIT_REFUSED, ActionRefused, Actions, allowed
from qlcore.ui.readmodel import ReadModel


@pytest.fixture
def users(tmp_path: Path) -> UserStore:
    store = UserStore(tmp_path / "users.toml")
    store.add("tina", "trader", "tina-trader-pw")
    store.add("vic", Role.VIEWER, "vic-viewer-pw")
    store.add("ada", "admin", "ada-admin-pw1")
    return store


def test_passwords_are_stored_as_salted_hashes_readable_by_the_owner_only(users: UserStore) -> None:
    text = users.path.read_text()
    assert "tina-trader-pw" not in text and "scrypt$" in text
    assert stat.S_IMODE(users.path.stat().st_mode) == 0o600
    assert hash_password("same-password") != hash_password("same-password")  # a fresh salt each time
    tina = users.verify("tina", "tina-trader-pw")
    assert tina is not None and tina.role is Role.TRADER
    assert users.verify("tina", "tina-trader-pW") is None
    assert users.verify("nobody", "tina-trader-pw") is None
    assert not check_password("x", "md5$garbage")


def test_bad_users_and_passwords_are_refused_with_the_reason(users: UserStore) -> None:
    with pytest.raises(AuthError, match="already exists"):
        users.add("tina", "viewer", "another-password")
    with pytest.raises(AuthError, match="at least 8 characters"):
        users.add("short", "viewer", "pw")
    with pytest.raises(AuthError, match="unknown role 'boss'"):
        users.add("bob", "boss", "long-enough-pw")
    with pytest.raises(AuthError, match="not a valid name"):
        users.add("bad name", "viewer", "long-enough-pw")


def test_password_and_role_changes_take_effect_at_once(users: UserStore) -> None:
    users.set_password("tina", "a-new-password")
    assert users.verify("tina", "tina-trader-pw") is None
    assert users.verify("tina", "a-new-password") is not None
    users.set_role("tina", "viewer")
    assert users.role_of("tina") is Role.VIEWER
    users.remove("tina")
    assert users.role_of("tina") is None


def test_first_run_creates_an_admin_once_and_a_private_cookie_secret(tmp_path: Path) -> None:
    store = UserStore(tmp_path / "users.toml")
    password = ensure_admin(store)
    admin = store.verify("admin", password or "")
    assert password and admin is not None and admin.role is Role.ADMIN
    saved = tmp_path / "initial-admin-password"
    assert saved.read_text().strip() == password and stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert ensure_admin(store) is None  # never twice
    secret = cookie_secret(tmp_path)
    assert len(secret) >= 32 and cookie_secret(tmp_path) == secret
    assert stat.S_IMODE((tmp_path / "cookie-secret").stat().st_mode) == 0o600


def test_roles_are_ordered_viewer_trader_admin() -> None:
    assert Role.VIEWER < Role.TRADER < Role.ADMIN
    assert allowed(Role.TRADER, "halt") and not allowed(Role.VIEWER, "halt")
    assert allowed(Role.ADMIN, "resume_trading") and not allowed(Role.TRADER, "resume_trading")
    assert not allowed(None, "strategy.pause") and not allowed(Role.ADMIN, "no.such.action")
    assert set(ACTIONS) <= set(__import__("qlcore.control.commands", fromlist=["SCHEMAS"]).SCHEMAS)


def test_an_allowed_action_becomes_a_command_and_an_audit_entry_with_the_user(users: UserStore, tmp_path: Path) -> None:
    db = connect(f"sqlite:///{tmp_path / 'qlcore.db'}")
    result = Actions(db, users).perform("halt", {"reason": "fat finger"}, user="tina")
    cmd = CommandQueue(engine=db).status(result.command_id)
    assert (cmd.user, cmd.kind, cmd.payload, cmd.status) == ("tina", "halt", {"reason": "fat finger"}, "pending")
    [entry] = ReadModel(engine=db).audit_search(action=AUDIT_ACTION)
    assert entry.actor == "user:tina" and entry.data["params"] == {"reason": "fat finger"}
    assert entry.data["command_id"] == result.command_id and entry.data["role"] == "trader"


@pytest.mark.parametrize(
    ("user", "kind", "payload", "reason"),
    [
        ("vic", "halt", {"reason": "x"}, "needs role trader, vic is viewer"),
        ("tina", "resume_trading", {}, "needs role admin, tina is trader"),
        ("tina", "limits.set", {"limits": {"account": {"max_order_quantity": "5"}}}, "needs role admin"),
        (None, "strategy.pause", {"strategy_id": "s"}, "not logged in"),
        ("ghost", "strategy.pause", {"strategy_id": "s"}, "not logged in as a known user"),
        ("tina", "order.submit", {"strategy_id": "s", "symbol": "AAPL", "side": "BUY", "quantity": "-1"},
         "malformed command: quantity"),
        ("ada", "shutdown.everything", {}, "unknown action"),
    ],
)
def test_a_refused_action_writes_no_command_and_is_audited_as_refused(
    users: UserStore, tmp_path: Path, user, kind, payload, reason
) -> None:
    db = connect(f"sqlite:///{tmp_path / 'qlcore.db'}")
    with pytest.raises(ActionRefused, match=reason):
        Actions(db, users).perform(kind, payload, user=user)
    assert CommandQueue(engine=db).history() == []
    [entry] = ReadModel(engine=db).audit_search(action=AUDIT_REFUSED)
    assert entry.actor == f"user:{user or 'anonymous'}"
    assert entry.data["action"] == kind and reason in entry.data["outcome"]
    assert ReadModel(engine=db).audit_verify().ok


def test_the_role_is_read_at_the_time_of_the_action(users: UserStore, tmp_path: Path) -> None:
    db = connect(f"sqlite:///{tmp_path / 'qlcore.db'}")
    actions = Actions(db, users)
    actions.perform("strategy.pause", {"strategy_id": "s1"}, user="tina")
    users.set_role("tina", "viewer")  # demoted while logged in
    with pytest.raises(ActionRefused, match="tina is viewer"):
        actions.perform("strategy.resume", {"strategy_id": "s1"}, user="tina")
    assert [c.kind for c in CommandQueue(engine=db).history()] == ["strategy.pause"]


def test_first_serve_prints_an_admin_password_that_logs_in(tmp_path: Path) -> None:
    import os
    import re
    import signal
    import subprocess
    import sys
    import time
    import urllib.parse
    import urllib.request

    from dashboard_support import free_port, http_login

    port = free_port()
    env = {**os.environ, "QLCORE_DATA_DIR": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    env.pop("QLCORE_DB_URL", None)
    qlcore = Path(sys.executable).with_name("qlcore")
    proc = subprocess.Popen([str(qlcore), "serve", "--port", str(port), "--no-browser"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        m = re.search(r"created user 'admin' with password (\S+)", first)
        assert m, first
        password = m.group(1)
        assert (tmp_path / "initial-admin-password").read_text().strip() == password
        assert password not in (tmp_path / "users.toml").read_text()
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://localhost:{port}/login", timeout=5).read()
                break
            except OSError:
                assert time.monotonic() < deadline, "the server did not answer"
                time.sleep(0.2)
        _opener, jar = http_login(f"http://localhost:{port}", "admin", password)
        assert "user" in {c.name for c in jar}, "the printed password logs in"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=15)
