"""A notebook's ``mode="paper"``: its strategy on the paper engine, over its own data, reported like a backtest.

`run_paper` starts an in-process `qlcore.engine.service.EngineService` (the process `qlcore engine`
runs) on a replay feed over the notebook's frames, accelerated, in a store of its own (a temporary
folder: a notebook's paper run never writes the desk's store), deploys the strategy through the
strategy manager, and lets the service run until the feed is exhausted. The fills it records make
a `BacktestResult` the way a backtest's do, so the notebook's summary, plot and limit checks read
the same objects in either mode.

The paper engine fills as the backtest does (the next bar's open, the same fees and slippage);
what it adds shows in the numbers: its data gate quarantines spikes (named in `PaperRun.quarantined`),
and its risk chain and monitors run. `paper_run` is the one paper run on a replay, shared with the
paper parity check (`qlcore.research.paper_parity`).
"""
from __future__ import annotations

import os
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd

from qlcore.data.feed import ReplayFeed
from qlcore.engine.config import BacktestConfig
from qlcore.events.types import OrderFilled
from qlcore.model.market import Bar

PAPER_ENGINE_ID = "notebook-paper"


@contextmanager
def no_fsync() -> Iterator[None]:
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


@dataclass
class PaperRun:
    """What a paper run on a replay made: its fills, the bars its gate passed, its final state."""

    fills: list[OrderFilled]
    bars: list[Bar]
    final_equity: Decimal
    quarantined: list[str]  # "SYMBOL date: reason" of each bar the ingestion gate kept out
    state: Any  # the engine's TradingState at the end
    strategy: Any  # the deployed strategy
    events: int


def paper_run(strategy: str, params: Mapping[str, Any], frames: Mapping[str, pd.DataFrame], config: BacktestConfig,
              folder: Path, *, engine_id: str = PAPER_ENGINE_ID, strategy_id: str | None = None,
              limits: Mapping[str, Any] | None = None) -> PaperRun:
    """The paper engine (`EngineService`, the process `qlcore engine` runs) on a replay of `frames` with
    every step due at once, to the end of the data, with `config`'s cash, fees and slippage and the
    backtest's fill convention; its store, venue ledger and limits file (`limits`, a TOML-shaped
    mapping; default: the default limits file) in `folder`."""
    from qlcore.engine.service import EngineConfig, EngineService
    from qlcore.engine.snapshot import marked_equity
    from qlcore.events.facts import DataQuarantined

    if not frames:
        raise ValueError("a paper run needs at least one bar frame")
    folder.mkdir(parents=True, exist_ok=True)
    limits_file = None
    if limits is not None:
        from qlcore.risk.defaults import limits_toml

        limits_file = folder / "limits.toml"
        limits_file.write_text(limits_toml(limits))
    engine_config = EngineConfig(
        engine_id=engine_id, url=f"sqlite:///{folder / 'paper.db'}", venue_path=folder / "paper-venue.sqlite",
        symbols=tuple(frames), initial_cash=config.initial_cash, default_capital=config.initial_cash,
        fee_bps=config.fee_bps, min_fee=config.min_fee, slippage_bps=config.slippage_bps, fill_on_arrival=False,
        exit_when_done=True, poll_interval_s=0.0, heartbeat_s=3600.0, derived_state_s=1e9, risk_config=limits_file,
    )
    service = EngineService(engine_config, feed=ReplayFeed(dict(frames), step_seconds=None))
    fills: list[OrderFilled] = []
    bars: list[Bar] = []
    service.kernel.fill_listeners.append(fills.append)
    service.bar_listeners.append(bars.append)
    try:
        service.start()
        deployed = service.manager.deploy(strategy, dict(params), symbols=list(frames),
                                          allocation=config.initial_cash, strategy_id=strategy_id or strategy,
                                          actor=f"{engine_id}:paper")
        service.run()
        quarantined = [f"{e.symbol} {pd.Timestamp(e.bar_ts).date()}: {e.reason}"
                       for e in service.store.events(engine_config.stream) if isinstance(e, DataQuarantined)]
    finally:
        service.venue.close()
        service.db.dispose()
    state = service.kernel.state
    return PaperRun(fills, bars, marked_equity(state), quarantined, state, deployed, service.kernel.events_emitted)


def run_paper(
    frames: Mapping[str, pd.DataFrame],
    strategy: str,
    params: Mapping[str, Any],
    *,
    initial_cash: Decimal | int | str = 100_000,
    fee_bps: Decimal | int | str = 0,
) -> Any:
    """Run `strategy` with `params` on the paper engine over `frames`; a `BacktestResult` of that run."""
    from qlcore.engine.backtest import _data_info, _equity_curve, _timeline
    from qlcore.portfolio.result import BacktestResult

    if not frames:
        raise ValueError("run_paper needs at least one bar frame")
    config = BacktestConfig(initial_cash=Decimal(str(initial_cash)), fee_bps=Decimal(str(fee_bps)))
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="qlcore-paper-") as tmp, no_fsync():
        run = paper_run(strategy, params, frames, config, Path(tmp))
    ts_all, _, _ = _timeline(dict(frames))
    equity, exposure = _equity_curve(dict(frames), ts_all, run.fills, float(config.initial_cash))
    return BacktestResult.build(
        run_id=f"paper-{uuid.uuid4().hex[:8]}", strategies=[run.strategy], config=config,
        data=[_data_info(sym, df) for sym, df in frames.items()], state=run.state, state_hash=run.state.state_hash(),
        fills=run.fills, equity=equity, exposure=exposure, events=run.events, bars=len(ts_all),
        elapsed=time.perf_counter() - started,
    )
