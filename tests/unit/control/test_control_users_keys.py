"""Users' and services' public keys in the users file, and the engine's directory of them."""
from __future__ import annotations

import stat
from pathlib import Path

import pytest

from qlcore.control.identity import CredentialError, Gatekeeper
from qlcore.control.keys import issue_service_key, issue_user_key, user_signing_key
from qlcore.control.users import AuthError, UsersDirectory, UserStore, ensure_admin, user_key_file


@pytest.fixture
def store(tmp_path: Path) -> UserStore:
    s = UserStore(tmp_path / "users.toml")
    s.add("alice", "trader", "alice-password")
    return s


def test_an_issued_key_is_private_and_its_public_half_verifies_the_users_commands(store: UserStore) -> None:
    path = issue_user_key(store, "alice")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = user_signing_key(store.path, "alice")
    assert store.users()["alice"].key == key.public_hex
    gate = Gatekeeper(UsersDirectory(store.path))
    cred = key.sign_command("strategy.pause", {"strategy_id": "s1"}, "alice", "engine")
    assert gate.check("strategy.pause", {"strategy_id": "s1"}, "alice", "engine", cred.text()) is None


def test_a_new_key_retires_the_old_one_at_once(store: UserStore) -> None:
    issue_user_key(store, "alice")
    old = user_signing_key(store.path, "alice")
    directory = UsersDirectory(store.path)
    gate = Gatekeeper(directory)
    assert directory.principal("alice") is not None
    issue_user_key(store, "alice")
    cred = old.sign_command("halt", {"reason": "x"}, "alice", "engine")
    assert "bad signature" in (gate.check("halt", {"reason": "x"}, "alice", "engine", cred.text()) or "")


def test_names_are_one_identity_whatever_their_case(store: UserStore) -> None:
    with pytest.raises(AuthError, match="regardless of case"):
        store.add("Alice", "admin", "another-password")


def test_a_removed_user_and_a_lowered_role_count_from_the_next_command(store: UserStore) -> None:
    issue_user_key(store, "alice")
    key = user_signing_key(store.path, "alice")
    gate = Gatekeeper(UsersDirectory(store.path))
    assert gate.check("halt", {"reason": "x"}, "alice", "engine", key.sign_command(
        "halt", {"reason": "x"}, "alice", "engine").text()) is None
    store.set_role("alice", "viewer")
    reason = gate.check("halt", {"reason": "y"}, "alice", "engine",
                        key.sign_command("halt", {"reason": "y"}, "alice", "engine").text())
    assert reason == "'alice' is a viewer; halt needs trader"
    store.remove("alice")
    reason = gate.check("halt", {"reason": "z"}, "alice", "engine",
                        key.sign_command("halt", {"reason": "z"}, "alice", "engine").text())
    assert reason is not None and "unknown signer 'alice'" in reason


def test_a_service_acts_for_users_only_when_the_file_says_so(store: UserStore) -> None:
    desk = issue_service_key(store, "desk", acts_for_users=True)
    assert issue_service_key(store, "desk", acts_for_users=True).public_hex == desk.public_hex  # same key again
    other = issue_service_key(store, "reports")
    gate = Gatekeeper(UsersDirectory(store.path))
    payload = {"strategy_id": "s1"}
    assert gate.check("strategy.pause", payload, "alice", "engine",
                      desk.sign_command("strategy.pause", payload, "alice", "engine").text()) is None
    assert gate.check("strategy.pause", payload, "alice", "engine",
                      other.sign_command("strategy.pause", payload, "alice", "engine").text()) == \
        "'reports' may not act for 'alice'"
    with pytest.raises(AuthError, match="a user's name"):
        store.set_service("ALICE", desk.public_hex)


def test_the_first_admin_gets_a_password_and_a_key(tmp_path: Path) -> None:
    store = UserStore(tmp_path / "users.toml")
    assert ensure_admin(store)
    key = user_signing_key(store.path, "admin")
    assert store.users()["admin"].key == key.public_hex
    assert stat.S_IMODE(user_key_file(store.path, "admin").stat().st_mode) == 0o600


def test_a_missing_key_says_where_it_looked_and_how_to_get_one(store: UserStore, monkeypatch) -> None:
    monkeypatch.delenv("QLCORE_KEY_FILE", raising=False)
    with pytest.raises(CredentialError, match=r"qlcore users key alice"):
        user_signing_key(store.path, "alice")


def test_a_public_key_that_is_not_one_is_refused(store: UserStore) -> None:
    with pytest.raises(AuthError, match="64 lowercase hex"):
        store.set_key("alice", "not-a-key")


def test_every_change_of_users_roles_keys_and_services_is_reported_with_no_secret(tmp_path) -> None:
    from qlcore.control.keys import DESK_SERVICE, issue_service_key, issue_user_key
    from qlcore.control.users import UserStore, ensure_admin

    seen: list[tuple[str, str, dict]] = []
    store = UserStore(tmp_path / "users.toml", on_change=lambda action, name, details: seen.append((action, name, details)))
    password = ensure_admin(store)
    store.add("alice", "viewer", "alice-password")
    store.set_role("alice", "trader")
    store.set_password("alice", "another-password")
    issue_user_key(store, "alice")
    issue_service_key(store, DESK_SERVICE, acts_for_users=True)
    store.remove("alice")
    assert [(a, n) for a, n, _ in seen] == [
        ("users.add", "admin"), ("users.key", "admin"), ("users.add", "alice"), ("users.role", "alice"),
        ("users.passwd", "alice"), ("users.key", "alice"), ("users.service", "desk"), ("users.remove", "alice")]
    assert seen[3][2] == {"role": "trader", "was": "viewer"}
    assert seen[6][2]["acts_for_users"] is True
    text = repr(seen)
    assert password is not None and password not in text and "another-password" not in text and "scrypt$" not in text
