"""Fault injection: 50 clients flood a running engine with orders while the kill switch is pulled.

A real store (a SQLite file, and PostgreSQL when QLCORE_TEST_PG_URL is set), a real paper engine
looping in its own thread, 50 client threads submitting orders through the command table. A backlog
is made certain by holding the engine between two of its turns while the clients submit a round
(no timing is relied on); the halt is sent behind that backlog and the engine let go while the
clients go on flooding. Order is judged by the event log's sequence numbers, never by clocks.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from signed import signer
from sqlalchemy import Engine, create_engine

from qlcore.control.commands import CommandLimits, CommandQueue
from qlcore.engine.service import EngineConfig, EngineService
from qlcore.events.facts import CommandCompleted
from qlcore.events.store import EventStore
from qlcore.events.types import OrderSubmitted
from qlcore.store.db import dispose_all

CLIENTS = 50
PER_ROUND = 4  # orders per client in each of the three rounds
TARGET = "flood"
BOUND_S = 300.0  # generous: a loaded 2-core machine, 600 orders through a real store


class GatedLoop:
    """The engine's loop in a thread, which the test can hold between two turns."""

    def __init__(self, engine: EngineService) -> None:
        self.engine = engine
        self.open = threading.Event()
        self.done = threading.Event()
        self.turn = threading.Lock()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            while not self.done.is_set():
                if not self.open.wait(0.01):
                    continue
                with self.turn:
                    if self.open.is_set():
                        self.engine.step()
        except BaseException as exc:  # reported by the test
            self.error = exc

    def hold(self) -> None:
        """Return once the engine is between turns and will take no other until `release`."""
        self.open.clear()
        with self.turn:
            pass

    def release(self) -> None:
        self.open.set()

    def wait_until(self, condition: Callable[[], bool], what: str) -> None:
        stop = threading.Event()
        for _ in range(int(BOUND_S / 0.05)):
            if self.error is not None:
                raise AssertionError(f"the engine loop failed: {self.error!r}") from self.error
            if condition():
                return
            stop.wait(0.05)
        raise AssertionError(f"not within {BOUND_S} s: {what}")


def _clients_engine(url: str) -> Engine:
    """The clients' own connections (the engine keeps its pool): 8 shared by the 50 threads."""
    sqlite = url.startswith("sqlite")
    return create_engine(url, pool_size=8, max_overflow=0, pool_timeout=BOUND_S,
                         connect_args={"timeout": 60} if sqlite else {})


def _round(queue: CommandQueue, n: int) -> list[int]:
    """Each of the clients submits `n` orders at once, concurrently; the ids, in no particular order."""
    ids: list[int] = []
    lock = threading.Lock()
    errors: list[BaseException] = []
    start = threading.Barrier(CLIENTS)

    def client(i: int) -> None:
        try:
            start.wait(BOUND_S)
            mine = [queue.submit(f"client-{i:02d}", "order.submit",
                                 {"strategy_id": f"flood-{i % 5}", "symbol": ("AAPL", "MSFT")[k % 2],
                                  "side": ("BUY", "SELL")[(i + k) % 2], "quantity": "1"}, target=TARGET)
                    for k in range(n)]
            with lock:
                ids.extend(mine)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(BOUND_S)
    assert not errors, errors[:3]
    assert len(ids) == CLIENTS * n
    return ids


@pytest.fixture
def url(store_url):
    yield store_url
    dispose_all()


def test_a_halt_behind_a_flood_of_orders_goes_first_and_no_order_is_accepted_after_it(url, tmp_path: Path):
    engine = EngineService(EngineConfig(
        engine_id=TARGET, url=url, venue_path=tmp_path / "venue.sqlite", symbols=("AAPL", "MSFT"), speed=50.0,
        command_poll_s=0.0, max_commands_per_turn=25,
    ))
    engine.start()
    loop = GatedLoop(engine)
    clients_db = _clients_engine(url)
    queue = CommandQueue(engine=clients_db, signer=signer(), limits=CommandLimits(max_pending=0, max_per_s=0))
    loop.thread.start()
    try:
        loop.release()
        first = _round(queue, PER_ROUND)  # taken while the clients flood
        loop.wait_until(lambda: any(queue.status(c).done for c in first), "the engine handled an order of the first round")

        loop.hold()
        backlog = _round(queue, PER_ROUND)  # certainly waiting when the halt is sent
        halt = queue.submit("risk-officer", "halt", {"reason": "flood"}, target=TARGET)
        waiting = {c.id for c in queue.pending(TARGET, limit=10 * CLIENTS * PER_ROUND)}
        assert set(backlog) <= waiting and halt in waiting

        flooding = threading.Thread(target=lambda: last.extend(_round(queue, PER_ROUND)))
        last: list[int] = []
        loop.release()
        flooding.start()
        flooding.join(BOUND_S)
        assert len(last) == CLIENTS * PER_ROUND
        every = [*first, *backlog, *last]
        loop.wait_until(lambda: not queue.pending(TARGET, limit=1) and queue.status(max(every)).done
                        and all(queue.status(c).done for c in (halt, *backlog[-5:], *last[-5:])),
                        "every command handled")
    finally:
        loop.done.set()
        loop.thread.join(BOUND_S)
        engine.shutdown()
        clients_db.dispose()
    assert loop.error is None, repr(loop.error)

    seq_of: dict[int, tuple[int, CommandCompleted]] = {}
    submitted_after: list[int] = []
    halt_seq = None
    for seq, event in EventStore(url).iter_events(engine.config.stream):
        if type(event) is CommandCompleted:
            seq_of[event.command_id] = (seq, event)
            if event.command_id == halt:
                halt_seq = seq
        elif type(event) is OrderSubmitted and halt_seq is not None:
            submitted_after.append(seq)  # an order that passed the risk chain after the halt
    assert halt_seq is not None and seq_of[halt][1].accepted
    assert set(seq_of) >= set(every) | {halt}, "an order command was never completed in the log"

    # the halt went before every order that was waiting when it was sent
    assert all(seq_of[c][0] > halt_seq for c in backlog)
    # no order is accepted after the halt's completion, and nothing reached the venue after it
    after = [seq_of[c][1] for c in every if seq_of[c][0] > halt_seq]
    assert len(after) >= len(backlog) + len(last)
    assert all(not e.accepted and "account mode HALTED" in e.reason for e in after), \
        {e.reason for e in after if e.accepted or "HALTED" not in e.reason}
    assert submitted_after == []
    # the flood was real: orders before the halt were accepted, and the table agrees with the log
    assert any(seq_of[c][1].accepted for c in first)
    for c in (*backlog, halt):
        stored = queue.status(c)
        assert (stored.status == "accepted") is seq_of[c][1].accepted and stored.reason == seq_of[c][1].reason
