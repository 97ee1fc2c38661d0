"""The emergency stop, end to end: a working order from the ticket, the halt with its reason, the engine
cancelling the order, HALTED on every page, the audit log naming the action, the user and the reason."""
from __future__ import annotations

import re
import time

import pytest
from dashboard_support import PASSWORDS, login, publish, sample_snapshot, start_desk
from playwright.sync_api import expect

from qlcore.store.db import connect
from qlcore.ui.readmodel import ReadModel

WAIT = 15_000
ENGINE = "desk-b"


@pytest.fixture(scope="module")
def halt_desk(tmp_path_factory, browser):
    """Its own engine: this module halts trading, which no other test should see. Its engine id is not
    the default one: the page's actions must go to the engine it shows, whatever its name."""
    d = start_desk(tmp_path_factory.mktemp("halt-desk"), engine_args=("--demo", "--speed", "20", "--engine-id", ENGINE))
    yield d
    d.stop()


def _wait_for(predicate, what: str, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what} within {timeout:g} s")


def test_emergency_stop_cancels_orders_halts_everywhere_and_is_audited(halt_desk, browser, artifacts) -> None:
    desk = halt_desk
    model = ReadModel(desk.url, cache_s=0)
    page = login(browser, desk.base, "tina", PASSWORDS["tina"], "control")
    expect(page.locator(".ql-ticket-strategy select")).to_be_visible(timeout=WAIT)
    page.locator(".ql-ticket-strategy select").select_option("demo-sma-aapl")
    page.locator(".ql-ticket-symbol input").fill("AAPL")
    page.locator(".ql-ticket-qty input").fill("10")
    page.locator(".ql-ticket-type select").select_option("LIMIT")
    page.locator(".ql-ticket-qty input").press("Tab")
    # the pre-trade check runs before anything is sent: a limit order without its price fails it
    page.get_by_role("button", name="Check order").click()
    expect(page.locator("#preview-result")).to_contain_text("price: a LIMIT order needs a limit price", timeout=WAIT)
    expect(page.get_by_role("button", name="Send order")).to_be_disabled()
    # a resting bid far below the market: checked, then sent, then working at the venue
    page.locator(".ql-ticket-price input").fill("0.50")
    page.locator(".ql-ticket-price input").press("Tab")
    page.get_by_role("button", name="Check order").click()
    expect(page.locator("#preview-result")).to_contain_text("pre-trade check passed", timeout=WAIT)
    page.get_by_role("button", name="Send order").click()
    expect(page.get_by_text(re.compile(r"order.submit sent as command #\d+ by tina"))).to_be_visible(timeout=WAIT)

    def working() -> list[dict]:
        view = model.status()
        return [o for o in view.snapshot["orders"] if o["price"] == "0.5" and o["status"] == "ACCEPTED"] if view else []

    order_id = _wait_for(working, "the ticket's order working at the venue")[0]["order_id"]

    # the emergency stop asks for a reason before it sends anything
    page.get_by_role("button", name="EMERGENCY STOP").click()
    page.get_by_role("button", name="Confirm emergency stop").click()
    expect(page.get_by_text("an emergency stop needs a reason")).to_be_visible(timeout=WAIT)
    assert not [c for c in model.commands() if c.kind == "halt"]
    page.locator(".ql-halt-reason input").fill("fat finger in AAPL")
    page.locator(".ql-halt-reason input").press("Tab")
    page.get_by_role("button", name="Confirm emergency stop").click()
    expect(page.get_by_text(re.compile(r"halt sent as command #\d+ by tina"))).to_be_visible(timeout=WAIT)

    def cancelled() -> bool:
        view = model.status()
        return view is not None and view.trading_mode == "HALTED" and any(
            o["order_id"] == order_id and o["status"] == "CANCELED" for o in view.snapshot["orders"])

    try:
        _wait_for(cancelled, "the halt cancelling the working order")
    except AssertionError:
        view = model.status()
        mine = [o for o in view.snapshot["orders"] if o["order_id"] == order_id] if view is not None else []
        raise AssertionError(f"after the halt: mode {view and view.trading_mode}, order {mine}, "
                             f"commands {[(c.kind, c.status, c.reason) for c in model.commands(5)]}") from None
    expect(page.locator("#trading-mode")).to_have_text("HALTED", timeout=WAIT)
    page.screenshot(path=str(artifacts / "control-halted.png"), full_page=True)
    for app in ("monitor", "research", "audit"):
        page.goto(f"{desk.base}/{app}")
        expect(page.locator("#trading-mode")).to_have_text("HALTED", timeout=WAIT)
        expect(page.get_by_text("fat finger in AAPL").first).to_be_visible(timeout=WAIT)  # the reason in the bar
    # the audit page finds the action with its user and reason (the engine's own entries fill the log too)
    page.locator("input[placeholder='ui.']").fill("ui.action")
    page.locator("input[placeholder='ui.']").press("Tab")
    page.get_by_role("button", name="Search").click()
    row = page.locator(".tabulator-row", has_text="ui.action").filter(has_text="command/halt").first
    expect(row).to_contain_text("user:tina", timeout=WAIT)
    expect(row).to_contain_text("reason=fat finger in AAPL")
    expect(page.locator(".tabulator-row", has_text="halt").filter(has_text="accepted").first).to_be_visible()
    # and the order's lineage, from the engine's audit entries: submitted from the ticket, cancelled by the halt
    page.locator("input[placeholder^='paper-O-12']").fill(order_id)
    page.locator("input[placeholder^='paper-O-12']").press("Tab")
    page.get_by_role("button", name="Trace").click()
    expect(page.get_by_text(re.compile(rf"order {re.escape(order_id)}\b")).first).to_be_visible(timeout=WAIT)
    expect(page.get_by_text("-> CANCELED").first).to_be_visible(timeout=WAIT)
    page.screenshot(path=str(artifacts / "audit-halted.png"), full_page=True)
    # a trader may not resume: the control is not there; an admin resumes
    page.goto(f"{desk.base}/control")
    expect(page.get_by_role("button", name="Resume trading")).to_have_count(0)
    page.context.close()
    admin = login(browser, desk.base, "admin", PASSWORDS["admin"], "control")
    admin.locator("input[placeholder='why trading may resume']").fill("checked the book")
    admin.locator("input[placeholder='why trading may resume']").press("Tab")
    admin.get_by_role("button", name="Resume trading").click()
    expect(admin.get_by_text(re.compile(r"resume_trading sent as command #\d+ by admin"))).to_be_visible(timeout=WAIT)
    _wait_for(lambda: getattr(model.status(), "trading_mode", None) == "ACTIVE", "the engine resuming trading: "
              + repr([(c.kind, c.status, c.reason) for c in model.commands(3)]))
    expect(admin.locator("#trading-mode")).to_have_text("ACTIVE", timeout=WAIT)
    admin.context.close()


