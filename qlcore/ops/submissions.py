"""Submit a notebook for review, then approve, reject or revoke it. Every step is audited.

`submit` reads straight through like papermill's ``execute_notebook``: read the notebook and its
local modules once (`qlcore.ops.bundles`), check the parameters, write the record, run that
snapshot, then store the outcome (the output notebook is kept whether it ran or raised). The
notebook runs in the child process every scheduled run uses (`qlcore.ops.runner`), killed at the
timeout: what the reviewer approves ran the way it will run. `approve` turns one succeeded
submission into a read-only approved copy (``<data>/approved/<code hash>/``) and a schedule record.

Who acts is proven, not typed: each step takes the acting user's `SigningKey`, which must be the
key the users file holds for them, and the submission and every decision are stored signed
(`qlcore.control.reviews`). The reviewer must be a trader or admin and not the author (the same
person in the users file, whatever the spelling); an author may approve their own submission only
as an admin, with a reason, and that is recorded as a self-approval.

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
from qlcore.control.identity import SigningKey, verify_signature
from qlcore.control.reviews import (
    APPROVED,
    REJECTED,
    REVIEWER_ROLES,
    REVOKED,
    SUBMISSION,
    acting_user,
    review_body,
    same_person,
    store_signed,
    submission_body,
)
from qlcore.control.users import USERS_FILE, Role, User, UserStore
from qlcore.ops.bundles import (
    Bundle,
    BundleError,
    environment_hash,
    load_bundle,
    read_bundle,
    store_approved,
)
from qlcore.ops.notebooks import inspect_notebook, validate_params
from qlcore.ops.outputs import check_outputs
from qlcore.ops.runner import SUCCEEDED, NotebookRun, run_notebook
from qlcore.ops.schedules import (
    TIMEZONE,
    ScheduleRecord,
    approval_schedule,
    check_job_id,
    check_submission_id,
    notebook_ref,
    read_schedule,
    revoked,
    schedule_path,
    validate_cron,
    write_schedule,
)
from qlcore.store.db import connect, project_data_dir
from qlcore.store.scrub import scrubber
from qlcore.store.tables import signed_reviews, submission_reviews, submissions

MODES = ("paper", "live")
BUNDLE = "bundle"  # submissions/<id>/bundle/: the snapshot of what was submitted (read-only)
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
    """A review step that is not allowed: wrong status, self-approval, a role short of it, bad input."""


class UnknownSubmissionError(LookupError):
    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True, slots=True)
class Submission:
    """One stored submission: a notebook version (code hash), its parameters and what the run produced."""

    id: str
    notebook: str
    code_hash: str  # of the bundle: the normalised notebook and its local modules (qlcore.ops.bundles)
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

    @property
    def bundle_dir(self) -> Path:
        return Path(self.output_path).parent / BUNDLE


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _users_file(data_dir: Path | None, users_file: Path | None) -> Path:
    return users_file or (data_dir or project_data_dir()) / USERS_FILE


def _reviewer(store: UserStore, key: SigningKey, step: str) -> User:
    user = acting_user(store, key.name, key)
    if user.role not in REVIEWER_ROLES:
        raise ReviewError(f"{user.name} is a {user.role.label}: to {step} needs a trader or admin")
    return user


def submit(
    path: str | os.PathLike,
    params: Mapping[str, Any],
    key: SigningKey,
    *,
    db: str | Engine | None = None,
    data_dir: Path | None = None,
    users_file: Path | None = None,
    timeout_s: int = 600,
    start_timeout_s: int = 60,
) -> Submission:
    """Run the notebook with `params` through papermill and store the submission (succeeded or failed),
    signed with `key`, the author's (the users file must hold its public half).

    The run also checks the saved outputs of cells marked ``# NBVAL_CHECK_OUTPUT`` (``--nbval-lax``
    semantics, `qlcore.ops.outputs`; with non-default parameters that needs a second run with the
    defaults); the verdict is ``results["nbval"]`` and a mismatch fails the submission, cells named.

    Bad input (not a notebook, no parameters cell, unknown or mistyped parameter, a secret, an
    unknown user or a key not theirs) raises before anything runs. A notebook that raises or times
    out is not an exception here: the submission is stored with status ``failed`` and the error, and
    its output notebook is kept.
    """
    engine = db if isinstance(db, Engine) else connect(db)
    audit = AuditLog(engine=engine, conflict_retries=20)  # the engine and the desk append meanwhile
    data_dir = data_dir or project_data_dir()
    nb_path = Path(path).resolve()
    author = key.name
    try:
        author = acting_user(UserStore(_users_file(data_dir, users_file)), key.name, key).name
        bundle = read_bundle(nb_path)  # a file that is not a notebook: an error that quotes none of it
        declared = inspect_notebook(nb_path, bundle.notebook)
        values = validate_params(declared, params)
        params_json = json.dumps(values, sort_keys=True)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        audit.record(author, "submission.refused", f"notebook/{notebook_ref(nb_path)}", {"reason": str(exc)})
        raise
    code_hash, env_hash = bundle.code_hash, environment_hash()
    sub_id = f"sub-{datetime.now(UTC):%Y%m%d}-{uuid.uuid4().hex[:8]}"
    output = data_dir / "submissions" / sub_id / "output.ipynb"
    output.parent.mkdir(parents=True, exist_ok=True)
    bundle.write(output.parent / BUNDLE, read_only=True)  # what approval will copy: the bytes that ran
    row = {
        "id": sub_id, "notebook": notebook_ref(nb_path), "code_hash": code_hash, "params": params_json,
        "author": author, "results": None, "status": "running", "error": None, "output_path": str(output),
        "created_at": _now(),
    }
    with engine.begin() as conn:
        conn.execute(insert(submissions).values(**row))
        store_signed(conn, SUBMISSION, sub_id, None, key, author,
                     submission_body(sub_id, author, code_hash, values, env_hash))
    audit.record(author, "submission.started", f"submission/{sub_id}",
                 {"notebook": row["notebook"], "code_hash": code_hash, "params": values, "env_hash": env_hash,
                  "modules": sorted(bundle.modules)})

    error = _execute(bundle, output, values, timeout_s, start_timeout_s)
    results = _results(output)
    if error is None:
        nbval = _nbval(bundle, output, declared.defaults, values, timeout_s, start_timeout_s)
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


def _execute(bundle: Bundle, output: Path, params: dict[str, Any], timeout_s: int, start_timeout_s: int) -> str | None:
    """Run the bundle with the runner every job uses (a child process killed at `timeout_s`); its error.

    It runs from a copy in its own folder (its working folder), so what the notebook writes there
    never touches the snapshot that approval copies."""
    workdir = output.parent / f".{output.stem}-run"
    try:
        nb = bundle.write(workdir / BUNDLE)
        outcome = run_notebook(NotebookRun(nb, output, params, nb.parent, timeout_s, start_timeout_s), workdir)
    except OSError as exc:
        return f"could not start the run's process: {exc}"
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if outcome.status == SUCCEEDED:
        return None
    return f"cell {outcome.cell}: {outcome.error}" if outcome.cell is not None else outcome.error


def _nbval(bundle: Bundle, output: Path, defaults: dict[str, Any], values: dict[str, Any], timeout_s: int,
           start_timeout_s: int) -> dict[str, Any]:
    """The saved-outputs check (``--nbval-lax``): the notebook, with its own parameters, reproduces its outputs.

    The saved outputs belong to the defaults, so the submission's run is compared when its parameters
    are the defaults; otherwise the notebook runs once more with its defaults for the check.
    """
    nb_path = output.parent / BUNDLE / "notebook.ipynb"
    if all(defaults.get(k) == v for k, v in values.items()):
        return {**check_outputs(nb_path, output).as_dict(), "run": "submission"}
    check_run = output.with_name("nbval.ipynb")
    error = _execute(bundle, check_run, {}, timeout_s, start_timeout_s)
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
    key: SigningKey,
    cron: str,
    mode: str = "paper",
    limits: Mapping[str, Any] | None = None,
    allow_self_approval: bool = False,
    *,
    reason: str = "",
    job_id: str | None = None,
    timeout_s: int = 600,
    retries: int = 0,
    trading_days_only: bool = True,
    db: str | Engine | None = None,
    schedules_dir: Path | None = None,
    data_dir: Path | None = None,
    users_file: Path | None = None,
) -> ScheduleRecord:
    """Approve a succeeded submission as the holder of `key`: copy what ran to ``<data>/approved/<hash>/``
    (read-only), store the signed decision and write ``schedules/<job_id>.toml``.

    The reviewer must be a trader or admin other than the author; with `allow_self_approval` an admin
    may approve their own submission, giving a `reason` (recorded, and audited as a self-approval)."""
    engine = db if isinstance(db, Engine) else connect(db)
    audit = AuditLog(engine=engine, conflict_retries=20)  # the engine and the desk append meanwhile
    subject = f"submission/{submission_id}"
    schedules_dir = schedules_dir or DEFAULT_SCHEDULES_DIR
    data_dir = data_dir or project_data_dir()
    reviewer_name = key.name
    try:
        check_submission_id(submission_id)
        reviewer = _reviewer(UserStore(_users_file(data_dir, users_file)), key, "approve")
        reviewer_name = reviewer.name
        sub = get_submission(submission_id, db=engine)
        if sub.status != "succeeded":
            raise ReviewError(f"submission {sub.id} is {sub.status}: only a succeeded submission can be approved"
                              + (f" (error: {sub.error})" if sub.error else ""))
        signed = _signed_submission(engine, sub, _users_file(data_dir, users_file))
        self_approved = same_person(reviewer.name, sub.author)
        if self_approved and not allow_self_approval:
            raise ReviewError(f"reviewer {reviewer.name!r} is the author of submission {sub.id}: "
                              "a different person must approve it")
        if self_approved and (reviewer.role != Role.ADMIN or not reason.strip()):
            raise ReviewError(f"{reviewer.name!r} is the author of submission {sub.id}: only an admin may approve "
                              "their own submission, and only with a reason (--reason)")
        validate_cron(cron)
        _check_job_limits(limits or {})
        if mode not in MODES:
            raise ReviewError(f"mode {mode!r}: expected one of {', '.join(MODES)}")
        if timeout_s <= 0 or retries < 0:
            raise ReviewError(f"timeout_s must be > 0 and retries >= 0 (got {timeout_s}, {retries})")
        env_hash = environment_hash()
        if signed["env_hash"] != env_hash:
            raise ReviewError(f"the installed packages changed since submission {sub.id} ran (environment hash "
                              f"{env_hash}, submitted with {signed['env_hash']}); submit it again")
        try:
            bundle = load_bundle(sub.bundle_dir, sub.code_hash, "submitted copy")
        except BundleError as exc:
            raise ReviewError(f"submission {sub.id}: {exc}; submit it again") from None
        job_id = check_job_id(job_id or _job_id(sub.notebook))
        previous = _previous(schedules_dir, job_id, sub.notebook)
        record = ScheduleRecord(
            job_id=job_id, version=previous + 1, status="active", submission_id=sub.id, notebook=sub.notebook,
            approved_hash=sub.code_hash, mode=mode, cron=cron, reviewer=reviewer.name, author=sub.author,
            approved_at=_now(), timezone=TIMEZONE, trading_days_only=trading_days_only, timeout_s=timeout_s,
            retries=retries, concurrency=1, params=sub.params, limits=dict(limits or {}),
        )
        record.to_toml()  # values TOML cannot hold fail here, before anything is stored
        body = review_body(APPROVED, sub.id, reviewer.name, author=sub.author, job_id=job_id, version=record.version,
                           code_hash=sub.code_hash, params=sub.params, env_hash=env_hash,
                           schedule=approval_schedule(record), mode=mode, limits=record.limits, reason=reason,
                           self_approved=self_approved)
        approved = store_approved(bundle, data_dir)
        _move(engine, sub.id, "approve")
    except (ReviewError, ValueError, LookupError, BundleError) as exc:
        audit.record(reviewer_name or "(unknown)", "submission.approve_refused", subject,
                     {"reason": str(exc), "cron": cron})
        raise
    with engine.begin() as conn:
        _review_row(conn, sub.id, "approved", reviewer.name, job_id=job_id, cron=cron, mode=mode,
                    limits=json.dumps(record.limits, sort_keys=True), reason=reason or None)
        store_signed(conn, APPROVED, sub.id, job_id, key, reviewer.name, body)
    file = write_schedule(schedules_dir, record)
    audit.record(reviewer.name, "submission.approved", subject,
                 {"job_id": job_id, "version": record.version, "approved_hash": sub.code_hash, "cron": cron,
                  "mode": mode, "limits": record.limits, "schedule": str(file), "approved_copy": str(approved),
                  "self_approved": self_approved, "reason": reason})
    return record


def _signed_submission(engine: Engine, sub: Submission, users_file: Path) -> dict[str, Any]:
    """The submission's signed content, verified against its author's key; `ReviewError` when there is none."""
    c = signed_reviews.c
    with engine.connect() as conn:
        row = conn.execute(select(signed_reviews).where(c.submission_id == sub.id, c.kind == SUBMISSION)
                           .order_by(c.id.desc()).limit(1)).first()
    author = UserStore(users_file).users().get(sub.author)
    if row is None or author is None or row.signer != sub.author or not author.key \
            or not verify_signature(author.key, row.body.encode(), row.signature):
        raise ReviewError(f"submission {sub.id} carries no valid signature of its author {sub.author!r} (made before "
                          "submissions were signed, or altered since): submit it again")
    body: dict[str, Any] = json.loads(row.body)
    if (body.get("code_hash"), body.get("params")) != (sub.code_hash, sub.params):
        raise ReviewError(f"submission {sub.id}: its stored hash or parameters are not what its author signed")
    return body


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
    return re.sub(r"[^a-z0-9_-]+", "-", Path(notebook).stem.lower()).strip("-_")[:64] or "job"


def _previous(schedules_dir: Path, job_id: str, notebook: str) -> int:
    file = schedule_path(schedules_dir, job_id)
    if not file.is_file():
        return 0
    existing = read_schedule(file)
    if existing.notebook != notebook:
        raise ReviewError(f"job id {job_id!r} already schedules {existing.notebook}; choose another job id")
    return existing.version


def reject(submission_id: str, key: SigningKey, reason: str, *, db: str | Engine | None = None,
           data_dir: Path | None = None, users_file: Path | None = None) -> Submission:
    """Reject a submission with a reason, as the holder of `key` (a trader or admin); it can no longer be approved."""
    engine = db if isinstance(db, Engine) else connect(db)
    audit = AuditLog(engine=engine, conflict_retries=20)  # the engine and the desk append meanwhile
    subject = f"submission/{submission_id}"
    reviewer_name = key.name
    try:
        check_submission_id(submission_id)
        reviewer = _reviewer(UserStore(_users_file(data_dir, users_file)), key, "reject")
        reviewer_name = reviewer.name
        if not reason.strip():
            raise ReviewError("a rejection needs a reason")
        sub = get_submission(submission_id, db=engine)
        _move(engine, submission_id, "reject")
    except (ReviewError, LookupError, ValueError) as exc:
        audit.record(reviewer_name or "(unknown)", "submission.reject_refused", subject, {"reason": str(exc)})
        raise
    with engine.begin() as conn:
        _review_row(conn, submission_id, "rejected", reviewer.name, reason=reason)
        store_signed(conn, REJECTED, submission_id, None, key, reviewer.name,
                     review_body(REJECTED, submission_id, reviewer.name, author=sub.author, code_hash=sub.code_hash,
                                 reason=reason))
    audit.record(reviewer.name, "submission.rejected", subject, {"reason": reason})
    return get_submission(submission_id, db=engine)


def revoke(
    job_id: str, key: SigningKey, reason: str, *, db: str | Engine | None = None, schedules_dir: Path | None = None,
    data_dir: Path | None = None, users_file: Path | None = None,
) -> ScheduleRecord:
    """Revoke an approved job as the holder of `key` (a trader or admin): a new, signed version of its record."""
    engine = db if isinstance(db, Engine) else connect(db)
    audit = AuditLog(engine=engine, conflict_retries=20)  # the engine and the desk append meanwhile
    reviewer_name = key.name
    try:
        file = schedule_path(schedules_dir or DEFAULT_SCHEDULES_DIR, job_id)
        reviewer = _reviewer(UserStore(_users_file(data_dir, users_file)), key, "revoke")
        reviewer_name = reviewer.name
        if not reason.strip():
            raise ReviewError("a revocation needs a reason")
        if not file.is_file():
            raise ReviewError(f"no schedule record for job {job_id!r} ({file})")
        record = read_schedule(file)
        if record.status != "active":
            raise ReviewError(f"job {job_id} is already {record.status}")
        _move(engine, record.submission_id, "revoke")
    except (ReviewError, LookupError, ValueError) as exc:
        audit.record(reviewer_name or "(unknown)", "job.revoke_refused", f"job/{job_id}", {"reason": str(exc)})
        raise
    new = revoked(record, reviewer.name, _now(), reason)
    with engine.begin() as conn:
        _review_row(conn, record.submission_id, "revoked", reviewer.name, job_id=job_id, reason=reason)
        store_signed(conn, REVOKED, record.submission_id, job_id, key, reviewer.name,
                     review_body(REVOKED, record.submission_id, reviewer.name, author=record.author, job_id=job_id,
                                 version=new.version, code_hash=record.approved_hash, reason=reason))
    write_schedule(file.parent, new)
    audit.record(reviewer.name, "submission.revoked", f"submission/{record.submission_id}",
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
