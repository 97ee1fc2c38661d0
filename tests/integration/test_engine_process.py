"""`qlcore engine` as a real process on a real SQLite file, driven only through the CLI."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

from qlcore.control.keys import provision
from qlcore.control.users import UserStore

QLCORE = [str(Path(sys.executable).with_name("qlcore"))]  # the installed console script, as a user runs it


def _cli(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([*QLCORE, *args], env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    if check:
        assert done.returncode == 0, f"qlcore {' '.join(args)} -> {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def _status(env: dict[str, str]) -> dict:
    return json.loads(_cli(env, "status", "--json").stdout)


def _wait(env: dict[str, str], engine: subprocess.Popen, predicate, timeout: float = 90.0) -> dict:
    """Poll `qlcore status` until `predicate` holds. The bound is generous (a loaded CI machine runs the
    browser tests beside this one); a dead engine fails at once, with its log."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            snap = _status(env)
            if predicate(snap):
                return snap
            last = snap
        except (AssertionError, json.JSONDecodeError) as exc:
            last = exc
        if engine.poll() is not None or time.monotonic() > deadline:
            log = Path(env["QLCORE_DATA_DIR"], "engine.log").read_text()[-3000:]
            why = f"engine exited with {engine.returncode}" if engine.returncode is not None else f"not met within {timeout} s"
            raise AssertionError(f"condition {why}; last status: {last!r}\nengine log:\n{log}")
        time.sleep(0.2)


def test_engine_process_takes_cli_commands_and_reports_fills_and_positions(tmp_path: Path):
    env = {**os.environ, "QLCORE_DATA_DIR": str(tmp_path), "QLCORE_USER": "alice"}
    env.pop("QLCORE_DB_URL", None)
    provision(UserStore(tmp_path / "users.toml"), {"alice": "admin", "risk-officer": "admin"})  # their signing keys
    log = (tmp_path / "engine.log").open("w")
    engine = subprocess.Popen(
        [*QLCORE, "engine", "--speed", "40", "--symbols", "AAPL,MSFT,IBM"],
        env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )
    try:
        _wait(env, engine, lambda s: s["state"] == "running" and s.get("feed", {}).get("bars", 0) > 0)
        assert (tmp_path / "qlcore.db").is_file()

        deployed = _cli(env, "strategy", "deploy", "sma_cross", "--id", "fast-aapl", "--symbols", "AAPL",
                        "-p", "fast=2", "-p", "slow=5", "--capital", "50000")
        assert "accepted: deployed fast-aapl" in deployed.stdout
        manual = _cli(env, "order", "submit", "--strategy", "desk", "--symbol", "MSFT", "--side", "BUY", "--qty", "25")
        assert "accepted: order" in manual.stdout

        bad = _cli(env, "strategy", "deploy", "no_such", "--id", "x", check=False)
        assert bad.returncode == 1 and "refused: unknown strategy 'no_such'" in bad.stderr
        # started without --limits: the default limits are in force, and a module outside the places
        # strategies load from is refused before it is imported
        too_big = _cli(env, "order", "submit", "--strategy", "desk", "--symbol", "MSFT", "--side", "BUY", "--qty", "10001",
                       check=False)
        assert too_big.returncode == 1 and "max_order_quantity: limit 10000" in too_big.stderr
        outside = _cli(env, "strategy", "deploy", "os:system", "--id", "y", check=False)
        assert outside.returncode == 1 and "refused: strategy 'os:system' refused: module 'os' is not in a place" in outside.stderr
        bad_cancel = _cli(env, "order", "cancel", "engine-424242", check=False)
        assert bad_cancel.returncode == 1 and "unknown order id" in bad_cancel.stderr
        malformed = _cli(env, "order", "submit", "--strategy", "desk", "--symbol", "MSFT", "--side", "HOLD", "--qty", "1", check=False)
        assert malformed.returncode == 2 and "side" in malformed.stderr

        snap = _wait(env, engine, lambda s: any(st["strategy_id"] == "fast-aapl" and st["trades"] >= 2 for st in s["strategies"]))
        desk = [p for p in snap["positions"] if p["strategy_id"] == "desk"]
        assert desk and desk[0]["symbol"] == "MSFT" and Decimal(desk[0]["quantity"]) == 25
        assert any(f["strategy_id"] == "fast-aapl" for f in snap["fills"])
        assert snap["state"] == "running"  # still up after the bad commands

        paused = _cli(env, "strategy", "pause", "fast-aapl")
        assert "accepted: paused fast-aapl" in paused.stdout
        listing = _cli(env, "strategy", "list", "--json")
        assert {s["strategy_id"]: s["state"] for s in json.loads(listing.stdout)}["fast-aapl"] == "PAUSED"
        by_instrument = json.loads(_cli(env, "positions", "--by", "instrument", "--json").stdout)
        assert Decimal({r["symbol"]: r["quantity"] for r in by_instrument}["MSFT"]) >= 25

        human = _cli(env, "status")
        assert "engine engine: running" in human.stdout and "strategies  1 paused=1" in human.stdout
    finally:
        engine.send_signal(signal.SIGINT)
        code = engine.wait(30)
        log.close()
    assert code == 0, (tmp_path / "engine.log").read_text()[-2000:]
    assert "stopped (signal SIGINT)" in (tmp_path / "engine.log").read_text()
    assert "  limits:    default limits file " in (tmp_path / "engine.log").read_text()
    assert _status(env)["state"] == "stopped"
    late = _cli(env, "order", "submit", "--strategy", "d", "--symbol", "AAPL", "--side", "BUY", "--qty", "1", "--wait", "0.5", check=False)
    assert late.returncode == 3 and "is `qlcore engine` running?" in late.stderr


