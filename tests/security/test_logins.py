"""The login cookie's rules on their own: the server's signature, and the user's epoch as the users
file says now (a lower role, a new password, a logout or a removal ends it; a higher role does not)."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from qlcore.control.users import UserStore
from qlcore.ui.sessions import Logins

SECRET = "a-cookie-secret-for-the-test-only-" * 2


def test_a_login_ends_with_a_lower_role_a_new_password_a_logout_or_a_removal(tmp_path: Path) -> None:
    users = UserStore(tmp_path / "users.toml")
    users.add("tina", "trader", "tina-trader-pw")
    logins = Logins(users, SECRET)

    def fresh() -> bytes:
        return logins.sign(users.users()["tina"])

    cookie = fresh()
    users.set_role("tina", "admin")  # a higher role: no new login needed
    assert logins.verify(cookie) == "tina"
    users.set_role("tina", "trader")
    assert logins.verify(cookie) is None
    cookie = fresh()
    users.set_password("tina", "another-password")
    assert logins.verify(cookie) is None
    cookie = fresh()
    users.end_sessions("tina")
    assert logins.verify(cookie) is None
    cookie = fresh()
    assert logins.verify(cookie) == "tina"
    users.remove("tina")
    assert logins.verify(cookie) is None


def test_a_cookie_signed_with_another_secret_or_naming_another_epoch_is_refused(tmp_path: Path) -> None:
    users = UserStore(tmp_path / "users.toml")
    tina = users.add("tina", "trader", "tina-trader-pw")
    assert Logins(users, SECRET).verify(Logins(users, "another-secret-" * 4).sign(tina)) is None
    assert Logins(users, SECRET).verify(Logins(users, SECRET).sign(replace(tina, epoch=tina.epoch + 1))) is None
    assert Logins(users, None).verify(Logins(users, SECRET).sign(tina)) is None  # no secret: nobody logs in
