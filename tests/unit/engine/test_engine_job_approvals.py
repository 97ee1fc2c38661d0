"""A job's strategy is deployed only under its approval: approved code, approved limits (issue: limits
given at approval were stored and never enforced)."""
from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from signed import job_signer
from signed_jobs import keys
from sqlalchemy import insert

from qlcore.control.commands import CommandQueue
from qlcore.control.identity import SigningKey
from qlcore.control.reviews import SUBMISSION, review_body, store_signed, submission_body
from qlcore.engine.service import EngineConfig, EngineService
from qlcore.store.tables import submission_reviews, submissions

TARGET = "jobs"
HASH = "a" * 64


@pytest.fixture
def rig(sqlite_url: str, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("QLCORE_DATA_DIR", str(tmp_path))  # the users file whose keys verify approvals
    engine = EngineService(EngineConfig(engine_id=TARGET, url=sqlite_url, venue_path=tmp_path / "venue.sqlite",
                                        symbols=("AAPL", "MSFT"), speed=1e-6, command_poll_s=0.0))
    engine.start()
    yield engine, CommandQueue(sqlite_url)
    engine.shutdown()


def _review(engine: EngineService, decision: str, limits: dict | None = None, sub: str = "s1",
            signer: SigningKey | None = None) -> None:
    """A decision stored as `qlcore approve` / `revoke` store it: the review row and its signed form."""
    data_dir = Path(engine.config.resolved_venue_path).parent
    alice, bob = keys(data_dir)
    signer = signer or bob
    with engine.db.begin() as conn:
        if not conn.execute(submissions.select().where(submissions.c.id == sub)).first():
            conn.execute(insert(submissions).values(id=sub, notebook="nb.ipynb", code_hash=HASH, params="{}",
                                                    author="alice", status="approved", output_path="out.ipynb",
                                                    created_at="2026-12-04T00:00:00Z"))
            store_signed(conn, SUBMISSION, sub, None, alice, "alice", submission_body(sub, "alice", HASH, {}, "env"))
        conn.execute(insert(submission_reviews).values(submission_id=sub, decision=decision, reviewer="bob",
                                                       job_id="nightly", limits=json.dumps(limits or {}),
                                                       ts="2026-12-04T00:00:01Z"))
        store_signed(conn, decision, sub, "nightly", signer, "bob",
                     review_body(decision, sub, "bob", author="alice", job_id="nightly", version=1, code_hash=HASH,
                                 env_hash="env", limits=limits or {}))


def _deploy(engine: EngineService, queue: CommandQueue, sid: str, **extra):
    payload = {"strategy_id": sid, "strategy": "sma_cross", "symbols": ["AAPL"], "job_id": "nightly",
               "code_hash": HASH, **extra}
    queue.signer = job_signer("nightly", [sid], payload["symbols"], payload["code_hash"])  # as the scheduler grants a run
    cid = queue.submit("job:nightly", "strategy.deploy", payload, target=TARGET)
    engine.step()
    return queue.status(cid)


def test_a_job_without_an_approval_cannot_deploy(rig):
    engine, queue = rig
    out = _deploy(engine, queue, "j1")
    assert out.status == "refused" and "job 'nightly' has no approval in the store" in out.reason
    assert "j1" not in engine.manager.strategy_ids


def test_the_approved_capital_and_limits_bound_the_deployment(rig):
    engine, queue = rig
    _review(engine, "approved", {"capital": 25_000, "max_position": 300, "max_order_quantity": 50})
    out = _deploy(engine, queue, "j2", capital="90000", limits={"max_order_quantity": "20"})
    assert out.status == "accepted", out.reason
    assert engine.manager.stats("j2").allocation == Decimal(25_000)  # the approved cap, not the 90,000 asked
    limits = engine.manager._records["j2"].limits
    assert limits == {"max_position": Decimal(300), "max_order_quantity": Decimal(20)}  # the tighter of each


def test_another_hash_or_a_revoked_approval_is_refused(rig):
    engine, queue = rig
    _review(engine, "approved", {"capital": 25_000})
    out = _deploy(engine, queue, "j3", code_hash="b" * 64)
    assert out.status == "refused" and "is not the approved" in out.reason and "approved by bob" in out.reason
    _review(engine, "revoked")
    out = _deploy(engine, queue, "j4")
    assert out.status == "refused" and "job 'nightly' was revoked" in out.reason


def test_an_approval_row_not_signed_by_its_reviewer_is_refused(rig):
    engine, queue = rig
    _review(engine, "approved", {"capital": 25_000}, signer=SigningKey.generate("bob"))  # a key not in the users file
    out = _deploy(engine, queue, "j5")
    assert out.status == "refused" and "its approval does not hold" in out.reason
    assert "the signature of 'bob' does not verify" in out.reason and "j5" not in engine.manager.strategy_ids
