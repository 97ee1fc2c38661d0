"""The order state machine: every edge of `TRANSITIONS`, the fill rules, random event sequences."""
from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qlcore.events.types import (
    ORDER_EVENTS,
    Event,
    OrderAccepted,
    OrderCanceled,
    OrderCancelRejected,
    OrderCancelRequested,
    OrderDenied,
    OrderExpired,
    OrderFilled,
    OrderInitialized,
    OrderRejected,
    OrderSubmitted,
)
from qlcore.model.enums import OrderSide, OrderStatus, OrderType
from qlcore.model.orders import TRANSITIONS, InvalidOrderTransition, Order

D = Decimal
S = OrderStatus
OID = "O-1"
QTY = D(10)
ONE = D(1)


def init(quantity: Decimal = QTY) -> OrderInitialized:
    return OrderInitialized(1, OID, "strat", "AAPL", OrderSide.BUY, OrderType.MARKET, quantity)


def fill(
    trade_id: str, quantity: Decimal | int | str, price: str = "100", ts: int = 5
) -> OrderFilled:
    return OrderFilled(
        ts, OID, trade_id, "strat", "AAPL", OrderSide.BUY, D(quantity), D(price), D("0.10")
    )


def event(
    event_type: type[Event], ts: int = 5, trade_id: str = "T-new", quantity: Decimal = ONE
) -> Event:
    """One event of the given type for order `OID`, with plausible field values."""
    if event_type is OrderFilled:
        return fill(trade_id, quantity, ts=ts)
    if event_type is OrderInitialized:
        return init()
    if event_type is OrderAccepted:
        return OrderAccepted(ts, OID, "V-1")
    if event_type in (OrderDenied, OrderRejected, OrderCancelRejected):
        return event_type(ts, OID, f"{event_type.__name__} reason")  # type: ignore[call-arg]
    return event_type(ts, OID)  # type: ignore[call-arg]


def new_order(quantity: Decimal = QTY) -> Order:
    return Order(init(quantity))


def apply_all(order: Order, events: list[Event]) -> Order:
    for e in events:
        assert order.apply(e) is True
    return order


# The events that bring a fresh order (quantity 10) to each status, by the shortest ordinary route.
ROUTE: dict[OrderStatus, list[Event]] = {
    S.INITIALIZED: [],
    S.DENIED: [OrderDenied(2, OID, "max notional 1000 < 1012.50")],
    S.SUBMITTED: [OrderSubmitted(2, OID)],
    S.REJECTED: [OrderSubmitted(2, OID), OrderRejected(3, OID, "market closed")],
    S.ACCEPTED: [OrderSubmitted(2, OID), OrderAccepted(3, OID, "V-1")],
    S.PARTIALLY_FILLED: [OrderSubmitted(2, OID), OrderAccepted(3, OID, "V-1"), fill("T-pre", 2)],
    S.FILLED: [OrderSubmitted(2, OID), OrderAccepted(3, OID, "V-1"), fill("T-pre", 10)],
    S.PENDING_CANCEL: [
        OrderSubmitted(2, OID),
        OrderAccepted(3, OID, "V-1"),
        OrderCancelRequested(4, OID),
    ],
    S.CANCELED: [
        OrderSubmitted(2, OID),
        OrderAccepted(3, OID, "V-1"),
        OrderCanceled(4, OID, "user"),
    ],
    S.EXPIRED: [OrderSubmitted(2, OID), OrderAccepted(3, OID, "V-1"), OrderExpired(4, OID)],
}


def order_in(status: OrderStatus) -> Order:
    order = apply_all(new_order(), ROUTE[status])
    assert order.status is status
    return order


