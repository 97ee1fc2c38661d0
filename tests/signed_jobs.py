"""Signed approvals for tests: users with keys, and a job approved for real without a kernel run.

`approved_job` stores a succeeded submission the way `qlcore submit` does (the snapshot of the
notebook and its modules, the author's signature), skipping only the submission's own papermill
run, then approves it with `qlcore.ops.submissions.approve`: the record, the signed decision and
the read-only approved copy are the real ones.
"""
from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from qlcore.control.identity import SigningKey
from qlcore.control.keys import issue_user_key
from qlcore.control.reviews import SUBMISSION, store_signed, submission_body
from qlcore.control.users import USERS_FILE, UserStore, user_key_file
from qlcore.ops.bundles import environment_hash, read_bundle
from qlcore.ops.schedules import ScheduleRecord
from qlcore.ops.submissions import approve
from qlcore.store.db import connect
from qlcore.store.tables import submissions

PASSWORD = "password-for-tests"


def add_user(data_dir: Path, name: str, role: str = "trader") -> SigningKey:
    """A user in ``<data_dir>/users.toml`` with a signing key (its private half in ``keys/``)."""
    store = UserStore(Path(data_dir) / USERS_FILE)
    user = store.users().get(name)
    if user is None:
        store.add(name, role, PASSWORD)
    elif user.key and user_key_file(store.path, name).exists():
        return SigningKey.load(name, user_key_file(store.path, name))  # the same key: earlier approvals still hold
    return SigningKey.load(name, issue_user_key(store, name))


def keys(data_dir: Path) -> tuple[SigningKey, SigningKey]:
    """alice (the author, a trader) and bob (a reviewer, a trader)."""
    return add_user(data_dir, "alice"), add_user(data_dir, "bob")


def stored_submission(root: Path, nb: Path, author: SigningKey, *, db: str, params: dict[str, Any] | None = None) -> str:
    """A succeeded, signed submission of `nb` (its snapshot written as `submit` writes it); its id."""
    engine = connect(db)
    bundle = read_bundle(nb)
    sub_id = f"sub-20260102-{uuid.uuid4().hex[:8]}"
    output = Path(root) / "submissions" / sub_id / "output.ipynb"
    bundle.write(output.parent / "bundle", read_only=True)
    values = dict(params or {})
    with engine.begin() as conn:
        conn.execute(insert(submissions).values(
            id=sub_id, notebook=str(nb), code_hash=bundle.code_hash, params=json.dumps(values, sort_keys=True),
            author=author.name, status="succeeded", output_path=str(output), created_at="2026-01-02T00:00:00+00:00"))
        store_signed(conn, SUBMISSION, sub_id, None, author, author.name,
                     submission_body(sub_id, author.name, bundle.code_hash, values, environment_hash()))
    return sub_id


def approved_job(root: Path, nb: Path, job_id: str = "job", *, db: str | None = None,
                 params: dict[str, Any] | None = None, cron: str = "0 16 * * mon-fri", mode: str = "paper",
                 limits: dict[str, Any] | None = None, schedules_dir: Path | None = None,
                 **approve_kw: Any) -> ScheduleRecord:
    """`nb` submitted by alice and approved by bob as `job_id` (users made in `root` when missing)."""
    db = db or f"sqlite:///{Path(root) / 'q.db'}"
    author, reviewer = keys(root)
    sub_id = stored_submission(root, nb, author, db=db, params=params)
    return approve(sub_id, reviewer, cron, mode, limits, job_id=job_id, db=db,
                   schedules_dir=schedules_dir or Path(root) / "schedules", data_dir=root, **approve_kw)
