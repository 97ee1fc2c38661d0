"""The execution client: retries, ambiguity settled by query, timeouts, late reports."""
from __future__ import annotations

import itertools
from decimal import Decimal

import pytest

from qlcore.brokers.faulty import Fault, FaultRates
from qlcore.execution.contract import TransientBrokerError
from qlcore.execution.events import (
    LateVenueReport,
    OrderStatusQueried,
    OrderSubmitAmbiguous,
    OrderSubmitRetried,
    OrderTimedOut,
)
from qlcore.execution.policy import Backoff, ExecutionConfig
from qlcore.model.enums import OrderSide, OrderStatus

BUY = OrderSide.BUY


def test_clean_submit_is_accepted_then_filled_with_one_call(make_rig):
    rig = make_rig()
    oid = rig.kernel.submit_order("s1", "AAPL", BUY, 10)
    assert rig.kernel.order(oid).status is OrderStatus.ACCEPTED
    assert rig.client.in_flight == frozenset()
    rig.bar()
    assert rig.kernel.order(oid).status is OrderStatus.FILLED
    assert rig.venue.submit_calls[oid] == rig.venue.received[oid] == 1
    assert rig.records == []


def test_transient_errors_are_retried_with_the_same_client_order_id(make_rig):
    rig = make_rig(script=[Fault.TRANSIENT, Fault.DISCONNECT, Fault.NONE])
    oid = rig.kernel.submit_order("s1", "AAPL", BUY, 10)
    assert rig.kernel.order(oid).status is OrderStatus.ACCEPTED
    assert rig.venue.submit_calls[oid] == 3
    assert rig.venue.received[oid] == 1
    retries = rig.of(OrderSubmitRetried, oid)
    assert [r.attempt for r in retries] == [1, 2]
    assert "TransientBrokerError: HTTP 503" in retries[0].error
    assert "BrokerDisconnected" in retries[1].error
    assert [round(s * 1e9) for s in rig.time.slept] == [r.delay_ns for r in retries]


def test_transient_error_on_the_last_attempt_rejects_naming_the_error(make_rig):
    rig = make_rig(script=[Fault.TRANSIENT, Fault.TRANSIENT, Fault.TRANSIENT, Fault.DISCONNECT])
    oid = rig.kernel.submit_order("s1", "AAPL", BUY, 10)
    order = rig.kernel.order(oid)
    assert order.status is OrderStatus.REJECTED
    assert order.reason.startswith("not sent after 4 attempts; last error: BrokerDisconnected: connection reset")
    assert rig.venue.submit_calls[oid] == 4
    assert rig.venue.received[oid] == 0
    assert len(rig.time.slept) == 3  # no sleep after the last attempt
    assert rig.client.in_flight == frozenset()


def test_ambiguous_submit_is_settled_by_query_and_never_resent(make_rig):
    rig = make_rig(script=[Fault.TIMEOUT_AFTER_ACCEPT])
    oid = rig.kernel.submit_order("s1", "AAPL", BUY, 10)
    assert rig.kernel.order(oid).status is OrderStatus.SUBMITTED
    assert rig.client.in_flight == {oid}
    assert [e.attempt for e in rig.of(OrderSubmitAmbiguous, oid)] == [1]
    rig.settle()
    order = rig.kernel.order(oid)
    assert order.status is OrderStatus.ACCEPTED
    assert order.venue_order_id == "SIM-1"
    assert rig.venue.submit_calls[oid] == rig.venue.received[oid] == 1
    queried = rig.of(OrderStatusQueried, oid)
    assert [q.venue_status for q in queried] == ["WORKING"]
    rig.bar()
    assert rig.kernel.order(oid).status is OrderStatus.FILLED


def test_query_errors_are_retried_until_the_venue_answers(make_rig):
    rig = make_rig(FaultRates(query_error=0.6), script=[Fault.TIMEOUT_AFTER_ACCEPT], seed=3)
    oid = rig.kernel.submit_order("s1", "AAPL", BUY, 10)
    rig.settle()
    statuses = [q.venue_status for q in rig.of(OrderStatusQueried, oid)]
    assert statuses[-1] == "WORKING"
    assert "ERROR" in statuses  # seed 3 makes at least one query fail
    assert all(s == "ERROR" for s in statuses[:-1])
    assert rig.kernel.order(oid).status is OrderStatus.ACCEPTED
    assert rig.venue.submit_calls[oid] == 1