# Every edge of the table, written out by hand: (status, event type) -> status after one event
# (a fill of 1 out of 10 with a new trade id, so it never completes the order here).
EDGES: list[tuple[OrderStatus, type[Event], OrderStatus]] = [
    (S.INITIALIZED, OrderDenied, S.DENIED),
    (S.INITIALIZED, OrderSubmitted, S.SUBMITTED),
    (S.SUBMITTED, OrderAccepted, S.ACCEPTED),
    (S.SUBMITTED, OrderRejected, S.REJECTED),
    (S.SUBMITTED, OrderFilled, S.PARTIALLY_FILLED),
    (S.SUBMITTED, OrderCanceled, S.CANCELED),
    (S.SUBMITTED, OrderExpired, S.EXPIRED),
    (S.SUBMITTED, OrderCancelRequested, S.PENDING_CANCEL),
    (S.ACCEPTED, OrderFilled, S.PARTIALLY_FILLED),
    (S.ACCEPTED, OrderCancelRequested, S.PENDING_CANCEL),
    (S.ACCEPTED, OrderCanceled, S.CANCELED),
    (S.ACCEPTED, OrderExpired, S.EXPIRED),
    (S.PARTIALLY_FILLED, OrderFilled, S.PARTIALLY_FILLED),
    (S.PARTIALLY_FILLED, OrderCancelRequested, S.PENDING_CANCEL),
    (S.PARTIALLY_FILLED, OrderCanceled, S.CANCELED),
    (S.PARTIALLY_FILLED, OrderExpired, S.EXPIRED),
    (S.PENDING_CANCEL, OrderCanceled, S.CANCELED),
    (S.PENDING_CANCEL, OrderCancelRejected, S.ACCEPTED),  # back to the status before the request
    (S.PENDING_CANCEL, OrderExpired, S.EXPIRED),
    (S.PENDING_CANCEL, OrderFilled, S.PENDING_CANCEL),  # the cancel of the rest is still pending
    (S.PENDING_CANCEL, OrderAccepted, S.PENDING_CANCEL),
    (S.PENDING_CANCEL, OrderRejected, S.REJECTED),
    (S.FILLED, OrderCancelRejected, S.FILLED),
    (S.PENDING_CANCEL, OrderCancelRequested, S.PENDING_CANCEL),
    (S.CANCELED, OrderFilled, S.CANCELED),
    (S.EXPIRED, OrderFilled, S.EXPIRED),
]


def _edge_id(edge: tuple) -> str:
    return f"{edge[0].value}+{edge[1].__name__}"


def test_every_edge_of_the_table_has_a_hand_written_case():
    covered = {(s, e) for s, e, _ in EDGES}
    missing = sorted(_edge_id(edge) for edge in TRANSITIONS if edge not in covered)
    assert missing == [], f"add a case to EDGES for the new edges {missing}"


@pytest.mark.parametrize("edge", EDGES, ids=_edge_id)
def test_each_table_edge_moves_the_order_to_its_target_status(edge):
    status, event_type, expected = edge
    order = order_in(status)
    filled_before = order.filled_quantity

    assert order.apply(event(event_type, ts=99)) is True

    assert order.status is expected
    assert order.ts_last == 99
    expected_fill = D(1) if event_type is OrderFilled else D(0)
    assert order.filled_quantity == filled_before + expected_fill


_ALLOWED = {(s, e) for s, e, _ in EDGES}
NOT_ALLOWED = [(s, e) for s in S for e in ORDER_EVENTS if (s, e) not in _ALLOWED]


@pytest.mark.parametrize("pair", NOT_ALLOWED, ids=_edge_id)
def test_each_event_outside_the_table_raises_and_changes_nothing(pair):
    status, event_type = pair
    order = order_in(status)
    before, trade_ids, ts_last = order.snapshot(), set(order.trade_ids), order.ts_last

    with pytest.raises(InvalidOrderTransition) as info:
        order.apply(event(event_type, ts=99))

    assert info.value.order_id == OID
    assert info.value.status is status
    assert order.snapshot() == before
    assert order.trade_ids == trade_ids
    assert order.ts_last == ts_last


# --- life cycles ---------------------------------------------------------------------------------


def test_market_order_life_cycle_ends_filled_with_average_price():
    order = new_order()
    assert order.status is S.INITIALIZED
    order.apply(OrderSubmitted(2, OID))
    assert order.status is S.SUBMITTED and order.is_open
    order.apply(OrderAccepted(3, OID, "V-77"))
    assert order.status is S.ACCEPTED
    assert order.venue_order_id == "V-77"
    order.apply(fill("T-1", 10, price="101.25"))
    assert order.status is S.FILLED
    assert not order.is_open
    assert order.filled_quantity == D(10)
    assert order.leaves_quantity == D(0)
    assert order.avg_fill_price == D("101.25")
    assert order.fees == D("0.10")
    assert order.trade_ids == {"T-1"}


def test_denied_order_keeps_the_reason_and_is_closed():
    order = new_order()
    order.apply(OrderDenied(2, OID, "max notional 1000 < 1012.50"))
    assert order.status is S.DENIED
    assert order.reason == "max notional 1000 < 1012.50"
    assert not order.is_open


