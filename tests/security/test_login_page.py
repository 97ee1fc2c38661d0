"""The login page: nothing from the URL reaches the page unescaped; a login is only ever posted from
the desk's own form (its XSRF token, its origin)."""
from __future__ import annotations

from desk_doors import Served, audit, query

SCRIPT = "<script>fetch('/x?'+document.cookie)</script>"


def test_script_in_the_login_url_is_not_rendered(desk: Served) -> None:
    s = desk.session()
    for name in ("error", "next", "username"):
        page = s.get(query(f"{desk.base}/login", **{name: SCRIPT}), timeout=30)
        assert page.status_code == 200
        assert "<script" not in page.text.lower(), f"?{name}= reached the page as markup"


def test_a_login_posted_from_another_site_is_refused(desk: Served) -> None:
    s = desk.session()
    xsrf = desk.login_form(s)  # even with a valid token: the browser says the form was on another site
    cross = desk.post_login(s, "tina", "tina-trader-pw", xsrf=xsrf, headers={"Origin": "http://evil.example"})
    assert cross.status_code == 403 and "user" not in s.cookies
    fetched = desk.post_login(s, "tina", "tina-trader-pw", xsrf=xsrf,
                              headers={"Origin": desk.base, "Sec-Fetch-Site": "cross-site"})
    assert fetched.status_code == 403 and "user" not in s.cookies


def test_a_login_without_the_forms_xsrf_token_is_refused(desk: Served) -> None:
    s = desk.session()
    desk.login_form(s)
    forged = desk.post_login(s, "tina", "tina-trader-pw", xsrf="2|00000000|00000000000000000000000000000000|0")
    assert forged.status_code == 403 and "user" not in s.cookies
    blank = desk.session()  # no XSRF cookie at all, as a cross-site form would post
    answer = blank.post(f"{desk.base}/login", data={"username": "tina", "password": "tina-trader-pw"},
                        allow_redirects=False, timeout=60)
    assert answer.status_code == 403 and "user" not in blank.cookies
    assert not [e for e in audit(desk, "ui.login") if e.actor == "user:tina"]  # no password was even checked


def test_the_forms_own_post_logs_in_with_a_strict_httponly_cookie(desk: Served) -> None:
    s = desk.session()
    answer = desk.post_login(s, "tina", "tina-trader-pw")
    assert answer.status_code == 302
    cookie = answer.headers["Set-Cookie"]
    assert cookie.startswith("user=") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "Secure" not in cookie  # plain HTTP on localhost; see test_tls for HTTPS
