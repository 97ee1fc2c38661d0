"""Submit a notebook for review, then approve, reject or revoke it. Every step is audited.

`submit` reads straight through like papermill's ``execute_notebook``: check the parameters, hash
the code, write the record, run the notebook, then store the outcome (the output notebook is kept
whether it ran or raised). The notebook runs in the child process every scheduled run uses
(`qlcore.ops.runner`), killed at the timeout: what the reviewer approves ran the way it will run. `approve` turns one succeeded submission into a schedule record.

Submission status moves only along `TRANSITIONS`.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert, select, update

from qlcore.audit.log import AuditLog
from qlcore.ops.notebooks import inspect_notebook, notebook_hash, validate_params
from qlcore.ops.outputs import check_outputs
from qlcore.ops.runner import SUCCEEDED, NotebookRun, run_notebook
from qlcore.ops.schedules import (
    TIMEZONE,
    ScheduleRecord,
    notebook_ref,
    read_schedule,
    resolve_notebook,
    revoked,
    schedule_path,
    validate_cron,
    write_schedule,
)
from qlcore.store.db import connect, project_data_dir
from qlcore.store.scrub import scrubber
from qlcore.store.tables import submission_reviews, submissions

MODES = ("paper", "live")
DEFAULT_SCHEDULES_DIR = Path(__file__).resolve().parents[2] / "schedules"

# (status, step) -> next status. Anything else is refused with the current status named.
TRANSITIONS = {
    ("running", "succeed"): "succeeded",
    ("running", "fail"): "failed",
    ("succeeded", "approve"): "approved",
    ("succeeded", "reject"): "rejected",
    ("failed", "reject"): "rejected",  # closes a failed submission with a reviewer's note
    ("approved", "revoke"): "revoked",
}


class ReviewError(ValueError):
    """A review step that is not allowed: wrong status, self-approval, changed notebook, bad input."""


class UnknownSubmissionError(LookupError):
    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True, slots=True)
class Submission:
    """One stored submission: a notebook version (code hash), its parameters and what the run produced."""

    id: str
    notebook: str
    code_hash: str
    params: dict[str, Any]
    author: str
    results: dict[str, Any] | None
    status: str
    error: str | None
    output_path: str
    created_at: str

    @property
    def subject(self) -> str:
        return f"submission/{self.id}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _name(value: str, field: str) -> str:
    value = (value or "").strip()
    if not value:
        raise ReviewError(f"{field} is required (a person's name)")
    return value


def submit(
    path: str | os.PathLike,
    params: Mapping[str, Any],
    author: str,
    *,
    db: str | Engine | None = None,
    data_dir: Path | None = None,
    timeout_s: int = 600,
    start_timeout_s: int = 60,
) -> Submission:
    """Run the notebook with `params` through papermill and store the submission (succeeded or failed).

    The run also checks the saved outputs of cells marked ``# NBVAL_CHECK_OUTPUT`` (``--nbval-lax``
    semantics, `qlcore.ops.outputs`; with non-default parameters that needs a second run with the
    defaults); the verdict is ``results["nbval"]`` and a mismatch fails the submission, cells named.

    Bad input (no parameters cell, unknown or mistyped parameter, a secret) raises before anything
    runs. A notebook that raises or times out is not an exception here: the submission is stored
    with status ``failed`` and the error, and its output notebook is kept.
    """
    engine = db if isinstance(db, Engine) else connect(db)
    audit = AuditLog(engine=engine, conflict_retries=20)  # the engine and the desk append meanwhile
    author = _name(author, "author")
    nb_path = Path(path).resolve()
    try:
        declared = inspect_notebook(nb_path)
        values = validate_params(declared, params)
        params_json = json.dumps(values, sort_keys=True)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        audit.record(author, "submission.refused", f"notebook/{notebook_ref(nb_path)}", {"reason": str(exc)})
        raise
    code_hash = notebook_hash(nb_path)
    sub_id = f"sub-{datetime.now(UTC):%Y%m%d}-{uuid.uuid4().hex[:8]}"
    output = (data_dir or project_data_dir()) / "submissions" / sub_id / "output.ipynb"
    output.parent.mkdir(parents=True, exist_ok=True)
    row = {
        "id": sub_id, "notebook": notebook_ref(nb_path), "code_hash": code_hash, "params": params_json,
        "author": author, "results": None, "status": "running", "error": None, "output_path": str(output),
        "created_at": _now(),
    }
    with engine.begin() as conn:
        conn.execute(insert(submissions).values(**row))
    audit.record(author, "submission.started", f"submission/{sub_id}",
                 {"notebook": row["notebook"], "code_hash": code_hash, "params": values})

    error = _execute(nb_path, output, values, timeout_s, start_timeout_s)
    results = _results(output)
    if error is None:
        nbval = _nbval(nb_path, output, declared.defaults, values, timeout_s, start_timeout_s)
        results = {**(results or {}), "nbval": nbval}
        if not nbval["passed"]:
            error = "nbval: " + "; ".join(nbval["failures"].values())
    secrets = scrubber(urls=[engine.url])  # what a notebook printed or raised is kept: never its secrets
    for kept in (output, output.with_name("nbval.ipynb")):
        if kept.is_file():
            secrets.notebook(kept)
    error, results = (secrets.text(error) if error else None), secrets.value(results)
    step = "fail" if error else "succeed"
    _move(engine, sub_id, step, results=json.dumps(results, sort_keys=True) if results is not None else None, error=error)
    audit.record(author, f"submission.{TRANSITIONS[('running', step)]}", f"submission/{sub_id}",
                 {"error": error, "results": results, "output_path": str(output)})
    return get_submission(sub_id, db=engine)


def _execute(nb_path: Path, output: Path, params: dict[str, Any], timeout_s: int, start_timeout_s: int) -> str | None:
    """Run the notebook with the runner every job uses (a child process killed at `timeout_s`); its error."""
    workdir = output.parent / f".{output.stem}-run"
    try:
        outcome = run_notebook(NotebookRun(nb_path, output, params, nb_path.parent, timeout_s, start_timeout_s),
                               workdir)
    except OSError as exc:
        return f"could not start the run's process: {exc}"
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if outcome.status == SUCCEEDED:
        return None
    return f"cell {outcome.cell}: {outcome.error}" if outcome.cell is not None else outcome.error


def _nbval(nb_path: Path, output: Path, defaults: dict[str, Any], values: dict[str, Any], timeout_s: int,
           start_timeout_s: int) -> dict[str, Any]:
    """The saved-outputs check (``--nbval-lax``): the notebook, with its own parameters, reproduces its outputs.

    The saved outputs belong to the defaults, so the submission's run is compared when its parameters
    are the defaults; otherwise the notebook runs once more with its defaults for the check.
    """
    if all(defaults.get(k) == v for k, v in values.items()):
        return {**check_outputs(nb_path, output).as_dict(), "run": "submission"}
    check_run = output.with_name("nbval.ipynb")
    error = _execute(nb_path, check_run, {}, timeout_s, start_timeout_s)
    if error:
        return {"passed": False, "checked_cells": [], "run": "defaults",
                "failures": {"run": f"with its default parameters the notebook fails: {error}"}}
    return {**check_outputs(nb_path, check_run).as_dict(), "run": "defaults"}


def _results(output: Path) -> dict[str, Any] | None:
    from qlcore.research.notebook import read_records

    if not output.is_file():
        return None
    try:
        return read_records(output)
    except Exception:  # an output notebook papermill could not finish writing
        return None


def _move(engine: Engine, sub_id: str, step: str, **values: Any) -> str:
    """Apply `step` to the submission's status (compare-and-set, so two reviewers cannot both act)."""
    current = get_submission(sub_id, db=engine).status
    nxt = TRANSITIONS.get((current, step))
    if nxt is None:
        allowed = sorted(s for (s, st) in TRANSITIONS if st == step)
        raise ReviewError(f"submission {sub_id} is {current}; {step} needs status {' or '.join(allowed)}")
    with engine.begin() as conn:
        moved = conn.execute(
            update(submissions).where(submissions.c.id == sub_id, submissions.c.status == current)
            .values(status=nxt, **values)
        ).rowcount
    if moved != 1:
        raise ReviewError(f"submission {sub_id} changed while being reviewed; look at it again")
    return nxt


