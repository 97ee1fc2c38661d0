"""The kill switch: one command that halts the account, cancels every open order and can flatten.

`halt` reads top to bottom:

1. the account goes HALTED first, so nothing new goes out while the switch works (a strategy
   reacting to a cancel or a fill is denied by the `ModeGate`);
2. every open order gets a cancel request through `Kernel.cancel_order` (cancels never pass a risk
   hook, so HALTED does not block them); the broker confirms each with `OrderCanceled`;
3. with ``flatten=True``, every strategy's position gets a market order to zero, tagged
   `FLATTEN_TAG` and sent inside `TradingModes.unwind`: the gate lets exactly those orders through
   HALTED, and only when they close (never flip) their strategy's position.

`resume_trading` takes the account back to ACTIVE; only an authorised user may.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from qlcore.events.facts import TradingModeChanged
from qlcore.model.enums import OrderStatus
from qlcore.risk.modes import ACCOUNT, FLATTEN_TAG, TradingMode, TradingModes

if TYPE_CHECKING:
    from qlcore.engine.kernel import Kernel


@dataclass(frozen=True, slots=True)
class HaltSummary:
    """What `halt` did. Ids are client order ids."""

    mode_change: TradingModeChanged | None  # None: the account was already HALTED
    cancels_requested: tuple[str, ...]
    cancels_confirmed: tuple[str, ...]  # canceled by the broker by the time `halt` returned
    cancels_failed: tuple[tuple[str, str], ...]  # (order id, why): e.g. filled before the request
    flatten_orders: tuple[str, ...]  # sent to the broker
    flatten_denied: tuple[tuple[str, str], ...]  # (order id, the risk chain's reason)

    @property
    def cancels_unconfirmed(self) -> tuple[str, ...]:
        """Requested but not yet confirmed (an asynchronous broker confirms later)."""
        confirmed = set(self.cancels_confirmed)
        return tuple(oid for oid in self.cancels_requested if oid not in confirmed)


def halt(kernel: Kernel, modes: TradingModes, *, reason: str, actor: str, flatten: bool = False) -> HaltSummary:
    """Halt the account, cancel every open order and, with `flatten`, close every position at market.

    Raises ValueError, before doing anything, if the kernel's risk hook (a `RiskChain`, or a bare
    `ModeGate`) does not hold `modes` (the halt would not stop new orders) or if `reason` is empty.
    """
    if not reason:
        raise ValueError("kill switch: a reason is required")
    if getattr(kernel.risk, "modes", None) is not modes:
        raise ValueError(
            "kill switch: the kernel's risk hook does not enforce these trading modes, so HALTED would "
            "not stop new orders; give the kernel the RiskChain whose `modes` these are"
        )
    change = modes.restrict(ACCOUNT, TradingMode.HALTED, reason=f"kill switch: {reason}", actor=actor)

    requested: list[str] = []
    failed: list[tuple[str, str]] = []
    for order in kernel.state.open_orders():
        if order.status is OrderStatus.PENDING_CANCEL:
            requested.append(order.order_id)  # already asked: wait for the same confirmation
            continue
        try:
            kernel.cancel_order(order.order_id)
        except ValueError as exc:  # OrderError: it stopped being open meanwhile
            failed.append((order.order_id, str(exc)))
            continue
        requested.append(order.order_id)
    orders = kernel.state.orders
    confirmed = [oid for oid in requested if orders[oid].status is OrderStatus.CANCELED]

    sent: list[str] = []
    denied: list[tuple[str, str]] = []
    if flatten:
        with modes.unwind():
            for sid, symbol in list(kernel.state.positions):
                oid = kernel.close_position(sid, symbol, tags=FLATTEN_TAG)
                if oid is None:
                    continue
                order = orders[oid]
                if order.status is OrderStatus.DENIED:
                    denied.append((oid, order.reason or ""))
                else:
                    sent.append(oid)
    return HaltSummary(change, tuple(requested), tuple(confirmed), tuple(failed), tuple(sent), tuple(denied))


def resume_trading(modes: TradingModes, actor: str, reason: str) -> TradingModeChanged:
    """Take the account back to ACTIVE; raises `NotAuthorisedError` for an actor not configured."""
    return modes.resume(ACCOUNT, actor, reason)
