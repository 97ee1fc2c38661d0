"""Audit entries from the scheduler, its runs and the job commands, which write concurrently.

An entry that loses the race with another writer is chained again after that writer's entries
(`AuditLog(conflict_retries=...)`).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Engine

from qlcore.audit.log import AuditLog

_RETRIES = 7


def audit(engine: Engine, actor: str, action: str, subject: str, details: Mapping[str, Any] | None = None) -> None:
    """Append one entry, retrying on a concurrent writer."""
    AuditLog(engine=engine, conflict_retries=_RETRIES).record(actor, action, subject, details)