def test_rejected_order_keeps_the_venue_reason():
    order = apply_all(new_order(), [OrderSubmitted(2, OID), OrderRejected(3, OID, "market closed")])
    assert order.status is S.REJECTED
    assert order.reason == "market closed"
    assert not order.is_open


def test_partial_then_complete_fill_ends_filled_with_weighted_average_price():
    order = order_in(S.ACCEPTED)
    order.apply(fill("T-1", 4, price="100"))
    assert order.status is S.PARTIALLY_FILLED
    assert order.leaves_quantity == D(6)
    order.apply(fill("T-2", 6, price="101"))
    assert order.status is S.FILLED
    assert order.filled_quantity == D(10)
    assert order.avg_fill_price == D("100.6")
    assert order.fees == D("0.20")


def test_fill_arriving_before_the_acknowledgement_is_applied():
    order = order_in(S.SUBMITTED)
    order.apply(fill("T-1", 3))
    assert order.status is S.PARTIALLY_FILLED
    assert order.filled_quantity == D(3)


def test_complete_fill_arriving_before_the_acknowledgement_fills_the_order():
    order = order_in(S.SUBMITTED)
    order.apply(fill("T-1", 10))
    assert order.status is S.FILLED


def test_cancel_request_then_cancel_ends_canceled_with_reason():
    order = order_in(S.ACCEPTED)
    order.apply(OrderCancelRequested(4, OID))
    assert order.status is S.PENDING_CANCEL
    assert order.is_open
    order.apply(OrderCanceled(5, OID, "user asked"))
    assert order.status is S.CANCELED
    assert order.reason == "user asked"
    assert not order.is_open


@pytest.mark.parametrize("status", [S.SUBMITTED, S.ACCEPTED, S.PARTIALLY_FILLED], ids=str)
def test_cancel_rejected_returns_to_the_status_before_the_request(status):
    order = order_in(status)
    order.apply(OrderCancelRequested(4, OID))
    order.apply(OrderCancelRequested(5, OID))  # a second request while pending changes nothing
    assert order.status is S.PENDING_CANCEL
    order.apply(OrderCancelRejected(6, OID, "too late to cancel"))
    assert order.status is status
    assert order.reason == "too late to cancel"


def test_cancel_rejected_after_a_second_cycle_returns_to_the_latest_prior_status():
    order = order_in(S.ACCEPTED)
    order.apply(OrderCancelRequested(4, OID))
    order.apply(OrderCancelRejected(5, OID, "no"))
    order.apply(fill("T-1", 2))
    order.apply(OrderCancelRequested(6, OID))
    order.apply(OrderCancelRejected(7, OID, "no again"))
    assert order.status is S.PARTIALLY_FILLED


def test_fill_after_cancel_is_applied_and_order_stays_canceled():
    order = order_in(S.PARTIALLY_FILLED)  # 2 of 10 filled
    order.apply(OrderCanceled(5, OID, "user"))
    assert order.apply(fill("T-late", 3)) is True
    assert order.status is S.CANCELED
    assert order.filled_quantity == D(5)
    assert "T-late" in order.trade_ids


def test_late_fill_that_completes_a_canceled_order_makes_it_filled():
    order = order_in(S.PARTIALLY_FILLED)  # 2 of 10 filled
    order.apply(OrderCanceled(5, OID, "user"))
    order.apply(fill("T-late", 8))
    assert order.status is S.FILLED
    assert order.filled_quantity == QTY


def test_fill_after_expiry_is_applied_and_order_stays_expired():
    order = order_in(S.EXPIRED)
    order.apply(fill("T-late", 4))
    assert order.status is S.EXPIRED
    assert order.filled_quantity == D(4)
    order.apply(fill("T-late-2", 6))
    assert order.status is S.FILLED


def test_fill_racing_a_cancel_request_is_applied_and_the_cancel_stays_pending():
    order = order_in(S.PENDING_CANCEL)
    order.apply(fill("T-1", 4))
    assert order.status is S.PENDING_CANCEL
    assert order.filled_quantity == D(4)
    order.apply(OrderCanceled(9, OID, "rest canceled"))
    assert order.status is S.CANCELED and order.filled_quantity == D(4)


