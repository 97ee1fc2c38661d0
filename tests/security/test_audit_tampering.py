"""Attacks on the audit log by someone who can write the store's tables: each is detected and named.

Before the chain was keyed and anchored outside the database, an edit with a recomputed chain and an
updated head verified as OK, and so did a log with every row and its head deleted ("OK: 0 entries").
"""
from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from qlcore.audit import AuditLog
from qlcore.audit.log import GENESIS, entry_body, entry_hash
from qlcore.store.db import dispose_all
from qlcore.store.secrets import SecretFileError

QLCORE = Path(sys.executable).with_name("qlcore")


@pytest.fixture
def key_file(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "secrets" / "audit.key"
    monkeypatch.setenv("QLCORE_AUDIT_KEY_FILE", str(path))
    return path


@pytest.fixture
def log(store_url, key_file) -> AuditLog:
    log = AuditLog(store_url)
    for i in range(1, 9):
        log.record(f"user:u{i}", "command.halt" if i == 5 else "command.test", f"run/O-{i}", {"n": i}, ts=1000 + i)
    log.anchor()  # the head, pinned outside the database (writers also anchor on their own)
    return log


def _rows(log: AuditLog) -> list[dict]:
    with log.engine.connect() as conn:
        return [dict(r) for r in conn.execute(text("SELECT * FROM audit_log ORDER BY seq")).mappings()]


def _rewrite(log: AuditLog, rows: list[dict], hasher) -> None:
    """Replace the log by `rows`, rechained by `hasher(prev, row) -> hash`, and move the head: what an
    attacker with write access to the tables does to hide an edit."""
    prev = GENESIS
    with log.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log"))
        for r in rows:
            r = {**r, "prev_hash": prev}
            r["hash"] = hasher(prev, r)
            conn.execute(text("INSERT INTO audit_log (seq, ts, actor, action, subject, details, prev_hash, hash) "
                              "VALUES (:seq, :ts, :actor, :action, :subject, :details, :prev_hash, :hash)"), r)
            prev = r["hash"]
        conn.execute(text("UPDATE audit_head SET seq = :s, hash = :h"), {"s": rows[-1]["seq"] if rows else 0, "h": prev})


def _erase_halt(rows: list[dict]) -> list[dict]:
    """Entry 5 (a halt) made to look like a routine test command."""
    return [{**r, "action": "command.test"} if r["seq"] == 5 else r for r in rows]


def test_an_edit_rechained_with_plain_sha256_is_named_at_the_edited_entry(log):
    def sha256(prev: str, r: dict) -> str:
        body = entry_body(r["seq"], r["ts"], r["actor"], r["action"], r["subject"], r["details"])
        return hashlib.sha256((prev + body).encode()).hexdigest()

    _rewrite(log, _erase_halt(_rows(log)), sha256)
    result = AuditLog(log.engine.url.render_as_string(hide_password=False)).verify()
    assert not result.ok and result.bad_seq == 1  # no hash fits without the key, from the first on
    assert "rewritten without the key" in result.problem


def test_an_edit_rechained_with_the_key_is_named_by_the_anchor(log):
    def keyed(prev: str, r: dict) -> str:
        return entry_hash(log.key, prev, r["seq"], r["ts"], r["actor"], r["action"], r["subject"], r["details"])

    _rewrite(log, _erase_halt(_rows(log)), keyed)
    result = log.verify()
    assert not result.ok and result.bad_seq == 8
    assert "seq 8 differs from its anchor" in result.problem and "recomputed chain" in result.problem


def test_a_truncated_log_with_its_head_moved_is_named(log):
    def keyed(prev: str, r: dict) -> str:
        return entry_hash(log.key, prev, r["seq"], r["ts"], r["actor"], r["action"], r["subject"], r["details"])

    _rewrite(log, _rows(log)[:4], keyed)
    result = log.verify()
    assert not result.ok and result.bad_seq == 8
    assert "anchored at seq 8" in result.problem and "truncated: it ends at seq 4" in result.problem


def test_an_emptied_log_is_named(log, store_url, key_file, tmp_path):
    with log.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log"))
        conn.execute(text("DELETE FROM audit_head"))
    result = log.verify()
    assert not result.ok and "anchored at seq 8" in result.problem and "emptied" in result.problem
    if store_url.startswith("sqlite"):  # the command a reviewer runs says so too, with exit 1
        env = {**os.environ, "QLCORE_AUDIT_KEY_FILE": str(key_file)}
        proc = subprocess.run([str(QLCORE), "audit", "verify", "--db", store_url], capture_output=True, text=True,
                              env=env, timeout=120)
        assert proc.returncode == 1 and "emptied" in proc.stderr


def test_an_edited_anchor_is_named(log):
    path = log.anchors.path
    lines = path.read_text().splitlines()
    lines[-1] = lines[-1].replace('"seq":8', '"seq":4')
    path.write_text("\n".join(lines) + "\n")
    result = log.verify()
    assert not result.ok and f"{path} line {len(lines)} is not signed by the audit key" in result.problem


def test_a_key_file_others_can_read_is_refused(key_file, store_url):
    AuditLog(store_url).record("user:a", "x", "y")  # makes the key, 0600
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key_file.chmod(0o644)
    dispose_all()
    with pytest.raises(SecretFileError, match="chmod 600"):
        AuditLog(store_url)
