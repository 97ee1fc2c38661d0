"""Schedules as data: one versioned, human-readable TOML record per approved job, and the gate.

``schedules/<job_id>.toml`` says what may run: the notebook, the exact code hash a reviewer
approved, the parameters, the cron (in the exchange's time zone) and the run limits. The file is
the readable form; the authority is the reviewer's signed approval in the store
(`qlcore.control.reviews`): a record is honoured only while every field that decides what runs
equals the newest signed approval of its job, so a hand-written or edited file runs nothing. The
scheduler's own job store is derived from these files. Every change (approval, revocation) writes
the whole record again with ``version`` one higher; nothing is edited in place.
"""
from __future__ import annotations

import json
import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from qlcore.control.reviews import ApprovalInvalid, verified_approval
from qlcore.control.users import USERS_FILE
from qlcore.ops.bundles import Bundle, BundleError, environment_hash, load_approved

if TYPE_CHECKING:
    from qlcore.audit.log import AuditLog

ROOT = Path(__file__).resolve().parents[2]
TIMEZONE = "America/New_York"  # the exchange's time zone: crons are read in it


class GateRefused(Exception):
    """A job may not run: its notebook changed since approval, is missing, or the job was revoked."""


class InvalidCronError(ValueError):
    """A cron expression APScheduler cannot read."""


class InvalidIdentifierError(ValueError):
    """An id that would become part of a file path but is not a plain name; the message names the field."""


JOB_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
SUBMISSION_ID = re.compile(r"^sub-[0-9]{8}-[0-9a-f]{8}$")


def check_job_id(job_id: str, field: str = "job id") -> str:
    """`job_id` if it is a plain name (lowercase letters, digits, _ and -, at most 64); else an error naming `field`."""
    if not isinstance(job_id, str) or not JOB_ID.match(job_id):
        raise InvalidIdentifierError(f"{field} {job_id!r} is not valid: expected 1-64 characters, lowercase letters, "
                                     "digits, '_' or '-', starting with a letter or digit (it names a file)")
    return job_id


def check_submission_id(submission_id: str) -> str:
    if not isinstance(submission_id, str) or not SUBMISSION_ID.match(submission_id):
        raise InvalidIdentifierError(f"submission id {submission_id!r} is not valid: expected sub-YYYYMMDD-xxxxxxxx "
                                     "(see `qlcore submissions`)")
    return submission_id


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
    return Path(schedules_dir) / f"{check_job_id(job_id)}.toml"


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


def approval_schedule(record: ScheduleRecord) -> dict[str, Any]:
    """The schedule fields a signed approval covers."""
    return {"cron": record.cron, "timezone": record.timezone, "trading_days_only": record.trading_days_only,
            "timeout_s": record.timeout_s, "retries": record.retries, "concurrency": record.concurrency,
            "notebook": record.notebook}


def _mismatches(record: ScheduleRecord, body: Mapping[str, Any]) -> list[str]:
    signed = {"job_id": body.get("job_id"), "version": body.get("version"), "submission_id": body.get("submission_id"),
              "approved_hash": body.get("code_hash"), "mode": body.get("mode"), "reviewer": body.get("reviewer"),
              "author": body.get("author"), "params": body.get("params"), "limits": body.get("limits"),
              **dict(body.get("schedule") or {})}
    mine = {**asdict(record), **approval_schedule(record)}
    return [f"{k} ({mine.get(k)!r} in the file, {v!r} approved)" for k, v in signed.items() if mine.get(k) != v]


def verify_record(record: ScheduleRecord, *, db: Engine, users_file: Path) -> dict[str, Any]:
    """The signed approval that `record` matches field for field; `GateRefused` naming why not."""
    if record.status != "active":
        raise GateRefused(f"job {record.job_id} is {record.status} (by {record.revoked_by}: {record.revoke_reason})")
    try:
        body = verified_approval(db, check_job_id(record.job_id), users_file)
    except (ApprovalInvalid, InvalidIdentifierError) as exc:
        raise GateRefused(f"job {record.job_id}: {exc}") from None
    wrong = _mismatches(record, body)
    if wrong:
        raise GateRefused(f"job {record.job_id}: the schedule record does not match its signed approval (written or "
                          f"edited by hand?): {'; '.join(wrong)}; only `qlcore approve` writes a valid record")
    return body


def check_gate(job: ScheduleRecord | str | os.PathLike, *, db: Engine, data_dir: Path,
               users_file: Path | None = None, audit: AuditLog | None = None) -> Bundle:
    """The approved bundle (its bytes, checked against the approved hash) if the job may run; else `GateRefused`.

    The record must match its job's newest signed approval (`verify_record`), the installed packages
    must be those the approval covers, and the read-only copy under ``<data_dir>/approved/`` must
    still hash to the approved hash. `job` is a record or its TOML file. With `audit`, a refusal is
    recorded there."""
    record = job if isinstance(job, ScheduleRecord) else read_schedule(job)
    try:
        body = verify_record(record, db=db, users_file=users_file or Path(data_dir) / USERS_FILE)
        env = environment_hash()
        if body.get("env_hash") != env:
            raise GateRefused(f"job {record.job_id}: the installed packages changed since approval (environment hash "
                              f"{env}, approved {body.get('env_hash')}); submit it again for review")
        try:
            return load_approved(data_dir, record.approved_hash)
        except BundleError as exc:
            raise GateRefused(f"job {record.job_id}: {exc}") from None
    except GateRefused as exc:
        if audit is not None:
            audit.record("gate", "job.gate_refused", f"job/{record.job_id}",
                         {"reason": str(exc), "approved_hash": record.approved_hash, "version": record.version})
        raise


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
