"""The kill switch under a flood of orders: how long a halt takes behind a backlog.

A paper engine runs in its own process (`EngineService`, as `qlcore engine` runs it) on a real store.
`--clients` client threads submit market orders through the command table as fast as they can, each
within the per-client bounds (`CommandLimits`, from QLCORE_COMMAND_MAX_PENDING / _MAX_PER_S or
`--max-pending` / `--max-per-s`; a refused submission waits 10 ms and tries again). After
`--halt-after` seconds a halt is sent; the clients go on for one more second, then stop, and the
engine works off what is left. Reported, per store (SQLite file; PostgreSQL when QLCORE_TEST_PG_URL
is set):

- the halt's latency: from its submission to its completion by the engine (ms), of which the insert
  into the command table (`halt_insert_ms`) and the wait until the engine took it (`halt_taken_ms`,
  from the submission); and the orders waiting when it was sent;
- orders sent before the halt and accepted after it (must be 0);
- submit-to-outcome of every order command: p50, p99, max (ms), and how many were accepted,
  refused by the engine, refused at submission by a bound;
- the engine process's RSS before the flood, after it, and its peak (MB).

    python benchmarks/bench_halt_flood.py [--clients 50] [--seconds 20] [--halt-after 10] [--json PATH]

Exit 1 when an order sent before the halt was accepted after it, or the halt took over a second.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from sqlalchemy import Engine, create_engine, select, text

from qlcore.control.commands import CommandLimitError, CommandLimits, CommandQueue
from qlcore.control.keys import KeyRing, provision
from qlcore.control.users import UserStore
from qlcore.engine.service import EngineConfig, EngineService
from qlcore.store.db import connect, dispose_all
from qlcore.store.tables import commands

TARGET = "flood"
HALT_TARGET_MS = 1000.0


def engine_main(url: str, venue: str, ready: multiprocessing.synchronize.Event) -> None:
    """The engine process: start, say so, run until SIGTERM. It verifies the clients' signed commands."""
    # the flood is the load under which the halt is timed: the default limits' order rates would deny most
    # of it, so the engine runs without limits (paper only, with a stated approval, audited in its store)
    users = Path(venue).parent / "users.toml"
    provision(UserStore(users), {"bench-admin": "admin"})  # whose signing key approves running without limits
    service = EngineService(EngineConfig(engine_id=TARGET, url=url, venue_path=Path(venue), symbols=("AAPL", "MSFT"),
                                         speed=20.0, users_file=users, no_limits=True, admin="bench-admin",
                                         admin_approval="halt-flood benchmark: the flood must reach the engine"))
    service.install_signal_handlers()
    service.start()
    ready.set()
    service.run()


def _client_engine(url: str, pool_size: int) -> Engine:
    sqlite = url.startswith("sqlite")
    return create_engine(url, pool_size=pool_size, max_overflow=0, pool_timeout=600,
                         connect_args={"timeout": 60} if sqlite else {})


def _rss_mb(pid: int) -> dict[str, float]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {k: round(int(fields[k].split()[0]) / 1024, 1) for k in ("VmRSS", "VmHWM")}


def _client(queue: CommandQueue, i: int, stop: threading.Event, counts: dict[str, int]) -> None:
    k = 0
    while not stop.is_set():
        try:
            queue.submit(f"client-{i:02d}", "order.submit",
                         {"strategy_id": f"flood-{i % 5}", "symbol": ("AAPL", "MSFT")[k % 2],
                          "side": ("BUY", "SELL")[(i + k) % 2], "quantity": "1"}, target=TARGET)
            counts["sent"] += 1
        except CommandLimitError:
            counts["bounded"] += 1
            stop.wait(0.01)
        k += 1


def _percentiles(ms: list[float]) -> dict[str, float]:
    ms = sorted(ms) or [0.0]
    pick = lambda q: ms[min(len(ms) - 1, int(q * len(ms)))]  # noqa: E731
    return {"p50_ms": round(pick(0.50), 1), "p99_ms": round(pick(0.99), 1), "max_ms": round(ms[-1], 1)}