def _held(snap: dict, strategy_id: str, symbol: str) -> Decimal:
    return sum((Decimal(p["quantity"]) for p in snap["positions"] if (p["strategy_id"], p["symbol"]) == (strategy_id, symbol)),
               Decimal(0))


def test_halt_flatten_and_resume_trading_through_the_cli_on_an_engine_process(tmp_path: Path):
    env = {**os.environ, "QLCORE_DATA_DIR": str(tmp_path), "QLCORE_USER": "alice"}
    env.pop("QLCORE_DB_URL", None)
    provision(UserStore(tmp_path / "users.toml"), {"alice": "admin", "risk-officer": "admin"})  # their signing keys
    risk = tmp_path / "risk.toml"
    risk.write_text('[modes]\nauthorised = ["risk-officer"]\n')
    log = (tmp_path / "engine.log").open("w")
    engine = subprocess.Popen(
        [*QLCORE, "engine", "--speed", "40", "--symbols", "AAPL,MSFT", "--risk-config", str(risk)],
        env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )
    buy = ("order", "submit", "--strategy", "desk", "--symbol", "MSFT", "--side", "BUY")
    try:
        _wait(env, engine, lambda s: s["state"] == "running" and s.get("feed", {}).get("bars", 0) > 0)
        _cli(env, *buy, "--qty", "10")
        _wait(env, engine, lambda s: _held(s, "desk", "MSFT") == 10)

        halted = _cli(env, "halt", "--reason", "end to end check")
        assert "accepted: account HALTED" in halted.stdout
        assert _status(env)["account"]["mode"] == "HALTED"
        denied = _cli(env, *buy, "--qty", "1", check=False)
        assert denied.returncode == 1 and "HALTED" in denied.stderr
        flattened = _cli(env, "flatten")  # while halted: closing orders still pass
        assert "accepted: flatten of the whole account: 1 order(s)" in flattened.stdout
        _wait(env, engine, lambda s: _held(s, "desk", "MSFT") == 0)

        refused = _cli(env, "resume-trading", "--reason", "I want to trade", check=False)
        assert refused.returncode == 1 and "'alice' is not authorised" in refused.stderr
        assert _status(env)["account"]["mode"] == "HALTED"
        resumed = _cli(env, "resume-trading", "--user", "risk-officer", "--reason", "checked")
        assert "accepted: account ACTIVE again" in resumed.stdout
        assert _status(env)["account"]["mode"] == "ACTIVE"

        _cli(env, *buy, "--qty", "5")
        _wait(env, engine, lambda s: _held(s, "desk", "MSFT") == 5)
        stopped = _cli(env, "halt", "--flatten", "--reason", "close it all")
        assert "accepted: account HALTED" in stopped.stdout and "1 flatten order(s)" in stopped.stdout
        snap = _wait(env, engine, lambda s: _held(s, "desk", "MSFT") == 0)
        assert snap["account"]["mode"] == "HALTED" and snap["state"] == "running"
    finally:
        engine.send_signal(signal.SIGINT)
        code = engine.wait(30)
        log.close()
    assert code == 0, (tmp_path / "engine.log").read_text()[-2000:]


def test_engine_refuses_to_run_without_limits_unless_an_admin_approved_it(tmp_path: Path):
    env = {**os.environ, "QLCORE_DATA_DIR": str(tmp_path)}
    env.pop("QLCORE_DB_URL", None)
    refused = _cli(env, "engine", "--no-limits", check=False)
    assert refused.returncode == 2 and "--no-limits needs --admin-approval REASON" in refused.stderr
    both = _cli(env, "engine", "--no-limits", "--admin-approval", "bench", "--limits", str(tmp_path / "x.toml"), check=False)
    assert both.returncode == 2 and "choose one" in both.stderr
    bad = tmp_path / "limits.toml"
    bad.write_text("[account]\nmax_order_quantity = -1\n")
    invalid = _cli(env, "engine", "--limits", str(bad), check=False)
    assert invalid.returncode == 2 and "[account] max_order_quantity: must be >= 0, got -1" in invalid.stderr
    assert not (tmp_path / "qlcore.db").exists()  # refused before the store was opened
