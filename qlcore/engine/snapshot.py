"""The engine's read model: one JSON document that the CLI and the dashboards show.

Written to `engine_status.snapshot` with each heartbeat. Money is a string of the exact `Decimal`;
timestamps are integer nanoseconds (`clock_ts` market time, `updated_at` wall time). Keys:
engine_id, mode, state, pid, clock_ts, updated_at, account, equity_curve, strategies, positions,
orders, fills, risk, alerts, feed, broker, commands, reconciliation.
"""
from __future__ import annotations

import heapq
import math
import os
import time
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from qlcore.model.money import ZERO, canonical
from qlcore.portfolio.positions import position_view

if TYPE_CHECKING:
    from qlcore.engine.service import EngineService
    from qlcore.model.state import TradingState

RECENT = 200


def _money(value: Decimal) -> str:
    return canonical(value.quantize(Decimal("0.01")) if value.as_tuple().exponent < -2 else value)  # type: ignore[operator]


def _ratio(value: float) -> float | None:
    return None if math.isnan(value) or math.isinf(value) else round(value, 6)


def _marks(state: TradingState) -> dict[str, Decimal]:
    """The state's marks; a position without a mark yet is valued at its average cost."""
    marks = dict(state.marks)
    for (_sid, symbol), pos in state.positions.items():
        if pos.quantity and symbol not in marks:
            marks[symbol] = pos.avg_price or ZERO
    return marks


def marked_equity(state: TradingState) -> Decimal:
    """Cash plus positions at their marks (average cost where no mark is known yet)."""
    marks = _marks(state)
    return state.cash + sum(
        (pos.market_value(marks[sym]) for (_sid, sym), pos in state.positions.items() if pos.quantity), ZERO
    )


def _money_row(row: dict[str, Any]) -> dict[str, Any]:
    return {k: _money(Decimal(v)) if k in _MONEY and v is not None else v for k, v in row.items()}


_MONEY = frozenset(
    {"avg_price", "cost", "market_value", "unrealized_pnl", "realized_pnl", "fees", "crossed_pnl", "cash",
     "equity", "gross_exposure", "net_exposure", "buying_power"}
)


def build_snapshot(engine: EngineService) -> dict[str, Any]:
    kernel = engine.kernel
    state = kernel.state
    view = position_view(state, _marks(state)).to_rows()
    keep = lambda row: Decimal(row["quantity"]) != 0 or Decimal(row["realized_pnl"]) != 0  # noqa: E731
    positions = [_money_row(r) for r in view["by_strategy"] if keep(r)]
    by_instrument = [_money_row(r) for r in view["by_instrument"] if keep(r)]
    acct = view["account"]
    equity = Decimal(acct["equity"])
    first_equity = engine.start_equity if engine.start_equity is not None else equity
    account_mode = engine.trading_mode()
    account = {
        "mode": account_mode[0],
        "mode_reason": account_mode[1],
        **_money_row({k: acct[k] for k in ("cash", "equity", "unrealized_pnl", "realized_pnl", "fees",
                                            "gross_exposure", "net_exposure", "buying_power")}),
        "pnl_today": _money(equity - first_equity),
    }
    manager = engine.manager
    strategies = []
    open_by_strategy: dict[str, int] = {}
    open_orders = [o for o in state.orders.values() if o.status.is_open]
    for o in open_orders:
        open_by_strategy[o.strategy_id] = open_by_strategy.get(o.strategy_id, 0) + 1
    for sid in manager.strategy_ids:
        st = manager.stats(sid)
        record = manager._records[sid]
        strategies.append(
            {
                "strategy_id": sid,
                "strategy": record.name,
                "state": st.state.value,
                "mode": engine.strategy_mode(sid),
                "symbols": list(record.symbols),
                "capital": _money(st.allocation),
                "pnl": _money(st.pnl),
                "exposure": _money(st.gross_exposure),
                "trades": st.trade_count,
                "sharpe": _ratio(st.sharpe),
                "max_drawdown": _ratio(st.max_drawdown),
                "open_orders": open_by_strategy.get(sid, 0),
                "fault": record.fault.describe() if record.fault is not None else None,  # why it is FAILED
            }
        )
    # the newest RECENT of every order the session made, without sorting them all twice a second
    shown = {o.order_id: o for o in heapq.nlargest(RECENT, state.orders.values(), key=lambda o: o.ts_last)}
    shown.update({o.order_id: o for o in open_orders})
    order_rows = [
        {
            "order_id": o.order_id,
            "strategy_id": o.strategy_id,
            "symbol": o.symbol,
            "side": o.side.value,
            "order_type": o.order_type.value,
            "quantity": canonical(o.quantity),
            "filled": canonical(o.filled_quantity),
            "price": None if o.price is None else canonical(o.price),
            "status": o.status.value,
            "reason": getattr(o, "reason", "") or "",
            "ts": o.ts_last,
        }
        for o in sorted(shown.values(), key=lambda o: o.ts_last, reverse=True)
    ]
    fills = [
        {
            "trade_id": f.trade_id,
            "order_id": f.order_id,
            "strategy_id": f.strategy_id,
            "symbol": f.symbol,
            "side": f.side.value,
            "quantity": canonical(f.quantity),
            "price": canonical(f.price),
            "fee": canonical(f.fee),
            "ts": f.ts,
        }
        for f in reversed(engine.recent_fills)
    ]
    counters = engine.counters
    rec = engine.reconciliation
    return {
        "engine_id": engine.config.engine_id,
        "mode": "paper",
        "state": engine.state,
        "pid": os.getpid(),
        "clock_ts": engine.clock.now,
        "updated_at": time.time_ns(),
        "account": account,
        "equity_curve": [[ts, value] for ts, value in engine.equity_curve],
        "strategies": strategies,
        "positions": positions,
        "positions_by_instrument": by_instrument,
        "orders": order_rows,
        "fills": fills,
        "risk": {"limits": engine.limit_utilisation(), "denials": dict(engine.risk.denials),
                 "source": engine.limits_source.to_dict(), "in_force": engine.limits_in_force},
        "alerts": list(reversed(engine.alerts)),
        "feed": {
            "source": engine.config.feed,
            "last_bar_ts": engine.clock.now,
            "bars": counters.bars,
            "steps": counters.steps,
            "quarantined": engine.quarantined,
            "stale": sorted(engine.stale_symbols),
            "regimes": {s: engine.conditions.regime(s) for s in engine.config.symbols},
            "exhausted": bool(engine.feed is not None and engine.feed.exhausted),
            "behind_s": round(engine.feed_behind_s(), 3),
            "health": None if engine.watch is None else engine.watch.health.value,
            "silent_s": None if engine.watch is None else round(engine.watch.silent_s(), 1),
        },
        "broker": {"venue": engine.venue.venue, "connected": True, "working_orders": engine.venue.working_count,
                   "fills": engine.config.fill_terms.to_dict()},
        "commands": {"last_id": counters.last_command_id, "processed": counters.commands},
        "reconciliation": None if rec is None else {"passed": rec.passed, "summary": rec.summary()},
        "store": {
            "faults": counters.store_faults,
            "fault": None if engine.store_fault is None else engine.store_fault.reason,
            "not_durable": engine.writer.pending,
        },
    }
