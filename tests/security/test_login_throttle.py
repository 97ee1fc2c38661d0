"""Password guessing: 200 wrong passwords in a row lock the user out (one audit entry for the lockout),
the right password is refused until the lockout ends, and the desk's other users log in meanwhile."""
from __future__ import annotations

from collections import Counter

import pytest
from desk_doors import LOCKOUT_S, Served, audit, wait_for

from qlcore.ui.throttle import LoginThrottle


def test_200_wrong_passwords_lock_the_user_out_until_the_lockout_ends(desk: Served) -> None:
    guesser = desk.session()
    xsrf = desk.login_form(guesser)
    answers = [desk.post_login(guesser, "lou", f"guess-{i:03d}", xsrf=xsrf) for i in range(200)]
    statuses = Counter(a.status_code for a in answers)
    assert statuses == {401: 5, 429: 195}, statuses  # five guesses checked, then the lockout answers
    assert "try again in" in answers[-1].text and int(answers[-1].headers["Retry-After"]) <= LOCKOUT_S + 1
    # the right password is refused during the lockout, without a password check...
    refused = desk.post_login(guesser, "lou", "lou-trader-pw", xsrf=xsrf)
    assert refused.status_code == 429 and "user" not in guesser.cookies
    # ...while the other users of the same address log in as usual
    vic = desk.session()
    assert desk.post_login(vic, "vic", "vic-viewer-pw").status_code == 302 and vic.cookies.get("user")
    # one audit entry for the lockout, one per password actually checked, none per refused attempt
    [locked] = [e for e in audit(desk, "ui.login_locked") if e.actor == "user:lou"]
    assert locked.data["locked"] == "user:lou" and locked.data["seconds"] == LOCKOUT_S
    assert len([e for e in audit(desk, "ui.login_refused") if e.actor == "user:lou"]) == 5
    # when the lockout ends, the right password logs in
    def logged_in() -> bool:
        return desk.post_login(guesser, "lou", "lou-trader-pw", xsrf=xsrf).status_code == 302

    wait_for(logged_in, "lou logs in after the lockout", timeout=LOCKOUT_S + 60)
    assert guesser.cookies.get("user")


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_address_spraying_many_names_is_locked_out_and_a_success_clears_a_users_count() -> None:
    clock = _Clock()
    throttle = LoginThrottle(user_limit=3, address_limit=5, lockout_s=60, clock=clock)
    lockouts = [lock.key for i in range(5) for lock in throttle.failed(f"name-{i}", "10.0.0.9")]
    assert lockouts == ["address:10.0.0.9"]
    assert throttle.locked_for("anyone", "10.0.0.9") == 60 and throttle.locked_for("anyone", "10.0.0.8") == 0
    throttle.failed("tina", "10.0.0.8")
    throttle.failed("tina", "10.0.0.8")
    throttle.succeeded("tina")
    assert throttle.failed("tina", "10.0.0.8") == []  # the count started again at the success
    clock.now += 61
    assert throttle.locked_for("anyone", "10.0.0.9") == 0


def test_a_throttle_with_no_limit_is_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="limits must be >= 1"):
        LoginThrottle(user_limit=0)
