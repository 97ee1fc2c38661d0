"""The backtest run mode: the kernel driven by a simulated clock over historical bars."""
from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from functools import partial
from itertools import repeat
from typing import cast

import numpy as np
import pandas as pd

from qlcore.brokers.simulated import FillModel, SimulatedBroker
from qlcore.engine.clock import BacktestClock
from qlcore.engine.config import BacktestConfig
from qlcore.engine.gcpause import gc_paused
from qlcore.engine.kernel import Kernel
from qlcore.events.store import EventStore
from qlcore.events.types import AccountFunded, MarksUpdated, OrderFilled, RunFinished, RunStarted
from qlcore.model.enums import OrderSide
from qlcore.model.instruments import Instrument
from qlcore.model.market import Bar
from qlcore.model.money import to_decimal
from qlcore.portfolio.result import BacktestResult
from qlcore.risk.chain import RiskChain, RiskSettings
from qlcore.risk.hook import RiskHook
from qlcore.strategies.base import Strategy

_CHUNK = 65_536


def new_run_id() -> str:
    return f"bt-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


class BacktestEngine:
    """Run strategies over bars. Use `add_strategy`, then `run(data)`.

    `data` maps symbols to canonical bar frames (see `qlcore.data`). With a `store`, every event is
    appended to the stream named by the run id, and the run can be replayed and verified later.

    Orders pass the same `RiskChain` as in the paper engine, built for each run from `risk`: the
    `RiskSettings` of a risk file (default: a cash account, so no leverage), or a rules hook (such
    as a `RiskEngine`) as the chain's last part. `chain` holds the last run's chain.
    """

    def __init__(
        self,
        config: BacktestConfig | None = None,
        *,
        store: EventStore | None = None,
        risk: RiskSettings | RiskHook | None = None,
        run_id: str | None = None,
        instruments: Mapping[str, Instrument] | None = None,
    ) -> None:
        self.config = config or BacktestConfig()
        self.store = store
        self.risk = risk
        self.run_id = run_id or new_run_id()
        self.instruments = dict(instruments or {})
        self.chain: RiskChain | None = None
        self._strategies: list[tuple[Strategy, tuple[str, ...] | None]] = []

    def _chain(self) -> RiskChain:
        """The run's chain: from settings (default: a cash account), or around a given rules hook."""
        if isinstance(self.risk, RiskChain):
            raise TypeError("pass the RiskSettings (or a rules hook such as a RiskEngine): a RiskChain is "
                            "bound to one kernel, and each run builds its own")
        if self.risk is None or isinstance(self.risk, RiskSettings):
            return RiskChain(self.risk)
        return RiskChain(rules=self.risk)

    def add_strategy(self, strategy: Strategy, symbols: Iterable[str] | None = None) -> BacktestEngine:
        ids = {s.strategy_id for s, _ in self._strategies}
        if strategy.strategy_id in ids:
            raise ValueError(f"strategy id {strategy.strategy_id!r} is already in this backtest")
        self._strategies.append((strategy, tuple(symbols) if symbols is not None else None))
        return self

    def run(self, data: Mapping[str, pd.DataFrame] | pd.DataFrame, *, progress: bool = False) -> BacktestResult:
        frames = _as_frames(data)
        if not self._strategies:
            raise ValueError("no strategy added: call add_strategy() first")
        symbols = tuple(frames)
        for s, subs in self._strategies:
            missing = sorted(set(subs or ()) - set(symbols))
            if missing:
                raise ValueError(f"strategy {s.strategy_id}: no data for {missing}; data has {list(symbols)}")
        instruments = {sym: self.instruments.get(sym) or Instrument(sym) for sym in symbols}
        started = time.perf_counter()

        clock = BacktestClock()
        broker = SimulatedBroker(
            FillModel(self.config.fee_bps, self.config.min_fee, self.config.slippage_bps)
        )
        writer = self.store.writer(self.run_id, batch_size=self.config.batch_size) if self.store else None
        chain = self._chain()
        kernel = Kernel(
            clock=clock,
            broker=broker,
            instruments=instruments,
            writer=writer,
            risk=chain,
            order_id_prefix="O-",
        )
        fills: list[OrderFilled] = []
        kernel.fill_listeners.append(fills.append)
        ts_all, sym_col, cols = _timeline(frames)
        n = len(ts_all)
        if n == 0:
            raise ValueError("no bars to run on")
        clock.now = int(ts_all[0])

        description = json.dumps(
            {
                "strategies": [
                    {"id": s.strategy_id, "name": s.name, "params": _jsonable(s.param_values)}
                    for s, _ in self._strategies
                ],
                "config": self.config.to_dict(),
                "data": [_data_info(sym, df) for sym, df in frames.items()],
            },
            sort_keys=True,
        )
        kernel.emit(RunStarted(clock.now, self.run_id, "backtest", description))
        kernel.emit(AccountFunded(clock.now, "main", self.config.initial_cash))

        subscribers: dict[str, list[Strategy]] = {sym: [] for sym in symbols}
        for strategy, subs in self._strategies:
            subs = subs or symbols
            strategy.bind(kernel, subs)
            kernel.strategies[strategy.strategy_id] = strategy
            for sym in subs:
                subscribers[sym].append(strategy)
        for strategy, _ in self._strategies:
            strategy.on_start()

        # tuple.__new__ straight from zip's tuples: no Python-level call per bar
        bar_iter = map(partial(tuple.__new__, Bar), zip(sym_col, ts_all.tolist(), *(c.tolist() for c in cols), strict=False))
        bar_on = broker.on_bar
        # the chain's rules take each close as the reference price before the strategies act on it
        handlers = {sym: [chain.on_bar] + [s.on_bar for s in subs] for sym, subs in subscribers.items()}
        single = handlers[symbols[0]] if len(symbols) == 1 and len(handlers[symbols[0]]) == 1 else None
        bar_progress = _progress(n, progress)
        try:
            with gc_paused():
                _drive(n, bar_iter, clock, bar_on, handlers, single, bar_progress)
        finally:
            if bar_progress is not None:
                bar_progress.close()

        for strategy, _ in self._strategies:
            strategy.on_stop()
        chain.after_bar()  # a backtest has no manager to pause a disabled strategy: its mode halts it
        self.chain = chain
        last_close = {sym: float(df["close"].iloc[-1]) for sym, df in frames.items()}
        marks = tuple((sym, to_decimal(px)) for sym, px in sorted(last_close.items()))
        kernel.emit(MarksUpdated(clock.now, marks))
        state_hash = kernel.state.state_hash()
        kernel.emit(RunFinished(clock.now, self.run_id, state_hash))
        if writer is not None:
            writer.flush()

        equity, exposure = _equity_curve(frames, ts_all, fills, float(self.config.initial_cash))
        return BacktestResult.build(
            run_id=self.run_id,
            strategies=[s for s, _ in self._strategies],
            config=self.config,
            data=[_data_info(sym, df) for sym, df in frames.items()],
            state=kernel.state,
            state_hash=state_hash,
            fills=fills,
            equity=equity,
            exposure=exposure,
            events=kernel.events_emitted,
            bars=n,
            elapsed=time.perf_counter() - started,
        )


