"""The simulated broker: fills working orders against bars, with fees and slippage.

The matching rules (prices, stops, limits, fees, slippage, time in force) live in
`qlcore.brokers.matching` and are shared with the paper venue. Bars carry no depth here, so an order
fills whole or not at all (FOK and IOC behave alike); the paper venue adds volume limits.
"""
from __future__ import annotations

from qlcore.brokers.base import ExecutionReports
from qlcore.brokers.matching import (
    FillModel,
    Pricing,
    WorkingOrder,
    expired_before,
    match,
    one_bar_only,
    too_early,
)
from qlcore.model.market import Bar
from qlcore.model.orders import Order

__all__ = ["FillModel", "SimulatedBroker"]


class SimulatedBroker:
    """Matches working orders against each bar of their symbol (see `qlcore.brokers.matching`)."""

    def __init__(self, fill_model: FillModel | None = None, venue: str = "SIM") -> None:
        self.fill_model = fill_model or FillModel()
        self.venue = venue
        self._reports: ExecutionReports | None = None
        self._working: dict[str, list[WorkingOrder]] = {}
        self._by_id: dict[str, tuple[str, WorkingOrder]] = {}
        self._trade_seq = 0
        self._order_seq = 0
        self._pricing = Pricing(self.fill_model)

    def bind(self, reports: ExecutionReports) -> None:
        self._reports = reports

    @property
    def working_count(self) -> int:
        return len(self._by_id)

    def submit(self, order: Order) -> None:
        reports = self._reports
        assert reports is not None, "broker is not bound to an engine"
        self._order_seq += 1
        reports.on_accepted(order.order_id, f"{self.venue}-{self._order_seq}")
        w = WorkingOrder(
            order.order_id,
            order.side,
            order.order_type,
            order.leaves_quantity,
            order.price,
            order.trigger_price,
            order.time_in_force,
            order.ts_init,
        )
        self._working.setdefault(order.symbol, []).append(w)
        self._by_id[order.order_id] = (order.symbol, w)

    def cancel(self, order_id: str) -> None:
        reports = self._reports
        assert reports is not None
        entry = self._by_id.pop(order_id, None)
        if entry is None:
            reports.on_cancel_rejected(order_id, "order is not working at the venue")
            return
        symbol, w = entry
        self._working[symbol].remove(w)
        reports.on_canceled(order_id, "canceled by request")

    def on_bar(self, bar: Bar) -> None:
        working = self._working.get(bar.symbol)
        if not working:
            return
        reports = self._reports
        assert reports is not None
        done: list[WorkingOrder] = []
        for w in list(working):
            if too_early(w, bar):
                continue
            if expired_before(w, bar):
                done.append(w)
                reports.on_expired(w.order_id)
                continue
            price, market_like = match(w, bar)
            if price is not None:
                self._fill(w, price, market_like)
                done.append(w)
            elif one_bar_only(w):
                done.append(w)
                reports.on_canceled(w.order_id, f"{w.tif.value}: not filled on the first bar")
        for w in done:
            working.remove(w)
            self._by_id.pop(w.order_id, None)

    def _fill(self, w: WorkingOrder, price_f: float, market_like: bool) -> None:
        price, fee = self._pricing.fill(w, price_f, market_like, w.leaves)
        w.fills += 1
        self._trade_seq += 1
        self._reports.on_filled(  # type: ignore[union-attr]
            w.order_id, f"{self.venue}-T{self._trade_seq}", w.leaves, price, fee
        )
