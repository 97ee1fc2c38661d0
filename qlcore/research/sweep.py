"""Parameter sweeps through vectorbt with the engine's conventions, metrics as a tidy DataFrame."""
from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd

from qlcore.engine.config import BacktestConfig
from qlcore.portfolio.metrics import infer_periods_per_year
from qlcore.research.inputs import DataLike, GridLike, as_frames, parameter_sets, vectorized_class
from qlcore.research.signals import signal_matrices
from qlcore.research.vbt import ENGINE, Conventions, Sizing, simulate_orders
from qlcore.strategies import Strategy

if TYPE_CHECKING:
    import holoviews as hv

METRICS = ("total_return", "cagr", "sharpe", "max_drawdown", "n_trades", "win_rate", "fees", "final_equity")
# bytes per (bar, set) cell a chunk costs: entries and exits (2), order records and slack (2)
_BYTES_PER_CELL = 4
DEFAULT_MEMORY_BUDGET = 1 << 30


@dataclass(frozen=True)
class SweepResult:
    """Metrics per (symbol, parameter set): `table`; sets that were not run: `skipped`."""

    strategy: str
    params: list[str]  # the swept parameter names, in grid order
    table: pd.DataFrame
    skipped: pd.DataFrame
    metric: str = "sharpe"
    top: int = 10
    bars: dict[str, int] = field(default_factory=dict)
    fee_bps: float = 0.0
    init_cash: float = 100_000.0
    sizing: str = ""
    conventions: Conventions = ENGINE
    elapsed: float = 0.0
    strategy_cls: type[Strategy] | None = field(default=None, repr=False)
    quantity: float | None = None
    fraction: float | None = None

    def best(self, metric: str | None = None, n: int | None = None, *, ascending: bool = False) -> pd.DataFrame:
        """The `n` best rows by `metric` (highest first; NaN last)."""
        metric = metric or self.metric
        if metric not in self.table.columns:
            raise KeyError(f"unknown metric {metric!r}; metrics: {', '.join(METRICS)}")
        ranked = self.table.sort_values(metric, ascending=ascending, na_position="last", kind="stable")
        return ranked.head(self.top if n is None else n)

    def best_params(self, metric: str | None = None) -> dict[str, Any]:
        """The swept parameters of the best row, as plain Python values."""
        best = self.best(metric, 1)
        if best.empty:
            raise ValueError("the sweep has no results")
        return {k: _plain(best.iloc[0][k]) for k in self.params}

    def out_of_sample(self, data: DataLike, n: int | None = None, metric: str | None = None) -> pd.DataFrame:
        """The best `n` sets by `metric` run again on `data` with the same costs and sizing.

        One row per set and symbol: the swept parameters, then ``<metric>_in`` and ``<metric>_out``
        for sharpe, total return, max drawdown and trades. Rows pair by symbol when `data` has the
        symbols of this sweep (a later period), else every set meets every new symbol.
        """
        if self.strategy_cls is None:
            raise ValueError("this result does not know its strategy class; run sweep() again")
        best = self.best(metric, n)
        again = sweep(
            self.strategy_cls, best[self.params].drop_duplicates(), data, fee_bps=self.fee_bps,
            quantity=self.quantity, fraction=self.fraction, init_cash=self.init_cash,
            metric=self.metric, progress=False, conventions=self.conventions,
        )
        keys = [*self.params, "symbol"] if set(again.table["symbol"]) <= set(best["symbol"]) else self.params
        shown = ["sharpe", "total_return", "max_drawdown", "n_trades"]
        merged = best[["symbol", *self.params, *shown]].merge(
            again.table[["symbol", *self.params, *shown]], on=keys, suffixes=("_in", "_out")
        )
        if "symbol" not in keys:
            merged = merged.rename(columns={"symbol_in": "symbol", "symbol_out": "symbol_out_of_sample"})
        ordered = [c for c in merged.columns if c not in {f"{m}_{s}" for m in shown for s in ("in", "out")}]
        return merged[ordered + [f"{m}_{s}" for m in shown for s in ("in", "out")]]

    def heatmap(self, x: str, y: str, metric: str | None = None, symbol: str | None = None) -> hv.HeatMap:
        """A holoviews HeatMap of `metric` over two swept parameters (mean over any others)."""
        from qlcore.research.render import sweep_heatmap

        return sweep_heatmap(self, x, y, metric or self.metric, symbol)

    def _repr_html_(self) -> str:
        from qlcore.research.render import sweep_html

        return sweep_html(self)

    def __repr__(self) -> str:
        return (
            f"SweepResult({self.strategy}: {len(self.table):,} runs over {', '.join(self.bars)}, "
            f"{len(self.skipped):,} sets skipped, best {self.metric} "
            f"{self.best(n=1)[self.metric].iloc[0] if len(self.table) else float('nan'):.4g})"
        )