def test_an_emergency_stop_with_flatten_then_a_flatten_while_halted_and_a_strategy_scoped_resume(halt_desk, browser) -> None:
    desk = halt_desk
    model = ReadModel(desk.url, cache_s=0)
    page = login(browser, desk.base, "admin", PASSWORDS["admin"], "control")
    page.get_by_role("button", name="EMERGENCY STOP").click()
    page.locator(".ql-halt-reason input").fill("close the book")
    page.locator(".ql-halt-reason input").press("Tab")
    page.locator(".ql-halt-flatten input").check()
    page.get_by_role("button", name="Confirm emergency stop").click()
    expect(page.get_by_text(re.compile(r"halt sent as command #\d+ by admin"))).to_be_visible(timeout=WAIT)
    halt = _wait_for(lambda: [c for c in model.commands(10) if c.kind == "halt" and c.status == "accepted"
                              and c.payload.get("flatten") is True], "the halt with flatten accepted")[0]
    assert "flatten order(s)" in halt.reason
    expect(page.locator("#trading-mode")).to_have_text("HALTED", timeout=WAIT)

    page.get_by_role("button", name="Flatten").click()  # the whole account, while halted
    flatten = _wait_for(lambda: [c for c in model.commands(10) if c.kind == "flatten" and c.status != "pending"
                                 and c.status != "taken"], "the flatten's outcome")[0]
    assert flatten.status == "accepted", flatten.reason

    page.locator(".ql-resume-scope select").select_option("demo-sma-aapl")
    page.get_by_role("button", name="Resume trading").click()
    resumed = _wait_for(lambda: [c for c in model.commands(10) if c.kind == "resume_trading"
                                 and c.payload.get("strategy_id") == "demo-sma-aapl" and c.status == "refused"],
                        "the strategy-scoped resume answered")[0]
    assert "nothing to resume" in resumed.reason  # only the account is halted: the strategy's own scope is ACTIVE
    assert getattr(model.status(), "trading_mode", None) == "HALTED"
    # the account resumes, so that the next test starts from a trading desk
    page.locator(".ql-resume-scope select").select_option("account")
    page.locator("input[placeholder='why trading may resume']").fill("book closed")
    page.locator("input[placeholder='why trading may resume']").press("Tab")
    page.get_by_role("button", name="Resume trading").click()
    _wait_for(lambda: getattr(model.status(), "trading_mode", None) == "ACTIVE", "the account trading again")
    page.context.close()


def test_an_admin_halts_every_engine_of_the_desk_at_once(halt_desk, browser) -> None:
    desk = halt_desk
    model = ReadModel(desk.url, cache_s=0)
    _wait_for(lambda: getattr(model.status(ENGINE), "trading_mode", None) == "ACTIVE", "the engine trading")
    publish(connect(desk.url), sample_snapshot(engine_id="desk-c"))  # a second engine of the same store
    trader = login(browser, desk.base, "tina", PASSWORDS["tina"], "control")
    trader.get_by_role("button", name="EMERGENCY STOP").click()
    expect(trader.locator(".ql-halt-everywhere")).to_be_hidden()
    trader.context.close()
    admin = login(browser, desk.base, "admin", PASSWORDS["admin"], "control")
    admin.get_by_role("button", name="EMERGENCY STOP").click()
    admin.locator(".ql-halt-reason input").fill("desk-wide stop drill")
    admin.locator(".ql-halt-reason input").press("Tab")
    admin.locator(".ql-halt-everywhere input").check()
    expect(admin.locator(".ql-halt-everywhere input")).to_be_checked()
    admin.get_by_role("button", name="Confirm emergency stop").click()
    expect(admin.get_by_text(re.compile(r"halt sent to 2 engines .* by admin"))).to_be_visible(timeout=WAIT)
    halts = {c.target: c for c in model.commands(20) if c.kind == "halt" and c.payload.get("reason") == "desk-wide stop drill"}
    assert set(halts) == {ENGINE, "desk-c"} and {c.user for c in halts.values()} == {"admin"}
    _wait_for(lambda: getattr(model.status(ENGINE), "trading_mode", None) == "HALTED", "the running engine halting")
    admin.context.close()
