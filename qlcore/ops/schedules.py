"""Schedules as data: one versioned, human-readable TOML record per approved job, and the gate.

``schedules/<job_id>.toml`` is the authority for what may run: the notebook, the exact code hash
a reviewer approved, the parameters, the cron (in the exchange's time zone) and the run limits.
The scheduler's own job store is derived from these files. Every change (approval, revocation)
writes the whole record again with ``version`` one higher; nothing is edited in place.
"""
from __future__ import annotations

import json
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qlcore.ops.notebooks import notebook_hash

if TYPE_CHECKING:
    from qlcore.audit.log import AuditLog

ROOT = Path(__file__).resolve().parents[2]
TIMEZONE = "America/New_York"  # the exchange's time zone: crons are read in it


class GateRefused(Exception):
    """A job may not run: its notebook changed since approval, is missing, or the job was revoked."""


class InvalidCronError(ValueError):
    """A cron expression APScheduler cannot read."""


@dataclass(frozen=True, slots=True)
class ScheduleRecord:
    """One approved job, as written to ``schedules/<job_id>.toml``."""

    job_id: str
    version: int
    status: str  # active | revoked
    submission_id: str
    notebook: str  # relative to the repository root when inside it
    approved_hash: str
    mode: str
    cron: str
    reviewer: str
    author: str
    approved_at: str
    timezone: str = TIMEZONE
    trading_days_only: bool = True
    timeout_s: int = 600
    retries: int = 0
    concurrency: int = 1
    params: dict[str, Any] = field(default_factory=dict)
    limits: dict[str, Any] = field(default_factory=dict)
    revoked_by: str = ""
    revoked_at: str = ""
    revoke_reason: str = ""

    @property
    def notebook_path(self) -> Path:
        return resolve_notebook(self.notebook)

    def to_toml(self) -> str:
        return to_toml(asdict(self))


def validate_cron(cron: str, timezone: str = TIMEZONE) -> str:
    """`cron` (5 fields, crontab syntax) if APScheduler accepts it; else `InvalidCronError` naming it."""
    from apscheduler.triggers.cron import CronTrigger  # type: ignore[import-untyped]

    try:
        CronTrigger.from_crontab(cron, timezone=timezone)
    except (ValueError, TypeError) as exc:
        raise InvalidCronError(
            f"invalid cron {cron!r}: {exc} (expected 5 fields: minute hour day-of-month month day-of-week, "
            f"e.g. '35 15 * * mon-fri' for 15:35 {timezone} on weekdays)"
        ) from None
    return cron


def notebook_ref(path: str | os.PathLike) -> str:
    """How a notebook is named in records: relative to the repository root when inside it."""
    p = Path(path).resolve()
    try:
        return p.relative_to(ROOT).as_posix()
    except ValueError:
        return str(p)


def resolve_notebook(ref: str) -> Path:
    p = Path(ref)
    return p if p.is_absolute() else ROOT / p


def schedule_path(schedules_dir: Path, job_id: str) -> Path:
    return Path(schedules_dir) / f"{job_id}.toml"


def read_schedule(path: str | os.PathLike) -> ScheduleRecord:
    """The record in one ``schedules/*.toml`` file."""
    with open(path, "rb") as fh:
        data = tomllib.load(fh)
    known = set(ScheduleRecord.__dataclass_fields__)
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {', '.join(unknown)} in a schedule record")
    return ScheduleRecord(**data)


def write_schedule(schedules_dir: Path, record: ScheduleRecord) -> Path:
    """Write the record atomically (temporary file, then rename): a reader never sees half of one."""
    target = schedule_path(schedules_dir, record.job_id)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".toml.tmp")
    tmp.write_text(record.to_toml(), encoding="utf-8")
    os.replace(tmp, target)
    return target


def revoked(record: ScheduleRecord, reviewer: str, at: str, reason: str) -> ScheduleRecord:
    return replace(record, version=record.version + 1, status="revoked", revoked_by=reviewer, revoked_at=at,
                   revoke_reason=reason)


def check_gate(job: ScheduleRecord | str | os.PathLike, *, audit: AuditLog | None = None) -> str:
    """The notebook's current hash if the job may run; else `GateRefused` naming why (and both hashes).

    `job` is a record or the path of its TOML file. With `audit`, a refusal is recorded there.
    """
    record = job if isinstance(job, ScheduleRecord) else read_schedule(job)
    path = record.notebook_path
    current = ""
    if record.status != "active":
        reason = f"job {record.job_id} is {record.status} (by {record.revoked_by}: {record.revoke_reason})"
    elif not path.is_file():
        reason = f"job {record.job_id}: notebook {record.notebook} not found (approved hash {record.approved_hash})"
    else:
        current = notebook_hash(path)
        if current == record.approved_hash:
            return current
        reason = (
            f"job {record.job_id}: notebook {record.notebook} changed since approval: "
            f"approved hash {record.approved_hash}, current hash {current}; submit it again for review"
        )
    if audit is not None:
        audit.record("gate", "job.gate_refused", f"job/{record.job_id}",
                     {"reason": reason, "approved_hash": record.approved_hash, "current_hash": current,
                      "version": record.version})
    raise GateRefused(reason)


# --- a small TOML writer (the standard library reads TOML but does not write it) ----------------
def to_toml(data: Mapping[str, Any]) -> str:
    scalars = [(k, v) for k, v in data.items() if not isinstance(v, Mapping)]
    tables = [(k, v) for k, v in data.items() if isinstance(v, Mapping)]
    lines = [f"{_key(k)} = {_value(v, k)}" for k, v in scalars]
    for name, table in tables:
        lines += ["", f"[{_key(name)}]"] + [f"{_key(k)} = {_value(v, f'{name}.{k}')}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def _key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() and key.isascii() else json.dumps(key)


def _value(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v, where) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_key(str(k))} = {_value(v, f'{where}.{k}')}" for k, v in value.items()) + "}"
    raise ValueError(f"{where}: {value!r} ({type(value).__name__}) cannot be written to a schedule record (TOML has no null)")
