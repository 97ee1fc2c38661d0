"""Retry and timeout policy of the execution client: an explicit, frozen configuration."""
from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with full jitter: retry k (0-based) waits uniform(0, min(cap, base * 2**k)).

    Full jitter (rather than base * 2**k plus a little noise) spreads the retries of many orders
    that failed together, so they do not hit a recovering venue in one burst.
    """

    base_s: float = 0.05
    cap_s: float = 1.0

    def __post_init__(self) -> None:
        if not self.base_s > 0:
            raise ValueError(f"base_s must be > 0, got {self.base_s}")
        if not self.cap_s >= self.base_s:
            raise ValueError(f"cap_s must be >= base_s ({self.base_s}), got {self.cap_s}")

    def ceiling(self, retry: int) -> float:
        """The longest wait before retry `retry` (0-based)."""
        return min(self.cap_s, self.base_s * 2.0 ** min(retry, 60))

    def draw(self, retry: int, rng: random.Random) -> float:
        return rng.uniform(0.0, self.ceiling(retry))


@dataclass(frozen=True, slots=True)
class ExecutionConfig:
    """How hard the client tries to send, and how long it waits to learn an order's fate.

    Parameters
    ----------
    max_send_attempts
        Transient errors beyond this many attempts reject the order, naming the last error.
    send_backoff
        Waits between send attempts (slept: keep them short).
    query_backoff
        Waits between status queries of an order in flight (scheduled by `poll`, never slept).
    ack_timeout_s
        A sent order with no acknowledgement after this long is settled by asking the venue.
    order_timeout_s
        An order with no definite venue status this long after it was sent is timed out.
    """

    max_send_attempts: int = 5
    send_backoff: Backoff = field(default_factory=lambda: Backoff(0.05, 1.0))
    query_backoff: Backoff = field(default_factory=lambda: Backoff(0.2, 2.0))
    ack_timeout_s: float = 2.0
    order_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if self.max_send_attempts < 1:
            raise ValueError(f"max_send_attempts must be >= 1, got {self.max_send_attempts}")
        if not self.ack_timeout_s > 0:
            raise ValueError(f"ack_timeout_s must be > 0, got {self.ack_timeout_s}")
        if not self.order_timeout_s > self.ack_timeout_s:
            raise ValueError(
                f"order_timeout_s must be > ack_timeout_s ({self.ack_timeout_s}), got {self.order_timeout_s}"
            )
