"""`BacktestResult`: what a backtest gives back — equity, trades, orders, metrics — and its renderings."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast

import pandas as pd

from qlcore.events.types import OrderFilled
from qlcore.model.state import TradingState
from qlcore.portfolio.metrics import Metrics, compute_metrics
from qlcore.portfolio.trades import round_trips

if TYPE_CHECKING:
    from qlcore.engine.config import BacktestConfig
    from qlcore.strategies.base import Strategy

ORDER_COLUMNS = [
    "order_id",
    "strategy_id",
    "symbol",
    "side",
    "order_type",
    "quantity",
    "price",
    "trigger_price",
    "time_in_force",
    "status",
    "filled_quantity",
    "avg_fill_price",
    "fees",
    "ts_init",
    "ts_last",
    "reason",
]


@dataclass(frozen=True)
class BacktestResult:
    run_id: str
    strategies: list[dict[str, Any]]
    config: dict[str, Any]
    data: list[dict[str, Any]]
    final_equity: Decimal
    final_cash: Decimal
    state_hash: str
    equity: pd.Series
    exposure: pd.Series
    trades: pd.DataFrame
    orders: pd.DataFrame
    fills: pd.DataFrame
    metrics: Metrics
    events: int
    bars: int
    elapsed: float
    order_list: list[tuple] = field(repr=False, default_factory=list)
    ruined_at: pd.Timestamp | None = None

    @classmethod
    def build(
        cls,
        *,
        run_id: str,
        strategies: list[Strategy],
        config: BacktestConfig,
        data: list[dict[str, Any]],
        state: TradingState,
        state_hash: str,
        fills: list[OrderFilled],
        equity: pd.Series,
        exposure: pd.Series,
        events: int,
        bars: int,
        elapsed: float,
    ) -> BacktestResult:
        trades = round_trips(fills, state.marks)
        closed = trades[trades["closed"]]
        # an account that loses everything has no defined returns after that point: the metrics
        # cover the run up to the last bar with positive equity, and `ruined_at` says when it ended
        bad = ~(equity > 0)
        # argmax is a numpy integer position, which the Index stubs do not list
        ruined_at = equity.index[cast(int, bad.argmax())] if bad.any() else None
        alive = equity[: bad.argmax()] if ruined_at is not None else equity
        if alive.empty:
            raise ValueError(f"equity is not positive at the first bar ({equity.iloc[0]})")
        metrics = compute_metrics(alive, closed[closed["exit_ts"] < ruined_at] if ruined_at is not None else closed, exposure.loc[alive.index])
        orders = [o for _, o in sorted(state.orders.items(), key=lambda kv: kv[1].ts_init)]
        # built column by column: a list of per-order dicts costs seconds on a million bars
        orders_df = pd.DataFrame(
            {
                "order_id": [o.order_id for o in orders],
                "strategy_id": [o.strategy_id for o in orders],
                "symbol": [o.symbol for o in orders],
                "side": [str(o.side) for o in orders],
                "order_type": [str(o.order_type) for o in orders],
                "quantity": [o.quantity for o in orders],
                "price": [o.price for o in orders],
                "trigger_price": [o.trigger_price for o in orders],
                "time_in_force": [str(o.time_in_force) for o in orders],
                "status": [str(o.status) for o in orders],
                "filled_quantity": [o.filled_quantity for o in orders],
                "avg_fill_price": [o.avg_fill_price for o in orders],
                "fees": [o.fees for o in orders],
                "ts_init": pd.to_datetime([o.ts_init for o in orders]),
                "ts_last": pd.to_datetime([o.ts_last for o in orders]),
                "reason": [o.reason for o in orders],
            },
            columns=ORDER_COLUMNS,
        )
        fills_df = pd.DataFrame(
            {
                "ts": pd.to_datetime([f.ts for f in fills]),
                "order_id": [f.order_id for f in fills],
                "trade_id": [f.trade_id for f in fills],
                "strategy_id": [f.strategy_id for f in fills],
                "symbol": [f.symbol for f in fills],
                "side": [str(f.side) for f in fills],
                "quantity": [f.quantity for f in fills],
                "price": [f.price for f in fills],
                "fee": [f.fee for f in fills],
            },
            columns=["ts", "order_id", "trade_id", "strategy_id", "symbol", "side", "quantity", "price", "fee"],
        )
        return cls(
            run_id=run_id,
            strategies=[
                {"id": s.strategy_id, "name": s.name, "params": dict(s.param_values)} for s in strategies
            ],
            config=config.to_dict(),
            data=data,
            final_equity=state.equity(),
            final_cash=state.cash,
            state_hash=state_hash,
            equity=equity,
            exposure=exposure,
            trades=trades,
            orders=orders_df,
            fills=fills_df,
            metrics=metrics,
            events=events,
            bars=bars,
            elapsed=elapsed,
            order_list=[o.snapshot() for o in orders],
            ruined_at=ruined_at,
        )

    # --- views -------------------------------------------------------------------------------
    @property
    def title(self) -> str:
        names = ", ".join(s["id"] for s in self.strategies)
        symbols = ", ".join(d["symbol"] for d in self.data)
        return f"{names} on {symbols}"

    @property
    def params(self) -> dict[str, Any]:
        if len(self.strategies) == 1:
            return dict(self.strategies[0]["params"])
        return {f"{s['id']}.{k}": v for s in self.strategies for k, v in s["params"].items()}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly summary (money as strings, exact)."""
        return {
            "run_id": self.run_id,
            "strategies": [
                {"id": s["id"], "name": s["name"], "params": {k: _plain(v) for k, v in s["params"].items()}}
                for s in self.strategies
            ],
            "config": self.config,
            "data": self.data,
            "final_equity": str(self.final_equity),
            "final_cash": str(self.final_cash),
            "state_hash": self.state_hash,
            "events": self.events,
            "bars": self.bars,
            "orders": len(self.orders),
            "fills": len(self.fills),
            "trades": int(self.trades["closed"].sum()),
            "elapsed_seconds": round(self.elapsed, 6),
            "ruined_at": None if self.ruined_at is None else str(self.ruined_at),
            "metrics": self.metrics.to_dict(),
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def _repr_html_(self) -> str:
        from qlcore.portfolio.report import result_html

        return result_html(
            title=self.title,
            metrics=self.metrics,
            params=self.params,
            run_id=self.run_id,
            state_hash=self.state_hash,
            final_equity=f"{self.final_equity:,.2f}",
            trades=self.trades,
            equity=self.equity,
        )

    def plot(self):
        """Equity and drawdown (holoviews, bokeh backend)."""
        from qlcore.portfolio.report import plot_equity

        return plot_equity(self.equity, title=self.title)

    def __repr__(self) -> str:
        m = self.metrics
        return (
            f"BacktestResult({self.run_id}: {self.title}; final equity {self.final_equity:,.2f}, "
            f"return {m.total_return:.2%}, sharpe {m.sharpe:.2f}, max dd {m.max_drawdown:.2%}, "
            f"{len(self.fills)} fills)"
        )


def _plain(v: Any) -> Any:
    return v if isinstance(v, (int, float, str, bool, type(None))) else str(v)
