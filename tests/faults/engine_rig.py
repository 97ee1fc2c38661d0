"""A paper engine on a real SQLite store and venue ledger, fed bars by the test itself."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from signed import signer
from sqlalchemy import update

from qlcore.control.commands import Command, CommandQueue
from qlcore.engine.service import EngineConfig, EngineService
from qlcore.model.market import Bar
from qlcore.store.db import dispose_all
from qlcore.store.tables import engine_status

NS = 1_000_000_000
TARGET = "t"
STREAM = f"engine-{TARGET}"


class Silent:
    """A feed with no bars: the tests hand the engine their own."""

    exhausted = False

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def poll(self, max_steps: int | None = None) -> list[Bar]:
        return []

    def __iter__(self):
        return iter(())


def start_engine(url: str, tmp_path: Path, monotonic: Any = None, **kw: Any) -> EngineService:
    # the tests count fills bar by bar: an order fills on arrival, in the turn that sent it
    kw.setdefault("fill_on_arrival", True)
    # the feed is silent on purpose (the tests hand the bars): the feed watch must not reduce the account
    kw.setdefault("feed_stale_s", 1e9)
    kw.setdefault("feed_reduce_s", 1e9)
    config = EngineConfig(engine_id=TARGET, url=url, venue_path=tmp_path / "venue.sqlite", symbols=("AAPL", "MSFT"),
                          command_poll_s=0.0, **kw)
    engine = EngineService(config, feed=Silent(), **({"monotonic": monotonic} if monotonic else {}))
    engine.start()
    return engine


def crash(engine: EngineService) -> None:
    """Drop the engine as SIGKILL would: nothing more committed; its lease is free for the next one."""
    engine.venue.close()
    with engine.db.begin() as conn:
        conn.execute(update(engine_status).values(heartbeat_at=0))
    dispose_all()


def feed_bars(engine: EngineService, start: int, n: int, symbols: tuple[str, ...] = ("AAPL", "MSFT")) -> None:
    """Bars at seconds `start` .. `start + n - 1`, each step a turn of the engine's loop."""
    for i in range(start, start + n):
        for symbol in symbols:
            px = 100.0 + i
            engine.on_bar(Bar(symbol, i * NS, px, px + 1, px - 1, px, 1_000_000.0))
        engine.step()


def command(engine: EngineService, user: str, kind: str, payload: dict[str, Any], turns: int = 2) -> Command:
    """Send one command through the command table; the engine's outcome after `turns` turns."""
    queue = CommandQueue(engine.url, signer=signer())
    cid = queue.submit(user, kind, payload, target=TARGET)
    for _ in range(turns):
        engine.step()
    return queue.status(cid)
