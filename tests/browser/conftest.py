"""Fixtures of the browser tests: Chromium via Playwright, a served desk per test module, the artifacts folder."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from dashboard_support import ARTIFACTS, CHROMIUM, ROOT, Desk, start_desk


def _require(config: pytest.Config) -> Callable[[bool, str], None]:
    """`require` from tests/conftest.py (skip outside CI, fail in CI), found among the loaded conftests."""
    root = str(ROOT / "tests" / "conftest.py")
    for plugin in config.pluginmanager.get_plugins():
        if getattr(plugin, "__file__", None) == root:
            return plugin.require
    raise RuntimeError("tests/conftest.py is not loaded")


@pytest.fixture(scope="session")
def browser(request: pytest.FixtureRequest) -> Iterator[Any]:
    """Chromium (Debian's when installed) driven by Playwright, shared by the session."""
    require = _require(request.config)
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        require(False, "playwright is not installed")
        return
    with sync_playwright() as pw:
        try:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM) if CHROMIUM.exists() else None)
        except Error as exc:
            require(False, f"no browser for Playwright: {exc}")
            return
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory, browser: Any) -> Iterator[Desk]:
    """One engine and server for a test module (tests that do not halt trading share it)."""
    d = start_desk(tmp_path_factory.mktemp("desk"))
    yield d
    d.stop()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
