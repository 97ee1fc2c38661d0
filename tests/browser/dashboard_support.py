"""Helpers for the dashboard tests: a served desk (engine + `qlcore serve`), logins, sample snapshots in a real store."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine, delete, insert

from qlcore.store.tables import engine_status

ROOT = Path(__file__).resolve().parents[2]
QLCORE = Path(sys.executable).with_name("qlcore")
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
PASSWORDS = {"tina": "tina-trader-pw", "vic": "vic-viewer-pw", "admin": "admin-pass-123"}
ROLES = {"tina": "trader", "vic": "viewer", "admin": "admin"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sample_snapshot(*, engine_id: str = "paper", mode: str = "ACTIVE", pnl_today: str = "1234.5",
                    strategy_state: str = "RUNNING", now: int | None = None) -> dict[str, Any]:
    """A snapshot in the engine's published shape, with two strategies, two positions, orders and fills."""
    now = now or time.time_ns()
    step = 60 * 1_000_000_000
    return {
        "engine_id": engine_id, "mode": "paper", "state": "running", "pid": 1, "clock_ts": now, "updated_at": now,
        "account": {"mode": mode, "mode_reason": "", "cash": "900000.00", "equity": "1001234.50",
                    "realized_pnl": "1000.00", "unrealized_pnl": "234.50", "fees": "12.25", "pnl_today": pnl_today,
                    "gross_exposure": "101234.50", "net_exposure": "-5000.00", "buying_power": "900000.00"},
        "equity_curve": [[now - (30 - i) * step, str(1_000_000 + i * 41)] for i in range(31)],
        "strategies": [
            {"strategy_id": "sma-aapl", "strategy": "sma_cross", "state": strategy_state, "mode": mode,
             "symbols": ["AAPL"], "capital": "100000", "pnl": "1500.25", "exposure": "90000", "trades": 12,
             "sharpe": 1.2, "max_drawdown": 0.05, "open_orders": 1},
            {"strategy_id": "mr-ibm", "strategy": "mean_reversion", "state": "RUNNING", "mode": mode,
             "symbols": ["IBM"], "capital": "100000", "pnl": "-265.75", "exposure": "11234.5", "trades": 4,
             "sharpe": -0.3, "max_drawdown": 0.02, "open_orders": 0},
        ],
        "positions": [
            {"strategy_id": "sma-aapl", "symbol": "AAPL", "quantity": "500", "avg_price": "180", "mark": "180.469",
             "market_value": "90234.50", "unrealized_pnl": "234.50", "realized_pnl": "1265.75"},
            {"strategy_id": "mr-ibm", "symbol": "IBM", "quantity": "-50", "avg_price": "220", "mark": "224.69",
             "market_value": "-11234.50", "unrealized_pnl": "-234.50", "realized_pnl": "-31.25"},
        ],
        "orders": [
            {"order_id": "paper-O-7", "strategy_id": "sma-aapl", "symbol": "AAPL", "side": "BUY", "order_type": "LIMIT",
             "quantity": "100", "filled": "0", "price": "175.5", "status": "ACCEPTED", "ts": now},
            {"order_id": "paper-O-6", "strategy_id": "mr-ibm", "symbol": "IBM", "side": "SELL", "order_type": "MARKET",
             "quantity": "50", "filled": "50", "price": None, "status": "FILLED", "ts": now - step},
        ],
        "fills": [
            {"trade_id": "T-6", "order_id": "paper-O-6", "strategy_id": "mr-ibm", "symbol": "IBM", "side": "SELL",
             "quantity": "50", "price": "220", "fee": "1.10", "ts": now - step},
        ],
        "risk": {"limits": [{"name": "max_order_quantity", "scope": "account", "limit": "1000", "value": "100",
                             "utilisation": 0.1},
                            {"name": "max_gross_exposure", "scope": "account", "limit": "200000",
                             "value": "101234.5", "utilisation": 0.51}]},
        "alerts": [{"ts": now, "level": "warning", "source": "feed", "message": "IBM quote late by 2 s"}],
        "feed": {"last_bar_ts": now, "bars": 12345, "quarantined": 1, "stale": []},
        "broker": {"venue": "paper", "connected": True, "working_orders": 1},
        "commands": {"last_id": 0, "processed": 0},
    }


