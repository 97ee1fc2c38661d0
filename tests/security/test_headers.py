"""Every response of the desk says: run only the desk's own code, never inside a frame."""
from __future__ import annotations

from desk_doors import Served


def _csp(header: str) -> dict[str, str]:
    return {part.split()[0]: part.strip() for part in header.split(";") if part.strip()}


def test_every_response_carries_the_security_headers(desk: Served) -> None:
    tina = desk.login("tina")
    page = tina.get(f"{desk.base}/control", timeout=60)
    script = next(p for p in page.text.split('"') if p.startswith("static/") and p.endswith(".js"))
    responses = {
        "login page": desk.session().get(f"{desk.base}/login", timeout=30),
        "dashboard": page,
        "script": tina.get(f"{desk.base}/{script}", timeout=30),
        "redirect to login": desk.session().get(f"{desk.base}/monitor", allow_redirects=False, timeout=30),
    }
    for what, answer in responses.items():
        assert answer.status_code in (200, 302), (what, answer.status_code)
        headers = answer.headers
        assert headers.get("X-Frame-Options") == "DENY", what
        assert headers.get("X-Content-Type-Options") == "nosniff", what
        csp = _csp(headers.get("Content-Security-Policy", ""))
        assert csp.get("frame-ancestors") == "frame-ancestors 'none'", what
        assert csp.get("object-src", csp.get("default-src")) in ("object-src 'none'", "default-src 'none'"), what
        # everything is served by the desk itself: no other host may supply code
        assert "http" not in csp.get("script-src", csp.get("default-src", "")), what
    dashboard = _csp(responses["dashboard"].headers["Content-Security-Policy"])
    assert dashboard["connect-src"] == f"connect-src 'self' ws://localhost:{desk.port}"
    assert _csp(responses["login page"].headers["Content-Security-Policy"])["default-src"] == "default-src 'none'"
