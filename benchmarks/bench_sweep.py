"""Sweep speed: `qlcore.research.sweep` vs the same sweep written directly against vectorbt.

`sma_cross` on synthetic one-minute bars, one set per (fast, slow) pair, fee 10 bps, 100 shares,
signals one bar late and filled at the open (the engine's conventions) on both sides:

* ours: ``qlcore.research.sweep("sma_cross", pairs, frame, ...)`` — exact integer signals (numba),
  `Portfolio.from_signals`, metrics from the order records;
* direct: what a vectorbt user writes — ``vbt.MA.run`` for the fast and slow windows,
  ``ma_crossed_above`` / ``ma_crossed_below``, ``vbt.Portfolio.from_signals`` on the shifted
  signals, then ``total_return``, ``sharpe_ratio``, ``max_drawdown``, ``trades.count`` and
  ``final_value``. Columns go in chunks too, sized for a 4 GiB budget at the ~128 bytes per
  (bar, set) cell that path was measured to hold at its peak (moving averages, signals, shifted
  copies, vectorbt's broadcast close and call sequence, pandas copies, value and returns); ours
  are sized by `qlcore.research.sweep`'s default 1 GiB budget at 4 bytes per cell.

Each side runs in its own subprocess, twice: "cold" with an empty numba cache (``NUMBA_CACHE_DIR``
set to a fresh folder: every kernel compiles), then "warm" with the cache the cold run left.
The time of the sweep call is reported, and the whole process's wall time, which adds Python
start-up, imports and data generation. Peak memory (RSS) of each child is reported too.

    python benchmarks/bench_sweep.py [--bars N] [--sets K] [--chunk C] [--tick T] [--json PATH]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FEE_BPS = 10
QUANTITY = 100
INIT_CASH = 100_000
TARGET_RATIO = 1.10
DIRECT_BYTES_PER_CELL = 128
DIRECT_BUDGET = 4 << 30
SIDES = ("ours", "direct")


def pairs(n_sets: int) -> list[tuple[int, int]]:
    """`n_sets` (fast, slow) pairs, all valid: fast 2, 3, ... against slow 50, 55, ..."""
    n_fast = max(1, min(40, n_sets))
    n_slow = -(-n_sets // n_fast)
    grid = [(f, 50 + 5 * s) for s in range(n_slow) for f in range(2, 2 + n_fast)]
    return grid[:n_sets]


def default_chunk(side: str, bars: int) -> int:
    if side == "direct":
        return max(1, DIRECT_BUDGET // (DIRECT_BYTES_PER_CELL * bars))
    from qlcore.research.sweep import _BYTES_PER_CELL, DEFAULT_MEMORY_BUDGET

    return max(1, DEFAULT_MEMORY_BUDGET // (_BYTES_PER_CELL * bars))


def run_ours(df, grid: list[tuple[int, int]], chunk: int):
    from qlcore.research import sweep

    sets = [{"fast": f, "slow": s} for f, s in grid]
    result = sweep(
        "sma_cross", sets, {"SYN": df}, fee_bps=FEE_BPS, quantity=QUANTITY, init_cash=INIT_CASH,
        chunk_size=chunk, progress=False,
    )
    t = result.table
    return t["final_equity"].to_numpy(), t["n_trades"].to_numpy()


def run_direct(df, grid: list[tuple[int, int]], chunk: int):
    import numpy as np
    import pandas as pd
    import vectorbt as vbt

    close, open_ = df["close"], df["open"]
    finals, trades = [], []
    for start in range(0, len(grid), chunk):
        part = grid[start : start + chunk]
        fast = vbt.MA.run(close, [f for f, _ in part], short_name="fast")
        slow = vbt.MA.run(close, [s for _, s in part], short_name="slow")
        entries = fast.ma_crossed_above(slow)
        exits = fast.ma_crossed_below(slow)
        pf = vbt.Portfolio.from_signals(
            close, entries.vbt.fshift(1, fill_value=False), exits.vbt.fshift(1, fill_value=False),
            price=open_, size=QUANTITY, fees=FEE_BPS / 10_000, init_cash=INIT_CASH,
            direction="longonly", freq="1min",
        )
        metrics = pd.DataFrame(
            {
                "total_return": pf.total_return(),
                "sharpe": pf.sharpe_ratio(),
                "max_drawdown": pf.max_drawdown(),
                "trades": pf.trades.closed.count(),
                "final_equity": pf.final_value(),
            }
        )
        finals.append(metrics["final_equity"].to_numpy())
        trades.append(metrics["trades"].to_numpy())
        # vectorbt's cached methods keep a reference cycle through the portfolio: without a
        # collection each chunk's (bars x sets) arrays wait for the cycle collector, and a
        # 1,000-set run over a million bars outgrows 24 GB
        del fast, slow, entries, exits, pf, metrics
        gc.collect()
    return np.concatenate(finals), np.concatenate(trades)


def child(side: str, bars: int, n_sets: int, chunk: int, seed: int, tick: float, out: str) -> None:
    started = time.perf_counter()
    import numpy as np

    from qlcore.data import synthetic_bars

    df = synthetic_bars(bars, freq="1min", seed=seed, tick=tick)
    grid = pairs(n_sets)
    run = run_ours if side == "ours" else run_direct
    if side == "ours":  # import vectorbt before the clock starts, on both sides
        from qlcore.research import vectorbt

        vectorbt()
    else:
        import vectorbt
    t0 = time.perf_counter()
    finals, trades = run(df, grid, chunk)
    seconds = time.perf_counter() - t0
    Path(out).write_text(
        json.dumps(
            {
                "sweep_seconds": seconds,
                "process_seconds": time.perf_counter() - started,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "final_equity": np.asarray(finals, dtype=float).tolist(),
                "trades": np.asarray(trades, dtype=float).tolist(),
            }
        )
    )


def measure(side: str, args: argparse.Namespace, cache_dir: str, label: str) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir}
    chunk = args.chunk or default_chunk(side, args.bars)
    cmd = [sys.executable, __file__, "--child", side, "--bars", str(args.bars), "--sets", str(args.sets),
           "--chunk", str(chunk), "--seed", str(args.seed), "--tick", repr(args.tick), "--out", out]
    wall = time.perf_counter()
    proc = subprocess.run(cmd, env=env, check=False)
    wall = time.perf_counter() - wall
    if proc.returncode:
        raise SystemExit(f"{side} ({label}) failed with exit code {proc.returncode}")
    result = json.loads(Path(out).read_text())
    os.unlink(out)
    print(f"  {side:<7} {label:<5} sweep {result['sweep_seconds']:8.2f} s   process {result['process_seconds']:8.2f} s   "
          f"peak RSS {result['peak_rss_mb']:8.0f} MB", flush=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bars", type=int, default=1_000_000)
    parser.add_argument("--sets", type=int, default=1_000)
    parser.add_argument("--chunk", type=int, default=0, help="sets per chunk on both sides (default: by memory budget)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tick", type=float, default=0.01, help="price grid of the synthetic bars (1e-6: few exact ties)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--child", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.bars, args.sets, args.chunk, args.seed, args.tick, args.out)
        return 0

    chunks = {side: args.chunk or default_chunk(side, args.bars) for side in SIDES}
    print(f"sweep of {args.sets:,} sma_cross sets over {args.bars:,} one-minute bars; sets per chunk: "
          f"ours {chunks['ours']}, direct {chunks['direct']} ({os.cpu_count()} CPUs, Python {platform.python_version()})",
          flush=True)
    figures: dict = {"bars": args.bars, "sets": args.sets, "tick": args.tick, "chunk": chunks}
    for side in SIDES:
        with tempfile.TemporaryDirectory(prefix=f"numba-{side}-") as cache_dir:
            cold = measure(side, args, cache_dir, "cold")
            warm = measure(side, args, cache_dir, "warm")
        figures[side] = {"cold": cold, "warm": warm}

    import numpy as np

    ours, direct = figures["ours"]["warm"], figures["direct"]["warm"]
    same_trades = np.asarray(ours["trades"]) == np.asarray(direct["trades"])
    close_equity = np.isclose(ours["final_equity"], direct["final_equity"], rtol=1e-9, atol=0)
    for key in ("final_equity", "trades"):
        for side in SIDES:
            for temp in ("cold", "warm"):
                figures[side][temp].pop(key)
    figures["ratio_warm"] = ours["sweep_seconds"] / direct["sweep_seconds"]
    figures["ratio_cold"] = figures["ours"]["cold"]["sweep_seconds"] / figures["direct"]["cold"]["sweep_seconds"]
    figures["sets_with_same_trades"] = int(same_trades.sum())
    figures["sets_with_same_final_equity"] = int((same_trades & close_equity).sum())
    figures["target_ratio"] = TARGET_RATIO
    print(f"\nours / direct, sweep seconds: warm {figures['ratio_warm']:.2f}, cold {figures['ratio_cold']:.2f} "
          f"(target <= {TARGET_RATIO:.2f}: {'met' if figures['ratio_warm'] <= TARGET_RATIO else 'MISSED'})")
    agree = figures["sets_with_same_final_equity"]
    print(f"results agree (same closed trades and final equity to 1e-9) on {agree:,} of {args.sets:,} sets"
          + ("" if agree == args.sets else "; the others differ where the float moving averages of the direct "
             "side and the exact integer sums decide a tie differently (try --tick 1e-6)"))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
