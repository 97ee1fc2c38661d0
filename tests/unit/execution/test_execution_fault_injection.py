"""The broker fault test: 1,000 submits through injected timeouts, 5xx errors and disconnects."""
from __future__ import annotations

from collections import Counter
from decimal import Decimal

from qlcore.brokers.faulty import Fault, FaultRates
from qlcore.execution.events import (
    OrderStatusQueried,
    OrderSubmitAmbiguous,
    OrderSubmitRetried,
    OrderTimedOut,
)
from qlcore.model.enums import OrderSide, OrderStatus

RATES = FaultRates(
    transient=0.15,
    disconnect=0.10,
    timeout_after_accept=0.10,
    lost_ack=0.05,
    timeout_before_venue=0.03,
    reject=0.02,
    query_error=0.20,
    duplicate_fill=0.10,
)
RETRYABLE = {Fault.TRANSIENT, Fault.DISCONNECT}
N = 1_000




def _run(make_rig):
    rig = make_rig(RATES, seed=2026)
    side = (OrderSide.BUY, OrderSide.SELL)
    ids = []
    for i in range(N):
        ids.append(rig.kernel.submit_order("s1", "AAPL", side[i % 2], 1 + i % 3))
        rig.client.poll()  # as the engine loop does between commands
    rig.settle()
    rig.bar()
    return rig, ids


def test_every_client_order_id_reaches_the_venue_at_most_once_and_ends_definite(make_rig):
    rig, ids = _run(make_rig)
    assert len(set(ids)) == N
    assert rig.client.in_flight == frozenset()
    venue = rig.venue
    assert max(venue.received.values()) == 1
    outcomes: Counter[str] = Counter()
    for oid in ids:
        order = rig.kernel.order(oid)
        faults = venue.faults[oid]
        assert venue.submit_calls[oid] == len(faults)
        # only transient failures are followed by another attempt
        assert all(f in RETRYABLE for f in faults[:-1]), faults
        last = faults[-1]
        if last in RETRYABLE:  # every attempt failed before the venue: rejected naming the error
            assert len(faults) == rig.client.config.max_send_attempts
            assert order.status is OrderStatus.REJECTED
            assert order.reason.startswith("not sent after 4 attempts; last error: ")
            assert ("BrokerDisconnected" if last is Fault.DISCONNECT else "HTTP 503") in order.reason
            expected_received = 0
        elif last is Fault.REJECT:
            assert order.status is OrderStatus.REJECTED
            assert "insufficient buying power" in order.reason
            expected_received = 1
        elif last is Fault.TIMEOUT_BEFORE_VENUE:
            assert order.status is OrderStatus.EXPIRED
            assert len(rig.of(OrderTimedOut, oid)) == 1
            expected_received = 0
        else:  # NONE, TIMEOUT_AFTER_ACCEPT, LOST_ACK: at the venue, so filled on the next bar
            assert order.status is OrderStatus.FILLED
            assert order.venue_order_id.startswith("SIM-")
            expected_received = 1
        assert venue.received[oid] == expected_received
        assert not order.is_open
        outcomes[last.value] += 1
    # the seed exercises every path (a test that can fail: each count must be non-zero)
    assert set(outcomes) == {f.value for f in Fault}
    assert outcomes["TIMEOUT_AFTER_ACCEPT"] > 50


def test_ambiguous_orders_are_settled_by_query_not_by_resending(make_rig):
    rig, ids = _run(make_rig)
    ambiguous = {e.order_id for e in rig.of(OrderSubmitAmbiguous)}
    expected = {oid for oid in ids if rig.venue.faults[oid][-1] in (Fault.TIMEOUT_AFTER_ACCEPT, Fault.TIMEOUT_BEFORE_VENUE)}
    assert ambiguous == expected
    queried = {q.order_id for q in rig.of(OrderStatusQueried)}
    lost_ack = {oid for oid in ids if rig.venue.faults[oid][-1] is Fault.LOST_ACK}
    assert queried == ambiguous | lost_ack
    for oid in ambiguous:
        (event,) = rig.of(OrderSubmitAmbiguous, oid)
        assert rig.venue.submit_calls[oid] == event.attempt  # no attempt after the ambiguous one
        assert rig.venue.queries[oid] >= 1
    assert sum(q.venue_status == "ERROR" for q in rig.of(OrderStatusQueried)) > 10


def test_retry_sleeps_are_full_jitter_within_the_capped_exponential_ceiling(make_rig):
    rig, _ = _run(make_rig)
    retries = rig.of(OrderSubmitRetried)
    assert [round(s * 1e9) for s in rig.time.slept] == [r.delay_ns for r in retries]
    policy = rig.client.config.send_backoff  # base 0.05 s, cap 0.15 s
    by_attempt: dict[int, list[float]] = {}
    for r in retries:
        delay = r.delay_ns / 1e9
        ceiling = min(policy.cap_s, policy.base_s * 2 ** (r.attempt - 1))
        assert 0 <= delay <= ceiling + 1e-9
        by_attempt.setdefault(r.attempt, []).append(delay)
    assert sorted(by_attempt) == [1, 2, 3]
    assert max(by_attempt[3]) <= 0.15 + 1e-9  # capped: 0.05 * 2**2 = 0.2 > 0.15
    assert max(by_attempt[3]) > 0.1  # and the cap, not 0.1, is the bound actually used
    # full jitter: the draws spread over [0, ceiling], not bunched at the top
    first = by_attempt[1]
    assert min(first) < 0.01 and max(first) > 0.04


def test_duplicated_fills_from_the_venue_are_applied_once(make_rig):
    rig, ids = _run(make_rig)
    filled = [rig.kernel.order(oid) for oid in ids if rig.kernel.order(oid).status is OrderStatus.FILLED]
    assert all(o.filled_quantity == o.quantity and len(o.trade_ids) == 1 for o in filled)
    net = sum((o.quantity if o.side is OrderSide.BUY else -o.quantity for o in filled), Decimal(0))
    assert rig.kernel.state.position("s1", "AAPL") == net
    assert rig.kernel.state.cash == -net * Decimal("100.0")


def test_the_same_seed_gives_the_same_run(make_rig):
    a, ids_a = _run(make_rig)
    b, ids_b = _run(make_rig)
    assert ids_a == ids_b
    assert a.records == b.records
    assert a.kernel.state.state_hash() == b.kernel.state.state_hash()
