"""Paper engine speed: the durable order path, and 500 strategies on 1-second bars for 50 instruments.

1. *Order path, sustained*: a signal (`kernel.submit_order`, as a strategy's `buy`/`sell` does) goes
   through the whole pre-trade chain (lifecycle gate, trading modes, runaway guard, the risk rules),
   becomes an order, is committed to the event log, reaches the paper venue (which commits its own
   ledger), is acknowledged and filled on arrival, the position changes, and the fill events are
   committed: all in `EngineService.step`, on SQLite files with synchronous=FULL. Batches of
   `--batch` orders per loop turn, as fast as possible: orders per second.
2. *Order path, paced*: one order every millisecond (1,000 orders/s), each in its own loop turn;
   latency from the signal to the commit of its fill: p50, p99, max. Each such turn makes three
   durable commits (the order before the venue sees it, the venue's ledger, the fill after), so
   the latency is three fsyncs of the disk. Run once with the default SQLite synchronous=FULL
   (survives power loss) and once with synchronous=NORMAL (`QLCORE_SQLITE_SYNC=NORMAL`: survives a
   crash of the process, which is what the crash tests kill, but not of the machine; the engine then
   checkpoints the WAL from a background thread, see `qlcore/store/checkpoint.py`).
3. *Command path*: the same, but the order is a row in the command table (what the CLI and the
   dashboards write), signed by its sender and verified by the engine against its users file, so
   the latency adds the engine's command polling (every 10 ms by default) and the credential.
   *Credential checks* alone: signing a command (the sender's side) and the engine's `Gatekeeper`
   verifying it (signature, freshness, nonce, role), microseconds each, on the same machine.
4. *500 strategies*: 500 sma_cross deployments (10 per instrument, different windows) on
   synthetic 1-second bars of 50 instruments. (a) As fast as the engine goes: bar steps per second
   and CPU per step (one step = 50 bars = one second of market data). (b) Paced in real time (1 step
   a second) for `--realtime` seconds: the process's CPU time over the wall time, i.e. the share of
   one core it uses.

    python benchmarks/bench_engine.py [--orders N] [--batch B] [--paced N] [--realtime S] [--only NAME ...] [--json PATH]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from decimal import Decimal
from pathlib import Path

from qlcore.control.commands import CommandQueue
from qlcore.control.identity import Gatekeeper, SigningKey
from qlcore.control.keys import provision
from qlcore.control.users import UsersDirectory, UserStore
from qlcore.data.feed import SymbolSeed, SyntheticIntradayFeed
from qlcore.engine.service import EngineConfig, EngineService
from qlcore.model.enums import OrderSide
from qlcore.model.market import Bar
from qlcore.store.db import dispose_all

SYMBOLS = ("AAPL", "MSFT", "IBM", "GOOG")
# raw speed: the orders of one turn share one market instant, which the default limits' order rates
# would deny; the engines run without limits (paper only, approved by an admin's key, audited in their store)
NO_LIMITS = {"no_limits": True, "admin_approval": "raw speed benchmark: its order bursts would trip the default rate limits",
             "admin": "bench-admin"}


def _admin(folder: Path) -> Path:
    """The users file of `folder`, with the admin whose signing key approves running without limits."""
    users = folder / "users.toml"
    provision(UserStore(users), {"bench-admin": "admin"})
    return users


def _engine(folder: Path, name: str, symbols: tuple[str, ...], **kw: object) -> EngineService:
    config = EngineConfig(
        engine_id=name,
        url=f"sqlite:///{folder / (name + '.db')}",
        venue_path=folder / f"{name}-venue.sqlite",
        symbols=symbols,
        speed=1.0,
        fill_on_arrival=True,  # the order path measured ends with its fill, in the same turn
        feed_stale_s=1e9,  # the feed is silent on purpose: the watch must not reduce the account
        feed_reduce_s=1e9,
        **NO_LIMITS,  # type: ignore[arg-type]
        users_file=_admin(folder),  # the sender of the command path's orders is "bench"
        **kw,  # type: ignore[arg-type]
    )
    engine = EngineService(config, feed=_Silent())
    engine.start()
    for i, sym in enumerate(symbols):  # a last price per instrument, for fills on arrival
        engine.on_bar(Bar(sym, 1_000_000_000, 100.0 + i, 101.0 + i, 99.0 + i, 100.0 + i, 1e12))
    engine.step()
    return engine


class _Silent:
    """A feed with no bars: the order benchmarks drive the engine themselves."""

    exhausted = False

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def poll(self, max_steps: int | None = None) -> list[Bar]:
        return []

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(())


def _percentiles(ms: list[float]) -> dict[str, float]:
    ms = sorted(ms)
    pick = lambda q: ms[min(len(ms) - 1, int(q * len(ms)))]  # noqa: E731
    return {"p50_ms": round(pick(0.50), 3), "p99_ms": round(pick(0.99), 3), "max_ms": round(ms[-1], 3), "n": len(ms)}


def sustained(folder: Path, orders: int, batch: int) -> dict:
    engine = _engine(folder, "sustained", SYMBOLS)
    kernel = engine.kernel
    sides = (OrderSide.BUY, OrderSide.SELL)
    started = time.perf_counter()
    cpu = time.process_time()
    sent = 0
    while sent < orders:
        for i in range(batch):
            kernel.submit_order("bench", SYMBOLS[i % 4], sides[(sent // 4) % 2], 10)
            sent += 1
        engine.step()
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu
    filled = sum(1 for o in kernel.state.orders.values() if o.status.value == "FILLED")
    engine.shutdown()
    return {
        "orders": sent,
        "filled": filled,
        "batch": batch,
        "orders_per_s": round(sent / wall),
        "cpu_share": round(cpu / wall, 2),
        "events": kernel.events_emitted,
    }


def paced(folder: Path, n: int, rate: float, sync: str = "FULL") -> dict:
    os.environ["QLCORE_SQLITE_SYNC"] = sync
    try:
        engine = _engine(folder, f"paced-{sync.lower()}", SYMBOLS)
    finally:
        os.environ.pop("QLCORE_SQLITE_SYNC")
    kernel = engine.kernel
    gap = 1.0 / rate
    latencies = []
    next_at = time.perf_counter()
    for i in range(n):
        while time.perf_counter() < next_at:
            pass
        t0 = time.perf_counter()
        oid = kernel.submit_order("bench", SYMBOLS[i % 4], (OrderSide.BUY, OrderSide.SELL)[(i // 4) % 2], 10)
        engine.step()
        latencies.append((time.perf_counter() - t0) * 1000)
        assert kernel.state.orders[oid].status.value == "FILLED"
        next_at += gap
    engine.shutdown()
    return {"rate_per_s": rate, "sqlite_synchronous": sync, **_percentiles(latencies)}


def _bench_key(folder: Path) -> SigningKey:
    return provision(UserStore(folder / "users.toml"), {"bench": "trader"})["bench"]


def command_path(folder: Path, n: int, rate: float) -> dict:
    engine = _engine(folder, "commands", SYMBOLS, command_poll_s=0.001, poll_interval_s=0.0005)
    queue = CommandQueue(engine.url, signer=_bench_key(folder))
    thread = threading.Thread(target=engine.run, daemon=True)
    thread.start()
    latencies = []
    try:
        for i in range(n):
            t0 = time.time_ns()
            cid = queue.submit(
                "bench", "order.submit",
                {"strategy_id": "bench", "symbol": SYMBOLS[i % 4], "side": ("BUY", "SELL")[(i // 4) % 2], "quantity": "10"},
                target="commands",
            )
            cmd = queue.wait_for(cid, 5.0, poll_s=0.0002)
            assert cmd.status == "accepted", cmd.reason
            latencies.append((cmd.ts_completed - t0) / 1e6)
            time.sleep(max(0.0, 1.0 / rate - (time.time_ns() - t0) / 1e9))
    finally:
        engine.stop()
        thread.join(10)
    return {"rate_per_s": rate, **_percentiles(latencies)}


def credential_checks(folder: Path, n: int) -> dict:
    """Sign `n` order commands as the sender does, then verify each as the engine does: µs per command."""
    key = _bench_key(folder)
    gate = Gatekeeper(UsersDirectory(folder / "users.toml"))
    sign_us, verify_us = [], []
    for i in range(n):
        payload = {"strategy_id": "bench", "symbol": SYMBOLS[i % 4], "side": "BUY", "quantity": str(10 + i)}
        t0 = time.perf_counter_ns()
        credential = key.sign_command("order.submit", payload, "bench", "commands").text()
        t1 = time.perf_counter_ns()
        reason = gate.check("order.submit", payload, "bench", "commands", credential)
        t2 = time.perf_counter_ns()
        assert reason is None, reason
        sign_us.append((t1 - t0) / 1000)
        verify_us.append((t2 - t1) / 1000)
    sign, verify = _percentiles(sign_us), _percentiles(verify_us)
    return {"checks": n, "sign_us": {k.replace("_ms", ""): v for k, v in sign.items()},
            "verify_us": {k.replace("_ms", ""): v for k, v in verify.items()}}


def _many(folder: Path, name: str, speed: float, steps: int | None) -> EngineService:
    symbols = tuple(f"S{i:02d}" for i in range(50))
    seeds = [SymbolSeed(s, 50.0 + i, 0.02, 5e6) for i, s in enumerate(symbols)]
    feed = SyntheticIntradayFeed(seeds, start_ts=1_700_000_000_000_000_000, seed=1, step_seconds=1.0 / speed, n_bars=steps)
    config = EngineConfig(
        engine_id=name, url=f"sqlite:///{folder / (name + '.db')}", venue_path=folder / f"{name}-venue.sqlite",
        feed="synthetic", symbols=symbols, speed=speed, initial_cash=Decimal(100_000_000), max_steps=steps,
        **NO_LIMITS,  # type: ignore[arg-type]
        users_file=_admin(folder),
    )
    engine = EngineService(config, feed=feed)
    engine.start()
    for k in range(500):
        sym = symbols[k % 50]
        fast = 3 + (k // 50) % 5
        engine.manager.deploy(
            "sma_cross", {"fast": fast, "slow": fast * 3 + k // 250, "quantity": 10}, symbols=[sym],
            allocation=100_000, strategy_id=f"sma-{k:03d}",
        )
    engine.writer.flush()
    return engine


def many_fast(folder: Path, steps: int) -> dict:
    engine = _many(folder, "many-fast", speed=100_000.0, steps=steps)
    cpu, wall = time.process_time(), time.perf_counter()
    engine.run()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    state = engine.kernel.state
    return {
        "strategies": 500,
        "instruments": 50,
        "steps": engine.counters.steps,
        "bars": engine.counters.bars,
        "orders": len(state.orders),
        "steps_per_s": round(engine.counters.steps / wall, 1),
        "cpu_ms_per_step": round(cpu / engine.counters.steps * 1000, 2),
        "core_share_at_1_step_per_s": round(cpu / engine.counters.steps, 3),
    }


def many_realtime(folder: Path, seconds: float) -> dict:
    steps = int(seconds)
    engine = _many(folder, "many-rt", speed=1.0, steps=steps)
    cpu, wall = time.process_time(), time.perf_counter()
    engine.run()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    lag = wall - steps  # the last step is released at `steps - 1` seconds
    return {
        "seconds": round(wall, 1),
        "steps": engine.counters.steps,
        "bars": engine.counters.bars,
        "orders": len(engine.kernel.state.orders),
        "core_share": round(cpu / wall, 3),
        "kept_up": engine.counters.steps == steps and lag < 2.0,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--orders", type=int, default=50_000)
    ap.add_argument("--batch", type=int, default=200)
    ap.add_argument("--paced", type=int, default=5_000, help="orders in the paced latency run")
    ap.add_argument("--rate", type=float, default=1_000.0)
    ap.add_argument("--commands", type=int, default=500)
    ap.add_argument("--steps", type=int, default=600, help="steps of the as-fast-as-possible 500-strategy run")
    ap.add_argument("--realtime", type=float, default=30.0, help="seconds of the real-time 500-strategy run (0: skip)")
    ap.add_argument("--checks", type=int, default=10_000, help="credentials signed and verified alone")
    ap.add_argument("--only", nargs="*", default=None, help="run only the benchmarks whose names start with these")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    out: dict = {"machine": {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": os.cpu_count()}}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        runs = [
            ("order path, sustained", lambda: sustained(folder, args.orders, args.batch)),
            ("order path, paced", lambda: paced(folder, args.paced, args.rate)),
            ("order path, paced, synchronous=NORMAL", lambda: paced(folder, args.paced, args.rate, "NORMAL")),
            ("command path, paced", lambda: command_path(folder, args.commands, 100.0)),
            ("credential checks", lambda: credential_checks(folder, args.checks)),
            ("500 strategies, as fast as possible", lambda: many_fast(folder, args.steps)),
        ]
        if args.realtime > 0:
            runs.append(("500 strategies, real time", lambda: many_realtime(folder, args.realtime)))
        if args.only:
            runs = [(name, fn) for name, fn in runs if any(name.startswith(o) for o in args.only)]
        for name, fn in runs:
            dispose_all()
            result = fn()
            out[name] = result
            print(f"{name:40s} {json.dumps(result)}", flush=True)
    if "credential checks" in out:
        c = out["credential checks"]
        print(f"credential: sign p50 {c['sign_us']['p50']} µs p99 {c['sign_us']['p99']} µs; "
              f"verify p50 {c['verify_us']['p50']} µs p99 {c['verify_us']['p99']} µs")
    if "order path, sustained" not in out or "order path, paced, synchronous=NORMAL" not in out:
        if args.json:
            args.json.write_text(json.dumps(out, indent=2))
        return 0
    s, p = out["order path, sustained"], out["order path, paced"]
    n = out["order path, paced, synchronous=NORMAL"]
    print(f"\ndurable orders/s: {s['orders_per_s']:,} (target >= 5,000); p99 at {p['rate_per_s']:.0f}/s: "
          f"{n['p99_ms']} ms with synchronous=NORMAL (target <= 2 ms), {p['p99_ms']} ms with FULL")
    if "500 strategies, real time" in out:
        rt = out["500 strategies, real time"]
        print(f"500 strategies x 50 instruments, real time: {rt['core_share']:.1%} of one core, kept up: {rt['kept_up']}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