def test_lost_acknowledgement_is_settled_by_query_after_the_ack_timeout(make_rig):
    rig = make_rig(script=[Fault.LOST_ACK])
    sent_at = rig.time.now
    oid = rig.kernel.submit_order("s1", "AAPL", BUY, 10)
    assert rig.client.next_due() == sent_at + 1_000_000_000  # ack_timeout_s = 1.0
    assert rig.records == []
    rig.settle()
    assert rig.kernel.order(oid).status is OrderStatus.ACCEPTED
    (query,) = rig.of(OrderStatusQueried, oid)
    assert query.ts == sent_at + 1_000_000_000


def test_venue_rejection_is_reported_with_the_venues_reason(make_rig):
    rig = make_rig(script=[Fault.REJECT])
    oid = rig.kernel.submit_order("s1", "AAPL", BUY, 10)
    order = rig.kernel.order(oid)
    assert order.status is OrderStatus.REJECTED
    assert "insufficient buying power" in order.reason
    assert rig.venue.received[oid] == 1


def test_order_unknown_at_the_venue_times_out_with_an_explicit_event(make_rig):
    rig = make_rig(script=[Fault.TIMEOUT_BEFORE_VENUE])
    sent_at = rig.time.now
    oid = rig.kernel.submit_order("s1", "AAPL", BUY, 10)
    rig.settle()
    assert rig.kernel.order(oid).status is OrderStatus.EXPIRED
    (timed_out,) = rig.of(OrderTimedOut, oid)
    assert timed_out.ts == sent_at + 5_000_000_000  # order_timeout_s = 5.0: the last query is at the deadline
    assert "venue status still unknown 5.0s after sending after an ambiguous send" in timed_out.reason
    queries = rig.of(OrderStatusQueried, oid)
    assert timed_out.queries == len(queries) >= 2
    assert {q.venue_status for q in queries} == {"UNKNOWN"}
    assert rig.venue.submit_calls[oid] == 1 and rig.venue.received[oid] == 0


def test_failed_queries_do_not_time_out_an_order_only_an_answer_does(make_rig):
    rig = make_rig(FaultRates(query_error=1.0), script=[Fault.TIMEOUT_BEFORE_VENUE])
    sent_at = rig.time.now
    oid = rig.kernel.submit_order("s1", "AAPL", BUY, 10)
    while rig.time.now < sent_at + 8_000_000_000:  # well past the 5 s order timeout
        rig.time.now = rig.client.next_due()
        rig.client.poll()
    assert rig.client.in_flight == {oid}
    assert rig.kernel.order(oid).status is OrderStatus.SUBMITTED
    rig.venue.rates = FaultRates()  # the venue can be asked again
    rig.settle()
    assert rig.kernel.order(oid).status is OrderStatus.EXPIRED
    queries = rig.of(OrderStatusQueried, oid)
    assert {q.venue_status for q in queries[:-1]} == {"ERROR"}
    assert queries[-1].venue_status == "UNKNOWN"
    (timed_out,) = rig.of(OrderTimedOut, oid)
    assert timed_out.ts == queries[-1].ts


def test_query_backoff_follows_the_policy_and_stops_at_the_deadline(make_rig):
    rig = make_rig(script=[Fault.TIMEOUT_BEFORE_VENUE])
    oid = rig.kernel.submit_order("s1", "AAPL", BUY, 10)
    start = rig.of(OrderSubmitAmbiguous, oid)[0].ts
    rig.settle()
    times = [start] + [q.ts for q in rig.of(OrderStatusQueried, oid)]
    policy = rig.client.config.query_backoff
    for k, (a, b) in enumerate(itertools.pairwise(times)):
        assert 0 <= b - a <= round(policy.ceiling(k) * 1e9)
    assert times[-1] == start + 5_000_000_000


