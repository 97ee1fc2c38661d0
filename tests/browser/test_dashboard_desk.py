"""The served dashboards in Chromium against a real paper engine: login, monitor, control, roles, audit."""
from __future__ import annotations

import re
import time
from typing import Any

import pytest
from dashboard_support import PASSWORDS, http_login, login
from playwright.sync_api import expect

from qlcore.risk.defaults import DEFAULT_LIMITS_FILE
from qlcore.ui.readmodel import ReadModel

WAIT = 15_000  # ms: every update should arrive within about a second; this only bounds a failure


def _status(desk: Any) -> Any:
    view = ReadModel(desk.url, cache_s=0).status()
    assert view is not None
    return view


def test_trader_logs_in_and_sees_positions_and_pnl(desk, browser, artifacts) -> None:
    page = login(browser, desk.base, "tina", PASSWORDS["tina"])
    expect(page.get_by_text("tina (trader)")).to_be_visible(timeout=WAIT)
    expect(page.locator("#account")).to_contain_text("P&L today", timeout=WAIT)
    # positions and P&L by strategy as the engine publishes them, thousands separators included
    view = _status(desk)
    open_positions = [p for p in view.snapshot["positions"] if p["quantity"] != "0"]
    strategies = view.snapshot["strategies"]
    assert strategies, "the demo engine deploys strategies"
    for s in strategies:
        expect(page.locator("#strategies tr", has_text=s["strategy_id"]).first).to_be_visible(timeout=WAIT)
    if open_positions:
        expect(page.locator("#positions tr", has_text=open_positions[0]["symbol"]).first).to_be_visible(timeout=WAIT)
    equity = page.locator("#account .value").first
    expect(equity).to_have_text(re.compile(r"^\d{1,3}(,\d{3})+\.\d{2}$"), timeout=WAIT)  # 1,000,123.45
    expect(page.locator("#health")).to_contain_text("connected", timeout=WAIT)
    # the engine was started without --limits: the monitor names the default file and its values
    expect(page.locator("#risk-source")).to_have_text(f"limits in force: default limits file {DEFAULT_LIMITS_FILE}",
                                                      timeout=WAIT)
    expect(page.locator("#risk-in-force tr", has_text="max_order_quantity")).to_contain_text("10000", timeout=WAIT)
    expect(page.locator("#risk-in-force tr", has_text="runaway max_orders")).to_contain_text("50 per 1 s", timeout=WAIT)
    page.wait_for_timeout(1500)
    page.screenshot(path=str(artifacts / "monitor.png"), full_page=True)
    assert page.external_requests == []  # everything is served by the dashboard server (no CDN)
    logins = [e for e in ReadModel(desk.url).audit_search(actor="user:tina", action="ui.login") if e.action == "ui.login"]
    assert logins and logins[0].data["role"] == "trader"
    page.context.close()


def test_monitor_follows_the_engine_within_a_second(desk, browser) -> None:
    page = login(browser, desk.base, "tina", PASSWORDS["tina"])
    bars = page.locator("#health")
    expect(bars).to_contain_text("bars", timeout=WAIT)
    first = _bars(bars.text_content() or "")
    page.wait_for_timeout(1200)
    assert _bars(bars.text_content() or "") > first, "the feed counter moves while the engine replays"
    expect(page.locator("#stale")).to_have_count(0)
    page.context.close()


def _bars(text: str) -> int:
    m = re.search(r"([\d,]+) bars", text)
    assert m, text
    return int(m.group(1).replace(",", ""))


def test_pause_in_control_pauses_the_engine_strategy_and_monitor_shows_it(desk, browser, artifacts) -> None:
    page = login(browser, desk.base, "tina", PASSWORDS["tina"], "control")
    target = "demo-sma-msft"
    select = page.locator(".ql-strategy select")
    expect(select).to_be_visible(timeout=WAIT)
    select.select_option(target)
    page.get_by_role("button", name="Pause").click()
    expect(page.get_by_text(re.compile(r"strategy.pause sent as command #\d+ by tina"))).to_be_visible(timeout=WAIT)
    page.screenshot(path=str(artifacts / "control.png"), full_page=True)
    monitor = page.context.new_page()
    monitor.goto(f"{desk.base}/monitor")
    row = monitor.locator("#strategies tr", has_text=target).first
    expect(row).to_contain_text("PAUSED", timeout=WAIT)
    states = {s["strategy_id"]: s["state"] for s in _status(desk).snapshot["strategies"]}
    assert states[target] == "PAUSED"
    assert states["demo-sma-aapl"] == "RUNNING"  # only the chosen one
    # the command's outcome is on the control page and the action in the audit log, with the user
    expect(page.locator(".tabulator-row", has_text="strategy.pause").first).to_contain_text("accepted", timeout=WAIT)
    audit = ReadModel(desk.url).audit_search(actor="user:tina", action="ui.action")
    assert any('"strategy.pause"' in e.details and target in e.details for e in audit)
    page.context.close()


