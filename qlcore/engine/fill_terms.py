"""The paper venue's terms of trade, and how they differ from a backtest's defaults.

Paper trading equals the backtest only on equal terms: the same fill convention (the next bar's
open), fees, minimum fee and slippage, no latency and no volume limit that binds. The engine shows
these terms where its results are seen (the `EngineStarted` details, the status snapshot and
`qlcore status`), with every difference from `BacktestConfig()` named.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from qlcore.engine.config import BacktestConfig

NEXT_BAR_OPEN = "next bar open"
ON_ARRIVAL = "on arrival at the last close"


@dataclass(frozen=True, slots=True)
class FillTerms:
    """How the paper venue fills: convention, costs, latency and volume limit."""

    fill_on_arrival: bool
    fee_bps: Decimal
    min_fee: Decimal
    slippage_bps: Decimal
    latency_ms: float
    participation: float

    @property
    def convention(self) -> str:
        return ON_ARRIVAL if self.fill_on_arrival else NEXT_BAR_OPEN

    def differences(self, backtest: BacktestConfig | None = None) -> list[str]:
        """What differs from `backtest` (default: `BacktestConfig()`), one phrase each; [] when equal."""
        bt = backtest or BacktestConfig()
        out = []
        if self.fill_on_arrival:
            out.append(f"fills {ON_ARRIVAL} (backtest: {NEXT_BAR_OPEN})")
        for name in ("fee_bps", "min_fee", "slippage_bps"):
            mine, theirs = getattr(self, name), getattr(bt, name)
            if mine != theirs:
                out.append(f"{name} {mine} (backtest: {theirs})")
        if self.latency_ms:
            out.append(f"latency {self.latency_ms:g} ms (backtest: none)")
        if self.participation < 1:
            out.append(f"fills limited to {self.participation:.0%} of each bar's volume (backtest: no limit)")
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly: the terms (money as strings) and `differs_from_backtest`."""
        return {
            "convention": self.convention,
            "fee_bps": str(self.fee_bps),
            "min_fee": str(self.min_fee),
            "slippage_bps": str(self.slippage_bps),
            "latency_ms": self.latency_ms,
            "participation": self.participation,
            "differs_from_backtest": self.differences(),
        }
