"""Audit: the tamper-evident, hash-chained log of what happened and who did it, and order lineage.

`AuditLog` appends and verifies; `AuditRecorder` feeds it from a kernel's bus, a risk engine and
user commands; `trace` rebuilds an order's lineage (strategy -> checks -> order -> fills -> P&L).
Names are imported on first use, so that `qlcore audit --help` stays quick.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from qlcore._lazy import lazy_exports

if TYPE_CHECKING:
    from qlcore.audit.lineage import FillLine, Lineage, trace, trace_events
    from qlcore.audit.log import (
        AuditConflict,
        AuditEntry,
        AuditError,
        AuditLog,
        Verification,
        canonical_json,
    )
    from qlcore.audit.recorder import AuditRecorder

_EXPORTS = {
    "AuditConflict": "log",
    "AuditEntry": "log",
    "AuditError": "log",
    "AuditLog": "log",
    "AuditRecorder": "recorder",
    "FillLine": "lineage",
    "Lineage": "lineage",
    "Verification": "log",
    "canonical_json": "log",
    "trace": "lineage",
    "trace_events": "lineage",
}
__all__ = [
    "AuditConflict",
    "AuditEntry",
    "AuditError",
    "AuditLog",
    "AuditRecorder",
    "FillLine",
    "Lineage",
    "Verification",
    "canonical_json",
    "trace",
    "trace_events",
]


__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
