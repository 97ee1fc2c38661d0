"""Pausing the cyclic garbage collector around tight loops.

A replay or a backtest allocates hundreds of thousands of small long-lived objects (orders,
events); the generational collector rescans them again and again, which costs more than the work
itself. These loops create no reference cycles worth collecting, so the collector is paused while
they run and restored afterwards.
"""
from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
