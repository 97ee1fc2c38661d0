"""Exchange sessions from `exchange_calendars`, reduced to integer-ns bounds for a cheap check.

The calendar is loaded once per (name, first date) and kept as sorted lists of session opens and
closes (UTC ns, early closes and lunch breaks included). An order's check compares its timestamp
with the bounds of the session it last fell in; only when it leaves them is there a bisect.
"""
from __future__ import annotations

import warnings
from bisect import bisect_right
from functools import lru_cache

import pandas as pd

NS_PER_DAY = 86_400_000_000_000


class CalendarError(ValueError):
    """An unknown calendar name or a range `exchange_calendars` cannot provide."""


@lru_cache(maxsize=16)
def _load(name: str, start: str) -> tuple[list[int], list[int], list[int], list[int], dict[int, int]]:
    # a memo of immutable reference data, shared by every engine of the process: the calendar
    # is the same for all of them and costs ~0.2 s to build
    import exchange_calendars as xcals

    try:
        with warnings.catch_warnings():
            # exchange_calendars 4.x reads tz-aware Series.values, which pandas 3 deprecates
            warnings.filterwarnings("ignore", message="Series.values returning an ndarray")
            cal = xcals.get_calendar(name, start=start)
    except Exception as exc:  # InvalidCalendarName, a start before the calendar's first date, ...
        raise CalendarError(f"calendar {name!r} (from {start}): {exc}") from None
    sched = cal.schedule

    def ns(col: str) -> list[int]:
        column = sched[col]
        values = column.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[ns]").astype("int64")
        values[column.isna().to_numpy()] = 0  # no break that day
        return values.tolist()

    opens, closes, bstarts, bends = ns("open"), ns("close"), ns("break_start"), ns("break_end")
    labels = sched.index.to_numpy("datetime64[ns]").astype("int64") // NS_PER_DAY
    return opens, closes, bstarts, bends, {int(d): i for i, d in enumerate(labels)}


def fmt_ts(ts: int) -> str:
    """UTC time to the nanosecond: 2024-01-02 14:29:59.999999999."""
    seconds, ns = divmod(ts, 1_000_000_000)
    text = pd.Timestamp(seconds * 1_000_000_000).strftime("%Y-%m-%d %H:%M:%S")
    return f"{text}.{ns:09d}".rstrip("0") if ns else text


class SessionCalendar:
    """Is an engine timestamp (ns, UTC) inside a session of this exchange?"""

    __slots__ = (
        "_bhi",
        "_blo",
        "_day",
        "_hi",
        "_lo",
        "bends",
        "bstarts",
        "closes",
        "days",
        "mode",
        "name",
        "opens",
    )

    def __init__(self, name: str, mode: str = "session", start: str = "1990-01-01") -> None:
        if mode not in ("session", "date"):
            raise CalendarError(f"calendar mode must be 'session' or 'date', got {mode!r}")
        self.name, self.mode = name, mode
        self.opens, self.closes, self.bstarts, self.bends, self.days = _load(name, start)
        # the session the last order fell in: [lo, hi) minus the break [blo, bhi)
        self._lo = self._hi = self._blo = self._bhi = 0
        self._day = -1

    def is_open(self, ts: int) -> bool:
        """The cheap path: True when `ts` is inside the cached session (or session day)."""
        if self.mode == "date":
            return ts // NS_PER_DAY == self._day or self._find_day(ts)
        return (self._lo <= ts < self._hi and not self._blo <= ts < self._bhi) or self._find(ts)

    def session_open(self, ts: int) -> int | None:
        """The open of the session `ts` falls in (None outside sessions, or in "date" mode)."""
        return self._lo if self.mode == "session" and self.is_open(ts) else None

    def _find_day(self, ts: int) -> bool:
        day = ts // NS_PER_DAY
        if day in self.days:
            self._day = day
            return True
        return False

    def _find(self, ts: int) -> bool:
        i = bisect_right(self.opens, ts) - 1
        if i < 0 or ts >= self.closes[i]:
            return False
        self._lo, self._hi, self._blo, self._bhi = self.opens[i], self.closes[i], self.bstarts[i], self.bends[i]
        return not self._blo <= ts < self._bhi

    def explain(self, ts: int) -> tuple[str, str]:
        """(limit, value) texts for a timestamp outside the sessions."""
        at = f"order at {fmt_ts(ts)} UTC"
        if ts < self.opens[0] or ts >= self.closes[-1]:
            span = f"{fmt_ts(self.opens[0])[:10]}..{fmt_ts(self.closes[-1])[:10]}"
            return f"{self.name} calendar {span}", f"{at} is outside it"
        i = self.days.get(ts // NS_PER_DAY)
        date = fmt_ts(ts)[:10]
        if i is None:
            return f"{self.name} sessions only", f"{at} ({date} is not an {self.name} session: holiday or weekend)"
        hours = f"{fmt_ts(self.opens[i])[11:]}..{fmt_ts(self.closes[i])[11:]} UTC"
        if self.bstarts[i] and self.bstarts[i] <= ts < self.bends[i]:
            hours += f" (break {fmt_ts(self.bstarts[i])[11:]}..{fmt_ts(self.bends[i])[11:]})"
        return f"{self.name} session {date} {hours}", at
