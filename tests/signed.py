"""Signed commands in the tests: the engines verify every command against the session's users file.

`signer()` is a key ring over the users file of the data folder (``QLCORE_DATA_DIR``, the session's
own: see conftest.py): a command names its user, and that user's key signs it; a user the file does
not know yet is added on first use (an admin, unless `ROLES` names another role), with its key in
``keys/<name>.key``, where the CLI finds it too. `queue()` is a command queue that signs with it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from qlcore.control.commands import CommandQueue
from qlcore.control.identity import JobSigner
from qlcore.control.keys import SCHEDULER_SERVICE, KeyRing, issue_service_key
from qlcore.control.keys import job_signer as _job_signer
from qlcore.control.users import USERS_FILE, UserStore
from qlcore.store.db import project_data_dir

ROLES = {"viewer": "viewer", "vera": "viewer", "trader": "trader", "tom": "trader"}
_RINGS: dict[Path, KeyRing] = {}


def users_file() -> Path:
    return (project_data_dir() / USERS_FILE).resolve()


def signer(path: Path | None = None) -> KeyRing:
    """The key ring of the users file `path` (default: the data folder's), one per file and process."""
    path = Path(path).resolve() if path is not None else users_file()
    ring = _RINGS.get(path)
    if ring is None:
        ring = _RINGS[path] = KeyRing(store=UserStore(path), role_of_new=ROLES)
    return ring


def queue(url: str | None = None, **kw: Any) -> CommandQueue:
    """A command queue whose commands are signed by the users they name."""
    return CommandQueue(url, signer=signer(), **kw)


def job_signer(job_id: str, strategies: list[str], symbols: list[str], code_hash: str = "",
               valid_s: float = 600.0) -> JobSigner:
    """A run's signer for job `job_id`, granted by the data folder's scheduler key as the scheduler does."""
    issuer = issue_service_key(UserStore(users_file()), SCHEDULER_SERVICE, issues_grants=True)
    return _job_signer(issuer, job_id, strategies=strategies, symbols=symbols, code_hash=code_hash, valid_s=valid_s)