def publish(db: Engine, snapshot: dict[str, Any], *, heartbeat_at: int | None = None) -> None:
    """Write `snapshot` as the engine's status row, as the engine does with each heartbeat."""
    beat = heartbeat_at or time.time_ns()
    with db.begin() as conn:
        conn.execute(delete(engine_status).where(engine_status.c.engine_id == snapshot["engine_id"]))
        conn.execute(insert(engine_status).values(
            engine_id=snapshot["engine_id"], pid=1, host="test", state=snapshot["state"], mode="paper",
            started_at=beat, heartbeat_at=beat, snapshot=orjson.dumps(snapshot).decode(),
        ))


def http_login(base: str, user: str, password: str) -> tuple[Any, Any]:
    """Log in with plain HTTP as the login form does (its XSRF token, the desk's origin): (opener, cookie jar)."""
    import re
    import urllib.parse
    from http.cookiejar import CookieJar

    jar = CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    form = opener.open(f"{base}/login", timeout=30).read().decode()
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', form)
    assert xsrf, "the login form carries its XSRF token"
    data = urllib.parse.urlencode({"username": user, "password": password, "_xsrf": xsrf.group(1)}).encode()
    opener.open(urllib.request.Request(f"{base}/login", data=data, headers={"Origin": base}), timeout=60).read()
    return opener, jar


def login(browser: Any, base: str, user: str, password: str, app: str = "monitor", *,
          width: int = 1280, height: int = 1400) -> Any:
    """A fresh browser context logged in as `user`, on `app`'s page; every request off this machine is recorded."""
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.external_requests = []
    local = ("http://localhost", "http://127.0.0.1", "ws://localhost", "data:", "blob:")
    page.on("request", lambda r: page.external_requests.append(r.url) if not r.url.startswith(local) else None)
    page.goto(f"{base}/{app}")
    page.fill("#username", user)
    page.fill("#password", password)
    page.click("#login")
    page.wait_for_url(f"{base}/{app}*", timeout=15_000)
    return page


@dataclass
class Desk:
    """An engine and a dashboard server sharing one data folder; stopped at teardown."""

    data_dir: Path
    port: int
    env: dict[str, str]
    procs: list[subprocess.Popen] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://localhost:{self.port}"

    @property
    def url(self) -> str:
        return f"sqlite:///{self.data_dir / 'qlcore.db'}"

    def log(self, name: str) -> str:
        path = self.data_dir / f"{name}.log"
        return path.read_text() if path.exists() else ""

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _start(desk: Desk, name: str, args: list[str]) -> subprocess.Popen:
    out = open(desk.data_dir / f"{name}.log", "w")
    proc = subprocess.Popen([str(QLCORE), *args], env=desk.env, stdout=out, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, cwd=desk.data_dir)
    desk.procs.append(proc)
    return proc


def _wait(check: Callable[[], bool], what: str, desk: Desk, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        for proc in desk.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args!r} exited with {proc.returncode} while waiting for {what}:\n"
                                   f"{desk.log('engine')}\n{desk.log('serve')}")
        time.sleep(0.2)
    raise TimeoutError(f"{what} not ready after {timeout:g} s:\n{desk.log('engine')}\n{desk.log('serve')}")


def start_desk(
    data_dir: Path, *, engine_args: tuple[str, ...] = ("--demo", "--speed", "20", "--fill-on-arrival")
) -> Desk:
    """Users from the CLI, the demo paper engine, then `qlcore serve` on a free port.

    The engine fills on arrival: a market order from a test fills at once, even after the replay
    (160 s at 20 days a second) has run out and no next bar will come."""
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "QLCORE_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"}
    env.pop("QLCORE_DB_URL", None)
    desk = Desk(data_dir, free_port(), env)
    for user, password in PASSWORDS.items():
        subprocess.run([str(QLCORE), "users", "add", user, "--role", ROLES[user], "--password-stdin"],
                       input=password + "\n", env=env, check=True, capture_output=True, text=True)
    try:
        _start(desk, "engine", ["engine", *engine_args])
        from qlcore.ui.readmodel import ReadModel

        model = ReadModel(desk.url, cache_s=0)
        _wait(lambda: (v := model.status()) is not None and v.state == "running", "the engine", desk)
        _start(desk, "serve", ["serve", "--port", str(desk.port), "--no-browser"])
        _wait(lambda: _http_ok(f"{desk.base}/login"), "the dashboard server", desk)
    except BaseException:
        desk.stop()
        raise
    return desk


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False
