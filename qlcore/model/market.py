"""Market data values. Bars and ticks are NamedTuples: immutable and cheap to create in the hot loop.

Timestamps are integer nanoseconds since the epoch (`ts`); prices are floats here because they come
from research data — they become `Decimal` once, when an order fills.
"""
from __future__ import annotations

from typing import NamedTuple

import pandas as pd


class Bar(NamedTuple):
    symbol: str
    ts: int
    open: float
    high: float
    low: float
    close: float
    volume: float

    @property
    def time(self) -> pd.Timestamp:
        return pd.Timestamp(self.ts)


class Tick(NamedTuple):
    symbol: str
    ts: int
    price: float
    size: float


class Quote(NamedTuple):
    symbol: str
    ts: int
    bid: float
    ask: float
    bid_size: float
    ask_size: float
