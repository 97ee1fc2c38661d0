"""Clocks. The kernel reads `clock.now` (integer nanoseconds); who advances it is the run mode's business."""
from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    @property
    def now(self) -> int: ...


class BacktestClock:
    """Simulated time, set by the backtest loop to each bar's timestamp."""

    __slots__ = ("now",)

    def __init__(self, start: int = 0) -> None:
        self.now = start


class WallClock:
    """Real time (paper and live modes)."""

    @property
    def now(self) -> int:
        return time.time_ns()
