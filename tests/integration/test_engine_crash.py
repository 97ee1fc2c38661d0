"""The engine killed with SIGKILL at seeded random moments, restarted, reconciled: nothing lost, nothing doubled.

Each cycle forks a process that runs a paper engine (synthetic 1-second bars at high speed, busy
strategies, and order commands from this process) and kills it with SIGKILL after a seeded random
delay. After the last cycle a clean start reconciles once more and stops. Then, against the venue's
own ledger (which survives the engine like a real broker would):

- no client order id reached the venue twice, and every venue order is in the log;
- every venue fill is in the log exactly once (no lost fills, no doubled ones);
- the net position per instrument from the replayed log equals the venue's;
- every accepted order command made exactly one order;
- the log replays without error to the state the last engine had.

`make test` runs 50 kills on SQLite, 25 on SQLite with synchronous=NORMAL (the background
checkpointer at work) and 50 on PostgreSQL; `make stress` runs QLCORE_STRESS_KILLS (200 by default
there) on each.
"""
from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest
from signed import signer

from qlcore.brokers.paper import PaperVenue
from qlcore.control.commands import CommandQueue
from qlcore.engine.service import EngineConfig, EngineService
from qlcore.events.facts import ReconciliationDifference
from qlcore.events.replay import replay
from qlcore.events.store import EventStore
from qlcore.events.types import OrderFilled, OrderInitialized
from qlcore.store.db import dispose_all

KILLS = int(os.environ.get("QLCORE_STRESS_KILLS", "0"))
SYMBOLS = ("AAPL", "MSFT", "IBM")


def _config(url: str, venue: Path) -> EngineConfig:
    return EngineConfig(
        engine_id="crash",
        url=url,
        venue_path=venue,
        feed="synthetic",
        symbols=SYMBOLS,
        speed=2000.0,
        seed=7,
        latency_ms=0.0,
        participation=0.5,
        poll_interval_s=0.001,
        heartbeat_s=0.05,
    )


def _run_child(url: str, venue: Path, first: bool, ready) -> None:
    dispose_all()  # never share the parent's pooled connections
    service = EngineService(_config(url, venue))
    service.start()
    if first:
        for i, sym in enumerate(SYMBOLS):
            service.manager.deploy(
                "sma_cross", {"fast": 2, "slow": 4, "quantity": 10 + i}, symbols=[sym], allocation=100_000,
                strategy_id=f"churn-{sym}", actor="test",
            )
            service.manager.deploy(
                "mean_reversion", {}, symbols=[sym], allocation=100_000, strategy_id=f"mr-{sym}", actor="test"
            )
        service.writer.flush()
    ready.set()
    service.run()


def _cycle(url: str, venue: Path, delay: float, first: bool, from_ready: bool) -> int:
    """Fork an engine and SIGKILL it `delay` seconds later: counted from the fork (the kill may land in
    recovery) or, with `from_ready`, from the end of its start (it lands while trading, however slow
    a loaded machine makes the recovery)."""
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    proc = ctx.Process(target=_run_child, args=(url, venue, first, ready), daemon=True)
    proc.start()
    if from_ready:
        assert ready.wait(60), "the engine did not finish starting within 60 s"
    time.sleep(delay)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(10)
    return proc.exitcode or 0


def _crash_and_check(url: str, tmp_path: Path, kills: int, seed: int) -> dict[str, int]:
    venue_path = tmp_path / "venue.sqlite"
    rng = random.Random(seed)
    dispose_all()
    queue = CommandQueue(url, signer=signer())
    submitted: list[int] = []
    for n in range(kills):
        # commands arrive while the engine runs and while it is down
        for _ in range(rng.randint(0, 3)):
            sym = rng.choice(SYMBOLS)
            submitted.append(
                queue.submit(
                    "tester", "order.submit",
                    {"strategy_id": "manual", "symbol": sym, "side": rng.choice(["BUY", "SELL"]),
                     "quantity": str(rng.randint(1, 20))},
                    target="crash",
                )
            )
        dispose_all()
        code = _cycle(url, venue_path, rng.uniform(0.1, 0.7), first=(n == 0), from_ready=(n % 2 == 0))
        assert code == -signal.SIGKILL, f"cycle {n}: the engine ended by itself with {code} before the kill"

    # a clean start: rebuild, reconcile, a few turns, clean stop
    dispose_all()
    final = EngineService(_config(url, venue_path))
    final.start()
    assert final.reconciliation.passed, final.reconciliation.summary()
    deadline = time.monotonic() + 10
    while queue.pending("crash", limit=1) and time.monotonic() < deadline:
        final.step()
    final.stop("test done")
    final.shutdown()
    final_hash = final.kernel.state.state_hash()

    store = EventStore(url)
    result = replay(store, "engine-crash")  # raises on any corrupt or gapped row
    assert result.state.state_hash() == final_hash
    state = result.state
    events = store.events("engine-crash")

    venue = PaperVenue(venue_path)
    try:
        assert venue.duplicate_submits == 0
        venue_fills = venue.fills()
        venue_positions = venue.positions()
        venue_orders = venue.order_count()
        for fill in venue_fills:
            assert fill.client_order_id in state.orders, f"venue order {fill.client_order_id} unknown to the log"
    finally:
        venue.close()

    log_fills = [e for e in events if type(e) is OrderFilled]
    log_trades = Counter(f.trade_id for f in log_fills)
    assert max(log_trades.values(), default=1) == 1, "a fill was applied twice"
    assert set(log_trades) == {f.trade_id for f in venue_fills}, "fills lost or invented"
    net: dict[str, Decimal] = {}
    for (_sid, sym), pos in state.positions.items():
        net[sym] = net.get(sym, Decimal(0)) + pos.quantity
    assert {s: q for s, q in net.items() if q} == {s: q for s, q in venue_positions.items() if q}

    by_command = Counter(
        e.tags.split()[0] for e in events if type(e) is OrderInitialized and e.tags.startswith("command:")
    )
    assert max(by_command.values(), default=1) == 1, "a command made two orders"
    for command_id in submitted:
        cmd = queue.status(command_id)
        assert cmd.done, f"command {command_id} never completed"
        if cmd.status == "accepted":
            assert by_command[f"command:{command_id}"] == 1
    differences = Counter(e.kind for e in events if type(e) is ReconciliationDifference)
    print(f"{kills} kills: {len(state.orders)} orders, {venue_orders} at the venue, {len(log_fills)} fills, "
          f"{len(events)} events; reconciliation differences resolved: {dict(differences)}")
    return {"orders": len(state.orders), "venue_orders": venue_orders, "fills": len(log_fills), "events": len(events)}


@pytest.mark.parametrize("backend", ["sqlite", "sqlite-sync-normal", "postgresql"])
def test_sigkill_at_random_moments_loses_and_doubles_nothing(backend, request, tmp_path, monkeypatch):
    url = request.getfixturevalue("pg_url" if backend == "postgresql" else "sqlite_url")
    if backend == "sqlite-sync-normal":  # commits without fsync, checkpoints in the background: crash-safe too
        monkeypatch.setenv("QLCORE_SQLITE_SYNC", "NORMAL")
    kills = KILLS or {"sqlite": 50, "sqlite-sync-normal": 25, "postgresql": 50}[backend]
    stats = _crash_and_check(url, tmp_path, kills, seed=2026 + len(backend))
    # the run must have traded through the kills for the checks above to mean anything
    assert stats["fills"] > kills and stats["orders"] > kills
