"""Bars against an exchange calendar: the sessions a data set is missing, and bars on days that
are not sessions.

Sessions come from `exchange_calendars` (XNYS, XNAS, XLON, XETR, XEUR, ...; holidays, closures
such as 2001-09-11 and 2012-10-29 included). A bar belongs to the session of its exchange-local
date: a tz-aware index is converted to the calendar's zone first, a naive one is taken as
exchange-local time already. Only sessions between the first and the last bar are expected.

Consecutive missing sessions form one gap; a gap of more than ``hole_sessions`` sessions is a
*hole* (a month of data that never arrived), shorter ones are *missing sessions*.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from qlcore.data.errors import DataOptionError

HOLE_SESSIONS = 5  # a gap of more sessions than this is a hole (a week of sessions, at most, is missing)
_SHOWN = 60  # gaps listed in the text rendering; the rest are counted


@dataclass(frozen=True, slots=True)
class SessionGap:
    """Sessions without bars (``kind`` ``"missing"`` or ``"hole"``), or a day with bars that is not
    a session (``"off_calendar"``); ``first`` .. ``last`` are dates, ``sessions`` their count."""

    kind: str
    first: pd.Timestamp
    last: pd.Timestamp
    sessions: int
    calendar: str

    def __str__(self) -> str:
        span = f"{self.first:%Y-%m-%d} .. {self.last:%Y-%m-%d}"
        if self.kind == "hole":
            return f"hole: {self.sessions:,} {self.calendar} sessions missing, {span}"
        if self.kind == "off_calendar":
            return f"bars on {self.first:%Y-%m-%d}, which is not an {self.calendar} session"
        if self.sessions == 1:
            return f"missing session {self.first:%Y-%m-%d}"
        return f"{self.sessions} missing sessions {span}"


@dataclass(frozen=True, slots=True)
class CalendarCheck:
    """The sessions a data set covers on one exchange calendar, and its gaps in date order."""

    calendar: str
    first: pd.Timestamp
    last: pd.Timestamp
    sessions: int  # expected between the first and last bar
    gaps: tuple[SessionGap, ...]
    hole_sessions: int = HOLE_SESSIONS

    @property
    def ok(self) -> bool:
        """True when every session has bars and every bar is on a session."""
        return not self.gaps

    @property
    def missing(self) -> int:
        """Sessions without bars (in holes and otherwise)."""
        return sum(g.sessions for g in self.gaps if g.kind != "off_calendar")

    @property
    def holes(self) -> int:
        return sum(1 for g in self.gaps if g.kind == "hole")

    @property
    def off_calendar(self) -> int:
        return sum(1 for g in self.gaps if g.kind == "off_calendar")

    def summary(self) -> str:
        """``"124 sessions missing, 1 hole of more than 5 sessions"``; ``"none"`` when ok."""
        parts = []
        if self.missing:
            parts.append(f"{self.missing:,} {self.calendar} sessions missing")
        if self.holes:
            parts.append(f"{self.holes} hole{'s' if self.holes > 1 else ''} of more than "
                         f"{self.hole_sessions} sessions")
        if self.off_calendar:
            parts.append(f"{self.off_calendar} days with bars off the calendar")
        return ", ".join(parts) or "none"

    def lines(self) -> list[str]:
        """The summary line and one line per gap (the first `_SHOWN`), for reports."""
        head = (f"calendar {self.calendar}: {self.sessions:,} sessions {self.first:%Y-%m-%d} .. "
                f"{self.last:%Y-%m-%d}")
        if self.ok:
            return [f"{head}, every one with bars; gaps: none"]
        lines = [f"{head}; gaps: {self.summary()}"]
        lines += [f"  {gap}" for gap in self.gaps[:_SHOWN]]
        if len(self.gaps) > _SHOWN:
            lines.append(f"  ... and {len(self.gaps) - _SHOWN:,} more")
        return lines


def check_sessions(
    index: pd.DatetimeIndex | pd.DataFrame, calendar: str = "XNYS", hole_sessions: int = HOLE_SESSIONS
) -> CalendarCheck:
    """Compare the bar dates of a frame (or its index) with the sessions of ``calendar``."""
    if isinstance(index, pd.DataFrame):
        index = pd.DatetimeIndex(index.index)
    if hole_sessions < 1:
        raise DataOptionError("hole_sessions (--hole-sessions)", f"must be at least 1, got {hole_sessions}")
    if len(index) == 0:
        raise DataOptionError("calendar (--calendar)", "no bars to compare with the calendar")
    zone = calendar_zone(calendar)
    local = index.tz_convert(zone).tz_localize(None) if index.tz is not None else index
    days = pd.DatetimeIndex(np.unique(local.normalize().as_unit("ns")))
    first, last = days[0], days[-1]
    sessions = _sessions(calendar, f"{first:%Y-%m-%d}", f"{last:%Y-%m-%d}")
    gaps = _missing(sessions, days, calendar, hole_sessions)
    gaps += [SessionGap("off_calendar", d, d, 0, calendar) for d in days.difference(sessions)]
    gaps.sort(key=lambda g: g.first)
    return CalendarCheck(calendar, first, last, len(sessions), tuple(gaps), hole_sessions)


def calendar_zone(calendar: str) -> str:
    """The IANA zone of an exchange calendar, e.g. ``America/New_York`` for XNYS."""
    return str(_calendar(calendar, None, None).tz)


def _missing(sessions: pd.DatetimeIndex, days: pd.DatetimeIndex, calendar: str, hole: int) -> list[SessionGap]:
    missing = np.flatnonzero(~sessions.isin(days))
    if not len(missing):
        return []
    breaks = np.flatnonzero(np.diff(missing) > 1) + 1
    gaps = []
    for run in np.split(missing, breaks):
        n = len(run)
        gaps.append(SessionGap("hole" if n > hole else "missing", sessions[run[0]], sessions[run[-1]], n, calendar))
    return gaps


def _sessions(calendar: str, start: str, end: str) -> pd.DatetimeIndex:
    # the calendar's own bounds must be sessions; the data's first and last days need not be
    pad = pd.Timedelta(days=14)
    cal = _calendar(calendar, f"{pd.Timestamp(start) - pad:%Y-%m-%d}", f"{pd.Timestamp(end) + pad:%Y-%m-%d}")
    sessions = pd.DatetimeIndex(cal.sessions).as_unit("ns")
    return sessions[(sessions >= pd.Timestamp(start)) & (sessions <= pd.Timestamp(end))]


@lru_cache(maxsize=32)
def _calendar(name: str, start: str | None, end: str | None) -> Any:
    # immutable reference data, the same for every caller; building one costs ~0.1 s
    import exchange_calendars as xcals

    try:
        with warnings.catch_warnings():
            # exchange_calendars 4.x reads tz-aware Series.values, which pandas 3 deprecates
            warnings.filterwarnings("ignore", message="Series.values returning an ndarray")
            if start is None:
                return xcals.get_calendar(name)
            return xcals.get_calendar(name, start=start, end=end)
    except xcals.errors.InvalidCalendarName:
        raise DataOptionError("calendar (--calendar)",
                              f"{name!r} is not an exchange calendar; expected a name such as XNYS, XNAS, "
                              "XLON, XETR, XEUR (exchange_calendars)") from None
    except (ValueError, xcals.errors.CalendarError) as exc:  # dates outside what the calendar covers
        raise DataOptionError("calendar (--calendar)", f"{name} cannot cover {start} .. {end}: {exc}") from None