def test_late_acknowledgement_after_a_timeout_cancels_the_ghost_order(make_rig):
    rig = make_rig(script=[Fault.LOST_ACK], config=ExecutionConfig(ack_timeout_s=1.0, order_timeout_s=2.0))
    oid = rig.kernel.submit_order("s1", "AAPL", BUY, 10)
    # the venue loses the order's record for a while: queries say UNKNOWN until the timeout
    record = rig.venue._orders.pop(oid)
    rig.settle()
    assert rig.kernel.order(oid).status is OrderStatus.EXPIRED
    rig.venue._orders[oid] = record
    rig.client.on_accepted(oid, "SIM-1")  # the acknowledgement finally arrives
    assert rig.kernel.order(oid).status is OrderStatus.EXPIRED
    reports = [(r.report, r.detail) for r in rig.of(LateVenueReport, oid)]
    assert reports[0] == ("accepted", "venue order SIM-1; cancel sent")
    assert reports[1] == ("canceled", "canceled by request")  # the venue took the ghost off its book
    rig.bar()
    assert rig.kernel.order(oid).filled_quantity == 0


def test_second_acknowledgement_after_settling_by_query_is_dropped(make_rig):
    rig = make_rig(script=[Fault.TIMEOUT_AFTER_ACCEPT])
    oid = rig.kernel.submit_order("s1", "AAPL", BUY, 10)
    rig.settle()
    rig.client.on_accepted(oid, "SIM-1")  # the delayed original acknowledgement
    assert rig.kernel.order(oid).status is OrderStatus.ACCEPTED
    assert [r.report for r in rig.of(LateVenueReport, oid)] == ["accepted"]


def test_unexpected_broker_failure_leaves_the_order_in_flight_and_raises(make_rig):
    rig = make_rig()

    def broken(order):
        raise OSError("socket closed mid-write")

    rig.venue.submit = broken  # type: ignore[method-assign]
    with pytest.raises(OSError, match="mid-write"):
        rig.kernel.submit_order("s1", "AAPL", BUY, 10)
    (oid,) = rig.client.in_flight
    (ambiguous,) = rig.of(OrderSubmitAmbiguous, oid)
    assert ambiguous.error == "OSError: socket closed mid-write"
    rig.settle()
    assert rig.kernel.order(oid).status is OrderStatus.EXPIRED


def test_cancel_is_retried_then_reported_rejected_naming_the_error(make_rig):
    rig = make_rig()
    oid = rig.kernel.submit_order("s1", "AAPL", BUY, 10)
    calls = []

    def flaky_cancel(order_id):
        calls.append(order_id)
        raise TransientBrokerError("HTTP 500 Internal Server Error (cancel)")

    rig.venue.cancel = flaky_cancel  # type: ignore[method-assign]
    rig.kernel.cancel_order(oid)
    order = rig.kernel.order(oid)
    assert calls == [oid] * 4
    assert order.status is OrderStatus.ACCEPTED  # back to the status before the cancel request
    assert order.reason == (
        "cancel not sent after 4 attempts; last error: TransientBrokerError: HTTP 500 Internal Server Error (cancel)"
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_send_attempts": 0}, "max_send_attempts must be >= 1"),
        ({"ack_timeout_s": 0}, "ack_timeout_s must be > 0"),
        ({"ack_timeout_s": 5, "order_timeout_s": 5}, "order_timeout_s must be > ack_timeout_s"),
    ],
)
def test_bad_config_is_refused_naming_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ExecutionConfig(**kwargs)


def test_config_rejects_unknown_keys():
    with pytest.raises(TypeError, match="max_attempts"):
        ExecutionConfig(max_attempts=3)  # type: ignore[call-arg]


def test_backoff_ceiling_doubles_then_caps():
    b = Backoff(base_s=0.05, cap_s=0.3)
    assert [b.ceiling(k) for k in range(5)] == [0.05, 0.1, 0.2, 0.3, 0.3]
    assert b.ceiling(10_000) == 0.3
    with pytest.raises(ValueError, match="cap_s must be >= base_s"):
        Backoff(base_s=1.0, cap_s=0.5)


def test_fill_amount_is_decimal_through_the_client(make_rig):
    rig = make_rig()
    oid = rig.kernel.submit_order("s1", "AAPL", BUY, 3)
    rig.bar(price=101.25)
    order = rig.kernel.order(oid)
    assert order.filled_quantity == Decimal(3)
    assert order.avg_fill_price == Decimal("101.25")
