"""Backtest speed: qlcore vs backtrader, sma_cross on synthetic one-minute bars.

Each engine runs in its own subprocess, so its peak memory is its own (taken from the child's
resource usage by `os.wait4`). Only the run is timed: `BacktestEngine.run(df)` for qlcore
(including the result it builds), `cerebro.run()` for backtrader (including its preload of the
pandas feed, which is how backtrader reads a frame); not the data generation, not the imports.

    python benchmarks/bench_backtest.py [--bars N] [--repeat K] [--seed S] [--json PATH]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

FAST, SLOW, QUANTITY = 10, 30, 100
FEE_BPS = 10  # == backtrader commission=0.001
INITIAL_CASH = 10_000_000  # large enough that the account never runs short
ENGINES = ("qlcore", "backtrader")

TARGET_BARS_PER_S = 130_000
TARGET_RATIO = 15.0
TARGET_RSS_MB = 1024.0


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _fills_digest(rows: list[tuple[int, str, float, float]]) -> str:
    """A digest of (ts ns, side, size, price) per fill: equal digests mean the same fills."""
    h = hashlib.sha256()
    for ts, side, size, price in rows:
        h.update(f"{ts}|{side}|{size:.6f}|{price:.6f}\n".encode())
    return h.hexdigest()[:16]


def run_qlcore(n: int, seed: int) -> dict:
    from qlcore.data import synthetic_bars
    from qlcore.engine import BacktestConfig, BacktestEngine
    from qlcore.strategies import create_strategy

    df = synthetic_bars(n, freq="1min", seed=seed)
    config = BacktestConfig(initial_cash=Decimal(INITIAL_CASH), fee_bps=Decimal(FEE_BPS))
    engine = BacktestEngine(config)
    engine.add_strategy(
        create_strategy("sma_cross", {"fast": FAST, "slow": SLOW, "quantity": QUANTITY})
    )
    rss_before = _rss_mb()
    started = time.perf_counter()
    result = engine.run(df)
    seconds = time.perf_counter() - started
    fills = result.fills
    rows = [
        (int(r.ts.value), str(r.side), float(r.quantity), float(r.price))
        for r in fills.itertuples(index=False)
    ]
    return {
        "seconds": seconds,
        "loop_seconds": result.elapsed,  # the engine's own timer: before the result is built
        "fills": len(rows),
        "fills_digest": _fills_digest(rows),
        "final_equity": str(result.final_equity),
        "total_fee": str(sum(fills["fee"], Decimal(0))),
        "events": result.events,
        "rss_before_run_mb": rss_before,
    }


def run_backtrader(n: int, seed: int) -> dict:
    import backtrader as bt

    from qlcore.data import synthetic_bars

    class SmaCrossBT(bt.Strategy):
        params = (("fast", FAST), ("slow", SLOW), ("quantity", QUANTITY))

        def __init__(self) -> None:
            fast = bt.ind.SMA(self.data.close, period=self.p.fast)
            slow = bt.ind.SMA(self.data.close, period=self.p.slow)
            self.cross = bt.ind.CrossOver(fast, slow)
            self.rows: list[tuple[float, str, float, float]] = []
            self.fee = 0.0
            self.refused = 0

        def notify_order(self, order: bt.Order) -> None:
            if order.status == order.Completed:
                side = "BUY" if order.isbuy() else "SELL"
                ex = order.executed
                self.rows.append((ex.dt, side, abs(ex.size), ex.price))
                self.fee += ex.comm
            elif order.status in (order.Margin, order.Rejected, order.Canceled, order.Expired):
                self.refused += 1

        def next(self) -> None:
            if not self.position:
                if self.cross > 0:
                    self.buy(size=self.p.quantity)
            elif self.cross < 0:
                self.close()

    import pandas as pd

    df = synthetic_bars(n, freq="1min", seed=seed)
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(bt.feeds.PandasData(dataname=df, openinterest=None))
    cerebro.addstrategy(SmaCrossBT)
    cerebro.broker.setcash(INITIAL_CASH)
    cerebro.broker.setcommission(commission=FEE_BPS / 10_000)
    rss_before = _rss_mb()
    started = time.perf_counter()
    (strategy,) = cerebro.run()
    seconds = time.perf_counter() - started
    rows = [
        (pd.Timestamp(bt.num2date(dt)).round("ms").value, side, size, price)
        for dt, side, size, price in strategy.rows
    ]
    return {
        "seconds": seconds,
        "fills": len(rows),
        "fills_digest": _fills_digest(rows),
        "final_equity": f"{cerebro.broker.getvalue():.6f}",
        "total_fee": f"{strategy.fee:.6f}",
        "refused_orders": strategy.refused,
        "rss_before_run_mb": rss_before,
    }


def _worker(engine: str, n: int, seed: int) -> None:
    out = (run_qlcore if engine == "qlcore" else run_backtrader)(n, seed)
    out["engine"] = engine
    out["bars"] = n
    out["self_peak_rss_mb"] = _rss_mb()
    print(json.dumps(out))


def _spawn(engine: str, n: int, seed: int) -> dict:
    """Run one engine in a fresh interpreter; add its peak RSS as seen by the parent."""
    cmd = [sys.executable, __file__, "--worker", engine, "--bars", str(n), "--seed", str(seed)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{engine} worker failed with exit code {proc.returncode}")
    result = json.loads(out.strip().splitlines()[-1])
    result["peak_rss_mb"] = usage.ru_maxrss / 1024
    result["bars_per_s"] = n / result["seconds"]
    return result


def measure(n: int, repeat: int, seed: int) -> dict:
    """Run both engines `repeat` times (alternating); keep the fastest run of each."""
    runs: dict[str, list[dict]] = {e: [] for e in ENGINES}
    for i in range(repeat):
        for engine in ENGINES:
            r = _spawn(engine, n, seed)
            runs[engine].append(r)
            print(
                f"  run {i + 1}/{repeat} {engine:<10} {r['seconds']:8.2f} s "
                f"{r['bars_per_s']:>10,.0f} bars/s  peak RSS {r['peak_rss_mb']:,.0f} MB",
                flush=True,
            )
    best = {e: min(rs, key=lambda r: r["seconds"]) for e, rs in runs.items()}
    for e, rs in runs.items():
        best[e]["all_seconds"] = [r["seconds"] for r in rs]
        best[e]["max_peak_rss_mb"] = max(r["peak_rss_mb"] for r in rs)
    ql, btr = best["qlcore"], best["backtrader"]
    equity_diff = abs(Decimal(ql["final_equity"]) - Decimal(btr["final_equity"]))
    return {
        "bars": n,
        "seed": seed,
        "repeat": repeat,
        "strategy": {
            "name": "sma_cross",
            "fast": FAST,
            "slow": SLOW,
            "quantity": QUANTITY,
            "fee_bps": FEE_BPS,
        },
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "qlcore": ql,
        "backtrader": btr,
        "ratio": ql["bars_per_s"] / btr["bars_per_s"],
        "same_fills": ql["fills"] == btr["fills"] and ql["fills_digest"] == btr["fills_digest"],
        "equity_diff": float(equity_diff),
        "same_equity": equity_diff < Decimal("0.005"),
        "targets": {
            "qlcore_bars_per_s": TARGET_BARS_PER_S,
            "ratio": TARGET_RATIO,
            "qlcore_rss_mb": TARGET_RSS_MB,
        },
    }


def sma_ties(n: int, seed: int) -> dict:
    """Bars where the SMAs are exactly equal, and how many of them backtrader sees as unequal.

    qlcore compares exact integer sums (prices in units of 1e-6); backtrader compares
    `math.fsum(window) / period` in float64, where an exact tie can come out as +-1e-14 and count
    as a cross. Only ties can differ: any other difference is at least 1e-6 / (fast * slow).
    """
    import math

    import numpy as np

    from qlcore.data import synthetic_bars

    close = synthetic_bars(n, freq="1min", seed=seed)["close"].to_numpy()
    if n < SLOW:
        return {"ties": 0, "ties_float_nonzero": 0}
    sums = np.concatenate(([0], np.cumsum(np.rint(close * 1_000_000).astype(np.int64))))
    ends = np.arange(SLOW, n + 1)  # window ends (exclusive)
    diff = (sums[ends] - sums[ends - FAST]) * SLOW - (sums[ends] - sums[ends - SLOW]) * FAST
    ties = ends[diff == 0]
    noisy = [
        int(e - 1)
        for e in ties
        if math.fsum(close[e - FAST : e]) / FAST != math.fsum(close[e - SLOW : e]) / SLOW
    ]
    return {
        "ties": len(ties),
        "ties_float_nonzero": len(noisy),
        "first_noisy_bar": noisy[0] if noisy else None,
    }


def report(r: dict) -> None:
    ql, btr = r["qlcore"], r["backtrader"]

    def mark(ok: bool) -> str:
        return "ok" if ok else "MISSED"

    print(
        f"sma_cross({FAST},{SLOW}) on {r['bars']:,} synthetic 1-min bars (seed {r['seed']}), best of {r['repeat']}"
    )
    print(f"{'':<22}{'qlcore':>16}{'backtrader':>16}   target")
    print(f"{'run time (s)':<22}{ql['seconds']:>16.2f}{btr['seconds']:>16.2f}")
    print(
        f"{'bars/s':<22}{ql['bars_per_s']:>16,.0f}{btr['bars_per_s']:>16,.0f}"
        f"   qlcore >= {TARGET_BARS_PER_S:,}  {mark(ql['bars_per_s'] >= TARGET_BARS_PER_S)}"
    )
    print(
        f"{'peak RSS (MB)':<22}{ql['max_peak_rss_mb']:>16,.0f}{btr['max_peak_rss_mb']:>16,.0f}"
        f"   qlcore < {TARGET_RSS_MB:,.0f}  {mark(ql['max_peak_rss_mb'] < TARGET_RSS_MB)}"
    )
    print(f"{'fills':<22}{ql['fills']:>16,}{btr['fills']:>16,}")
    print(
        f"{'final equity':<22}{Decimal(ql['final_equity']):>16.2f}{Decimal(btr['final_equity']):>16.2f}"
    )
    print(f"{'total fees':<22}{Decimal(ql['total_fee']):>16.2f}{Decimal(btr['total_fee']):>16.2f}")
    print(
        f"speed ratio qlcore/backtrader: {r['ratio']:.1f}x   target >= {TARGET_RATIO:.0f}x  {mark(r['ratio'] >= TARGET_RATIO)}"
    )
    print(f"qlcore engine loop alone (before building the result): {ql['loop_seconds']:.2f} s")
    print(
        f"check: same fills {'yes' if r['same_fills'] else 'NO'}; final equity differs by "
        f"{r['equity_diff']:.6f} ({'agrees to the cent' if r['same_equity'] else 'DISAGREES'})"
    )
    ties = r.get("sma_ties")
    if ties:
        first = ties["first_noisy_bar"]
        print(
            f"why: {ties['ties']:,} bars have exactly equal SMAs; at {ties['ties_float_nonzero']:,} of them "
            f"backtrader's float64 SMAs differ by rounding noise, so backtrader may see a cross where "
            f"qlcore's exact sums see none (first at bar {first})"
        )
    if btr["refused_orders"]:
        print(f"warning: backtrader refused {btr['refused_orders']} orders")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bars", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=1, help="runs per engine; the best is kept")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    parser.add_argument("--worker", choices=ENGINES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(args.worker, args.bars, args.seed)
        return 0
    result = measure(args.bars, max(1, args.repeat), args.seed)
    if not (result["same_fills"] and result["same_equity"]):
        result["sma_ties"] = sma_ties(args.bars, args.seed)
    report(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    agree = result["same_fills"] and result["same_equity"]
    # the engines may part at an exact SMA tie that backtrader's float rounding turns into a
    # cross (tests/integration/test_backtrader_parity.py proves that this is the only cause)
    explained = not agree and result.get("sma_ties", {}).get("ties_float_nonzero", 0) > 0
    if explained:
        print("verdict: fills differ only through exact SMA ties (documented rule difference)")
    return 0 if agree or explained else 1


if __name__ == "__main__":
    sys.exit(main())