def _drive(n, bar_iter, clock, bar_on, handlers, single, bar_progress) -> None:
    """The hot loop: advance the clock, let the broker match, hand the bar to its strategies."""
    done = 0
    while done < n:
        step = min(_CHUNK, n - done)
        if single is not None:
            (handler,) = single
            for _, bar in zip(range(step), bar_iter, strict=False):
                clock.now = bar.ts
                bar_on(bar)
                handler(bar)
        else:
            for _, bar in zip(range(step), bar_iter, strict=False):
                clock.now = bar.ts
                bar_on(bar)
                for handler in handlers[bar.symbol]:
                    handler(bar)
        done += step
        if bar_progress is not None:
            bar_progress.update(step)


def _as_frames(data: Mapping[str, pd.DataFrame] | pd.DataFrame) -> dict[str, pd.DataFrame]:
    if isinstance(data, pd.DataFrame):
        symbol = data.attrs.get("symbol") or "ASSET"
        data = {symbol: data}
    frames = {}
    for sym, df in data.items():
        missing = [c for c in ("open", "high", "low", "close", "volume") if c not in df.columns]
        if missing:
            raise ValueError(f"{sym}: bar frame lacks columns {missing}")
        if not isinstance(df.index, pd.DatetimeIndex):
            raise ValueError(f"{sym}: bar frame needs a DatetimeIndex, got {type(df.index).__name__}")
        if len(df) and not df.index.is_monotonic_increasing:
            raise ValueError(f"{sym}: bar timestamps are not in increasing order")
        frames[str(sym)] = df
    if not frames:
        raise ValueError("no data given")
    return frames


