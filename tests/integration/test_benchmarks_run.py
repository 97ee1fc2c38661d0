"""Every benchmark script still runs end to end and reports its figures (tiny sizes).

Speed is not judged here (these machines are noisy; `make bench` and `benchmarks/README.md` hold the
figures): a script may exit 1 for a missed target, never with a traceback, and what it reports must
be the figures of the work it was asked to do. `bench_sweep.py` is left out: it compiles vectorbt's
kernels cold (about 100 s), and the sweep itself is tested in tests/unit/research.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _run(script: str, *args: str, tmp_path: Path) -> dict:
    out = tmp_path / f"{script}.json"
    done = subprocess.run([sys.executable, str(BENCH / script), *args, "--json", str(out)], capture_output=True,
                          text=True, timeout=300, stdin=subprocess.DEVNULL, cwd=tmp_path)
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.returncode in (0, 1), f"{script} exited {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return json.loads(out.read_text())


def test_engine_benchmark(tmp_path):
    r = _run("bench_engine.py", "--orders", "400", "--batch", "100", "--paced", "50", "--commands", "10",
             "--checks", "20", "--steps", "20", "--realtime", "0", tmp_path=tmp_path)
    assert r["order path, sustained"]["orders"] == 400 and r["order path, sustained"]["filled"] == 400
    assert r["order path, paced"]["n"] == 50 and r["order path, paced, synchronous=NORMAL"]["n"] == 50
    assert r["command path, paced"]["n"] == 10
    assert r["credential checks"]["verify_us"]["n"] == 20 and r["credential checks"]["sign_us"]["n"] == 20
    assert r["500 strategies, as fast as possible"]["steps"] == 20


def test_store_benchmark(tmp_path):
    r = _run("bench_store.py", "--events", "5000", tmp_path=tmp_path)
    assert 4_900 <= r["events"] <= 5_000 and r["sqlite"]["hash_matches"] is True  # whole generated orders
    assert r["sqlite"]["append_per_s"] > 0 and r["sqlite"]["replay_per_s"] > 0


def test_backtest_benchmark_against_backtrader(tmp_path):
    r = _run("bench_backtest.py", "--bars", "20000", tmp_path=tmp_path)
    assert r["bars"] == 20000 and r["qlcore"]["bars_per_s"] > 0 and r["backtrader"]["bars_per_s"] > 0
    assert r["ratio"] == pytest.approx(r["qlcore"]["bars_per_s"] / r["backtrader"]["bars_per_s"], rel=0.01)


def test_risk_benchmark(tmp_path):
    r = _run("bench_risk.py", "--orders", "500", "--repeat", "1", tmp_path=tmp_path)["risk"]["attached"]
    # every order passed or was denied (an order denied by several rules counts under each)
    assert r["orders"] == 500 and 0 < r["passed"] < 500 and sum(r["denied"].values()) >= 500 - r["passed"]
    assert len(r["rules_in_chain"]) >= 17 and 0 < r["p50_us"] <= r["p99_us"]


def test_paper_venue_benchmark(tmp_path):
    r = _run("bench_paper_venue.py", "--orders", "500", tmp_path=tmp_path)
    assert r["paper"]["orders"] == 500 and r["paper"]["consistent"] is True and r["simulated"]["orders"] == 500


def test_scheduler_benchmark(tmp_path):
    r = _run("bench_scheduler.py", "--runs", "1", "--fires", "0", tmp_path=tmp_path)["scheduler"]
    assert r["overhead"]["runs"] == 1 and r["overhead"]["statuses"] == ["succeeded"]


def test_dashboard_benchmark(tmp_path):
    r = _run("bench_dashboards.py", "--sessions", "2", "--seconds", "2", "--warmup", "1", tmp_path=tmp_path)
    assert r["sessions"] == 2 and r["updates_measured"] > 0 and r["order_commands_accepted"] > 0
    assert 0 < r["latency_ms_p50"] <= r["latency_ms_p95"]


def test_halt_flood_benchmark(tmp_path):
    r = _run("bench_halt_flood.py", "--clients", "4", "--halt-after", "1", tmp_path=tmp_path)
    s = r["sqlite"]
    assert s["clients"] == 4 and s["halt_outcome"].startswith("accepted") and s["halt_latency_ms"] > 0
    assert s["accepted_after_halt_though_sent_before"] == 0 and s["orders"]["not_completed"] == 0
    assert s["orders"]["sent"] == s["orders"]["accepted"] + s["orders"]["refused"] > 0
    assert 0 < s["engine_rss_mb"]["before"] <= s["engine_rss_mb"]["peak"]
