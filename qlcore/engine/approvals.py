"""A scheduled job's strategy runs only under its approval: the approved code, within the approved limits.

A job's `strategy.deploy` names its job and the hash of the notebook that sent it. The engine reads
the job's newest *signed* review decision from the store (`qlcore.control.reviews`, written by
`qlcore approve` and `revoke`), verifies the reviewer's and the author's signatures against the
public keys of the users file (and that the reviewer is a trader or admin other than the author),
and refuses the deployment when there is no such approval, when the newest decision is not an
approval (revoked), when a signature does not verify (a row written by hand), or when the hash is
not the approved one. The approved limits then bound
the deployment: `capital` caps its capital, and each strategy limit (`max_order_quantity`,
`max_position`) applies, the tighter one where the command gives its own. They reach the risk chain as
the deployment's limits, like any other.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from qlcore.control.reviews import APPROVED, REVOKED, ApprovalInvalid, verified_approval
from qlcore.control.users import USERS_FILE
from qlcore.model.money import to_decimal
from qlcore.store.db import project_data_dir
from qlcore.store.tables import signed_reviews

CAPITAL = "capital"


class ApprovalRefused(ValueError):
    """A job's deployment that its approval does not cover; the message says why."""


@dataclass(frozen=True)
class JobApproval:
    job_id: str
    decision: str  # the newest decision: approved, revoked, ...
    code_hash: str
    limits: dict[str, Any]
    reviewer: str

    def bound(self, capital: Decimal, limits: Mapping[str, Any]) -> tuple[Decimal, dict[str, Any]]:
        """The deployment's capital and limits within the approved ones (the tighter of each)."""
        out = dict(limits)
        for key, value in self.limits.items():
            approved = to_decimal(value)
            if key == CAPITAL:
                capital = min(capital, approved)
            elif key in out:
                out[key] = min(to_decimal(out[key]), approved)
            else:
                out[key] = approved
        return capital, out


def job_approval(db: Engine, job_id: str, users_file: Path | None = None) -> JobApproval | None:
    """The newest signed decision recorded for `job_id`, verified; None when there is none.

    `ApprovalInvalid` when the newest approval's signatures do not hold. `users_file` defaults to
    ``users.toml`` in the data folder."""
    c = signed_reviews.c
    with db.connect() as conn:
        kind = conn.execute(select(c.kind).where(c.job_id == job_id, c.kind.in_((APPROVED, REVOKED)))
                            .order_by(c.id.desc()).limit(1)).scalar_one_or_none()
    if kind is None:
        return None
    if kind == REVOKED:
        return JobApproval(job_id, REVOKED, "", {}, "")
    body = verified_approval(db, job_id, users_file or project_data_dir() / USERS_FILE)
    return JobApproval(job_id, APPROVED, body["code_hash"], dict(body["limits"]), body["reviewer"])


def check_job_deployment(db: Engine, payload: Mapping[str, Any], capital: Decimal,
                         limits: Mapping[str, Any], users_file: Path | None = None) -> tuple[Decimal, dict[str, Any]]:
    """For a deployment sent by a job: its capital and limits bounded by the approval; `ApprovalRefused`
    when the approval does not cover it. A deployment sent by a person passes unchanged."""
    job_id = payload.get("job_id")
    if not job_id:
        return capital, dict(limits)
    try:
        approval = job_approval(db, str(job_id), users_file)
    except ApprovalInvalid as exc:
        raise ApprovalRefused(f"job {job_id!r}: its approval does not hold: {exc}") from None
    if approval is None:
        raise ApprovalRefused(f"job {job_id!r} has no approval in the store: a job's strategy is deployed only "
                              "under its signed approval (qlcore approve)")
    if approval.decision != "approved":
        raise ApprovalRefused(f"job {job_id!r} was {approval.decision} after its approval: it may not deploy")
    sent = payload.get("code_hash")
    if sent != approval.code_hash:
        raise ApprovalRefused(f"job {job_id!r}: code hash {sent!r} is not the approved {approval.code_hash!r} "
                              f"(approved by {approval.reviewer})")
    return approval.bound(capital, limits)


__all__ = ["ApprovalRefused", "JobApproval", "check_job_deployment", "job_approval"]