def test_fill_completing_the_order_while_cancel_pending_is_filled_and_the_late_reject_accepted():
    order = order_in(S.PENDING_CANCEL)
    order.apply(fill("T-1", 10))
    assert order.status is S.FILLED
    order.apply(OrderCancelRejected(9, OID, "too late to cancel"))
    assert order.status is S.FILLED and order.reason == "too late to cancel"


def test_repeated_trade_id_is_applied_once():
    order = order_in(S.ACCEPTED)
    assert order.apply(fill("T-1", 3, price="100", ts=10)) is True
    before = order.snapshot()
    assert order.apply(fill("T-1", 3, price="100", ts=11)) is False
    assert order.snapshot() == before
    assert order.filled_quantity == D(3)
    assert order.fees == D("0.10")
    assert order.ts_last == 10


def test_repeated_trade_id_on_a_filled_order_is_ignored_not_refused():
    order = order_in(S.FILLED)  # filled by trade "T-pre"
    assert order.apply(fill("T-pre", 10)) is False
    assert order.status is S.FILLED


def test_overfill_raises_and_leaves_the_order_unchanged():
    order = order_in(S.PARTIALLY_FILLED)  # 2 of 10 filled
    before = order.snapshot()
    with pytest.raises(InvalidOrderTransition, match="overfill"):
        order.apply(fill("T-big", 9))
    assert order.snapshot() == before
    assert "T-big" not in order.trade_ids
    # the same trade id is not burnt by the refusal: a correct fill with it still applies
    assert order.apply(fill("T-big", 8)) is True
    assert order.status is S.FILLED


def test_late_overfill_after_cancel_raises():
    order = order_in(S.PARTIALLY_FILLED)
    order.apply(OrderCanceled(5, OID))
    with pytest.raises(InvalidOrderTransition, match="overfill"):
        order.apply(fill("T-late", 9))
    assert order.status is S.CANCELED


@pytest.mark.parametrize("quantity", ["0", "-1"])
def test_non_positive_fill_quantity_raises(quantity):
    order = order_in(S.ACCEPTED)
    with pytest.raises(InvalidOrderTransition, match="fill quantity <= 0"):
        order.apply(fill("T-1", quantity))
    assert order.filled_quantity == D(0)
    assert order.status is S.ACCEPTED


@pytest.mark.parametrize("status", [S.DENIED, S.REJECTED, S.FILLED], ids=str)
@pytest.mark.parametrize("event_type", ORDER_EVENTS, ids=lambda t: t.__name__)
def test_any_event_on_a_terminal_order_raises_naming_order_status_and_event(status, event_type):
    order = order_in(status)
    if (status, event_type) in TRANSITIONS:  # only a late "too late to cancel" on a filled order
        assert (status, event_type) == (S.FILLED, OrderCancelRejected)
        assert order.apply(event(event_type)) is True and order.status is S.FILLED
        return
    with pytest.raises(InvalidOrderTransition) as info:
        order.apply(event(event_type, trade_id="T-other"))
    message = str(info.value)
    assert OID in message
    assert status.value in message
    assert event_type.__name__ in message


# --- random event sequences ----------------------------------------------------------------------


def reachable_statuses() -> set[OrderStatus]:
    """Statuses reachable from INITIALIZED through the table (and a fill's promotion to FILLED)."""
    # a `None` target returns to a status from which a cancel could be requested
    cancel_from = {
        s for s, e in TRANSITIONS if e is OrderCancelRequested and s is not S.PENDING_CANCEL
    }
    seen, todo = {S.INITIALIZED}, [S.INITIALIZED]
    while todo:
        status = todo.pop()
        nexts: set[OrderStatus] = set()
        for (src, event_type), target in TRANSITIONS.items():
            if src is not status:
                continue
            nexts |= cancel_from if target is None else {target}
            if event_type is OrderFilled:
                nexts.add(S.FILLED)
        for n in nexts - seen:
            seen.add(n)
            todo.append(n)
    return seen


def test_reachable_statuses_are_every_status():
    assert reachable_statuses() == set(S)


TRADE_IDS = ["T-a", "T-b", "T-c", "T-d", "T-e"]  # few ids, so duplicates are common
# weights for picking among allowed events: favour the ones that keep an order working, so that
# sequences reach the deeper edges rather than stopping at the first CANCELED or EXPIRED
WEIGHT = {
    OrderSubmitted: 4,
    OrderAccepted: 4,
    OrderFilled: 4,
    OrderCancelRequested: 2,
    OrderCancelRejected: 3,
}


