"""A scheduled job's strategy runs only under its approval: the approved code, within the approved limits.

A job's `strategy.deploy` names its job and the hash of the notebook that sent it. The engine reads
the job's newest review decision from the store (`submission_reviews`, written by `qlcore approve`,
`reject` and `revoke`) and refuses the deployment when there is no approval, when the newest decision
is not an approval (revoked), or when the hash is not the approved one. The approved limits then bound
the deployment: `capital` caps its capital, and each strategy limit (`max_order_quantity`,
`max_position`) applies, the tighter one where the command gives its own. They reach the risk chain as
the deployment's limits, like any other.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, select

from qlcore.model.money import to_decimal
from qlcore.store.tables import submission_reviews, submissions

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


def job_approval(db: Engine, job_id: str) -> JobApproval | None:
    """The newest review decision recorded for `job_id`, with its submission's code hash."""
    r, s = submission_reviews.c, submissions.c
    query = (
        select(r.decision, r.limits, r.reviewer, s.code_hash)
        .join(submissions, s.id == r.submission_id)
        .where(r.job_id == job_id)
        .order_by(r.id.desc())
        .limit(1)
    )
    with db.connect() as conn:
        row = conn.execute(query).first()
    if row is None:
        return None
    return JobApproval(job_id, row.decision, row.code_hash, json.loads(row.limits or "{}"), row.reviewer)


def check_job_deployment(db: Engine, payload: Mapping[str, Any], capital: Decimal,
                         limits: Mapping[str, Any]) -> tuple[Decimal, dict[str, Any]]:
    """For a deployment sent by a job: its capital and limits bounded by the approval; `ApprovalRefused`
    when the approval does not cover it. A deployment sent by a person passes unchanged."""
    job_id = payload.get("job_id")
    if not job_id:
        return capital, dict(limits)
    approval = job_approval(db, str(job_id))
    if approval is None:
        raise ApprovalRefused(f"job {job_id!r} has no approval in the store: a job's strategy is deployed only "
                              "under its approval (qlcore approve)")
    if approval.decision != "approved":
        raise ApprovalRefused(f"job {job_id!r} was {approval.decision} after its approval: it may not deploy")
    sent = payload.get("code_hash")
    if sent != approval.code_hash:
        raise ApprovalRefused(f"job {job_id!r}: code hash {sent!r} is not the approved {approval.code_hash!r} "
                              f"(approved by {approval.reviewer})")
    return approval.bound(capital, limits)


__all__ = ["ApprovalRefused", "JobApproval", "check_job_deployment", "job_approval"]
