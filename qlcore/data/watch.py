"""A feed that stops delivering, noticed on the wall clock.

The ingestion gate checks bars against market time, and a feed that sends nothing at all leaves market
time standing still: its silence shows only on the wall clock. `FeedWatch.observe` is told after every
poll how many bars came and whether the feed is exhausted, and moves the feed's health along

    LIVE --silent stale_after_s--> STALE --silent reduce_after_s--> DOWN
      ^                                                              |
      +------------------------ the next bar ------------------------+   (STALE goes back the same way)

returning the new health when it changes (the engine alerts on each change, and moves the account to
REDUCING on DOWN: see `qlcore.engine.service`). An exhausted feed is finished, not silent.

Silence counts only while the exchange named by ``calendar`` (an `exchange_calendars` name such as
``"XNYS"``) is in session on the wall clock, and from the later of the last bar and the session's
open: a live feed of a real market is quiet at night. Without a calendar every second counts: the
paper feeds (a replay of history, the synthetic stream) deliver at their own pace at any hour.

``slack_s`` is the feed's own time between two steps, added to both limits, so a slow replay (one
step a minute) is not stale between its steps.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from qlcore.data.feed import NS_PER_SECOND, FeedClock


class FeedHealth(StrEnum):
    LIVE = "live"  # bars arrive
    STALE = "stale"  # silent for stale_after_s: alert
    DOWN = "down"  # silent for reduce_after_s: the account reduces


@dataclass(frozen=True, slots=True)
class WatchConfig:
    """When a silent feed is stale, and when it is down (wall seconds); whose sessions count."""

    stale_after_s: float = 5.0
    reduce_after_s: float = 30.0
    calendar: str | None = None

    def __post_init__(self) -> None:
        for name in ("stale_after_s", "reduce_after_s"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"feed watch {name} must be a positive number of seconds, got {value!r}")
        if self.reduce_after_s < self.stale_after_s:
            raise ValueError(f"feed watch reduce_after_s ({self.reduce_after_s:g}) must be >= stale_after_s "
                             f"({self.stale_after_s:g}): a feed is stale before the account reduces")
        if self.calendar is not None:
            from qlcore.risk.calendar import SessionCalendar

            SessionCalendar(self.calendar)  # an unknown name is refused here, naming it (CalendarError)


class FeedWatch:
    """The health of one feed from what each poll brought (see the module docstring)."""

    def __init__(
        self, config: WatchConfig, clock: FeedClock, *, slack_s: float = 0.0, health: FeedHealth = FeedHealth.LIVE
    ) -> None:
        self.config = config
        self.clock = clock
        self.health = health  # DOWN: a restart after the feed put the account in REDUCING
        self.slack_ns = round(max(slack_s, 0.0) * NS_PER_SECOND)
        self._calendar = None
        if config.calendar is not None:
            from qlcore.risk.calendar import SessionCalendar

            self._calendar = SessionCalendar(config.calendar)
        now = clock.now
        self.last_bar_ns = now  # wall time of the last bar (or of the start)
        self._since = now  # silence counted from here: the last bar, or the last moment out of session

    def silent_s(self) -> float:
        """Wall seconds since the last bar (or since the watch started)."""
        return max(self.clock.now - self.last_bar_ns, 0) / NS_PER_SECOND

    def limit_ns(self, health: FeedHealth) -> int:
        """The silence after which the feed is `health` (STALE or DOWN), slack included."""
        seconds = self.config.stale_after_s if health is FeedHealth.STALE else self.config.reduce_after_s
        return round(seconds * NS_PER_SECOND) + self.slack_ns

    def observe(self, delivered: int, exhausted: bool) -> FeedHealth | None:
        """After a poll that brought `delivered` bars: the new health if it changed, else None."""
        now = self.clock.now
        if delivered or exhausted:
            if delivered:
                self.last_bar_ns = now
            self._since = now
            return self._become(FeedHealth.LIVE)
        if self._calendar is not None:
            opened = self._calendar.session_open(now)
            if opened is None:  # out of session: quiet is expected
                self._since = now
                return None
            self._since = max(self._since, opened)  # the count starts at the open at the earliest
        silent = now - self._since
        if silent > self.limit_ns(FeedHealth.DOWN):
            return self._become(FeedHealth.DOWN)
        if silent > self.limit_ns(FeedHealth.STALE) and self.health is FeedHealth.LIVE:
            return self._become(FeedHealth.STALE)
        return None

    def _become(self, health: FeedHealth) -> FeedHealth | None:
        if health is self.health:
            return None
        self.health = health
        return health
