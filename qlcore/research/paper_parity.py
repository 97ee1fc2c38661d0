"""Paper parity: the paper engine on the replay feed against the backtest, fill for fill.

The paper engine (`EngineService`: ingestion gate, venue with its ledger, risk chain, strategy
manager) runs in this process on a replay of the bars, as fast as it goes, with the same strategy,
parameters, cash, fees and fill convention as the backtest. Both sides must make the same fills
(time, symbol, side, quantity, price and fee, exactly) and end on the same equity.

The backtest gets the bars the paper engine's ingestion gate passed: a bar the gate quarantines (a
spike on real data, say) reaches neither the engine's strategies nor its venue, and the report
names every one of them, so a difference of data is shown, never hidden.
"""
from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

from qlcore.engine import BacktestConfig, BacktestEngine
from qlcore.model.market import Bar
from qlcore.research.inputs import DataLike, as_frames
from qlcore.research.paper import no_fsync, paper_run
from qlcore.risk.chain import RiskSettings
from qlcore.risk.defaults import default_limits_mapping
from qlcore.strategies import create_strategy, strategy_class

CENT = Decimal("0.01")
FILL_FIELDS = ("ts", "symbol", "side", "quantity", "price", "fee")
STRATEGY_ID = "parity"


@dataclass(frozen=True)
class PaperParityReport:
    """Both sides' fills and final equities, and what differs."""

    strategy: str
    params: dict[str, Any]
    symbols: list[str]
    config: BacktestConfig
    backtest_fills: list[tuple[Any, ...]]  # FILL_FIELDS per fill, in time order
    paper_fills: list[tuple[Any, ...]]
    backtest_final_equity: Decimal
    paper_final_equity: Decimal
    bars: int  # bars both sides traded on
    quarantined: list[str] = field(default_factory=list)  # the gate's reasons, one per bar left out

    @property
    def differing_fills(self) -> list[int]:
        """0-based positions (in time order) where the fills differ or only one side has one."""
        n = max(len(self.backtest_fills), len(self.paper_fills))
        return [i for i in range(n) if _at(self.backtest_fills, i) != _at(self.paper_fills, i)]

    @property
    def equity_difference(self) -> Decimal:
        return abs(self.paper_final_equity - self.backtest_final_equity)

    @property
    def max_fill_difference(self) -> Decimal:
        """The largest difference of cash moved by one fill (quantity x price + fee), over fills both have."""
        diffs = [abs(_cash(a) - _cash(b)) for a, b in zip(self.backtest_fills, self.paper_fills, strict=False)]
        return max(diffs, default=Decimal(0))

    @property
    def ok(self) -> bool:
        """The same fills, and final equities within a cent."""
        return not self.differing_fills and self.equity_difference < CENT

    @property
    def verdict(self) -> str:
        return "IDENTICAL" if self.ok else "DIFFERENT"

    def first_difference(self) -> str | None:
        bad = self.differing_fills
        if not bad:
            return None
        i = bad[0]
        return f"fill #{i + 1}: backtest {_show(_at(self.backtest_fills, i))} vs paper {_show(_at(self.paper_fills, i))}"

    def summary(self) -> str:
        params = ", ".join(f"{k}={v}" for k, v in self.params.items())
        c = self.config
        lines = [
            f"paper parity {self.verdict}: {self.strategy}({params}) on {', '.join(self.symbols)}, "
            f"fee {c.fee_bps} bps, min fee {c.min_fee}, slippage {c.slippage_bps} bps, next bar open",
            f"  fills         backtest {len(self.backtest_fills)}, paper {len(self.paper_fills)}, "
            f"differing {len(self.differing_fills)} (largest cash difference of a fill {_num(self.max_fill_difference)})",
            f"  final equity  backtest {self.backtest_final_equity}, paper {self.paper_final_equity} "
            f"(difference {_num(self.equity_difference)})",
            f"  bars          {self.bars} on both sides; {len(self.quarantined)} quarantined by the paper "
            "engine's ingestion gate, left out of both",
        ]
        first = self.first_difference()
        if first is not None:
            lines.append(f"  first difference: {first}")
        lines += [f"  quarantined: {q}" for q in self.quarantined[:10]]
        if len(self.quarantined) > 10:
            lines.append(f"  quarantined: ... and {len(self.quarantined) - 10} more")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly, for the parity_runs record (money as exact strings)."""
        return {
            "kind": "paper",
            "ok": self.ok,
            "verdict": self.verdict,
            "strategy": self.strategy,
            "params": {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in self.params.items()},
            "symbols": self.symbols,
            "fee_bps": float(self.config.fee_bps),
            "min_fee": str(self.config.min_fee),
            "slippage_bps": str(self.config.slippage_bps),
            "initial_cash": str(self.config.initial_cash),
            "fill_convention": "next bar open",
            "trades_backtest": len(self.backtest_fills),
            "trades_paper": len(self.paper_fills),
            "differing_trades": len(self.differing_fills),
            "backtest_final_equity": str(self.backtest_final_equity),
            "paper_final_equity": str(self.paper_final_equity),
            "equity_difference": _num(self.equity_difference),
            "max_fill_difference": _num(self.max_fill_difference),
            "bars": self.bars,
            "quarantined": self.quarantined,
            "first_difference": None if self.first_difference() is None else {"text": self.first_difference()},
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def __str__(self) -> str:
        return self.summary()


def paper_parity(
    strategy: str,
    params: Mapping[str, Any] | None,
    data: DataLike,
    *,
    config: BacktestConfig | None = None,
    workdir: str | Path | None = None,
) -> PaperParityReport:
    """Run `strategy` with `params` through the paper engine on a replay of `data`, then the backtest
    on the same bars with the same `config` (cash, fees, slippage); compare fill for fill.

    The paper engine keeps its store and venue ledger in `workdir` (a temporary folder by default).
    """
    config = config or BacktestConfig()
    params = dict(params or {})
    cls = strategy_class(strategy)
    checked = create_strategy(strategy, params)  # converts and checks the parameters, before any work
    frames = as_frames(data)
    # both sides get the same pre-trade limits: the default limits file's, without its monitors (the
    # backtest has none: a monitor halting the paper account would be a difference of setup, not of
    # fills); the paper engine deploys the strategy with the account's cash as its capital, which the
    # risk chain enforces, so the backtest's chain gets that capital too
    limits = default_limits_mapping()
    limits.pop("monitors", None)
    if workdir is None:
        with tempfile.TemporaryDirectory(prefix="qlcore-paper-parity-") as tmp, no_fsync():
            paper = paper_run(strategy, params, frames, config, Path(tmp), engine_id="paper-parity",
                              strategy_id=STRATEGY_ID, limits=limits)
    else:
        paper = paper_run(strategy, params, frames, config, Path(workdir), engine_id="paper-parity",
                          strategy_id=STRATEGY_ID, limits=limits)
    passed = _passed_frames(frames, paper.bars)
    limits.setdefault("strategy", {})[STRATEGY_ID] = {"capital": str(config.initial_cash)}
    settings = RiskSettings.from_mapping(limits)
    backtest = BacktestEngine(config, run_id="paper-parity", risk=settings).add_strategy(
        create_strategy(strategy, params, strategy_id=STRATEGY_ID), list(frames)
    ).run(passed)
    return PaperParityReport(
        strategy=cls.name,
        params=dict(checked.param_values),
        symbols=list(frames),
        config=config,
        backtest_fills=[_row(f) for f in backtest.fills.itertuples()],
        paper_fills=[_row(f) for f in paper.fills],
        backtest_final_equity=backtest.final_equity,
        paper_final_equity=paper.final_equity,
        bars=len(paper.bars),
        quarantined=paper.quarantined,
    )


def _passed_frames(frames: dict[str, pd.DataFrame], bars: list[Bar]) -> dict[str, pd.DataFrame]:
    seen: dict[str, list[int]] = {}
    for bar in bars:
        seen.setdefault(bar.symbol, []).append(bar.ts)
    # bar frames are indexed by time (as_frames checks it)
    return {s: df[np.isin(cast(pd.DatetimeIndex, df.index).as_unit("ns").asi8, seen.get(s, []))]
            for s, df in frames.items()}


def _row(fill: Any) -> tuple[Any, ...]:
    ts = fill.ts.value if isinstance(fill.ts, pd.Timestamp) else int(fill.ts)
    return (ts, str(fill.symbol), str(fill.side), fill.quantity, fill.price, fill.fee)


def _at(rows: list[tuple[Any, ...]], i: int) -> tuple[Any, ...] | None:
    return rows[i] if i < len(rows) else None


def _cash(row: tuple[Any, ...]) -> Decimal:
    return Decimal(row[3]) * Decimal(row[4]) + Decimal(row[5])


def _show(row: tuple[Any, ...] | None) -> str:
    if row is None:
        return "none"
    ts, symbol, side, quantity, price, fee = row
    return f"{pd.Timestamp(ts).date()} {symbol} {side} {quantity} @ {price} fee {fee}"


def _num(value: Decimal) -> str:
    return format(value.normalize(), "f")
