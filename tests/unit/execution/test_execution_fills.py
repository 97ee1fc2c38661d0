"""Fills from the venue duplicated, reordered, or after a cancel or a timeout: applied once, right state."""
from __future__ import annotations

from decimal import Decimal as D

from qlcore.brokers.base import ExecutionReports
from qlcore.brokers.faulty import Fault
from qlcore.execution.events import OrderTimedOut
from qlcore.model.enums import OrderSide, OrderStatus
from qlcore.model.market import Bar
from qlcore.model.orders import Order
from qlcore.model.state import TradingState

BUY = OrderSide.BUY


class ManualVenue:
    """A venue the test drives by hand: it acknowledges at once and reports what the test says."""

    def __init__(self, *, confirm_cancels: bool = True) -> None:
        self.reports: ExecutionReports | None = None
        self.confirm_cancels = confirm_cancels
        self.cancel_requests: list[str] = []
        self._n = 0

    def bind(self, reports: ExecutionReports) -> None:
        self.reports = reports

    def submit(self, order: Order) -> None:
        self._n += 1
        self.reports.on_accepted(order.order_id, f"MV-{self._n}")

    def cancel(self, order_id: str) -> None:
        self.cancel_requests.append(order_id)
        if self.confirm_cancels:
            self.reports.on_canceled(order_id, "canceled by request")

    def on_bar(self, bar: Bar) -> None:
        pass

    def fill(self, order_id: str, trade_id: str, quantity: str, price: str) -> None:
        self.reports.on_filled(order_id, trade_id, D(quantity), D(price), D("0.5"))


def _state(rig) -> TradingState:
    return rig.kernel.state


def test_duplicated_and_reordered_fills_are_applied_once(make_rig):
    venue = ManualVenue()
    rig = make_rig(inner=venue)
    oid = rig.kernel.submit_order("s1", "AAPL", BUY, 10)
    venue.fill(oid, "T2", "4", "101")
    venue.fill(oid, "T1", "3", "100")
    venue.fill(oid, "T2", "4", "101")  # duplicate
    venue.fill(oid, "T3", "3", "102")
    venue.fill(oid, "T1", "3", "100")  # duplicate, after the order is already filled
    order = rig.kernel.order(oid)
    assert order.status is OrderStatus.FILLED
    assert order.filled_quantity == D(10)
    assert order.trade_ids == {"T1", "T2", "T3"}
    assert order.avg_fill_price == D("101")
    state = _state(rig)
    assert state.position("s1", "AAPL") == D(10)
    assert state.cash == -D(1010) - D("1.5")
    assert state.fees == D("1.5")

    # the same fills once each and in order give the same state
    ref_venue = ManualVenue()
    ref = make_rig(inner=ref_venue)
    ref_oid = ref.kernel.submit_order("s1", "AAPL", BUY, 10)
    assert ref_oid == oid  # same seed, same session: the same client order id
    for trade_id, qty, px in (("T1", "3", "100"), ("T2", "4", "101"), ("T3", "3", "102")):
        ref_venue.fill(ref_oid, trade_id, qty, px)
    assert _state(ref).state_hash() == state.state_hash()


def test_fill_after_a_cancel_is_applied_and_the_order_stays_canceled(make_rig):
    venue = ManualVenue()
    rig = make_rig(inner=venue)
    oid = rig.kernel.submit_order("s1", "AAPL", BUY, 10)
    venue.fill(oid, "T1", "4", "100")
    rig.kernel.cancel_order(oid)
    assert rig.kernel.order(oid).status is OrderStatus.CANCELED
    venue.fill(oid, "T2", "2", "100")  # the venue traded before it processed the cancel
    venue.fill(oid, "T2", "2", "100")  # and repeats the report
    order = rig.kernel.order(oid)
    assert order.status is OrderStatus.CANCELED
    assert order.filled_quantity == D(6)
    assert _state(rig).position("s1", "AAPL") == D(6)


def test_fill_racing_a_cancel_request_counts_and_the_cancel_completes(make_rig):
    venue = ManualVenue(confirm_cancels=False)
    rig = make_rig(inner=venue)
    oid = rig.kernel.submit_order("s1", "AAPL", BUY, 10)
    rig.kernel.cancel_order(oid)
    assert venue.cancel_requests == [oid]
    assert rig.kernel.order(oid).status is OrderStatus.PENDING_CANCEL
    venue.fill(oid, "T1", "3", "100")
    venue.fill(oid, "T1", "3", "100")
    assert rig.kernel.order(oid).status is OrderStatus.PENDING_CANCEL
    venue.reports.on_canceled(oid, "canceled by request")
    order = rig.kernel.order(oid)
    assert order.status is OrderStatus.CANCELED
    assert order.filled_quantity == D(3)
    assert _state(rig).position("s1", "AAPL") == D(3)


def test_fill_for_an_order_that_timed_out_still_counts_once(make_rig):
    rig = make_rig(inner=ManualVenue(), script=[Fault.TIMEOUT_BEFORE_VENUE])
    oid = rig.kernel.submit_order("s1", "AAPL", BUY, 10)
    rig.settle()
    assert rig.kernel.order(oid).status is OrderStatus.EXPIRED
    assert len(rig.of(OrderTimedOut, oid)) == 1
    # the order surfaces at the venue after all and trades: the position must be right
    rig.client.on_filled(oid, "T9", D(10), D(100), D(0))
    rig.client.on_filled(oid, "T9", D(10), D(100), D(0))
    order = rig.kernel.order(oid)
    assert order.status is OrderStatus.FILLED  # EXPIRED + a fill of everything: filled
    assert _state(rig).position("s1", "AAPL") == D(10)