def sweep(
    strategy: str | type[Strategy],
    grid: GridLike,
    data: DataLike,
    *,
    fee_bps: float | Decimal = 0,
    quantity: float | Decimal | None = None,
    fraction: float | None = None,
    init_cash: float | Decimal = 100_000,
    metric: str = "sharpe",
    top: int = 10,
    chunk_size: int | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    progress: bool = True,
    conventions: Conventions = ENGINE,
) -> SweepResult:
    """Run every parameter set of `grid` on every symbol of `data` through vectorbt.

    Parameters
    ----------
    strategy
        A strategy name, ``module:Class`` or class with a ``vectorized_signals`` classmethod.
    grid
        ``{name: values}`` (the product is swept) or a list / DataFrame of parameter sets. Sets the
        strategy refuses (``fast >= slow``) are skipped and listed in ``result.skipped``.
    data
        A bar frame, ``{symbol: frame}``, or specs for `qlcore.data.load` (``"IBM"``, a path).
    quantity, fraction
        Entry size: fixed shares (default: each set's ``quantity`` parameter), or a fraction of
        equity in whole shares (vectorbt's percent of cash; the engine has no such sizing).
    chunk_size
        Parameter sets simulated at once; by default as many as fit `memory_budget` bytes.
    conventions
        How a signal becomes a fill; the default is the engine's (next bar's open).
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; metrics: {', '.join(METRICS)}")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    cls = vectorized_class(strategy)
    names, sets, skipped = parameter_sets(cls, grid)
    sizing = _sizing(sets, quantity, fraction)
    # BacktestConfig converts and checks both (its __post_init__ accepts any number)
    config = BacktestConfig(initial_cash=cast(Decimal, init_cash), fee_bps=cast(Decimal, fee_bps))
    frames = as_frames(data)
    started = time.perf_counter()
    longest = max(len(df) for df in frames.values())
    chunk = chunk_size or max(1, int(memory_budget // (_BYTES_PER_CELL * longest)))
    progress_bar = _progress(len(sets) * len(frames), progress and len(sets) > 0, f"{cls.name} sweep")
    parts = []
    try:
        for symbol, df in frames.items():
            for start in range(0, len(sets), chunk):
                part = sets.iloc[start : start + chunk]
                stats = _run_chunk(
                    cls, df, part, sizing.columns(start, start + len(part)),
                    float(config.fee_bps), float(config.initial_cash), conventions,
                )
                parts.append(pd.concat([part[names].reset_index(drop=True), stats], axis=1).assign(symbol=symbol))
                if progress_bar is not None:
                    progress_bar.update(len(part))
    finally:
        if progress_bar is not None:
            progress_bar.close()
    columns = ["symbol", *names, *METRICS, "ruined"]
    table = pd.concat(parts, ignore_index=True)[columns] if parts else pd.DataFrame(columns=columns)
    return SweepResult(
        strategy=cls.name,
        params=names,
        table=table,
        skipped=skipped,
        metric=metric,
        top=top,
        bars={sym: len(df) for sym, df in frames.items()},
        fee_bps=float(config.fee_bps),
        init_cash=float(config.initial_cash),
        sizing=f"{fraction:g} of equity" if fraction is not None else "fixed quantity",
        conventions=conventions,
        elapsed=time.perf_counter() - started,
        strategy_cls=cls,
        quantity=None if quantity is None else float(quantity),
        fraction=fraction,
    )


def _run_chunk(
    cls: type[Strategy],
    df: pd.DataFrame,
    sets: pd.DataFrame,
    sizing: Sizing,
    fee_bps: float,
    init_cash: float,
    conventions: Conventions,
) -> pd.DataFrame:
    from qlcore.research.kernels import order_stats_nb

    close = df["close"].to_numpy(dtype=np.float64)
    price = df[conventions.price].to_numpy(dtype=np.float64)
    entries, exits = signal_matrices(cls, close, sets, conventions.signal_delay)
    rec = simulate_orders(close, price, entries, exits, sizing=sizing, fee_bps=fee_bps, init_cash=init_cash)
    del entries, exits
    if len(rec) and (np.diff(rec["col"]) < 0).any():  # vectorbt writes them column by column
        rec = rec[np.argsort(rec["col"], kind="stable")]
    ppy = infer_periods_per_year(cast(pd.DatetimeIndex, df.index))  # bar frames are indexed by time
    final, total, sharpe, max_dd, trades, winners, fees, ruined = order_stats_nb(
        rec["col"], rec["idx"], rec["size"], rec["price"], rec["fees"], rec["side"],
        close, len(sets), init_cash, ppy,
    )
    n = len(close) - 1
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        cagr = (1.0 + total) ** (ppy / n) - 1.0
        win_rate = np.where(trades > 0, winners / np.maximum(trades, 1), np.nan)
    return pd.DataFrame(
        {
            "total_return": total,
            "cagr": cagr,
            "sharpe": sharpe,
            "max_drawdown": max_dd,
            "n_trades": trades,
            "win_rate": win_rate,
            "fees": fees,
            "final_equity": final,
            "ruined": ruined.astype(bool),
        }
    )


def _sizing(sets: pd.DataFrame, quantity: Any, fraction: float | None) -> Sizing:
    if fraction is not None:
        if quantity is not None:
            raise ValueError("give quantity or fraction, not both")
        return Sizing(fraction=float(fraction))
    if quantity is not None:
        return Sizing(quantity=np.full(len(sets), float(quantity)))
    if "quantity" not in sets.columns:
        raise ValueError("the strategy has no quantity parameter: give quantity= or fraction=")
    return Sizing(quantity=sets["quantity"].map(float).to_numpy(dtype=np.float64))


def _progress(total: int, enabled: bool, desc: str) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="set", desc=desc, leave=False)


def _plain(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, Mapping):
        return dict(value)
    return value