def _timeline(frames: dict[str, pd.DataFrame]) -> tuple[np.ndarray, Iterable[str], list[np.ndarray]]:
    """All bars in time order (ties in the order the symbols were given), as columns."""
    names = ("open", "high", "low", "close", "volume")
    if len(frames) == 1:
        sym, df = next(iter(frames.items()))
        ts = _ns(df.index)
        return ts, repeat(sym, len(ts)), [df[c].to_numpy(dtype=float) for c in names]
    ts = np.concatenate([_ns(df.index) for df in frames.values()])
    order_key = np.concatenate([np.full(len(df), i) for i, df in enumerate(frames.values())])
    order = np.lexsort((order_key, ts))
    syms = np.array(list(frames), dtype=object)[order_key[order]].tolist()
    cols = [np.concatenate([df[c].to_numpy(dtype=float) for df in frames.values()])[order] for c in names]
    return ts[order], syms, cols


def _ns(index: pd.Index) -> np.ndarray:
    # bar frames are indexed by a DatetimeIndex (validated on load); the frame stubs say only Index
    return cast(pd.DatetimeIndex, index).as_unit("ns").asi8


def _equity_curve(
    frames: dict[str, pd.DataFrame], ts_all: np.ndarray, fills: list[OrderFilled], cash0: float
) -> tuple[pd.Series, pd.Series]:
    """Equity and gross exposure at each timestamp's close, from the fills (step functions) and closes."""
    times = ts_all[np.r_[True, ts_all[1:] != ts_all[:-1]]] if len(ts_all) else ts_all  # sorted already
    fill_ts = np.array([f.ts for f in fills], dtype=np.int64)
    cash = np.full(len(times), cash0)
    equity = np.zeros(len(times))
    exposure = np.zeros(len(times))
    if fills:
        cash_after = np.cumsum([float(-(f.quantity if f.side is OrderSide.BUY else -f.quantity) * f.price - f.fee) for f in fills])
        idx = np.searchsorted(fill_ts, times, side="right") - 1
        cash = np.where(idx >= 0, cash0 + cash_after[np.maximum(idx, 0)], cash0)
    for sym, df in frames.items():
        closes = pd.Series(df["close"].to_numpy(dtype=float), index=_ns(df.index))
        close = closes[~closes.index.duplicated(keep="last")].reindex(times).ffill().fillna(0.0).to_numpy()
        mask = np.array([f.symbol == sym for f in fills], dtype=bool)
        qty = np.zeros(len(times))
        if mask.any():
            signed = np.cumsum([float(f.quantity if f.side is OrderSide.BUY else -f.quantity) for f in fills if f.symbol == sym])
            idx = np.searchsorted(fill_ts[mask], times, side="right") - 1
            qty = np.where(idx >= 0, signed[np.maximum(idx, 0)], 0.0)
        equity += qty * close
        exposure += np.abs(qty * close)
    index = pd.DatetimeIndex(times.astype("datetime64[ns]"), name="ts")
    return pd.Series(cash + equity, index=index, name="equity"), pd.Series(exposure, index=index, name="exposure")


def _data_info(symbol: str, df: pd.DataFrame) -> dict:
    return {
        "symbol": symbol,
        "source": str(df.attrs.get("source", "frame")),
        "sha256": df.attrs.get("sha256"),
        "rows": len(df),
        "start": str(df.index[0]) if len(df) else None,
        "end": str(df.index[-1]) if len(df) else None,
    }


def _jsonable(values: Mapping) -> dict:
    return {k: (str(v) if not isinstance(v, (int, float, str, bool, type(None))) else v) for k, v in values.items()}


def _progress(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="bar", unit_scale=True, desc="backtest", leave=False)
