"""Paper venue speed: orders through submit + bar + flush, in batches, on a SQLite ledger on disk.

Per batch: `--batch` orders are submitted (market and limit, buys and sells, over five symbols), one
bar per symbol is matched, then `flush()` commits the batch in one durable transaction (WAL,
synchronous=FULL) and delivers its reports to a counting receiver. Orders are built before the
clock starts. It prints orders/s for the whole loop, the flush latency p50/p99 (the commit and the
delivery), and, side by side, the `SimulatedBroker` on the same flow (no ledger: the cost of
durability). It checks that the venue's positions equal the sum of its fills after a reopen.

    python benchmarks/bench_paper_venue.py [--orders N] [--batch B] [--participation P] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from qlcore.brokers import PaperVenue, SimulatedBroker
from qlcore.events.types import OrderInitialized
from qlcore.model.enums import OrderSide, OrderType
from qlcore.model.market import Bar
from qlcore.model.orders import Order

SYMBOLS = ("AAPL", "MSFT", "IBM", "GOOG", "ORCL")
T0 = 1_577_957_400_000_000_000  # 2020-01-02 09:30 UTC, in ns
NS_PER_MIN = 60_000_000_000


class Counter:
    """An ExecutionReports that only counts."""

    def __init__(self) -> None:
        self.n = 0

    def on_accepted(self, order_id: str, venue_order_id: str) -> None:
        self.n += 1

    def on_rejected(self, order_id: str, reason: str) -> None:
        self.n += 1

    def on_filled(self, order_id: str, trade_id: str, quantity: Decimal, price: Decimal, fee: Decimal) -> None:
        self.n += 1

    def on_canceled(self, order_id: str, reason: str) -> None:
        self.n += 1

    def on_cancel_rejected(self, order_id: str, reason: str) -> None:
        self.n += 1

    def on_expired(self, order_id: str) -> None:
        self.n += 1


def order_flow(n_orders: int, batch: int) -> list[tuple[list[Order], list[Bar]]]:
    """Batches of orders, each followed by one bar per symbol."""
    batches = []
    for b in range(0, n_orders, batch):
        orders = []
        for i in range(b, min(b + batch, n_orders)):
            symbol = SYMBOLS[i % len(SYMBOLS)]
            side = OrderSide.BUY if (i // len(SYMBOLS)) % 2 == 0 else OrderSide.SELL
            limit = i % 4 == 3  # a quarter are limits away from the market: they rest a few bars
            price = Decimal("99" if side is OrderSide.BUY else "101") if limit else None
            init = OrderInitialized(
                T0, f"O-{i}", "bench", symbol, side, OrderType.LIMIT if limit else OrderType.MARKET,
                Decimal(10 + i % 90), price,
            )  # fmt: skip
            orders.append(Order(init))
        step = b // batch + 1
        px = 100.0 + (step % 7 - 3) * 0.5
        bars = [Bar(s, T0 + step * NS_PER_MIN, px, px + 0.5, px - 0.5, px, 1e6) for s in SYMBOLS]
        batches.append((orders, bars))
    return batches


def run_paper(batches, folder: Path, participation: float) -> dict:
    path = folder / "paper.sqlite"
    venue = PaperVenue(path, participation=participation)
    reports = Counter()
    venue.bind(reports)
    flushes: list[float] = []
    n = 0
    started = time.perf_counter()
    for orders, bars in batches:
        for order in orders:
            venue.submit(order)
        for bar in bars:
            venue.on_bar(bar)
        t = time.perf_counter()
        venue.flush()
        flushes.append(time.perf_counter() - t)
        n += len(orders)
    elapsed = time.perf_counter() - started
    venue.close()

    reopened = PaperVenue(path, participation=participation)
    fills = reopened.fills()
    net: dict[str, Decimal] = {}
    for f in fills:
        net[f.symbol] = net.get(f.symbol, Decimal(0)) + (f.quantity if f.side is OrderSide.BUY else -f.quantity)
    consistent = reopened.positions() == {s: q for s, q in net.items() if q} and reopened.order_count() == n
    working = reopened.working_count
    reopened.close()
    flushes.sort()
    return {
        "orders": n,
        "seconds": elapsed,
        "orders_per_s": n / elapsed,
        "flushes": len(flushes),
        "flush_p50_ms": 1000 * statistics.median(flushes),
        "flush_p99_ms": 1000 * flushes[min(len(flushes) - 1, round(0.99 * (len(flushes) - 1)))],
        "flush_max_ms": 1000 * flushes[-1],
        "reports": reports.n,
        "fills": len(fills),
        "working_after": working,
        "ledger_mb": path.stat().st_size / 1e6,
        "consistent": consistent,
    }


def run_simulated(batches) -> dict:
    broker = SimulatedBroker()
    reports = Counter()
    broker.bind(reports)
    n = 0
    started = time.perf_counter()
    for orders, bars in batches:
        for order in orders:
            broker.submit(order)
        for bar in bars:
            broker.on_bar(bar)
        n += len(orders)
    elapsed = time.perf_counter() - started
    return {"orders": n, "seconds": elapsed, "orders_per_s": n / elapsed, "reports": reports.n}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=100, help="orders per flush")
    parser.add_argument("--participation", type=float, default=1.0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    batches = order_flow(args.orders, args.batch)
    with tempfile.TemporaryDirectory(prefix="qlbench-paper-") as folder:
        paper = run_paper(batches, Path(folder), args.participation)
    sim = run_simulated(order_flow(args.orders, args.batch))

    print(f"paper venue: {paper['orders']:,} orders in batches of {args.batch} (participation {args.participation})")
    print(f"  submit+bar+flush   {paper['orders_per_s']:>12,.0f} orders/s  ({paper['seconds']:.2f} s)")
    print(
        f"  flush latency      p50 {paper['flush_p50_ms']:.2f} ms   p99 {paper['flush_p99_ms']:.2f} ms   "
        f"max {paper['flush_max_ms']:.2f} ms   ({paper['flushes']} flushes)"
    )
    print(f"  reports {paper['reports']:,}  fills {paper['fills']:,}  working after {paper['working_after']}")
    print(f"  ledger {paper['ledger_mb']:.1f} MB  positions == sum of fills after reopen: {paper['consistent']}")
    print(f"simulated broker (no ledger): {sim['orders_per_s']:>12,.0f} orders/s  ({sim['seconds']:.2f} s)")
    if args.json is not None:
        meta = {"python": sys.version.split()[0], "machine": platform.machine(), "batch": args.batch}
        args.json.write_text(json.dumps({"paper": paper, "simulated": sim, "meta": meta}, indent=2))
    return 0 if paper["consistent"] else 1


if __name__ == "__main__":
    sys.exit(main())