def draw_step(data: st.DataObject, status: OrderStatus) -> tuple[type[Event], Decimal, str]:
    """Mostly an event the table allows in `status` (so sequences get somewhere), sometimes any."""
    allowed = [e for s, e in TRANSITIONS if s is status for _ in range(WEIGHT.get(e, 1))]
    pick_any = not allowed or data.draw(st.integers(0, 3)) == 0
    event_type = data.draw(st.sampled_from(ORDER_EVENTS if pick_any else allowed))
    fill_qty = data.draw(st.integers(min_value=-1, max_value=6).map(D))  # sometimes invalid
    return event_type, fill_qty, data.draw(st.sampled_from(TRADE_IDS))


@settings(max_examples=200, deadline=None)
@given(
    quantity=st.integers(min_value=1, max_value=12).map(D),
    n_steps=st.integers(min_value=0, max_value=30),
    data=st.data(),
)
def test_random_event_sequences_follow_the_table_and_never_half_apply(quantity, n_steps, data):
    order = new_order(quantity)
    reachable = reachable_statuses()
    accepted_fills: dict[str, Decimal] = {}
    before_cancel: OrderStatus | None = None

    for ts in range(2, n_steps + 2):
        event_type, fill_qty, trade_id = draw_step(data, order.status)
        e = event(event_type, ts=ts, trade_id=trade_id, quantity=fill_qty)
        status = order.status
        snapshot, trade_ids = order.snapshot(), set(order.trade_ids)
        duplicate = event_type is OrderFilled and trade_id in trade_ids
        allowed = (status, event_type) in TRANSITIONS and (
            event_type is not OrderFilled or D(0) < fill_qty <= quantity - order.filled_quantity
        )

        if duplicate:
            assert order.apply(e) is False
        elif not allowed:
            with pytest.raises(InvalidOrderTransition):
                order.apply(e)
        else:
            assert order.apply(e) is True

        if duplicate or not allowed:
            # (a) nothing half-applied
            assert order.snapshot() == snapshot
            assert order.trade_ids == trade_ids
        else:
            # (a) applied per the table
            target = TRANSITIONS[(status, event_type)]
            if event_type is OrderCancelRequested and status is not S.PENDING_CANCEL:
                before_cancel = status
            if status is S.PENDING_CANCEL and event_type is OrderAccepted:
                before_cancel = S.ACCEPTED
            if status is S.PENDING_CANCEL and event_type is OrderFilled:
                before_cancel = S.PARTIALLY_FILLED
            if target is None:
                target = before_cancel
            if event_type is OrderFilled:
                accepted_fills[trade_id] = fill_qty
                if order.filled_quantity == quantity:
                    target = S.FILLED
            assert order.status is target
            assert order.ts_last == ts

        # (b) filled quantity is the sum of the distinct accepted fills, never above the order's
        assert order.filled_quantity == sum(accepted_fills.values(), D(0))
        assert order.filled_quantity <= quantity
        assert order.trade_ids == set(accepted_fills)
        # (c) FILLED exactly when nothing is left. This holds with the late-fill rules too: a fill
        # on a CANCELED or EXPIRED order keeps that status unless it completes the order (then
        # FILLED), and nothing leaves FILLED.
        assert (order.status is S.FILLED) == (order.filled_quantity == quantity)
        # (d) only statuses the table can reach
        assert order.status in reachable


# --- messages crossing a cancel request ---------------------------------------------------------


def test_cancel_rejected_after_a_fill_that_raced_the_request_is_applied():
    order = order_in(S.ACCEPTED)
    order.apply(OrderCancelRequested(4, OID))
    order.apply(fill("T-1", 4))
    order.apply(OrderCancelRejected(6, OID, "too late"))
    assert order.status is S.PARTIALLY_FILLED
    assert order.filled_quantity == D(4)


def test_acknowledgement_crossing_a_cancel_request_is_applied():
    order = order_in(S.SUBMITTED)
    order.apply(OrderCancelRequested(3, OID))
    order.apply(OrderAccepted(4, OID, "V-9"))
    assert order.venue_order_id == "V-9"
    order.apply(OrderCanceled(5, OID))
    assert order.status is S.CANCELED


def test_venue_rejection_crossing_a_cancel_request_is_applied():
    order = order_in(S.SUBMITTED)
    order.apply(OrderCancelRequested(3, OID))
    order.apply(OrderRejected(4, OID, "unknown symbol"))
    assert order.status is S.REJECTED
