"""Data-path speed: a million synthetic bars, metrics over a million bars, the 1-minute real file.

These were timing assertions in the unit tests; a loaded machine made them flaky, and speed belongs
here. Each figure is the best of `--repeat` runs, after one warm-up (imports, caches).

    python benchmarks/bench_data.py [--repeat K] [--json PATH]
"""
from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
ONE_MINUTE_FILE = "futures-2006-01-02-1min.csv"


def best_of(repeat: int, work: Callable[[], object]) -> float:
    work()  # warm-up
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def measure(repeat: int) -> dict:
    from qlcore.data import load_csv, synthetic_bars
    from qlcore.portfolio.metrics import compute_metrics

    n = 1_000_000
    rng = np.random.default_rng(1)
    equity = pd.Series(1e6 * np.exp(np.cumsum(rng.normal(0, 1e-4, n))),
                       index=pd.date_range("2020-01-01", periods=n, freq="min"))
    exposure = pd.Series(np.ones(n), index=equity.index)
    out = {
        "synthetic_bars_1m_s": best_of(repeat, lambda: synthetic_bars(n)),
        "metrics_1m_bars_s": best_of(repeat, lambda: compute_metrics(equity, exposure=exposure)),
    }
    path = SHARED_DATA / ONE_MINUTE_FILE
    if path.is_file():
        out["load_1min_file_s"] = best_of(repeat, lambda: load_csv(path))
    return {k: round(v, 3) for k, v in out.items()}


TARGETS = {"synthetic_bars_1m_s": 2.0, "metrics_1m_bars_s": 1.0, "load_1min_file_s": 1.0}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    result = measure(max(1, args.repeat))
    for name, seconds in result.items():
        target = TARGETS[name]
        print(f"{name:<24}{seconds:>8.3f} s   target < {target:g} s   {'ok' if seconds < target else 'MISSED'}")
    if args.json:
        args.json.write_text(json.dumps({"data": result}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
