"""Parity: the same strategy through vectorbt and the event-driven engine, compared trade by trade.

Both sides get the same bars. The engine runs the strategy's `on_bar` and fills through the
simulated broker; vectorbt runs the strategy's `vectorized_signals` with the engine's conventions
(`qlcore.research.vbt`). vectorbt's orders become `OrderFilled` facts, and both fill lists go
through the same `round_trips`, so trades compare field by field: entry and exit time, prices and
quantity exactly, fees to `rel_tol` (vectorbt computes them in floats, the engine in Decimal). The
final equities must agree to `rel_tol` too.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd

from qlcore.engine import BacktestConfig, BacktestEngine
from qlcore.events.types import OrderFilled
from qlcore.model.enums import OrderSide
from qlcore.model.money import to_decimal
from qlcore.portfolio.trades import round_trips
from qlcore.research.inputs import DataLike, as_frames, vectorized_class
from qlcore.research.vbt import ENGINE, Conventions, Sizing, delayed, portfolio, simulate_orders
from qlcore.strategies import Strategy

if TYPE_CHECKING:
    import holoviews as hv

FIELDS = ("entry_ts", "exit_ts", "quantity", "entry_price", "exit_price", "fees")
SIDES = ("engine", "vectorbt")
DEFAULT_REL_TOL = 1e-9


@dataclass(frozen=True, slots=True)
class TradeDifference:
    """The first trade (0-based `index` in time order) where the two engines disagree."""

    index: int
    symbol: str
    fields: tuple[str, ...]  # which of FIELDS differ; ("trade",) when one side has no such trade
    engine: dict[str, Any]
    vectorbt: dict[str, Any]

    @property
    def number(self) -> int:
        return self.index + 1

    def __str__(self) -> str:
        if self.fields == ("trade",):
            side = "engine" if self.vectorbt.get("entry_ts") is None else "vectorbt"
            return f"trade #{self.number} ({self.symbol}): only the {side} has it"
        parts = [f"{f} engine {_show(self.engine[f])} vs vectorbt {_show(self.vectorbt[f])}" for f in self.fields]
        return f"trade #{self.number} ({self.symbol}): " + "; ".join(parts)


@dataclass(frozen=True)
class ParityReport:
    """The verdict, the trade table (`table`, one row per trade and side) and both equity curves."""

    strategy: str
    params: dict[str, Any]
    symbols: list[str]
    fee_bps: float
    init_cash: float
    conventions: Conventions
    table: pd.DataFrame
    engine_final_equity: Decimal
    vectorbt_final_equity: float
    equity: pd.DataFrame  # columns engine, vectorbt, on the engine's timeline
    rel_tol: float = DEFAULT_REL_TOL
    notes: list[str] = field(default_factory=list)

    @property
    def trades_ok(self) -> bool:
        return bool(self.table["match"].all())

    @property
    def equity_rel_diff(self) -> float:
        engine = float(self.engine_final_equity)
        return abs(self.vectorbt_final_equity - engine) / max(abs(engine), 1e-300)

    @property
    def equity_ok(self) -> bool:
        return self.equity_rel_diff <= self.rel_tol

    @property
    def ok(self) -> bool:
        """Identical trades and final equities equal to `rel_tol` relative."""
        return self.trades_ok and self.equity_ok

    @property
    def verdict(self) -> str:
        return "IDENTICAL" if self.ok else "DIFFERENT"

    @property
    def first_difference(self) -> TradeDifference | None:
        """The first differing trade in time order, or None when all trades match."""
        bad = np.flatnonzero(~self.table["match"].to_numpy(dtype=bool))
        if not len(bad):
            return None
        i = int(bad[0])
        row = self.table.iloc[i]
        differs = tuple(str(row["differs"]).split(", "))
        sides = {s: {f: _plain(row[f"{f}_{s}"]) for f in FIELDS} for s in SIDES}
        return TradeDifference(i, str(row["symbol"]), differs, sides["engine"], sides["vectorbt"])

    @property
    def differences(self) -> pd.DataFrame:
        """The rows of `table` that do not match."""
        return self.table[~self.table["match"]]

    @property
    def trade_counts(self) -> tuple[int, int]:
        return int(self.table["entry_ts_engine"].notna().sum()), int(self.table["entry_ts_vectorbt"].notna().sum())

    def summary(self) -> str:
        """A few lines: verdict, trade counts, final equities, first difference."""
        params = ", ".join(f"{k}={v}" for k, v in self.params.items())
        n_engine, n_vbt = self.trade_counts
        lines = [
            f"parity {self.verdict}: {self.strategy}({params}) on {', '.join(self.symbols)}, fee {self.fee_bps:g} bps",
            f"  trades        engine {n_engine}, vectorbt {n_vbt}, differing {len(self.differences)}",
            f"  final equity  engine {self.engine_final_equity:.6f}, vectorbt {self.vectorbt_final_equity:.6f} "
            f"(relative difference {self.equity_rel_diff:.1e}, tolerance {self.rel_tol:.0e})",
        ]
        if not self.conventions.is_engine:
            lines.append(f"  vectorbt conventions changed: {self.conventions.describe()}")
        first = self.first_difference
        if first is not None:
            lines.append(f"  first difference: {first}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly: verdict, counts, equities (the engine's exactly, as a string), first difference."""
        first = self.first_difference
        n_engine, n_vbt = self.trade_counts
        return {
            "ok": self.ok,
            "verdict": self.verdict,
            "strategy": self.strategy,
            "params": {k: _plain(v) for k, v in self.params.items()},
            "symbols": self.symbols,
            "fee_bps": self.fee_bps,
            "trades_engine": n_engine,
            "trades_vectorbt": n_vbt,
            "differing_trades": len(self.differences),
            "engine_final_equity": str(self.engine_final_equity),
            "vectorbt_final_equity": self.vectorbt_final_equity,
            "equity_rel_diff": self.equity_rel_diff,
            "first_difference": None if first is None else {"trade": first.number, "symbol": first.symbol, "fields": list(first.fields), "text": str(first)},
            "notes": self.notes,
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def plot(self) -> hv.Overlay:
        """Both equity curves overlaid (holoviews); a marker at the first differing trade."""
        from qlcore.research.render import parity_plot

        return parity_plot(self)

    def _repr_html_(self) -> str:
        from qlcore.research.render import parity_html

        return parity_html(self)

    def __str__(self) -> str:
        return self.summary()

    def __repr__(self) -> str:
        return f"ParityReport({self.verdict}: {self.strategy} on {', '.join(self.symbols)}, {len(self.table)} trades)"


def parity(
    strategy: str | type[Strategy],
    params: Mapping[str, Any] | None,
    data: DataLike,
    *,
    fee_bps: float | Decimal = 0,
    quantity: float | Decimal | None = None,
    init_cash: float | Decimal = 100_000,
    conventions: Conventions = ENGINE,
    rel_tol: float = DEFAULT_REL_TOL,
) -> ParityReport:
    """Run `strategy` with `params` through the event-driven engine and vectorbt; compare the trades.

    `quantity` overrides the strategy's ``quantity`` parameter. `conventions` changes the vectorbt
    side only (a what-if, or a deliberately broken variant to see the check fail).
    """
    cls = vectorized_class(strategy)
    params = dict(params or {})
    if quantity is not None:
        params["quantity"] = quantity
    instance = cls(**params)  # converts and checks the parameters, before any work
    if "quantity" not in instance.param_values:
        raise ValueError(f"{cls.name} has no quantity parameter: parity sizes orders by it")
    # BacktestConfig converts and checks both (its __post_init__ accepts any number)
    config = BacktestConfig(initial_cash=cast(Decimal, init_cash), fee_bps=cast(Decimal, fee_bps))
    frames = as_frames(data)

    engine_result = BacktestEngine(config, run_id="parity").add_strategy(instance).run(frames)
    vbt_trades, vbt_equity, notes = _run_vectorbt(
        cls, instance, frames, float(config.fee_bps), float(config.initial_cash), conventions
    )

    table = compare_trades(_in_time_order(engine_result.trades), _in_time_order(vbt_trades), rel_tol)
    equity = pd.DataFrame({"engine": engine_result.equity, "vectorbt": vbt_equity.reindex(engine_result.equity.index)})
    return ParityReport(
        strategy=cls.name,
        params={k: instance.param_values[k] for k in cls.params},
        symbols=list(frames),
        fee_bps=float(config.fee_bps),
        init_cash=float(config.initial_cash),
        conventions=conventions,
        table=table,
        engine_final_equity=engine_result.final_equity,
        vectorbt_final_equity=float(vbt_equity.iloc[-1]),
        equity=equity,
        rel_tol=rel_tol,
        notes=notes,
    )


def _run_vectorbt(
    cls: type[Strategy],
    strategy: Strategy,
    frames: dict[str, pd.DataFrame],
    fee_bps: float,
    init_cash: float,
    conventions: Conventions,
) -> tuple[pd.DataFrame, pd.Series, list[str]]:
    """Trades (as `round_trips` makes them), the account's equity curve, and notes on cash limits.

    Each symbol is its own vectorbt column with the whole initial cash; the engine has one account
    and, like it, no symbol's orders are limited by another's. The account's equity is the initial
    cash plus the sum of every column's profit, on the union of the timelines.
    """
    quantity = float(strategy.param_values["quantity"])
    fills: list[OrderFilled] = []
    pnl = []
    notes = []
    marks = {}
    for symbol, df in frames.items():
        close = df["close"].to_numpy(dtype=np.float64)
        price = df[conventions.price].to_numpy(dtype=np.float64)
        entries, exits = cls.vectorized_signals(close, **strategy.param_values)
        d = conventions.signal_delay
        entries = delayed(np.asarray(entries, dtype=bool), d)[:, None]
        exits = delayed(np.asarray(exits, dtype=bool), d)[:, None]
        sizing = Sizing(quantity=np.array([quantity]))
        rec = simulate_orders(close, price, entries, exits, sizing=sizing, fee_bps=fee_bps, init_cash=init_cash)
        pf = portfolio(rec, df["close"].rename(symbol), init_cash)
        short = rec[(rec["side"] == 0) & (rec["size"] < quantity)]
        if len(short):
            first = df.index[int(short["idx"][0])]
            notes.append(
                f"{symbol}: vectorbt bought less than {quantity:g} on {len(short)} entries (first {first}) "
                "for lack of cash; the engine's cash account denies such an order whole (buying_power)"
            )
        ts = cast(pd.DatetimeIndex, df.index).as_unit("ns").asi8  # bar frames are indexed by time
        for i, r in enumerate(rec):
            side = OrderSide.BUY if r["side"] == 0 else OrderSide.SELL
            fills.append(
                OrderFilled(
                    ts=int(ts[r["idx"]]),
                    order_id=f"V-{symbol}-{i + 1}",
                    trade_id=f"V-{symbol}-T{i + 1}",
                    strategy_id=strategy.strategy_id,
                    symbol=symbol,
                    side=side,
                    quantity=to_decimal(float(r["size"])),
                    price=to_decimal(float(r["price"])),
                    fee=to_decimal(float(r["fees"])),
                )
            )
        value = pd.Series(np.asarray(pf.value()).ravel(), index=df.index)
        pnl.append(value - init_cash)
        marks[symbol] = to_decimal(float(close[-1]))
    fills.sort(key=lambda f: f.ts)  # stable: one symbol's fills keep their order
    trades = round_trips(fills, marks)
    profit = pd.concat(pnl, axis=1).sort_index().ffill().fillna(0.0).sum(axis=1)
    return trades, init_cash + profit, notes


def _in_time_order(trades: pd.DataFrame) -> pd.DataFrame:
    return trades.sort_values(["entry_ts", "symbol"], kind="stable").reset_index(drop=True)


def compare_trades(engine: pd.DataFrame, vectorbt: pd.DataFrame, rel_tol: float = DEFAULT_REL_TOL) -> pd.DataFrame:
    """One row per trade position in time order: both sides' FIELDS, `match`, and what `differs`.

    Times, quantities and prices must be equal; fees within `rel_tol` relative (or 1e-9 absolute).
    A trade only one side has is a difference of the whole trade.
    """
    n = max(len(engine), len(vectorbt))
    rows = []
    for i in range(n):
        a = engine.iloc[i] if i < len(engine) else None
        b = vectorbt.iloc[i] if i < len(vectorbt) else None
        either = cast(pd.Series, a if a is not None else b)  # i < n: one side has trade i
        row: dict[str, Any] = {"trade": i + 1, "symbol": either["symbol"]}
        for f in FIELDS:
            row[f"{f}_engine"] = _field(a, f)
            row[f"{f}_vectorbt"] = _field(b, f)
        if a is None or b is None or a["symbol"] != b["symbol"]:
            differs = ["trade"]
        else:
            differs = [f for f in FIELDS if not _same(f, row[f"{f}_engine"], row[f"{f}_vectorbt"], rel_tol)]
        row["match"] = not differs
        row["differs"] = ", ".join(differs)
        rows.append(row)
    columns = ["trade", "symbol", *(f"{f}_{s}" for f in FIELDS for s in SIDES), "match", "differs"]
    table = pd.DataFrame(rows, columns=columns)
    table["match"] = table["match"].astype(bool)
    return table


def _field(trade: pd.Series | None, name: str) -> Any:
    if trade is None:
        return pd.NaT if name.endswith("_ts") else math.nan
    if name == "exit_ts" and not trade["closed"]:
        return pd.NaT
    if name == "exit_price" and not trade["closed"]:
        return math.nan  # the mark of an open trade is not a fill
    return trade[name]


def _same(name: str, a: Any, b: Any, rel_tol: float) -> bool:
    if name.endswith("_ts"):
        return (pd.isna(a) and pd.isna(b)) or (not pd.isna(a) and not pd.isna(b) and a == b)
    a, b = float(a), float(b)
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if name == "fees":
        return math.isclose(a, b, rel_tol=rel_tol, abs_tol=1e-9)
    return a == b


def _plain(value: Any) -> Any:
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Decimal):
        return str(value)
    return value


def _show(value: Any) -> str:
    return "-" if value is None else str(value)
