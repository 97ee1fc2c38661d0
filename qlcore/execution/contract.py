"""What the execution client needs from a broker beyond `Broker`: typed failures and a status query.

A broker call can fail in two ways that must never be confused:

* `TransientBrokerError` (HTTP 5xx, refused or dropped connection before the request went out): the
  order did NOT reach the venue, so sending it again with the same client order id is safe.
* `AmbiguousOutcome` (a timeout or lost acknowledgement): the order may be at the venue. Sending it
  again could double the position, so the only safe move is to ask the venue (`query`).
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from qlcore.brokers.base import Broker


class BrokerError(Exception):
    """A broker call that did not complete normally."""


class TransientBrokerError(BrokerError):
    """The request did not reach the venue; it may be sent again with the same client order id."""


class BrokerDisconnected(TransientBrokerError):
    """The connection dropped before the request was sent."""


class AmbiguousOutcome(BrokerError):
    """The request may have reached the venue (timeout, lost acknowledgement): ask, never resend."""


class VenueStatus(StrEnum):
    UNKNOWN = "UNKNOWN"  # the venue has no order with this client order id (yet)
    WORKING = "WORKING"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    REJECTED = "REJECTED"
    CANCELED = "CANCELED"
    EXPIRED = "EXPIRED"


@dataclass(frozen=True, slots=True)
class VenueOrderStatus:
    """The venue's answer to a status query."""

    client_order_id: str
    status: VenueStatus
    venue_order_id: str = ""
    reason: str = ""


class QueryableBroker(Broker, Protocol):
    """A broker that can say what the venue knows about an order, by client order id."""

    def query(self, client_order_id: str) -> VenueOrderStatus: ...
