"""Pause and resume of scheduled jobs, kept in the store so that a scheduler restart keeps them.

A paused job stays in the scheduler (its schedule record is unchanged); its firings are skipped
and audited until it is resumed.
"""
from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine, delete, insert, select

from qlcore.ops.auditing import audit
from qlcore.store.db import connect
from qlcore.store.tables import job_controls


def set_paused(job_id: str, paused: bool, user: str, reason: str = "", *, db: str | Engine | None = None) -> None:
    """Pause (or resume) `job_id`; who did it and why go to the audit log."""
    if not user.strip():
        raise ValueError("pausing or resuming a job needs the name of who does it")
    engine = db if isinstance(db, Engine) else connect(db)
    with engine.begin() as conn:
        conn.execute(delete(job_controls).where(job_controls.c.job_id == job_id))
        conn.execute(insert(job_controls).values(job_id=job_id, paused=int(paused), changed_by=user,
                                                 changed_at=datetime.now(UTC).isoformat(timespec="seconds"),
                                                 reason=reason))
    audit(engine, user, "job.paused" if paused else "job.resumed", f"job/{job_id}", {"reason": reason})


def is_paused(job_id: str, *, db: str | Engine | None = None) -> bool:
    engine = db if isinstance(db, Engine) else connect(db)
    with engine.connect() as conn:
        value = conn.execute(select(job_controls.c.paused).where(job_controls.c.job_id == job_id)).scalar()
    return bool(value)


def paused_jobs(*, db: str | Engine | None = None) -> set[str]:
    engine = db if isinstance(db, Engine) else connect(db)
    with engine.connect() as conn:
        return set(conn.execute(select(job_controls.c.job_id).where(job_controls.c.paused == 1)).scalars())