def measure(url: str, folder: Path, args: argparse.Namespace, limits: CommandLimits) -> dict:
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    proc = ctx.Process(target=engine_main, args=(url, str(folder / "venue.sqlite"), ready))
    proc.start()
    try:
        if not ready.wait(120):
            raise RuntimeError("the engine did not start within 120 s")
        time.sleep(0.5)
        rss_before = _rss_mb(proc.pid)
        # the clients share a pool of their own; the halt comes from another process's connection (as `qlcore
        # halt` would): neither waits for the engine's connections nor for each other's
        clients_db = _client_engine(url, pool_size=min(args.clients, 20))
        # every client signs with its own key, as the CLI does; the engine verifies each command
        names = {f"client-{i:02d}": "trader" for i in range(args.clients)} | {"risk-officer": "trader"}
        ring = KeyRing(provision(UserStore(folder / "users.toml"), names))
        queue = CommandQueue(engine=clients_db, limits=limits, signer=ring)
        desk = CommandQueue(engine=_client_engine(url, pool_size=1), limits=limits, signer=ring)
        stop = threading.Event()
        counts = [{"sent": 0, "bounded": 0} for _ in range(args.clients)]
        threads = [threading.Thread(target=_client, args=(queue, i, stop, counts[i]), daemon=True)
                   for i in range(args.clients)]
        for t in threads:
            t.start()
        time.sleep(args.halt_after)
        waiting = len(desk.pending(TARGET, limit=10**7))
        halt = desk.submit("risk-officer", "halt", {"reason": "benchmark"}, target=TARGET)
        inserted_ns = time.time_ns()
        outcome = desk.wait_for(halt, 600, poll_s=0.005)
        time.sleep(1.0)
        stop.set()
        for t in threads:
            t.join(60)
        deadline = time.monotonic() + 600
        while queue.pending(TARGET, limit=1) and time.monotonic() < deadline:
            time.sleep(0.2)
        rss_after = _rss_mb(proc.pid)
        clients_db.dispose()
        desk.engine.dispose()
    finally:
        proc.terminate()
        proc.join(60)
    c = commands.c
    with connect(url).connect() as conn:
        rows = conn.execute(select(c.id, c.status, c.ts_submitted, c.ts_completed)
                            .where(c.target == TARGET, c.kind == "order.submit")).all()
    done = [r for r in rows if r.ts_completed is not None]
    late = [r for r in done if r.id < halt and r.status == "accepted" and r.ts_completed > outcome.ts_completed]
    return {
        "clients": args.clients,
        "halt_latency_ms": round((outcome.ts_completed - outcome.ts_submitted) / 1e6, 1),
        "halt_insert_ms": round((inserted_ns - outcome.ts_submitted) / 1e6, 1),
        "halt_taken_ms": round((outcome.ts_taken - outcome.ts_submitted) / 1e6, 1),
        "halt_outcome": f"{outcome.status}: {outcome.reason}",
        "orders_waiting_at_halt": waiting,
        "accepted_after_halt_though_sent_before": len(late),
        "orders": {
            "sent": len(rows),
            "accepted": sum(r.status == "accepted" for r in rows),
            "refused": sum(r.status == "refused" for r in rows),
            "not_completed": len(rows) - len(done),
            "bounded_at_submission": sum(x["bounded"] for x in counts),
            **_percentiles([(r.ts_completed - r.ts_submitted) / 1e6 for r in done]),
        },
        "engine_rss_mb": {"before": rss_before["VmRSS"], "after": rss_after["VmRSS"], "peak": rss_after["VmHWM"]},
    }


def _pg_schema(base: str) -> tuple[str, str]:
    schema = f"qlbench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    return f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}", schema


def _drop_schema(base: str, schema: str) -> None:
    dispose_all()
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--halt-after", type=float, default=10.0, help="seconds of flood before the halt")
    ap.add_argument("--max-pending", type=int, default=None, help="per-client bound (default: the environment's)")
    ap.add_argument("--max-per-s", type=int, default=None, help="per-client bound (default: the environment's)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    env_limits = CommandLimits.from_env()
    limits = CommandLimits(
        max_pending=env_limits.max_pending if args.max_pending is None else args.max_pending,
        max_per_s=env_limits.max_per_s if args.max_per_s is None else args.max_per_s,
    )
    out: dict = {"limits": {"max_pending": limits.max_pending, "max_per_s": limits.max_per_s}}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "sqlite"
        folder.mkdir()
        out["sqlite"] = measure(f"sqlite:///{folder / 'qlcore.db'}", folder, args, limits)
        print("sqlite     ", json.dumps(out["sqlite"]), flush=True)
        pg = os.environ.get("QLCORE_TEST_PG_URL")
        if pg:
            url, schema = _pg_schema(pg)
            folder = Path(tmp) / "postgresql"
            folder.mkdir()
            try:
                out["postgresql"] = measure(url, folder, args, limits)
            finally:
                _drop_schema(pg, schema)
            print("postgresql ", json.dumps(out["postgresql"]), flush=True)
        else:
            print("PostgreSQL: skipped (QLCORE_TEST_PG_URL is not set)")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    results = [out[b] for b in ("sqlite", "postgresql") if b in out]
    ok = all(r["accepted_after_halt_though_sent_before"] == 0 and r["halt_latency_ms"] <= HALT_TARGET_MS
             and r["halt_outcome"].startswith("accepted") for r in results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