def _review_row(conn: Any, sub_id: str, decision: str, reviewer: str, **values: Any) -> None:
    conn.execute(insert(submission_reviews).values(submission_id=sub_id, decision=decision, reviewer=reviewer,
                                                   ts=_now(), **values))


def approve(
    submission_id: str,
    reviewer: str,
    cron: str,
    mode: str = "paper",
    limits: Mapping[str, Any] | None = None,
    allow_self_approval: bool = False,
    *,
    job_id: str | None = None,
    timeout_s: int = 600,
    retries: int = 0,
    trading_days_only: bool = True,
    db: str | Engine | None = None,
    schedules_dir: Path | None = None,
) -> ScheduleRecord:
    """Approve a succeeded submission: record the decision and write ``schedules/<job_id>.toml``."""
    engine = db if isinstance(db, Engine) else connect(db)
    audit = AuditLog(engine=engine, conflict_retries=20)  # the engine and the desk append meanwhile
    subject = f"submission/{submission_id}"
    schedules_dir = schedules_dir or DEFAULT_SCHEDULES_DIR
    try:
        reviewer = _name(reviewer, "reviewer")
        sub = get_submission(submission_id, db=engine)
        if sub.status != "succeeded":
            raise ReviewError(f"submission {sub.id} is {sub.status}: only a succeeded submission can be approved"
                              + (f" (error: {sub.error})" if sub.error else ""))
        if reviewer == sub.author and not allow_self_approval:
            raise ReviewError(f"reviewer {reviewer!r} is the author of submission {sub.id}: "
                              "a different person must approve it")
        validate_cron(cron)
        _check_job_limits(limits or {})
        if mode not in MODES:
            raise ReviewError(f"mode {mode!r}: expected one of {', '.join(MODES)}")
        if timeout_s <= 0 or retries < 0:
            raise ReviewError(f"timeout_s must be > 0 and retries >= 0 (got {timeout_s}, {retries})")
        path = resolve_notebook(sub.notebook)
        current = notebook_hash(path) if path.is_file() else "(missing)"
        if current != sub.code_hash:
            raise ReviewError(f"notebook {sub.notebook} changed since submission {sub.id}: submitted hash "
                              f"{sub.code_hash}, current hash {current}; submit it again")
        job_id = job_id or _job_id(sub.notebook)
        previous = _previous(schedules_dir, job_id, sub.notebook)
        record = ScheduleRecord(
            job_id=job_id, version=previous + 1, status="active", submission_id=sub.id, notebook=sub.notebook,
            approved_hash=sub.code_hash, mode=mode, cron=cron, reviewer=reviewer, author=sub.author,
            approved_at=_now(), timezone=TIMEZONE, trading_days_only=trading_days_only, timeout_s=timeout_s,
            retries=retries, concurrency=1, params=sub.params, limits=dict(limits or {}),
        )
        record.to_toml()  # values TOML cannot hold fail here, before anything is stored
        _move(engine, sub.id, "approve")
    except (ReviewError, ValueError, LookupError) as exc:
        audit.record(reviewer or "(unknown)", "submission.approve_refused", subject, {"reason": str(exc), "cron": cron})
        raise
    with engine.begin() as conn:
        _review_row(conn, sub.id, "approved", reviewer, job_id=job_id, cron=cron, mode=mode,
                    limits=json.dumps(record.limits, sort_keys=True))
    file = write_schedule(schedules_dir, record)
    audit.record(reviewer, "submission.approved", subject,
                 {"job_id": job_id, "version": record.version, "approved_hash": sub.code_hash, "cron": cron,
                  "mode": mode, "limits": record.limits, "schedule": str(file),
                  "self_approved": reviewer == sub.author})
    return record