def test_viewer_sees_no_controls_and_a_forged_action_is_refused_and_audited(desk, browser) -> None:
    page = login(browser, desk.base, "vic", PASSWORDS["vic"], "control")
    expect(page.get_by_text("vic (viewer)")).to_be_visible(timeout=WAIT)
    expect(page.get_by_text("Read-only: your role is viewer")).to_be_visible(timeout=WAIT)
    for name in ("EMERGENCY STOP", "Pause", "Send order", "Flatten", "Resume trading"):
        expect(page.get_by_role("button", name=name)).to_have_count(0)
    # the forgery: what someone with the browser's developer tools can do — un-hide the controls
    # in the page's own document (the change is sent to the server like any widget event), then use them
    shown = page.evaluate("""() => {
        const doc = window.Bokeh.documents[0];
        const m = [...doc._all_models.values()].find(m => m.name === 'trader-controls');
        if (!m) return false;
        m.visible = true;
        return true;
    }""")
    assert shown
    page.get_by_role("button", name="EMERGENCY STOP").click()
    page.locator(".ql-halt-reason input").fill("viewer forging a halt")
    page.locator(".ql-halt-reason input").press("Tab")
    page.get_by_role("button", name="Confirm emergency stop").click()
    expect(page.get_by_text("refused: needs role trader, vic is viewer")).to_be_visible(timeout=WAIT)
    page.context.close()
    model = ReadModel(desk.url)
    assert not [c for c in model.commands(100) if c.user == "vic"], "nothing reached the command table"
    refused = model.audit_search(actor="user:vic", action="ui.refused")
    assert len(refused) == 1
    assert '"action":"halt"' in refused[0].details and "viewer forging a halt" in refused[0].details
    assert _status(desk).trading_mode == "ACTIVE"


@pytest.mark.parametrize(("user", "password"), [("tina", "not-her-password"), ("mallory", "whatever-pass")])
def test_wrong_password_gives_no_access(desk, browser, user, password) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{desk.base}/monitor")
    page.fill("#username", user)
    page.fill("#password", password)
    page.click("#login")
    expect(page.locator("#error")).to_contain_text("Invalid username or password", timeout=WAIT)
    assert "/login" in page.url
    page.goto(f"{desk.base}/control")
    assert "/login" in page.url, "no session cookie, no page"
    assert not [c for c in context.cookies() if c["name"] == "user"]
    context.close()
    refused = ReadModel(desk.url).audit_search(actor=f"user:{user}", action="ui.login_refused")
    assert refused and refused[0].data["remote_ip"] == "127.0.0.1"
    assert password not in refused[0].details  # the attempt is recorded, never the password


def test_research_and_audit_pages_render(desk, browser, artifacts) -> None:
    from qlcore.research import parity
    from qlcore.store.db import connect
    from qlcore.store.runs import save_parity

    save_parity(connect(desk.url), parity("sma_cross", {"fast": 10, "slow": 30}, "IBM").to_dict(), "quinn")
    page = login(browser, desk.base, "admin", PASSWORDS["admin"], "research")
    expect(page.get_by_text("admin (admin)")).to_be_visible(timeout=WAIT)
    expect(page.get_by_text("Backtest runs")).to_be_visible(timeout=WAIT)
    row = page.locator(".tabulator-row", has_text="sma_cross(fast=10, slow=30, quantity=100) on IBM")
    expect(row).to_contain_text("IDENTICAL", timeout=WAIT)  # the `qlcore parity` check, with who ran it
    expect(row).to_contain_text("quinn")
    page.screenshot(path=str(artifacts / "research.png"), full_page=True)
    page.goto(f"{desk.base}/audit")
    expect(page.locator("#chain-status")).to_contain_text("VERIFIED", timeout=WAIT)
    page.screenshot(path=str(artifacts / "audit.png"), full_page=True)
    page.goto(f"{desk.base}/control")
    expect(page.get_by_role("button", name="Resume trading")).to_be_visible(timeout=WAIT)  # admin-only control
    page.context.close()


