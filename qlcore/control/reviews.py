"""Signed submissions and review decisions: four eyes that a store writer cannot fake.

A submission is signed by its author, and every review decision (approved, rejected, revoked) by
its reviewer, each with the Ed25519 key whose public half is in the users file. The signature
covers the canonical JSON of the decision's content (`submission_body`, `review_body`), stored
beside it in ``signed_reviews``. `verified_approval` is what the scheduler's gate and the engine
ask before a job runs or deploys: the newest signed decision for the job must be an approval whose
signature verifies, made by a trader or admin who is not the author (the same person in the users
file, whatever the spelling) unless an admin self-approved with a reason, of a submission whose
author's signature verifies too. Anyone who can write rows or TOML files, but holds no one's
private key, can neither approve nor alter an approval.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert, select

from qlcore.control.identity import SigningKey, verify_signature
from qlcore.control.users import AuthError, Role, User, UserStore
from qlcore.store.tables import signed_reviews

SUBMISSION, APPROVED, REJECTED, REVOKED = "submission", "approved", "rejected", "revoked"
REVIEWER_ROLES = (Role.TRADER, Role.ADMIN)


class ApprovalInvalid(Exception):
    """No signed approval covers a job, or the one stored does not verify; the message says which."""


class IdentityError(ValueError):
    """An acting user who is unknown, holds the wrong key or lacks the role; the message says which."""


def canonical(body: Mapping[str, Any]) -> bytes:
    """The bytes a signature covers: JSON with sorted keys, no spaces, UTF-8."""
    return json.dumps(dict(body), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def submission_body(submission_id: str, author: str, code_hash: str, params: Mapping[str, Any],
                    env_hash: str) -> dict[str, Any]:
    return {"kind": SUBMISSION, "submission_id": submission_id, "author": author, "code_hash": code_hash,
            "params": dict(params), "env_hash": env_hash}


def review_body(decision: str, submission_id: str, reviewer: str, *, author: str, job_id: str | None = None,
                version: int | None = None, code_hash: str = "", params: Mapping[str, Any] | None = None,
                env_hash: str = "", schedule: Mapping[str, Any] | None = None, mode: str = "",
                limits: Mapping[str, Any] | None = None, reason: str = "", self_approved: bool = False
                ) -> dict[str, Any]:
    """A decision's signed content: for an approval, everything that decides what a job runs and how."""
    return {"kind": decision, "submission_id": submission_id, "reviewer": reviewer, "author": author,
            "job_id": job_id, "version": version, "code_hash": code_hash, "params": dict(params or {}),
            "env_hash": env_hash, "schedule": dict(schedule or {}), "mode": mode, "limits": dict(limits or {}),
            "reason": reason, "self_approved": self_approved}


def acting_user(store: UserStore, name: str, key: SigningKey) -> User:
    """The users-file entry of whoever holds `key`, found by `name` in any spelling; `IdentityError` otherwise.

    Names are unique regardless of case, so ``Alice`` and ``alice`` are one person: the canonical
    name (as the users file spells it) is what gets recorded and compared."""
    name = (name or "").strip()
    try:
        users = store.users()
    except AuthError as exc:
        raise IdentityError(str(exc)) from None
    found = [u for u in users.values() if u.name.casefold() == name.casefold()] if name else []
    if not found:
        raise IdentityError(f"user {name!r} is not in the users file {store.path} (an admin adds users with "
                            "`qlcore users add`)")
    user = found[0]
    if not user.key:
        raise IdentityError(f"user {user.name!r} has no public key in {store.path} (`qlcore users key {user.name}`)")
    if key.public_hex != user.key:
        raise IdentityError(f"the signing key given for {user.name!r} is not theirs (its public half is not the one "
                            f"in {store.path})")
    return user


def same_person(a: str, b: str) -> bool:
    return a.casefold() == b.casefold()


def store_signed(conn: Any, kind: str, submission_id: str, job_id: str | None, key: SigningKey, signer: str,
                 body: Mapping[str, Any]) -> None:
    """Sign `body` with `key` and store it (inside the caller's transaction)."""
    data = canonical(body)
    conn.execute(insert(signed_reviews).values(
        kind=kind, submission_id=submission_id, job_id=job_id, signer=signer, body=data.decode(),
        signature=key.sign(data), ts=datetime.now(UTC).isoformat(timespec="seconds")))


def _verified(store: UserStore, row: Any, what: str) -> dict[str, Any]:
    users = store.users()
    signer = users.get(row.signer)
    if signer is None or not signer.key:
        raise ApprovalInvalid(f"{what} was signed by {row.signer!r}, who has no public key in {store.path}")
    if not verify_signature(signer.key, row.body.encode(), row.signature):
        raise ApprovalInvalid(f"{what}: the signature of {row.signer!r} does not verify (the record was altered, "
                              "or their key was replaced since: approve it again)")
    body = json.loads(row.body)
    if body.get("kind") != row.kind or body.get("submission_id") != row.submission_id:
        raise ApprovalInvalid(f"{what}: the stored row does not match its signed content")
    return dict(body)


def verified_approval(db: Engine, job_id: str, users_file: Path) -> dict[str, Any]:
    """The newest signed decision for `job_id`, verified, when it is an approval; else `ApprovalInvalid`."""
    store = UserStore(users_file)
    c = signed_reviews.c
    with db.connect() as conn:
        row = conn.execute(select(signed_reviews).where(c.job_id == job_id, c.kind.in_((APPROVED, REVOKED)))
                           .order_by(c.id.desc()).limit(1)).first()
        sub = None if row is None else conn.execute(
            select(signed_reviews).where(c.submission_id == row.submission_id, c.kind == SUBMISSION)
            .order_by(c.id.desc()).limit(1)).first()
    if row is None:
        raise ApprovalInvalid(f"job {job_id!r} has no signed approval in the store (approvals made before "
                              "approvals were signed, or none at all): re-approve it with `qlcore approve`")
    body = _verified(store, row, f"the {row.kind} decision on job {job_id!r}")
    if row.kind == REVOKED:
        raise ApprovalInvalid(f"job {job_id!r} was revoked by {body['reviewer']}: {body['reason']}")
    if sub is None:
        raise ApprovalInvalid(f"job {job_id!r}: submission {row.submission_id} has no signed record")
    submitted = _verified(store, sub, f"submission {row.submission_id}")
    for name in ("author", "code_hash", "params", "env_hash"):
        if body.get(name) != submitted.get(name):
            raise ApprovalInvalid(f"job {job_id!r}: the approval's {name} is not the signed submission's")
    reviewer = store.users()[row.signer]
    if body.get("reviewer") != reviewer.name or reviewer.role not in REVIEWER_ROLES:
        raise ApprovalInvalid(f"job {job_id!r}: approved by {row.signer!r} ({reviewer.role.label}); an approval "
                              "needs a trader or admin")
    if same_person(reviewer.name, submitted["author"]) and not (
            body.get("self_approved") and reviewer.role == Role.ADMIN and str(body.get("reason", "")).strip()):
        raise ApprovalInvalid(f"job {job_id!r}: approved by its own author {reviewer.name!r} without an admin's "
                              "self-approval with a reason")
    return body


__all__ = ["APPROVED", "REJECTED", "REVIEWER_ROLES", "REVOKED", "SUBMISSION", "ApprovalInvalid", "IdentityError",
           "acting_user", "canonical", "review_body", "same_person", "store_signed", "submission_body",
           "verified_approval"]
