"""Dashboard fan-out: N logged-in monitor sessions on loopback while a paper engine takes ~100 orders/s.

Set-up, all real processes on this machine: a fresh data folder; `qlcore engine --demo` (the paper
engine, replay feed); a load thread that submits market orders through the command table at the
target rate (the engine consumes them, so orders, fills and positions change all the time); and
`qlcore serve`. Then N monitor sessions are opened the way a browser opens them: log in (POST
/login, the signed cookie), GET /monitor (the server builds the session's page and returns its
token), open the websocket with the cookie and the token, and send the `document_ready` event a
browser sends once the page has rendered. The server then pushes each document change (PATCH-DOC)
to every subscribed connection; the clients are raw websockets on one asyncio
loop (no rendering), so client work does not eat the server's CPU.

Update latency: the monitor's status bar carries the snapshot's own `updated_at` (the engine's wall
clock when it built the snapshot, `id='snapshot-at'`). For every session, the first message that
carries a new `updated_at` is timed on receipt: latency = receipt wall time - updated_at. That is
snapshot built -> stored -> read by the server's poll -> components redrawn -> patch on the wire ->
received: what a desk user waits for. Same clock (one machine), so no offset.

Server CPU: user+system time of the `qlcore serve` process from /proc over the measured window,
as a share of one core (100 % = one core busy); the engine's CPU is shown beside it.

    python benchmarks/bench_dashboards.py [--sessions 50] [--seconds 20] [--orders-per-s 100]
                                          [--period-ms 100] [--json PATH] [--keep]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import uuid
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any

QLCORE = Path(sys.executable).with_name("qlcore")
STAMP = re.compile(r"snapshot-at.{0,40}?data-ns=(?:&#x27;|&#39;|')(\d{16,20})")
TOKEN = re.compile(r'"token":\s*"([^"]+)"')
DOCUMENT_READY = {"events": [{"kind": "MessageSent", "msg_type": "bokeh_event", "msg_data": {
    "type": "event", "name": "document_ready", "values": {"type": "map", "entries": []}}}]}
USER, PASSWORD = "bench", "bench-password"
TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """CPU time of `pid` and of its live children (the server's forked processes)."""
    total = 0.0
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(proc.name) == pid or int(fields[1]) == pid:  # fields[1]: the parent pid
            total += (int(fields[11]) + int(fields[12])) / TICK  # utime, stime
    return total


def wait_until(check, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{what} not ready after {timeout:g} s")


def order_load(url: str, rate: float, stop: threading.Event, sent: list[int], signer: Any) -> None:
    """Market orders of one share, buys and sells alternating, through the command table at `rate` per second."""
    from qlcore.control.commands import CommandQueue

    queue = CommandQueue(url, signer=signer)
    period = 1.0 / rate
    nxt = time.monotonic()
    n = 0
    while not stop.is_set():
        side = "BUY" if n % 2 == 0 else "SELL"
        queue.submit("bench", "order.submit", {"strategy_id": "bench", "symbol": "AAPL", "side": side, "quantity": 1})
        n += 1
        sent[0] = n
        nxt += period
        delay = nxt - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def login_cookie(base: str) -> str:
    jar = CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    form = opener.open(f"{base}/login", timeout=30).read().decode()  # the form's XSRF token and cookie
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', form)
    if xsrf is None:
        raise RuntimeError("login failed: no XSRF token in the login form")
    data = urllib.parse.urlencode({"username": USER, "password": PASSWORD, "_xsrf": xsrf.group(1)}).encode()
    opener.open(urllib.request.Request(f"{base}/login", data=data, headers={"Origin": base}), timeout=60).read()
    cookies = {c.name: c.value for c in jar}
    if "user" not in cookies:
        raise RuntimeError("login failed: no signed user cookie")
    return "; ".join(f"{k}={v}" for k, v in cookies.items())


def page_token(base: str, cookie: str) -> str:
    req = urllib.request.Request(f"{base}/monitor", headers={"Cookie": cookie})
    html = urllib.request.urlopen(req, timeout=60).read().decode()
    m = TOKEN.search(html)
    if not m:
        raise RuntimeError("no session token in the monitor page")
    return m.group(1)


async def session(port: int, cookie: str, token: str, latencies: list[float], counts: list[int],
                  state: dict[str, float], stamps: set[int]) -> None:
    """One monitor session's websocket: time every newly seen snapshot stamp while the window is open."""
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    req = HTTPRequest(f"ws://localhost:{port}/monitor/ws",
                      headers={"Cookie": cookie, "Origin": f"http://localhost:{port}"})
    ws = await websocket_connect(req, subprotocols=["bokeh", token], max_message_size=64 * 1024 * 1024)
    # the server's first message is its ACK (header, metadata, content): like BokehJS, wait for it
    for _ in range(3):
        await ws.read_message()
    # what BokehJS sends once a page has rendered: the server then treats the session as loaded and
    # sends each update's changes as one message (without it, one message per changed model)
    for part in ({"msgid": uuid.uuid4().hex, "msgtype": "PATCH-DOC"}, {}, DOCUMENT_READY):
        await ws.write_message(json.dumps(part))
    seen: set[int] = set()
    while not state.get("done"):
        try:
            frame = await asyncio.wait_for(ws.read_message(), timeout=0.5)
        except TimeoutError:
            continue
        if frame is None:
            raise RuntimeError("the server closed a session")
        now = time.time_ns()
        if not state.get("measuring"):
            continue
        counts[0] += 1
        if isinstance(frame, bytes):
            continue
        for m in STAMP.finditer(frame):
            ns = int(m.group(1))
            if ns not in seen:
                seen.add(ns)
                latencies.append((now - ns) / 1e6)
                stamps.add(ns)
    ws.close()


async def run_sessions(base: str, port: int, n: int, seconds: float, warmup: float,
                       measure) -> tuple[list[float], list[int], float]:
    """Open `n` sessions one after the other (page, then websocket at once), warm up, then measure."""
    cookie = login_cookie(base)
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    counts = [0]
    state: dict[str, float] = {}
    stamps: set[int] = set()
    tasks = []
    t0 = time.monotonic()
    for _ in range(n):
        token = await loop.run_in_executor(None, page_token, base, cookie)
        tasks.append(asyncio.create_task(session(port, cookie, token, latencies, counts, state, stamps)))
        await asyncio.sleep(0.05)
    opened_s = time.monotonic() - t0
    await asyncio.sleep(warmup)
    measure("start")
    state["measuring"] = 1
    await asyncio.sleep(seconds)
    state["measuring"] = 0
    measure("end")
    state["done"] = 1
    await asyncio.gather(*tasks)
    counts.append(len(stamps))
    return latencies, counts, opened_s


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, round(q / 100 * (len(values) - 1)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=20.0, help="measured window")
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--orders-per-s", type=float, default=100.0)
    ap.add_argument("--period-ms", type=int, default=100, help="how often the server reads the status (qlcore serve --period-ms)")
    ap.add_argument("--num-procs", type=int, default=1, help="server processes (qlcore serve --num-procs)")
    ap.add_argument("--nice", type=int, default=0,
                    help="lower the load script's CPU priority once the servers run (0: same as theirs)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--keep", action="store_true", help="keep the data folder (engine and server logs)")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="qlcore-bench-dash-"))
    env = {**os.environ, "QLCORE_DATA_DIR": str(tmp)}
    env.pop("QLCORE_DB_URL", None)
    url = f"sqlite:///{tmp / 'qlcore.db'}"
    port = free_port()
    base = f"http://localhost:{port}"
    procs: list[subprocess.Popen] = []
    stop = threading.Event()
    try:
        subprocess.run([str(QLCORE), "users", "add", USER, "--role", "trader", "--password-stdin"],
                       input=PASSWORD + "\n", env=env, check=True, capture_output=True, text=True)
        # the order load must keep orders and fills moving: no limits (paper only, with an admin's approval)
        subprocess.run([str(QLCORE), "users", "add", "bench-admin", "--role", "admin", "--password-stdin"],
                       input=PASSWORD + "\n", env=env, check=True, capture_output=True, text=True)
        engine = subprocess.Popen([str(QLCORE), "engine", "--demo", "--no-limits", "--admin", "bench-admin", "--admin-approval",
                                   "dashboard benchmark: the order load must not be denied"], env=env, stdout=open(tmp / "engine.log", "w"),
                                  stderr=subprocess.STDOUT)
        procs.append(engine)
        from qlcore.ui.readmodel import ReadModel

        model = ReadModel(url, cache_s=0)
        wait_until(lambda: (v := model.status()) is not None and v.state == "running", "the engine")
        # the load's orders belong to a strategy of their own, deployed like any other
        from qlcore.control.commands import CommandQueue
        from qlcore.control.keys import provision
        from qlcore.control.users import UserStore

        bench_key = provision(UserStore(tmp / "users.toml"), {"bench": "trader"})["bench"]  # the load signs its orders
        q = CommandQueue(url, signer=bench_key)
        cid = q.submit("bench", "strategy.deploy", {"strategy_id": "bench", "strategy": "sma_cross",
                                                    "symbols": ["AAPL"], "params": {"fast": 1000, "slow": 2000}})
        q.wait_for(cid, 20)
        prof = ["-m", "cProfile", "-o", os.environ["BENCH_PROFILE"]] if os.environ.get("BENCH_PROFILE") else []
        server = subprocess.Popen([sys.executable, *prof, str(QLCORE), "serve", "--port", str(port), "--no-browser",
                                   "--period-ms", str(args.period_ms), "--num-procs", str(args.num_procs)],
                                  env=env, stdout=open(tmp / "serve.log", "w"), stderr=subprocess.STDOUT,
                                  start_new_session=True)  # its own group: --num-procs forks workers
        procs.append(server)
        wait_until(lambda: urllib.request.urlopen(f"{base}/login", timeout=2).status == 200, "the server")
        sent = [0]
        load = threading.Thread(target=order_load, args=(url, args.orders_per_s, stop, sent, bench_key), daemon=True)
        load.start()
        window_cpu: dict[str, float] = {}

        def measure(edge: str) -> None:
            window_cpu[edge] = time.monotonic()
            for p in procs:
                window_cpu[f"{edge}:{p.pid}"] = cpu_seconds(p.pid)
            window_cpu[f"{edge}:sent"] = sent[0]

        if args.nice:  # the clients stand for browsers on other machines: the server and engine go first
            os.nice(args.nice)
        latencies, counts, opened_s = asyncio.run(
            run_sessions(base, port, args.sessions, args.seconds, args.warmup, measure))
        window = window_cpu["end"] - window_cpu["start"]

        def share(pid: int) -> float:
            return (window_cpu[f"end:{pid}"] - window_cpu[f"start:{pid}"]) / window * 100

        server_cpu, engine_cpu = share(server.pid), share(engine.pid)
        done = [c for c in q.history(5000) if c.kind == "order.submit"]
        accepted = sum(1 for c in done if c.status == "accepted")
        result = {
            "sessions": args.sessions, "period_ms": args.period_ms, "window_s": round(window, 1),
            "orders_per_s_sent": round((window_cpu["end:sent"] - window_cpu["start:sent"]) / window, 1),
            "order_commands_accepted": accepted, "order_commands_seen": len(done),
            "updates_measured": len(latencies), "messages_received": counts[0],
            "snapshots_published_per_s": round(counts[1] / window, 2),
            "updates_per_session_per_s": round(len(latencies) / args.sessions / window, 2),
            "latency_ms_p50": round(pct(latencies, 50), 1), "latency_ms_p95": round(pct(latencies, 95), 1),
            "latency_ms_max": round(max(latencies), 1) if latencies else None,
            "server_cpu_pct_of_one_core": round(server_cpu, 1), "engine_cpu_pct_of_one_core": round(engine_cpu, 1),
            "open_all_sessions_s": round(opened_s, 1), "cores": os.cpu_count(),
        }
    finally:
        stop.set()
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in reversed(procs):
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
        try:  # the server's forked workers, as Ctrl-C in a terminal would reach them
            os.killpg(server.pid, signal.SIGINT)
        except (NameError, ProcessLookupError, PermissionError):
            pass
        if args.keep:
            print(f"data folder kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"dashboards: {result['sessions']} monitor sessions, page period {result['period_ms']} ms, "
          f"{result['orders_per_s_sent']} orders/s sent to the paper engine, {result['window_s']} s measured")
    print(f"  update latency (snapshot built -> session received): p50 {result['latency_ms_p50']} ms, "
          f"p95 {result['latency_ms_p95']} ms, max {result['latency_ms_max']} ms over {result['updates_measured']:,} updates")
    print(f"  the engine published {result['snapshots_published_per_s']} snapshots/s (seen by any session); each "
          f"session received {result['updates_per_session_per_s']} new snapshots/s")
    print(f"  server CPU {result['server_cpu_pct_of_one_core']} % of one core; engine CPU "
          f"{result['engine_cpu_pct_of_one_core']} %; {result['cores']} cores")
    print(f"  {result['messages_received']:,} websocket frames received; opening {result['sessions']} sessions took "
          f"{result['open_all_sessions_s']} s; order commands accepted {result['order_commands_accepted']:,} "
          f"of {result['order_commands_seen']:,}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