def _check_job_limits(limits: Mapping[str, Any]) -> None:
    """The limits an approval may set are those the engine applies to the job's deployment."""
    from qlcore.strategies.manager import LIMIT_KEYS

    known = {"capital": "the most capital the job's strategy may be deployed with", **LIMIT_KEYS}
    for key, value in limits.items():
        if key not in known:
            valid = "; ".join(f"{k} ({h})" for k, h in known.items())
            raise ReviewError(f"limit {key!r} is not one the engine applies to a job; valid limits: {valid}")
        try:
            amount = Decimal(str(value))
        except ArithmeticError:
            amount = Decimal(-1)
        if not amount.is_finite() or amount <= 0:
            raise ReviewError(f"limit {key}: expected a number > 0, got {value!r}")


def _job_id(notebook: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(notebook).stem).strip("-") or "job"


def _previous(schedules_dir: Path, job_id: str, notebook: str) -> int:
    file = schedule_path(schedules_dir, job_id)
    if not file.is_file():
        return 0
    existing = read_schedule(file)
    if existing.notebook != notebook:
        raise ReviewError(f"job id {job_id!r} already schedules {existing.notebook}; choose another job id")
    return existing.version


def reject(submission_id: str, reviewer: str, reason: str, *, db: str | Engine | None = None) -> Submission:
    """Reject a submission with a reason; it can no longer be approved."""
    engine = db if isinstance(db, Engine) else connect(db)
    audit = AuditLog(engine=engine, conflict_retries=20)  # the engine and the desk append meanwhile
    subject = f"submission/{submission_id}"
    try:
        reviewer = _name(reviewer, "reviewer")
        if not reason.strip():
            raise ReviewError("a rejection needs a reason")
        _move(engine, submission_id, "reject")
    except (ReviewError, LookupError) as exc:
        audit.record(reviewer or "(unknown)", "submission.reject_refused", subject, {"reason": str(exc)})
        raise
    with engine.begin() as conn:
        _review_row(conn, submission_id, "rejected", reviewer, reason=reason)
    audit.record(reviewer, "submission.rejected", subject, {"reason": reason})
    return get_submission(submission_id, db=engine)


