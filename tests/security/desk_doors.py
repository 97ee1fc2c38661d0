"""A real `qlcore serve` on localhost for the attack tests, and a plain HTTP/websocket client for it."""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from qlcore.control.users import UserStore

LOCKOUT_S = 20  # the served desk's login lockout: short enough to wait for its end in a test

QLCORE = Path(sys.executable).with_name("qlcore")
# each attack gets its own users, so one test's lockout, logout or removal leaves the others alone
USERS = {
    "tina": ("trader", "tina-trader-pw"), "vic": ("viewer", "vic-viewer-pw"), "ada": ("admin", "ada-admin-pw1"),
    "lou": ("trader", "lou-trader-pw"), "rita": ("trader", "rita-trader-pw"), "lee": ("trader", "lee-trader-pw"),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    """Poll `check` until it returns something truthy (generous bound: the machine may be loaded)."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        time.sleep(0.2)


@dataclass
class Served:
    """One `qlcore serve` process over a data folder with the users above."""

    data_dir: Path
    port: int
    scheme: str = "http"
    proc: subprocess.Popen | None = None
    verify: Any = True  # for requests: the CA file of a self-signed certificate
    env: dict[str, str] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"{self.scheme}://localhost:{self.port}"

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.data_dir / 'qlcore.db'}"

    def log(self) -> str:
        path = self.data_dir / "serve.log"
        return path.read_text() if path.exists() else ""

    def session(self) -> requests.Session:
        s = requests.Session()
        s.trust_env = False  # this machine's proxy and CA-bundle settings are not for a server on localhost
        s.verify = self.verify
        return s

    def login_form(self, s: requests.Session) -> str:
        """GET the login page; the XSRF token its form carries ("" if none: then the POST must fail)."""
        page = s.get(f"{self.base}/login", timeout=30)
        assert page.status_code == 200, page.status_code
        m = re.search(r'name="_xsrf" value="([^"]+)"', page.text)
        return m.group(1) if m else ""

    def post_login(self, s: requests.Session, user: str, password: str, *, xsrf: str | None = None,
                   headers: dict[str, str] | None = None) -> requests.Response:
        token = xsrf if xsrf is not None else self.login_form(s)
        return s.post(f"{self.base}/login", data={"username": user, "password": password, "_xsrf": token},
                      headers={"Origin": self.base, **(headers or {})}, allow_redirects=False, timeout=120)

    def login(self, user: str) -> requests.Session:
        s = self.session()
        answer = self.post_login(s, user, USERS[user][1])
        assert answer.status_code == 302 and s.cookies.get("user"), (answer.status_code, answer.text[-500:])
        return s

    def page_token(self, s: requests.Session, app: str = "control") -> str:
        """Open `app`'s page; the session token Bokeh embeds in it (what the page's script can read)."""
        page = s.get(f"{self.base}/{app}", timeout=60, allow_redirects=False)
        assert page.status_code == 200, (page.status_code, page.headers.get("Location"))
        m = re.search(r'token[^:]{0,5}:\s*[\\"]*([A-Za-z0-9_\-.]{20,})', page.text)
        assert m, "no session token in the page"
        return m.group(1)

    def websocket(self, token: str, cookie: str | None, app: str = "control") -> Any:
        """A websocket to `app` with `token`, sending `cookie` as its own login cookie; raises if refused."""
        import websocket

        ws_scheme = "wss" if self.scheme == "https" else "ws"
        options = {"ca_certs": str(self.verify)} if self.scheme == "https" else {}
        return websocket.create_connection(
            f"{ws_scheme}://localhost:{self.port}/{app}/ws", subprotocols=["bokeh", token],
            header=[f"Cookie: user={cookie}"] if cookie else [], origin=self.base, timeout=30, sslopt=options,
        )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def add_users(data_dir: Path, names: tuple[str, ...] = tuple(USERS)) -> None:
    store = UserStore(data_dir / "users.toml")
    for name in names:
        role, password = USERS[name]
        store.add(name, role, password)


@contextmanager
def serve(data_dir: Path, *args: str, scheme: str = "http", verify: Any = True) -> Iterator[Served]:
    """`qlcore serve` on a free port of this machine, until the block ends."""
    env = {**os.environ, "QLCORE_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"}
    env.pop("QLCORE_DB_URL", None)
    served = Served(data_dir, free_port(), scheme, verify=verify, env=env)
    log = (data_dir / "serve.log").open("w")
    served.proc = subprocess.Popen([str(QLCORE), "serve", "--port", str(served.port), "--no-browser", *args],
                                   env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        def up() -> bool:
            assert served.proc is not None and served.proc.poll() is None, served.log()
            try:
                return served.session().get(f"{served.base}/login", timeout=5).status_code == 200
            except requests.RequestException:
                return False

        wait_for(up, "the dashboard server answered")
        yield served
    finally:
        served.stop()
        log.close()


def audit(served: Served, action: str) -> list[Any]:
    """The audit entries of exactly `action`, oldest first."""
    from qlcore.ui.readmodel import ReadModel

    entries = ReadModel(served.db_url, cache_s=0).audit_search(action=action, limit=5000)
    return [e for e in reversed(entries) if e.action == action]


def qlcore_cli(served: Served, *args: str) -> str:
    done = subprocess.run([str(QLCORE), *args], env=served.env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def sent_to_login(page: requests.Response) -> bool:
    """Was the request for a page answered by a redirect to the login page (not the page)?"""
    location = urllib.parse.urlparse(page.headers.get("Location", ""))
    return page.status_code == 302 and location.path.rsplit("/", 1)[-1] == "login"


def query(url: str, **params: str) -> str:
    return f"{url}?{urllib.parse.urlencode(params)}"
