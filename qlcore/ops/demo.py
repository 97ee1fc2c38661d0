"""The demo job of `qlcore scheduler --demo` (what `make up` starts): the template notebook, approved.

On first use the template job notebook (`notebooks/jobs/daily_rebalance.ipynb`) is submitted by
``demo-quant`` and approved by ``demo-reviewer`` as a paper job that fires every hour on every day.
Both are demo identities made for this in the users file (traders, with signing keys under
``keys/`` beside it and a random password nobody is told); remove them (`qlcore users remove`) on a
real desk. The record lives under the data folder (``data/demo/schedules/``), never in the
repository's ``schedules/``, so that demo approvals cannot reach a real scheduler. When the
notebook changed since, or the approval no longer holds (new packages, a replaced key), it is
submitted and approved again (a new version of the record).
"""
from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine

from qlcore.control.identity import SigningKey
from qlcore.control.keys import issue_user_key
from qlcore.control.users import USERS_FILE, AuthError, Role, UserStore, ensure_admin, user_key_file
from qlcore.ops.bundles import read_bundle
from qlcore.ops.schedules import (
    GateRefused,
    ScheduleRecord,
    check_gate,
    read_schedule,
    schedule_path,
)
from qlcore.ops.submissions import approve, submit
from qlcore.store.db import connect, project_data_dir
from qlcore.store.secrets import SecretFileError

DEMO_JOB = "demo_rebalance"
DEMO_CRON = "0 * * * *"
DEMO_AUTHOR, DEMO_REVIEWER = "demo-quant", "demo-reviewer"
TEMPLATE = Path(__file__).resolve().parents[2] / "notebooks" / "jobs" / "daily_rebalance.ipynb"


def demo_schedules_dir(data_dir: Path | None = None) -> Path:
    return (data_dir or project_data_dir()) / "demo" / "schedules"


def demo_identities(users_file: Path, *, on_change: Callable[[str, str, dict], None] | None = None) -> tuple[SigningKey, SigningKey, str | None]:
    """The demo author's and reviewer's signing keys (made on first use), and the first-run admin password
    when this call created the admin (so a desk that starts with the demo still gets its admin)."""
    store = UserStore(users_file, on_change=on_change)  # on_change: how user changes are audited
    try:
        password = ensure_admin(store)
    except AuthError:  # the dashboards' server made the admin at the same moment
        password = None
    keys = []
    for name in (DEMO_AUTHOR, DEMO_REVIEWER):
        if name not in store.users():
            try:
                store.add(name, Role.TRADER, secrets.token_urlsafe(24))  # a key-only identity: no one logs in
            except AuthError:
                pass  # made meanwhile by another process
        user = store.users()[name]
        try:
            key = SigningKey.load(name, user_key_file(users_file, name))
        except (SecretFileError, ValueError):
            key = None
        if key is None or key.public_hex != user.key:
            issue_user_key(store, name)
            key = SigningKey.load(name, user_key_file(users_file, name))
        keys.append(key)
    return keys[0], keys[1], password


def ensure_demo_job(*, db: str | Engine | None = None, schedules_dir: Path | None = None,
                    data_dir: Path | None = None) -> ScheduleRecord:
    """The demo job's active record, submitted and approved now if none holds for the current notebook."""
    engine = db if isinstance(db, Engine) else connect(db)
    data_dir = data_dir or project_data_dir()
    folder = schedules_dir or demo_schedules_dir(data_dir)
    author, reviewer, _ = demo_identities(data_dir / USERS_FILE)
    file = schedule_path(folder, DEMO_JOB)
    if file.is_file():
        record = read_schedule(file)
        try:
            if check_gate(record, db=engine, data_dir=data_dir).code_hash == read_bundle(TEMPLATE).code_hash:
                return record
        except GateRefused:
            pass  # approve the current notebook again
    sub = submit(TEMPLATE, {}, author, db=engine, data_dir=data_dir)
    if sub.status != "succeeded":
        raise RuntimeError(f"the demo job notebook failed when submitted ({sub.id}): {sub.error}")
    return approve(sub.id, reviewer, DEMO_CRON, "paper", job_id=DEMO_JOB, trading_days_only=False, db=engine,
                   schedules_dir=folder, data_dir=data_dir)
