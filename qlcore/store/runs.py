"""Backtest run records (what was run, on what, with which result — next to its event stream) and
parity check records (the verdict of one `qlcore parity` run)."""
from __future__ import annotations

import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pandas as pd
from sqlalchemy import Engine, delete, insert, select

from qlcore.store.tables import parity_runs, runs

if TYPE_CHECKING:
    from qlcore.portfolio.result import BacktestResult


class UnknownRunError(LookupError):
    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True, slots=True)
class RunRecord:
    run_id: str
    created_at: str
    kind: str
    strategies: list[dict[str, Any]]
    params: dict[str, Any]
    config: dict[str, Any]
    data: list[dict[str, Any]]
    status: str
    state_hash: str | None
    final_equity: str | None
    events: int | None
    metrics: dict[str, Any] | None

    def equity(self, engine: Engine) -> pd.Series:
        return load_equity(engine, self.run_id)


def save_run(engine: Engine, result: BacktestResult) -> None:
    """Store (or replace) the record of a finished backtest, with its equity curve as Parquet."""
    buf = io.BytesIO()
    result.equity.to_frame().to_parquet(buf)
    summary = result.to_dict()
    row = {
        "run_id": result.run_id,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "kind": "backtest",
        "strategies": json.dumps(summary["strategies"]),
        "params": json.dumps(summary["strategies"][0]["params"] if len(summary["strategies"]) == 1 else {}),
        "config": json.dumps(summary["config"]),
        "data": json.dumps(summary["data"]),
        "status": "finished",
        "state_hash": result.state_hash,
        "final_equity": str(result.final_equity),
        "events": result.events,
        "metrics": json.dumps(summary["metrics"]),
        "equity": buf.getvalue(),
    }
    with engine.begin() as conn:
        conn.execute(delete(runs).where(runs.c.run_id == result.run_id))
        conn.execute(insert(runs), [row])


def _record(row: Any) -> RunRecord:
    return RunRecord(
        run_id=row.run_id,
        created_at=row.created_at,
        kind=row.kind,
        strategies=json.loads(row.strategies),
        params=json.loads(row.params),
        config=json.loads(row.config),
        data=json.loads(row.data),
        status=row.status,
        state_hash=row.state_hash,
        final_equity=row.final_equity,
        events=row.events,
        metrics=json.loads(row.metrics) if row.metrics else None,
    )


_COLUMNS = [c for c in runs.c if c.name != "equity"]


def get_run(engine: Engine, run_id: str) -> RunRecord:
    with engine.connect() as conn:
        row = conn.execute(select(*_COLUMNS).where(runs.c.run_id == run_id)).first()
    if row is None:
        raise UnknownRunError(f"no run {run_id!r} in the store (see `qlcore runs`)")
    return _record(row)


def list_runs(engine: Engine, limit: int = 50) -> list[RunRecord]:
    with engine.connect() as conn:
        rows = conn.execute(select(*_COLUMNS).order_by(runs.c.created_at.desc()).limit(limit)).all()
    return [_record(r) for r in rows]


def load_equity(engine: Engine, run_id: str) -> pd.Series:
    with engine.connect() as conn:
        blob = conn.execute(select(runs.c.equity).where(runs.c.run_id == run_id)).scalar()
    if blob is None:
        raise UnknownRunError(f"no equity stored for run {run_id!r}")
    return pd.read_parquet(io.BytesIO(blob))["equity"]


@dataclass(frozen=True, slots=True)
class ParityRecord:
    id: int
    created_at: str
    user: str
    strategy: str
    symbols: list[str]
    verdict: str
    report: dict[str, Any]  # ParityReport.to_dict()


def save_parity(engine: Engine, report: dict[str, Any], user: str) -> int:
    """Store the summary of one parity check (`ParityReport.to_dict()`); returns its id."""
    row = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "user": user,
        "strategy": str(report["strategy"]),
        "symbols": json.dumps(list(report["symbols"])),
        "verdict": str(report["verdict"]),
        "report": json.dumps(report),
    }
    with engine.begin() as conn:
        return int(conn.execute(insert(parity_runs).values(**row).returning(parity_runs.c.id)).scalar_one())


def list_parity(engine: Engine, limit: int = 50) -> list[ParityRecord]:
    """The latest parity checks, newest first."""
    c = parity_runs.c
    with engine.connect() as conn:
        rows = conn.execute(select(parity_runs).order_by(c.created_at.desc(), c.id.desc()).limit(limit)).all()
    return [ParityRecord(r.id, r.created_at, r.user, r.strategy, json.loads(r.symbols), r.verdict,
                         json.loads(r.report)) for r in rows]
