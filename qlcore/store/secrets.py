"""Secrets kept in files readable by their owner only (mode 0600), made once and shared by every process.

A secret file is created atomically (written under a temporary name, then linked into place, so two
processes starting together agree on one secret and none ever reads a half-written file) and is
refused when anyone but its owner may read it: a key that others could read proves nothing.
"""
from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path


class SecretFileError(Exception):
    """A secret file that cannot be trusted or read; the message says which and what to do."""


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path`, created 0600 (never readable by others in between), replacing it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def read_private(path: Path) -> str:
    """The stripped text of a secret file, refused when its mode lets others read or write it."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise SecretFileError(f"{path}: no such secret file") from None
    if stat.S_IMODE(mode) & 0o077:
        raise SecretFileError(
            f"{path} is readable or writable by others (mode {stat.S_IMODE(mode):04o}): run `chmod 600 {path}`"
        )
    return path.read_text(encoding="utf-8").strip()


def secret_file(path: Path, *, nbytes: int = 32) -> str:
    """The secret in `path` (hex), made with `nbytes` random bytes on first use."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.new")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(secrets.token_hex(nbytes) + "\n")
        try:
            os.link(tmp, path)  # fails if another process made it first: then theirs is the secret
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return read_private(path)


__all__ = ["SecretFileError", "read_private", "secret_file", "write_private"]
