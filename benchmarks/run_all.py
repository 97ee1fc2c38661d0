"""Run every benchmark (each in its own subprocess), print figures against targets, save them.

Backtest vs backtrader, the event store, the paper engine's order path and 500 strategies, the
pre-trade risk chain, the scheduler.

    python benchmarks/run_all.py [--quick] [--repeat K] [--strict] [--json PATH]

`--quick`: 100,000 bars and 50,000 events, a smoke check (targets are set for the full sizes).
The figures go to benchmarks/results/latest.json (git-ignored). The exit code is 1 when a
correctness check fails (fills, final equity, replayed state hash), and with `--strict` also
when a speed or memory target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
FULL = {"bars": 1_000_000, "events": 500_000}
QUICK = {"bars": 100_000, "events": 50_000}


def run(script: str, args: list[str], json_path: Path) -> int:
    cmd = [sys.executable, str(HERE / script), *args, "--json", str(json_path)]
    print(f"\n$ {' '.join(cmd[1:])}", flush=True)
    return subprocess.run(cmd, check=False).returncode


def _ties_explain(bt: dict) -> bool:
    """The engines may part only where the SMAs tie exactly and backtrader's float rounding turns
    the tie into a cross: bench_backtest.py counts those bars, and the parity tests prove that this
    is the cause (tests/integration/test_backtrader_parity.py)."""
    return bt.get("sma_ties", {}).get("ties_float_nonzero", 0) > 0


def summary(bt: dict, st: dict) -> list[dict]:
    """One row per figure: what, measured, target, whether it is met (None: no target)."""
    ql, btr = bt["qlcore"], bt["backtrader"]
    ties_explain = _ties_explain(bt)
    rows = [
        ("qlcore backtest, bars/s", ql["bars_per_s"], ">= 130,000", ql["bars_per_s"] >= 130_000),
        ("backtrader backtest, bars/s", btr["bars_per_s"], "", None),
        ("speed ratio qlcore/backtrader", bt["ratio"], ">= 15x", bt["ratio"] >= 15),
        ("qlcore peak RSS, MB", ql["max_peak_rss_mb"], "< 1,024", ql["max_peak_rss_mb"] < 1024),
        ("backtrader peak RSS, MB", btr["max_peak_rss_mb"], "", None),
        (
            "fills, qlcore / backtrader",
            f"{ql['fills']:,} / {btr['fills']:,}",
            "same/ties",
            bt["same_fills"] or ties_explain,
        ),
        (
            "final equity |difference|",
            f"{bt['equity_diff']:.6f}",
            "< 0.005/ties",
            bt["same_equity"] or ties_explain,
        ),
    ]
    s = st["sqlite"]
    rows += [
        ("SQLite append, events/s", s["append_per_s"], ">= 100,000", s["append_per_s"] >= 100_000),
        ("SQLite replay, events/s", s["replay_per_s"], ">= 300,000", s["replay_per_s"] >= 300_000),
        ("SQLite replayed hash = in-memory fold", s["hash_matches"], "equal", s["hash_matches"]),
    ]
    pg = st.get("postgresql")
    if pg:
        rows += [
            ("PostgreSQL append, events/s", pg["append_per_s"], "", None),
            ("PostgreSQL replay, events/s", pg["replay_per_s"], "", None),
            (
                "PostgreSQL replayed hash = in-memory fold",
                pg["hash_matches"],
                "equal",
                pg["hash_matches"],
            ),
        ]
    return [{"figure": f, "value": v, "target": t, "met": m} for f, v, t, m in rows]


def service_summary(extra: dict) -> list[dict]:
    """Rows for the paper engine, the risk chain and the scheduler (those that ran)."""
    rows: list[tuple] = []
    eng = extra.get("engine")
    if eng:
        s, p = eng["order path, sustained"], eng["order path, paced"]
        n = eng.get("order path, paced, synchronous=NORMAL")
        rows += [
            ("engine durable orders/s (sustained)", s["orders_per_s"], ">= 5,000", s["orders_per_s"] >= 5000),
            ("order latency p50/p99 ms, 1,000/s, FULL", f"{p['p50_ms']} / {p['p99_ms']}", "", None),
        ]
        if n:  # crash-durable commits (what the crash tests kill); FULL adds an fsync per commit
            rows.append(("order latency p99 ms, 1,000/s, NORMAL", n["p99_ms"], "<= 2", n["p99_ms"] <= 2))
        c = eng["command path, paced"]
        rows.append(("command -> outcome p99 ms (100/s)", c["p99_ms"], "< 100", c["p99_ms"] < 100))
        rt = eng.get("500 strategies, real time")
        if rt:
            rows.append(("500 strategies x 50 symbols, core share", rt["core_share"], "< 0.5", rt["core_share"] < 0.5 and rt["kept_up"]))
    risk = extra.get("risk")
    if risk:
        a = risk["attached"]
        rows += [
            ("risk chain p50 us", a["p50_us"], "<= 20", a["p50_us"] <= 20),
            ("risk chain p99 us", a["p99_us"], "", None),
        ]
    sched = extra.get("scheduler")
    if sched:
        o, q = sched["overhead"], sched["punctuality"]
        rows.append(("scheduled run overhead p50 s", o["p50_s"], "<= 3", o["p50_s"] <= 3))
        if not q.get("skipped"):
            rows.append(("scheduler misfires", q["misfires"], "0", q["misfires"] == 0 and q["ok"]))
    data = extra.get("data")
    if data:
        for key, what, target in (("synthetic_bars_1m_s", "1M synthetic bars, s", 2.0),
                                  ("metrics_1m_bars_s", "metrics over 1M bars, s", 1.0),
                                  ("load_1min_file_s", "load the 1-minute file, s", 1.0)):
            if key in data:
                rows.append((what, data[key], f"< {target:g}", data[key] < target))
    return [{"figure": f, "value": v, "target": t, "met": m} for f, v, t, m in rows]


def _fmt(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"
    return str(value)


def print_table(rows: list[dict], title: str) -> None:
    print(f"\n{title}")
    print(f"{'figure':<42}{'measured':>18}  {'target':<15}status")
    for r in rows:
        status = "" if r["met"] is None else ("ok" if r["met"] else "MISSED")
        print(f"{r['figure']:<42}{_fmt(r['value']):>18}  {r['target']:<15}{status}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke check")
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per measurement; the best is kept"
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--json", type=Path, default=HERE / "results" / "latest.json")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    repeat = ["--repeat", str(max(1, args.repeat))]

    with tempfile.TemporaryDirectory(prefix="qlbench-") as tmp:
        bt_json, st_json = Path(tmp) / "backtest.json", Path(tmp) / "store.json"
        run("bench_backtest.py", ["--bars", str(sizes["bars"]), *repeat], bt_json)
        run("bench_store.py", ["--events", str(sizes["events"]), *repeat], st_json)
        bt = json.loads(bt_json.read_text())  # written even when a check failed
        st = json.loads(st_json.read_text())
        extra: dict = {}
        services = [
            ("engine", "bench_engine.py", ["--orders", "10000", "--paced", "2000", "--commands", "200", "--steps", "200",
                                           "--realtime", "10"] if args.quick else []),
            ("risk", "bench_risk.py", ["--orders", "5000"] if args.quick else []),
            ("scheduler", "bench_scheduler.py", ["--runs", "5", "--fires", "0"] if args.quick else []),
            ("data", "bench_data.py", ["--repeat", "1"] if args.quick else []),
        ]
        for name, script, script_args in services:
            out = Path(tmp) / f"{name}.json"
            run(script, script_args, out)
            if out.exists():
                extra.update(json.loads(out.read_text()) if name != "engine" else {"engine": json.loads(out.read_text())})

    rows = summary(bt, st) + service_summary(extra)
    title = f"summary ({'quick' if args.quick else 'full'}: {sizes['bars']:,} bars, {sizes['events']:,} events)"
    print_table(rows, title)
    result = {
        "generated": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "sizes": sizes,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "summary": rows,
        "backtest": bt,
        "store": st,
        **extra,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print(f"\nwritten: {args.json}")

    checks_ok = (
        ((bt["same_fills"] and bt["same_equity"]) or _ties_explain(bt))
        and all(st[b]["hash_matches"] for b in ("sqlite", "postgresql") if b in st)
    )
    targets_ok = all(r["met"] is not False for r in rows)
    return 0 if checks_ok and (targets_ok or not args.strict) else 1


if __name__ == "__main__":
    sys.exit(main())
