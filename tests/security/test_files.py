"""Secrets at rest: the store file and the users file are the owner's alone; password hashes are at
today's OWASP cost, and an older hash is upgraded by the next successful login."""
from __future__ import annotations

import base64
import hashlib
import stat
from pathlib import Path

from qlcore.control.users import UserStore, check_password, needs_rehash
from qlcore.store.db import connect


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_sqlite_store_is_created_readable_by_its_owner_only(tmp_path: Path) -> None:
    db_path = tmp_path / "private" / "qlcore.db"
    engine = connect(f"sqlite:///{db_path}")
    with engine.begin() as conn:  # a write: the WAL and shared-memory files exist now too
        conn.exec_driver_sql("CREATE TABLE probe (x INTEGER)")
        conn.exec_driver_sql("INSERT INTO probe VALUES (1)")
    assert _mode(db_path) == 0o600
    for extra in (db_path.with_name("qlcore.db-wal"), db_path.with_name("qlcore.db-shm")):
        if extra.exists():
            assert _mode(extra) == 0o600, extra


def test_a_hash_of_the_old_cost_verifies_and_is_upgraded_at_login(tmp_path: Path) -> None:
    store = UserStore(tmp_path / "users.toml")
    store.add("tina", "trader", "placeholder-pw")
    salt = b"0123456789abcdef"
    old_key = hashlib.scrypt(b"tina-trader-pw", salt=salt, n=2**14, r=8, p=1, dklen=32)
    old = f"scrypt$16384$8$1${base64.b64encode(salt).decode()}${base64.b64encode(old_key).decode()}"
    store.path.write_text(store.path.read_text().replace(store.users()["tina"].hash, old))
    assert needs_rehash(old)
    assert store.verify("tina", "wrong-password") is None and store.users()["tina"].hash == old  # no upgrade on failure
    assert store.verify("tina", "tina-trader-pw") is not None
    upgraded = store.users()["tina"].hash
    assert upgraded.startswith("scrypt$131072$8$1$") and not needs_rehash(upgraded)
    assert check_password("tina-trader-pw", upgraded) and store.verify("tina", "tina-trader-pw") is not None
    assert _mode(store.path) == 0o600


def test_a_hash_asking_for_absurd_cost_never_matches() -> None:
    salt = base64.b64encode(b"s" * 16).decode()
    assert not check_password("pw", f"scrypt${2**30}$8$1${salt}$AAAA")
