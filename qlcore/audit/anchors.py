"""What pins the audit log down from outside its database: the chain's key and the anchor file.

* **The key** (`QLCORE_AUDIT_KEY_FILE`, default `secrets/audit.key` under the data folder, 0600, made
  on first use) keys every entry's hash (HMAC-SHA256). Whoever can write the store's tables but
  not read this file cannot make an edited entry's hash fit, not even by recomputing the chain.
* **Anchors** are signed checkpoints of the chain's head — the wall time, a sequence number and the
  entry's hash, with an HMAC of the three — appended to a file outside the database (beside a
  SQLite store as `<file>.audit-anchors`; for a server store under the data folder's
  `audit-anchors/`; or `QLCORE_AUDIT_ANCHORS`). Writers anchor their first commit and then at most
  every `QLCORE_AUDIT_ANCHOR_S` seconds (60); `qlcore audit anchor` anchors now. `verify` then
  names a log that was rewritten with a recomputed chain (by someone holding the key), truncated,
  or emptied, against the newest anchor that says otherwise. Keep a copy of the newest anchor
  elsewhere too (the daily report prints it): whoever holds the key and the file can rewrite both.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import time
from dataclasses import dataclass
from pathlib import Path

import orjson
from sqlalchemy.engine import URL, make_url

from qlcore.store.db import project_data_dir
from qlcore.store.secrets import secret_file

KEY_ENV = "QLCORE_AUDIT_KEY_FILE"
ANCHORS_ENV = "QLCORE_AUDIT_ANCHORS"
INTERVAL_ENV = "QLCORE_AUDIT_ANCHOR_S"


def key_path() -> Path:
    return Path(os.environ.get(KEY_ENV) or project_data_dir() / "secrets" / "audit.key")


def audit_key() -> bytes:
    """The audit chain's key, from its 0600 file (made on first use)."""
    return bytes.fromhex(secret_file(key_path()))


def anchor_path(url: URL | str) -> Path | None:
    """Where the anchors of the store at `url` are kept (outside that store); None for a SQLite store
    in memory (or opened by a connection factory), which has nothing to outlive."""
    env = os.environ.get(ANCHORS_ENV)
    if env:
        return Path(env)
    parsed = make_url(url) if isinstance(url, str) else url
    if parsed.get_backend_name() == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            return None
        return Path(f"{parsed.database}.audit-anchors")
    ident = hashlib.sha256(parsed.render_as_string(hide_password=True).encode()).hexdigest()[:16]
    return project_data_dir() / "audit-anchors" / f"{parsed.database or 'store'}-{ident}.jsonl"


@dataclass(frozen=True, slots=True)
class Anchor:
    line: int
    ts: int
    seq: int
    hash: str

    @property
    def when(self) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.ts / 1e9))


class AnchorFileError(Exception):
    """An anchor line that is not what a writer holding the key wrote (edited or damaged)."""


class Anchors:
    """The anchor file of one audit log."""

    def __init__(self, path: Path | None, key: bytes, *, interval_s: float | None = None) -> None:
        self.path = path
        self.key = key
        self.interval_s = float(os.environ.get(INTERVAL_ENV, "60")) if interval_s is None else interval_s
        self._last: float | None = None  # monotonic time of this writer's last anchor

    def _mac(self, ts: int, seq: int, digest: str) -> str:
        return hmac.new(self.key, f"{ts}|{seq}|{digest}".encode(), hashlib.sha256).hexdigest()

    def maybe_write(self, seq: int, digest: str) -> None:
        """Anchor the head after a commit: the writer's first, then once per interval."""
        now = time.monotonic()
        if self._last is None or now - self._last >= self.interval_s:
            self.write(seq, digest)

    def write(self, seq: int, digest: str) -> Anchor:
        ts = time.time_ns()
        if self.path is None:  # a store in memory: nothing to anchor it against
            return Anchor(0, ts, seq, digest)
        line = orjson.dumps({"ts": ts, "seq": seq, "hash": digest, "mac": self._mac(ts, seq, digest)}) + b"\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # one write of one short line with O_APPEND: lines of several writers never interleave
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
        self._last = time.monotonic()
        return Anchor(0, ts, seq, digest)

    def read(self) -> list[Anchor]:
        """Every anchor, checked; `AnchorFileError` names the first line that is not genuine."""
        if self.path is None or not self.path.exists():
            return []
        out = []
        for n, raw in enumerate(self.path.read_bytes().splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                d = orjson.loads(raw)
                anchor = Anchor(n, int(d["ts"]), int(d["seq"]), str(d["hash"]))
                mac = str(d["mac"])
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                raise AnchorFileError(f"{self.path} line {n} is not an anchor (damaged or edited)") from None
            if not hmac.compare_digest(mac, self._mac(anchor.ts, anchor.seq, anchor.hash)):
                raise AnchorFileError(f"{self.path} line {n} is not signed by the audit key (edited)")
            out.append(anchor)
        return out


__all__ = ["Anchor", "AnchorFileError", "Anchors", "anchor_path", "audit_key", "key_path"]