def test_monitor_fits_a_phone_screen(desk, browser, artifacts) -> None:
    page = login(browser, desk.base, "tina", PASSWORDS["tina"], width=390, height=844)
    expect(page.locator("#account")).to_contain_text("Equity", timeout=WAIT)
    page.wait_for_timeout(1000)
    page.screenshot(path=str(artifacts / "monitor-phone.png"), full_page=True)
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page scrolls sideways by {overflow} px on a 390 px screen"
    page.context.close()


def test_websockets_from_another_origin_are_refused(desk) -> None:
    import asyncio

    from tornado.httpclient import HTTPClientError, HTTPRequest
    from tornado.websocket import websocket_connect

    opener, jar = http_login(desk.base, "tina", PASSWORDS["tina"])
    html = opener.open(f"{desk.base}/monitor", timeout=30).read().decode()
    token = re.search(r'"token":\s*"([^"]+)"', html)
    assert token, "the page carries its session token"
    cookie = "; ".join(f"{c.name}={c.value}" for c in jar)

    async def connect(origin: str) -> int:
        req = HTTPRequest(f"ws://localhost:{desk.port}/monitor/ws", headers={"Cookie": cookie, "Origin": origin})
        try:
            ws = await websocket_connect(req, subprotocols=["bokeh", token.group(1)])
        except HTTPClientError as exc:
            return exc.code
        ws.close()
        return 101

    def status(origin: str) -> int:  # on a thread of its own: Playwright's loop runs on this one
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, connect(origin)).result()

    assert status("http://evil.example:8080") == 403
    assert status(f"http://localhost:{desk.port}") == 101


def test_fills_stream_into_the_blotter_while_its_tab_is_open(desk, browser, artifacts) -> None:
    from pathlib import Path

    from qlcore.control.keys import DESK_SERVICE, issue_service_key
    from qlcore.control.users import UserStore
    from qlcore.store.db import connect
    from qlcore.ui.actions import Actions

    page = login(browser, desk.base, "tina", PASSWORDS["tina"])
    page.locator(".bk-tab", has_text="Fills").click()
    expect(page.locator(".tabulator").first).to_be_visible(timeout=WAIT)
    users = UserStore(Path(desk.data_dir) / "users.toml")
    actions = Actions(connect(desk.url), users,  # signed by the desk's key, as the server signs
                      signer=issue_service_key(users, DESK_SERVICE, acts_for_users=True))
    result = actions.perform("order.submit", {"strategy_id": "demo-sma-aapl", "symbol": "AAPL", "side": "BUY",
                                              "quantity": "7"}, user="tina")
    order_id = _wait_order_id(desk, result.command_id)
    deadline = time.monotonic() + 15
    while not any(f["order_id"] == order_id for f in _status(desk).snapshot["fills"]):
        assert time.monotonic() < deadline, f"the engine did not fill {order_id}"
        time.sleep(0.1)
    try:
        expect(page.locator(".tabulator-row", has_text=order_id)).to_have_count(1, timeout=WAIT)
    except AssertionError:
        page.screenshot(path=str(artifacts / "fills-failure.png"), full_page=True)
        raise
    page.context.close()


def _wait_order_id(desk: Any, command_id: int) -> str:
    from qlcore.control.commands import CommandQueue

    cmd = CommandQueue(desk.url).wait_for(command_id, 10)
    assert cmd.status == "accepted", cmd.reason
    m = re.search(r"order (\S+) submitted", cmd.reason or "")
    assert m, cmd.reason
    return m.group(1)


def test_logging_out_ends_every_session_of_the_user_on_the_server(desk, browser) -> None:
    page = login(browser, desk.base, "vic", PASSWORDS["vic"], "monitor")
    other = login(browser, desk.base, "vic", PASSWORDS["vic"], "control")  # vic on a second device
    [cookie] = [c for c in page.context.cookies() if c["name"] == "user"]
    page.get_by_role("link", name="log out").click()
    expect(page.locator("#logged-out")).to_be_visible(timeout=WAIT)
    other.goto(f"{desk.base}/monitor")
    assert "/login" in other.url, "the other device's login ended too"
    replay = browser.new_context()  # the old cookie, kept and replayed
    replay.add_cookies([cookie])
    stolen = replay.new_page()
    stolen.goto(f"{desk.base}/control")
    assert "/login" in stolen.url
    for context in (page.context, other.context, replay):
        context.close()
    assert ReadModel(desk.url).audit_search(actor="user:vic", action="ui.logout")
