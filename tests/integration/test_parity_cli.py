"""`qlcore parity` as a user runs it: a real process; exit 0 identical, 1 different, 2 bad input."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from qlcore.store.db import connect
from qlcore.store.runs import list_parity

QLCORE = Path(sys.executable).with_name("qlcore")

BROKEN = '''
from qlcore.strategies.sma_cross import SmaCross


class SkipsThirdEntry(SmaCross):
    """The vectorized form drops the third entry; the event-driven side is untouched."""

    name = "skips_third_entry"

    @classmethod
    def vectorized_signals(cls, close, **params):
        entries, exits = super().vectorized_signals(close, **params)
        entries = entries.copy()
        entries[entries.nonzero()[0][2]] = False
        return entries, exits
'''


def qlcore(*args: str, cwd: Path, strategies_dir: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, QLCORE_DB_URL=f"sqlite:///{cwd / 'q.db'}", QLCORE_USER="alice")
    if strategies_dir is not None:  # the project's strategies folder, where `module:Class` strategies load from
        env["QLCORE_STRATEGIES_DIR"] = str(strategies_dir)
    return subprocess.run([str(QLCORE), "parity", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def test_identical_runs_exit_0_with_the_verdict(tmp_path):
    proc = qlcore("--strategy", "sma_cross", "--symbols", "IBM", "--param", "fast=10", "--param", "slow=30", "--fee-bps", "10", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("parity IDENTICAL: sma_cross(fast=10, slow=30, quantity=100) on IBM, fee 10 bps")
    assert "differing 0" in proc.stdout and "differing trades" not in proc.stdout
    [record] = list_parity(connect(f"sqlite:///{tmp_path / 'q.db'}"))
    assert proc.stdout.rstrip().endswith(f"recorded as parity check {record.id} (research page)")
    assert (record.user, record.strategy, record.symbols, record.verdict) == ("alice", "sma_cross", ["IBM"], "IDENTICAL")
    assert record.report["params"] == {"fast": 10, "slow": 30, "quantity": "100"} and record.report["fee_bps"] == 10


def test_a_difference_exits_1_and_prints_the_differing_trades(tmp_path):
    (tmp_path / "broken_sma.py").write_text(BROKEN)
    proc = qlcore("--strategy", "broken_sma:SkipsThirdEntry", "--symbols", "IBM", cwd=tmp_path, strategies_dir=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout.startswith("parity DIFFERENT")
    assert "first difference: trade #3 (IBM): entry_ts engine" in proc.stdout
    table = proc.stdout.split("differing trades (")[1]
    assert table.splitlines()[2].split()[:2] == ["3", "IBM"]  # the first row shown is trade 3
    [record] = list_parity(connect(f"sqlite:///{tmp_path / 'q.db'}"))
    assert record.verdict == "DIFFERENT" and record.report["first_difference"]["trade"] == 3
    assert "recorded as parity check" in proc.stdout


def test_no_store_records_nothing_and_bad_input_records_nothing(tmp_path):
    proc = qlcore("-s", "sma_cross", "--symbols", "IBM", "--no-store", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "recorded" not in proc.stdout
    assert qlcore("-s", "sma_cross", "--symbols", "XYZ", cwd=tmp_path).returncode == 2
    assert list_parity(connect(f"sqlite:///{tmp_path / 'q.db'}")) == []


def test_json_output_for_a_shared_file(tmp_path, shared_data):
    proc = qlcore("-s", "mean_reversion", "--data-file", str(shared_data / "nvda-1999-2014-daily.csv"), "--param", "window=30", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["ok"] is True and report["symbols"] == ["NVDA"]
    assert report["trades_engine"] == report["trades_vectorbt"] > 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["-s", "rebalance", "--symbols", "IBM"], "rebalance has no vectorized form"),
        (["-s", "sma_cross", "--symbols", "IBM", "--param", "fast=40", "--param", "slow=20"], "fast (40) must be below slow (20)"),
        (["-s", "sma_cross", "--symbols", "IBM", "--param", "speed=4"], "unknown parameter(s) speed; valid parameters: fast"),
        (["-s", "sma_cross", "--symbols", "IBM", "--fee-bps", "ten"], "fee_bps"),
        (["-s", "sma_cross", "--symbols", "XYZ"], "XYZ"),
        (["-s", "nope", "--symbols", "IBM"], "unknown strategy 'nope'"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(tmp_path, args, message):
    proc = qlcore(*args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr
