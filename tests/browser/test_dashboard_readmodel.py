"""The dashboards' read model and the ticket's pre-trade preview, over a real SQLite store (no browser)."""
from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path

import pytest
from dashboard_support import publish, sample_snapshot
from sqlalchemy import text

from qlcore.store.db import connect
from qlcore.ui.preview import preview_order
from qlcore.ui.readmodel import NS, ReadModel


@pytest.fixture
def db(tmp_path: Path):
    return connect(f"sqlite:///{tmp_path / 'qlcore.db'}")


def test_status_reports_heartbeat_age_and_staleness(db) -> None:
    now = time.time_ns()
    publish(db, sample_snapshot(), heartbeat_at=now - 5 * NS)
    model = ReadModel(engine=db, stale_after_s=3.0, cache_s=0, clock=lambda: now)
    view = model.status()
    assert view is not None and view.engine_id == "paper"
    assert view.age_s == pytest.approx(5.0) and view.stale
    publish(db, sample_snapshot(), heartbeat_at=now - NS // 2)
    fresh = model.status()
    assert fresh is not None
    assert fresh.age_s == pytest.approx(0.5) and not fresh.stale
    assert fresh.trading_mode == "ACTIVE" and fresh.account["pnl_today"] == "1234.5"


def test_no_engine_means_no_status_and_a_bad_snapshot_is_named(db) -> None:
    model = ReadModel(engine=db, cache_s=0)
    assert model.status() is None
    publish(db, sample_snapshot())
    with db.begin() as conn:
        conn.execute(text("UPDATE engine_status SET snapshot = 'not json'"))
    with pytest.raises(ValueError, match=r"engine_status\[paper\]\.snapshot: not JSON"):
        model.status()


def test_the_cache_serves_many_sessions_with_one_query(db) -> None:
    publish(db, sample_snapshot())
    model = ReadModel(engine=db, cache_s=60)
    first = model.status()
    for _ in range(50):
        assert model.status() is first
    assert model.reads == 1


def test_a_changed_snapshot_gets_a_new_version(db) -> None:
    publish(db, sample_snapshot(pnl_today="1"))
    model = ReadModel(engine=db, cache_s=0)
    v1 = model.status()
    publish(db, sample_snapshot(pnl_today="2"), heartbeat_at=time.time_ns() + 1)
    v2 = model.status()
    assert v1 is not None and v2 is not None
    assert v1.version != v2.version and v2.account["pnl_today"] == "2"


def test_job_runs_have_their_columns_before_the_first_run(db) -> None:
    # a dashboard table whose columns arrive with its first rows may show the header without them
    frame = ReadModel(engine=db).job_runs()
    assert frame.empty and {"job_id", "status", "started_at"} <= set(frame.columns)


def test_preview_passes_a_good_order_and_names_the_rule_that_refuses_a_bad_one() -> None:
    snap = sample_snapshot()
    ok = preview_order(snap, {"strategy_id": "sma-aapl", "symbol": "AAPL", "side": "BUY", "quantity": "10"})
    assert ok.ok and ok.notional == Decimal("1804.690")
    big = preview_order(snap, {"strategy_id": "sma-aapl", "symbol": "AAPL", "side": "BUY", "quantity": "5000"})
    assert not big.ok and big.reasons[0].startswith("max_order_quantity: limit 1000")
    no_price = preview_order(snap, {"strategy_id": "sma-aapl", "symbol": "AAPL", "side": "BUY", "quantity": "1",
                                    "order_type": "LIMIT"})
    assert no_price.reasons == ("price: a LIMIT order needs a limit price",)
    stranger = preview_order(snap, {"strategy_id": "nobody", "symbol": "AAPL", "side": "BUY", "quantity": "1"})
    assert "strategy_id: 'nobody' is not deployed on this engine" in stranger.reasons


def test_preview_follows_the_trading_mode() -> None:
    halted = sample_snapshot(mode="HALTED")
    result = preview_order(halted, {"strategy_id": "sma-aapl", "symbol": "AAPL", "side": "BUY", "quantity": "1"})
    assert not result.ok and "HALTED" in result.reasons[0]
    reducing = sample_snapshot(mode="REDUCING")
    sell = preview_order(reducing, {"strategy_id": "sma-aapl", "symbol": "AAPL", "side": "SELL", "quantity": "100"})
    buy = preview_order(reducing, {"strategy_id": "sma-aapl", "symbol": "AAPL", "side": "BUY", "quantity": "100"})
    assert sell.ok and not buy.ok and "REDUCING" in buy.reasons[0]


def test_parity_verdicts_list_both_qlcore_parity_checks_and_submitted_notebooks_newest_first(db) -> None:
    import json

    from sqlalchemy import insert, update

    from qlcore.research import parity
    from qlcore.store.runs import list_parity, save_parity
    from qlcore.store.tables import parity_runs, submissions

    report = parity("sma_cross", {"fast": 10, "slow": 30}, "IBM", fee_bps=10).to_dict()
    check = save_parity(db, report, "alice")
    with db.begin() as conn:  # the check ran a minute before a notebook recorded its verdict
        conn.execute(update(parity_runs).values(created_at="2026-01-02T09:00:00+00:00"))
        conn.execute(insert(submissions).values(
            id="sub-1", notebook="notebooks/strategies/sma_cross.ipynb", code_hash="h" * 64, params="{}",
            author="bob", results=json.dumps({"parity_verdict": "IDENTICAL", "sharpe": 1.2}), status="approved",
            output_path="out.ipynb", created_at="2026-01-02T09:01:00+00:00"))
        conn.execute(insert(submissions).values(  # a submission with no parity result is not a verdict
            id="sub-2", notebook="n.ipynb", code_hash="h" * 64, params="{}", author="bob",
            results=json.dumps({"sharpe": 1.0}), status="succeeded", output_path="o.ipynb",
            created_at="2026-01-02T09:02:00+00:00"))
    [stored] = list_parity(db)
    assert (stored.id, stored.user, stored.strategy, stored.symbols) == (check, "alice", "sma_cross", ["IBM"])
    assert stored.report == report and stored.verdict == "IDENTICAL"

    notebook, cli = ReadModel(engine=db).parity_verdicts()
    assert notebook == {"source": "notebook", "subject": "notebooks/strategies/sma_cross.ipynb", "by": "bob",
                        "created_at": "2026-01-02T09:01:00+00:00", "verdict": "parity_verdict: IDENTICAL",
                        "detail": "submission sub-1 (approved)"}
    n = report["trades_engine"]
    assert n > 0 and cli == {
        "source": "qlcore parity", "by": "alice", "created_at": "2026-01-02T09:00:00+00:00", "verdict": "IDENTICAL",
        "subject": "sma_cross(fast=10, slow=30, quantity=100) on IBM, fee 10 bps",
        "detail": f"trades engine {n}, vectorbt {n}, differing 0"}
