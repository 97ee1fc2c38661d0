"""Audit entries from the scheduler, its runs and the job commands, which write concurrently.

An `AuditLog` refuses to append over another writer's newer entries (`AuditConflict`); here the
entry is chained again on a fresh view of the log, a few times, before the error is let through.
"""
from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Engine

from qlcore.audit.log import AuditConflict, AuditLog

_ATTEMPTS = 8


def audit(engine: Engine, actor: str, action: str, subject: str, details: Mapping[str, Any] | None = None) -> None:
    """Append one entry, retrying on a concurrent writer."""
    for attempt in range(_ATTEMPTS):
        try:
            AuditLog(engine=engine).record(actor, action, subject, details)
            return
        except AuditConflict:
            if attempt == _ATTEMPTS - 1:
                raise
            time.sleep(0.02 * (attempt + 1))
