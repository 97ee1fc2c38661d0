"""Event store speed: batched appends and replay, on a SQLite file (and PostgreSQL when configured).

The events are a realistic order flow: one AccountFunded, then per order OrderInitialized,
OrderSubmitted, OrderAccepted and OrderFilled (market orders, buys and sells alternating per
symbol, Decimal prices, quantities and fees). They are built before the clock starts.

* append: `EventStore(url).writer(stream, batch_size=1000)`, `.append(e)` each, `.flush()`; the
  SQLite file is on disk (a temporary folder) with the store's own pragmas (WAL, synchronous=FULL),
  so every batch is one durable commit.
* replay: `replay(store, stream)`; its state hash must equal the hash of the same events applied
  to a fresh `TradingState` in memory.

PostgreSQL runs when `QLCORE_TEST_PG_URL` is set (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test),
in a fresh schema that is dropped afterwards.

With `--breakdown` it also times replay's steps on a SQLite file, batch by batch as replay runs
them (best of 3 per step): fetching the rows, checking order and checksums, unpacking the payloads
into events, folding them into a `TradingState`; and a whole `replay` for comparison.

    python benchmarks/bench_store.py [--events N] [--repeat K] [--batch-size B] [--breakdown] [--json PATH]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import tempfile
import time
import uuid
import zlib
from decimal import Decimal
from pathlib import Path

from qlcore.engine.gcpause import gc_paused
from qlcore.events import EventStore
from qlcore.events.codec import unpack_many
from qlcore.events.replay import replay
from qlcore.events.store import _fetch, chain_start
from qlcore.events.types import (
    AccountFunded,
    Event,
    OrderAccepted,
    OrderFilled,
    OrderInitialized,
    OrderSubmitted,
)
from qlcore.model.enums import OrderSide, OrderType
from qlcore.model.state import TradingState

SYMBOLS = ("AAPL", "MSFT", "IBM", "GOOG", "ORCL")
STRATEGY = "sma_cross-1"
FEE_RATE = Decimal("0.001")
NS_PER_MIN = 60_000_000_000
T0 = 1_577_957_400_000_000_000  # 2020-01-02 09:30 UTC, in ns

TARGET_APPEND = 100_000
TARGET_REPLAY = 300_000


def order_flow(n_events: int) -> list[Event]:
    """AccountFunded, then four events per order, until `n_events` (rounded down to whole orders)."""
    events: list[Event] = [AccountFunded(T0, "main", Decimal(10_000_000))]
    long = dict.fromkeys(SYMBOLS, False)
    for k in range((n_events - 1) // 4):
        ts = T0 + k * NS_PER_MIN
        symbol = SYMBOLS[k % len(SYMBOLS)]
        side = OrderSide.SELL if long[symbol] else OrderSide.BUY
        long[symbol] = not long[symbol]
        order_id = f"O-{k + 1}"
        quantity = Decimal(100 + 10 * (k % 7))
        price = Decimal(10_000 + (k * 37) % 5_000).scaleb(-2)  # 100.00 .. 149.99
        events += (
            OrderInitialized(ts, order_id, STRATEGY, symbol, side, OrderType.MARKET, quantity),
            OrderSubmitted(ts, order_id),
            OrderAccepted(ts, order_id, f"SIM-{k + 1}"),
            OrderFilled(
                ts + NS_PER_MIN, order_id, f"SIM-T{k + 1}", STRATEGY, symbol, side,
                quantity, price, quantity * price * FEE_RATE,
            ),
        )  # fmt: skip
    return events


def expected_hash(events: list[Event]) -> tuple[str, float]:
    """The hash of the events folded in memory, and the events/s of that fold (for comparison)."""
    state = TradingState()
    apply = state.apply
    started = time.perf_counter()
    with gc_paused():  # as replay does
        for e in events:
            apply(e)
    rate = len(events) / (time.perf_counter() - started)  # the fold only, not the hash
    return state.state_hash(), rate


def measure_backend(url: str, events: list[Event], batch_size: int, want_hash: str) -> dict:
    """Append the events to a new stream of `url`, then replay it."""
    store = EventStore(url)
    stream = f"bench-{uuid.uuid4().hex[:8]}"
    try:
        started = time.perf_counter()
        writer = store.writer(stream, batch_size=batch_size)
        for e in events:
            writer.append(e)
        writer.flush()
        append_s = time.perf_counter() - started

        stored = store.count(stream)
        started = time.perf_counter()
        result = replay(store, stream)
        replay_s = time.perf_counter() - started
    finally:
        store.engine.dispose()
    return {
        "events": len(events),
        "stored": stored,
        "append_seconds": append_s,
        "append_per_s": len(events) / append_s,
        "replay_seconds": replay_s,
        "replay_per_s": result.events / replay_s,
        "replayed": result.events,
        "state_hash": result.state_hash,
        "hash_matches": result.state_hash == want_hash and stored == len(events),
    }


def _best(runs: list[dict]) -> dict:
    best = dict(runs[0])
    best["append_per_s"] = max(r["append_per_s"] for r in runs)
    best["replay_per_s"] = max(r["replay_per_s"] for r in runs)
    best["append_seconds"] = min(r["append_seconds"] for r in runs)
    best["replay_seconds"] = min(r["replay_seconds"] for r in runs)
    best["hash_matches"] = all(r["hash_matches"] for r in runs)
    best["all_append_per_s"] = [r["append_per_s"] for r in runs]
    best["all_replay_per_s"] = [r["replay_per_s"] for r in runs]
    return best


def sqlite_runs(
    events: list[Event], batch_size: int, want: str, repeat: int, where: Path | None
) -> dict:
    runs = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix="qlbench-", dir=where) as tmp:
            runs.append(
                measure_backend(f"sqlite:///{Path(tmp) / 'events.db'}", events, batch_size, want)
            )
    return _best(runs)


def postgres_runs(base: str, events: list[Event], batch_size: int, want: str, repeat: int) -> dict:
    from sqlalchemy import create_engine, text

    schema = f"qlbench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in base else "?"
    url = f"{base}{sep}options=-csearch_path%3D{schema}"
    try:
        return _best([measure_backend(url, events, batch_size, want) for _ in range(repeat)])
    finally:
        from qlcore.store.db import dispose_all

        dispose_all()  # connect() pools engines per URL: close them before dropping the schema
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _timed_steps(store: EventStore, stream: str) -> dict[str, float]:
    """Seconds spent in each step of a replay, batch by batch as `iter_batches` and `replay` do them."""
    clock = time.perf_counter
    spent = dict.fromkeys(("fetch", "check", "unpack", "fold"), 0.0)
    state = TradingState()
    apply = state.apply
    previous, expected = chain_start(stream), 1
    with gc_paused(), store.engine.connect() as conn:
        batches = _fetch(conn, stream, 1, 1000)
        while True:
            t0 = clock()
            rows = next(batches, None)
            t1 = clock()
            spent["fetch"] += t1 - t0
            if rows is None:
                break
            seqs, payloads, checksums = zip(*rows, strict=True)
            assert seqs[0] == expected and seqs[-1] == expected + len(rows) - 1
            assert zlib.crc32("".join(payloads).encode(), previous) == checksums[-1]
            previous, expected = checksums[-1], expected + len(rows)
            t2 = clock()
            events = unpack_many(payloads)
            t3 = clock()
            for event in events:
                apply(event)
            spent["unpack"] += t3 - t2
            spent["check"] += t2 - t1
            spent["fold"] += clock() - t3
    return spent


def replay_breakdown(events: list[Event], where: Path | None, repeat: int = 3) -> dict:
    """Microseconds per event of each step of replay (the best of `repeat` per step), and of a whole replay."""
    with tempfile.TemporaryDirectory(prefix="qlbench-", dir=where) as tmp:
        store = EventStore(f"sqlite:///{Path(tmp) / 'events.db'}")
        try:
            with store.writer("breakdown") as writer:
                writer.extend(events)
            runs = [_timed_steps(store, "breakdown") for _ in range(repeat)]
            whole = []
            for _ in range(repeat):
                started = time.perf_counter()
                replay(store, "breakdown")
                whole.append(time.perf_counter() - started)
        finally:
            store.engine.dispose()
    per_event = {step: min(r[step] for r in runs) / len(events) * 1e6 for step in runs[0]}
    per_event["replay"] = min(whole) / len(events) * 1e6
    return per_event


def report(r: dict) -> None:
    def mark(ok: bool) -> str:
        return "ok" if ok else "MISSED"

    print(
        f"event store: {r['events']:,} events (1 AccountFunded + 4 per order), batch_size "
        f"{r['batch_size']}, best of {r['repeat']}"
    )
    print(
        f"{'backend':<12}{'append ev/s':>14}{'replay ev/s':>14}{'append s':>10}{'replay s':>10}  hash"
    )
    for name in ("sqlite", "postgresql"):
        b = r.get(name)
        if b is None:
            continue
        print(
            f"{name:<12}{b['append_per_s']:>14,.0f}{b['replay_per_s']:>14,.0f}"
            f"{b['append_seconds']:>10.2f}{b['replay_seconds']:>10.2f}  "
            f"{'matches' if b['hash_matches'] else 'DIFFERS'}"
        )
    s = r["sqlite"]
    print(
        f"targets (SQLite): append >= {TARGET_APPEND:,}/s {mark(s['append_per_s'] >= TARGET_APPEND)}; "
        f"replay >= {TARGET_REPLAY:,}/s {mark(s['replay_per_s'] >= TARGET_REPLAY)}"
    )
    print(f"in-memory fold of the same events (no store): {r['memory_fold_per_s']:,.0f} events/s")
    print(f"expected state hash {r['expected_hash'][:16]}...")
    if "postgresql" not in r:
        print("PostgreSQL: skipped (QLCORE_TEST_PG_URL is not set)")
    b = r.get("breakdown")
    if b is not None:
        parts = ("fetch", "check", "unpack", "fold")
        rest = b["replay"] - sum(b[p] for p in parts)
        print(
            "replay steps on SQLite, µs per event (best of 3 each): "
            + ", ".join(f"{p} {b[p]:.2f}" for p in parts)
            + f"; whole replay {b['replay']:.2f} ({1e6 / b['replay']:,.0f}/s), "
            f"of which loops, interleaving and the collector {rest:.2f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--repeat", type=int, default=1, help="runs per backend; the best is kept")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument(
        "--dir", type=Path, help="folder for the SQLite file (default: the system temp folder)"
    )
    parser.add_argument("--breakdown", action="store_true", help="also time replay's steps one by one")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    args = parser.parse_args(argv)
    repeat = max(1, args.repeat)

    events = order_flow(args.events)
    want, fold_rate = expected_hash(events)
    # the pre-built events are the benchmark's own heap: keep the collector from rescanning them
    gc.collect()
    gc.freeze()
    result: dict = {
        "events": len(events),
        "batch_size": args.batch_size,
        "repeat": repeat,
        "expected_hash": want,
        "memory_fold_per_s": fold_rate,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "targets": {"append_per_s": TARGET_APPEND, "replay_per_s": TARGET_REPLAY},
    }
    result["sqlite"] = sqlite_runs(events, args.batch_size, want, repeat, args.dir)
    pg = os.environ.get("QLCORE_TEST_PG_URL")
    if pg:
        result["postgresql"] = postgres_runs(pg, events, args.batch_size, want, repeat)
    if args.breakdown:
        result["breakdown"] = replay_breakdown(events, args.dir)
    report(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    ok = all(result[b]["hash_matches"] for b in ("sqlite", "postgresql") if b in result)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