def revoke(
    job_id: str, reviewer: str, reason: str, *, db: str | Engine | None = None, schedules_dir: Path | None = None
) -> ScheduleRecord:
    """Revoke an approved job: a new version of its schedule record with status ``revoked``."""
    engine = db if isinstance(db, Engine) else connect(db)
    audit = AuditLog(engine=engine, conflict_retries=20)  # the engine and the desk append meanwhile
    file = schedule_path(schedules_dir or DEFAULT_SCHEDULES_DIR, job_id)
    try:
        reviewer = _name(reviewer, "reviewer")
        if not reason.strip():
            raise ReviewError("a revocation needs a reason")
        if not file.is_file():
            raise ReviewError(f"no schedule record for job {job_id!r} ({file})")
        record = read_schedule(file)
        if record.status != "active":
            raise ReviewError(f"job {job_id} is already {record.status}")
        _move(engine, record.submission_id, "revoke")
    except (ReviewError, LookupError, ValueError) as exc:
        audit.record(reviewer or "(unknown)", "job.revoke_refused", f"job/{job_id}", {"reason": str(exc)})
        raise
    new = revoked(record, reviewer, _now(), reason)
    with engine.begin() as conn:
        _review_row(conn, record.submission_id, "revoked", reviewer, job_id=job_id, reason=reason)
    write_schedule(file.parent, new)
    audit.record(reviewer, "submission.revoked", f"submission/{record.submission_id}",
                 {"job_id": job_id, "version": new.version, "reason": reason})
    return new


def get_submission(submission_id: str, *, db: str | Engine | None = None) -> Submission:
    """One stored submission; `UnknownSubmissionError` if there is none with that id."""
    engine = db if isinstance(db, Engine) else connect(db)
    with engine.connect() as conn:
        row = conn.execute(select(submissions).where(submissions.c.id == submission_id)).first()
    if row is None:
        raise UnknownSubmissionError(f"no submission {submission_id!r} (see `qlcore submissions`)")
    return _from_row(row)


def list_submissions(limit: int = 50, *, db: str | Engine | None = None) -> list[Submission]:
    """Stored submissions, newest first."""
    engine = db if isinstance(db, Engine) else connect(db)
    with engine.connect() as conn:
        rows = conn.execute(select(submissions).order_by(submissions.c.created_at.desc(), submissions.c.id.desc())
                            .limit(limit)).all()
    return [_from_row(r) for r in rows]


def _from_row(row: Any) -> Submission:
    return Submission(
        id=row.id, notebook=row.notebook, code_hash=row.code_hash, params=json.loads(row.params), author=row.author,
        results=json.loads(row.results) if row.results else None, status=row.status, error=row.error,
        output_path=row.output_path, created_at=row.created_at,
    )
