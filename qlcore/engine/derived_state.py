"""State the engine derives from its log that would be slow to derive again from the first event.

The risk monitors' drawdown peaks, daily baselines and VaR window depend on every price and fill the
engine has seen. A restart could feed the whole log through them again, one evaluation per logged
step; instead the engine saves their state every few seconds with the sequence number of the last
event it reflects (the log is committed first), and a restart loads it and feeds only the events
logged after that number. A missing or unreadable row means feeding the log from the start: slower,
same result.

Strategies keep what their indicators cannot rebuild (a rebalance cadence) the same way: their
`save_state` is saved with the market time it reflects; a restart loads it and the warm-up hands them
the bars after that time.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Engine, delete, insert, select

from qlcore.store.tables import engine_derived_state

MONITORS = "monitors"
STRATEGIES = "strategies"  # each strategy's `save_state`, with the market time it reflects


@dataclass(frozen=True, slots=True)
class Saved:
    seq: int
    body: dict[str, Any]


def save(db: Engine, engine_id: str, part: str, stream: str, seq: int, body: dict[str, Any]) -> None:
    """Replace `part` of `engine_id`'s saved state with `body`, valid for `stream` up to `seq`."""
    c = engine_derived_state.c
    row = {
        "engine_id": engine_id, "part": part, "stream": stream, "seq": seq, "saved_at": time.time_ns(),
        "body": orjson.dumps(body).decode(),
    }
    with db.begin() as conn:
        conn.execute(delete(engine_derived_state).where(c.engine_id == engine_id, c.part == part))
        conn.execute(insert(engine_derived_state).values(**row))


def load(db: Engine, engine_id: str, part: str, stream: str) -> Saved | None:
    """The saved `part`, or None when there is none for this stream or it cannot be read."""
    c = engine_derived_state.c
    with db.connect() as conn:
        row = conn.execute(
            select(c.seq, c.body).where(c.engine_id == engine_id, c.part == part, c.stream == stream)
        ).first()
    if row is None:
        return None
    try:
        body = orjson.loads(row.body)
    except orjson.JSONDecodeError:
        return None
    return Saved(int(row.seq), body) if isinstance(body, dict) else None
