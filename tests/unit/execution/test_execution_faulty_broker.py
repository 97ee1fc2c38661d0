"""The faulty broker: faults by script or seeded rate, and the venue's own record by client order id."""
from __future__ import annotations

from decimal import Decimal

import pytest

from qlcore.brokers.faulty import Fault, FaultRates, FaultyBroker
from qlcore.brokers.simulated import SimulatedBroker
from qlcore.events.types import OrderInitialized
from qlcore.execution.contract import VenueStatus
from qlcore.model.enums import OrderSide, OrderType
from qlcore.model.market import Bar
from qlcore.model.orders import Order

BUY = OrderSide.BUY


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"transient": 1.5}, "transient: a probability in"),
        ({"query_error": -0.1}, "query_error: a probability in"),
        ({"transient": 0.6, "reject": 0.6}, "submit fault rates add up to 1.2"),
    ],
)
def test_bad_rates_are_refused_naming_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FaultRates(**kwargs)


def test_query_answers_the_venues_status_or_unknown(make_rig):
    rig = make_rig(script=[Fault.REJECT])
    rejected = rig.kernel.submit_order("s1", "AAPL", BUY, 1)
    working = rig.kernel.submit_order("s1", "AAPL", BUY, 1)
    assert rig.venue.query(rejected).status is VenueStatus.REJECTED
    answer = rig.venue.query(working)
    assert (answer.status, answer.venue_order_id) == (VenueStatus.WORKING, "SIM-1")
    rig.bar()
    assert rig.venue.query(working).status is VenueStatus.FILLED
    assert rig.venue.query("never-sent").status is VenueStatus.UNKNOWN


class Reports:
    """Records what the venue reports, as (report, order id, detail)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []

    def on_accepted(self, order_id, venue_order_id):
        self.seen.append(("accepted", order_id, venue_order_id))

    def on_rejected(self, order_id, reason):
        self.seen.append(("rejected", order_id, reason))

    def on_filled(self, order_id, trade_id, quantity, price, fee):
        self.seen.append(("filled", order_id, trade_id))

    def on_canceled(self, order_id, reason):
        self.seen.append(("canceled", order_id, reason))

    def on_cancel_rejected(self, order_id, reason):
        self.seen.append(("cancel rejected", order_id, reason))

    def on_expired(self, order_id):
        self.seen.append(("expired", order_id, ""))


def test_a_second_order_with_the_same_client_order_id_is_counted_and_rejected():
    venue = FaultyBroker(SimulatedBroker())
    reports = Reports()
    venue.bind(reports)
    order = Order(OrderInitialized(0, "E1-X-1", "s1", "AAPL", BUY, OrderType.MARKET, Decimal(1)))
    venue.submit(order)
    venue.submit(order)
    assert venue.received["E1-X-1"] == 2
    assert reports.seen == [
        ("accepted", "E1-X-1", "SIM-1"),
        ("rejected", "E1-X-1", "duplicate client order id E1-X-1"),
    ]


def test_lost_acknowledgement_is_not_delivered_but_the_venue_has_the_order():
    venue = FaultyBroker(SimulatedBroker(), script=[Fault.LOST_ACK])
    reports = Reports()
    venue.bind(reports)
    order = Order(OrderInitialized(0, "E1-X-1", "s1", "AAPL", BUY, OrderType.MARKET, Decimal(1)))
    venue.submit(order)
    assert reports.seen == []
    assert venue.query("E1-X-1").status is VenueStatus.WORKING
    venue.on_bar(Bar("AAPL", 1, 10.0, 10.0, 10.0, 10.0, 100.0))
    assert reports.seen == [("filled", "E1-X-1", "SIM-T1")]


def test_seeded_rates_draw_the_same_faults(make_rig):
    rates = FaultRates(transient=0.3, timeout_after_accept=0.2, reject=0.1)
    runs = []
    for _ in range(2):
        rig = make_rig(rates, seed=11)
        ids = [rig.kernel.submit_order("s1", "AAPL", BUY, 1) for _ in range(50)]
        runs.append([rig.venue.faults[oid] for oid in ids])
    assert runs[0] == runs[1]
    drawn = {f for faults in runs[0] for f in faults}
    assert {Fault.NONE, Fault.TRANSIENT, Fault.TIMEOUT_AFTER_ACCEPT, Fault.REJECT} <= drawn
    assert Fault.LOST_ACK not in drawn  # a zero rate is never drawn
