"""The `qlcore` command as a user runs it: a real process, a real SQLite file under a data folder."""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

QLCORE = Path(sys.executable).with_name("qlcore")


def qlcore(*args: str, data_dir: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "QLCORE_DB_URL"}
    env["QLCORE_DATA_DIR"] = str(data_dir)
    proc = subprocess.run([str(QLCORE), *args], capture_output=True, text=True, env=env, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"qlcore {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_backtest_json_then_replay_verify_from_the_store(tmp_path):
    out = qlcore("backtest", "--strategy", "sma_cross", "--symbols", "AAPL,MSFT", "--param", "fast=10", "--param", "slow=50", "--fee-bps", "10", "--json", data_dir=tmp_path)
    result = json.loads(out.stdout)
    assert result["strategies"][0]["params"] == {"fast": 10, "slow": 50, "quantity": "100"}
    assert [d["symbol"] for d in result["data"]] == ["AAPL", "MSFT"]
    assert result["fills"] > 10 and result["config"]["fee_bps"] == "10"
    assert (tmp_path / "qlcore.db").is_file()

    verified = qlcore("replay", "--verify", result["run_id"], data_dir=tmp_path)
    assert "verified" in verified.stdout
    assert result["state_hash"] in verified.stdout
    assert f"equity {float(result['final_equity']):,.2f}" in verified.stdout

    runs = qlcore("runs", data_dir=tmp_path)
    assert result["run_id"] in runs.stdout


def test_replay_verify_fails_on_a_tampered_log_and_names_the_row(tmp_path):
    out = qlcore("backtest", "-s", "sma_cross", "--symbols", "IBM", "--json", data_dir=tmp_path)
    run_id = json.loads(out.stdout)["run_id"]
    with sqlite3.connect(tmp_path / "qlcore.db") as conn:
        conn.execute("UPDATE events SET payload = replace(payload, ',\"100\",', ',\"1000\",') WHERE stream = ? AND seq = 7", (run_id,))
    proc = qlcore("replay", "--verify", run_id, data_dir=tmp_path, check=False)
    assert proc.returncode == 2
    assert f"event log '{run_id}' is corrupt at seq 7: checksum mismatch" in proc.stderr


def test_backtest_of_a_shared_csv_file(tmp_path, shared_data):
    out = qlcore("backtest", "--strategy", "sma_cross", "--data-file", str(shared_data / "orcl-1995-2014-daily.csv"), "--param", "fast=10", "--param", "slow=30", "--json", data_dir=tmp_path)
    result = json.loads(out.stdout)
    assert result["data"][0]["symbol"] == "ORCL" and result["data"][0]["rows"] == 5036
    assert result["bars"] == 5036


@pytest.mark.parametrize(
    "args, message",
    [
        (["--strategy", "nope", "--symbols", "AAPL"], "unknown strategy 'nope'; built-in strategies: mean_reversion, rebalance, sma_cross"),
        (["--strategy", "sma_cross", "--symbols", "AAPL", "--param", "speed=3"], "unknown parameter(s) speed; valid parameters: fast (default 10), slow (default 30), quantity (default 100)"),
        (["--strategy", "sma_cross", "--symbols", "AAPL", "--param", "fast=ten"], "parameter fast='ten' is not a valid int"),
        (["--strategy", "sma_cross", "--symbols", "AAPL", "--param", "fast=60"], "fast (60) must be below slow (30)"),
        (["--strategy", "sma_cross", "--symbols", "ZZZ"], "valid symbols: AAPL, GOOG, IBM, MSFT"),
        (["--strategy", "sma_cross", "--data-file", "/nonexistent.csv"], "data file not found: /nonexistent.csv"),
        (["--strategy", "sma_cross", "--symbols", "AAPL", "--fee-bps", "-1"], "fee_bps: must be >= 0, got -1"),
        (["--strategy", "sma_cross"], "no data: give --symbols"),
    ],
    ids=["unknown-strategy", "unknown-param", "bad-type", "bad-relation", "unknown-symbol", "missing-file", "negative-fee", "no-data"],
)
def test_bad_input_exits_2_with_a_clear_message(tmp_path, args, message):
    proc = qlcore("backtest", *args, data_dir=tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_csv_row_is_named_with_file_line_and_column(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("Date,Open,High,Low,Close,Adj Close,Volume\n2020-01-02,10,11,9,10.5,10.5,100\n2020-01-03,10,9,11,10,10,100\n")
    proc = qlcore("backtest", "-s", "sma_cross", "-f", str(bad), data_dir=tmp_path, check=False)
    assert proc.returncode == 2
    assert "line 3" in proc.stderr and "high" in proc.stderr


def test_data_list_shows_the_embedded_samples(tmp_path):
    out = qlcore("data", "list", data_dir=tmp_path).stdout
    for sym in ("AAPL", "GOOG", "IBM", "MSFT"):
        assert sym in out
    assert "3270" in out.replace(",", "")  # AAPL rows


def test_strategies_lists_builtins_with_params(tmp_path):
    out = qlcore("strategies", data_dir=tmp_path).stdout
    assert "sma_cross" in out and "mean_reversion" in out and "rebalance" in out
    assert "fast" in out and "window" in out


def test_demo_runs_every_builtin_verifies_and_writes_a_report(tmp_path):
    out = qlcore("demo", data_dir=tmp_path).stdout
    assert out.count("verified") == 9
    assert "MISMATCH" not in out
    rows = {line.split()[1] + " " + line.split()[2]: line.split() for line in out.splitlines() if line.startswith("bt-")}
    fills, closed = (int(x) for x in rows["rebalance AAPL,IBM,MSFT"][-3:-1])
    assert fills > 0 and closed == 0  # it trades, but never closes a whole position: fills tell
    fills, closed = (int(x) for x in rows["sma_cross AAPL"][-3:-1])
    assert closed > 0 and closed * 2 - 1 <= fills <= closed * 2 + 1  # each round trip one entry and one exit
    report = tmp_path / "reports" / "demo.html"
    html = report.read_text()
    assert "sma_cross on AAPL" in html and "rebalance on AAPL, IBM, MSFT" in html


def test_data_check_exits_2_on_a_file_with_issues_and_0_on_a_clean_one(tmp_path):
    bad = tmp_path / "dups.csv"
    bad.write_text("Date,Open,High,Low,Close,Adj Close,Volume\n2020-01-02,10,11,9,10.5,10.5,100\n2020-01-02,10,11,9,10.5,10.5,100\n")
    proc = qlcore("data", "check", str(bad), data_dir=tmp_path, check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"error: {bad} line 3, column 'ts': duplicate row" in proc.stderr
    good = tmp_path / "good.csv"
    good.write_text("Date,Open,High,Low,Close,Adj Close,Volume\n2020-01-02,10,11,9,10.5,10.5,100\n2020-01-03,10,11,9,10.5,10.5,100\n")
    assert qlcore("data", "check", str(good), data_dir=tmp_path, check=False).returncode == 0


def test_replay_verify_exits_1_when_the_run_record_disagrees(tmp_path):
    run_id = json.loads(qlcore("backtest", "-s", "sma_cross", "--symbols", "IBM", "--json", data_dir=tmp_path).stdout)["run_id"]
    with sqlite3.connect(tmp_path / "qlcore.db") as conn:
        conn.execute("UPDATE runs SET state_hash = 'deadbeef' WHERE run_id = ?", (run_id,))
    proc = qlcore("replay", "--verify", run_id, data_dir=tmp_path, check=False)
    assert proc.returncode == 1
    assert "VERIFY FAILED" in proc.stderr
