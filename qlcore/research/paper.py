"""A notebook's ``mode="paper"``: its strategy on the paper engine, over its own data, reported like a backtest.

`run_paper` starts an in-process `qlcore.engine.service.EngineService` (the process `qlcore engine`
runs) on a replay feed over the notebook's frames, accelerated, in a store of its own (a temporary
folder: a notebook's paper run never writes the desk's store), deploys the strategy through the
strategy manager, and lets the service run until the feed is exhausted. The fills it records make
a `BacktestResult` the way a backtest's do, so the notebook's summary, plot and limit checks read
the same objects in either mode.

What the paper engine does that the backtest engine does not shows in the numbers: its venue fills a
market order at the last price when it arrives (the backtest at the next bar), its data gate
quarantines spikes, and its risk chain and monitors run. On the IBM sample with the template's
defaults both make 63 trades; final equity differs by the fills.
"""
from __future__ import annotations

import os
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd

PAPER_ENGINE_ID = "notebook-paper"


@contextmanager
def _no_fsync() -> Iterator[None]:
    # The run's store is deleted when it ends: its commits need no fsync (QLCORE_SQLITE_SYNC=NORMAL, read
    # by every SQLite connection the run opens; about 4x faster for the IBM sample). Restored after.
    before = os.environ.get("QLCORE_SQLITE_SYNC")
    os.environ["QLCORE_SQLITE_SYNC"] = "NORMAL"
    try:
        yield
    finally:
        if before is None:
            del os.environ["QLCORE_SQLITE_SYNC"]
        else:
            os.environ["QLCORE_SQLITE_SYNC"] = before


def run_paper(
    frames: Mapping[str, pd.DataFrame],
    strategy: str,
    params: Mapping[str, Any],
    *,
    initial_cash: Decimal | int | str = 100_000,
    fee_bps: Decimal | int | str = 0,
) -> Any:
    """Run `strategy` with `params` on the paper engine over `frames`; a `BacktestResult` of that run.

    The replay is as fast as the engine takes it: every bar is due at once (a clock that stands still),
    and the engine takes one feed step a turn, so an order reaches the venue at the bar that made it."""
    from qlcore.data.feed import ManualClock, ReplayFeed
    from qlcore.engine.backtest import _data_info, _equity_curve, _timeline
    from qlcore.engine.config import BacktestConfig
    from qlcore.engine.service import EngineConfig, EngineService
    from qlcore.events.types import OrderFilled
    from qlcore.portfolio.result import BacktestResult

    if not frames:
        raise ValueError("run_paper needs at least one bar frame")
    cash, fee = Decimal(str(initial_cash)), Decimal(str(fee_bps))
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="qlcore-paper-") as tmp, _no_fsync():
        config = EngineConfig(
            engine_id=PAPER_ENGINE_ID, url=f"sqlite:///{Path(tmp) / 'paper.db'}",
            venue_path=Path(tmp) / "venue.sqlite", feed="replay", symbols=tuple(frames),
            initial_cash=cash, default_capital=cash, fee_bps=fee, exit_when_done=True, poll_interval_s=0.0,
            max_feed_steps_per_turn=1,
        )
        service = EngineService(config, feed=ReplayFeed(frames, step_seconds=None, clock=ManualClock()))
        fills: list[OrderFilled] = []
        service.kernel.fill_listeners.append(fills.append)
        try:
            service.start()
            deployed = service.manager.deploy(strategy, params, symbols=list(frames), allocation=cash,
                                              strategy_id=strategy, actor="notebook:paper")
            service.run()
        finally:
            service.venue.close()
            service.db.dispose()
        state = service.kernel.state
        ts_all, _, _ = _timeline(dict(frames))
        equity, exposure = _equity_curve(dict(frames), ts_all, fills, float(cash))
        return BacktestResult.build(
            run_id=f"paper-{uuid.uuid4().hex[:8]}", strategies=[deployed], config=BacktestConfig(initial_cash=cash, fee_bps=fee),
            data=[_data_info(sym, df) for sym, df in frames.items()], state=state, state_hash=state.state_hash(),
            fills=fills, equity=equity, exposure=exposure, events=service.kernel.events_emitted, bars=len(ts_all),
            elapsed=time.perf_counter() - started,
        )
