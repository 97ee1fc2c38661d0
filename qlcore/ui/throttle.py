"""Login throttling: failed logins per user name and per address, with a lockout that costs nothing.

After `user_limit` failed logins in a row for one user name (from anywhere), or `address_limit` from
one address (whatever the names), that name or address is locked out for `lockout_s` seconds: its
attempts are refused at once, without running the password hash, so guessers cannot slow the
server for everyone. Attempts refused by a lockout do not count again, so a guesser hammering one
locked name does not lock out the address the desk's other users share. A success clears the
user's count. The state lives in the server process (each of `--num-procs` has its own).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Count:
    failures: int = 0
    locked_until: float = 0.0
    last: float = 0.0


@dataclass(frozen=True, slots=True)
class Lockout:
    """A lockout that has just begun: what is locked (``user:NAME`` or ``address:IP``) and for how long."""

    key: str
    seconds: float


class LoginThrottle:
    """Counts failed logins per user and per address; tells whether an attempt may run at all."""

    def __init__(self, *, user_limit: int = 5, address_limit: int = 30, lockout_s: float = 300.0,
                 forget_s: float = 3600.0, clock: Callable[[], float] = time.monotonic) -> None:
        if user_limit < 1 or address_limit < 1 or lockout_s <= 0:
            raise ValueError(f"login throttle: limits must be >= 1 and the lockout > 0 s, got "
                             f"{user_limit}, {address_limit}, {lockout_s}")
        self.user_limit, self.address_limit, self.lockout_s = user_limit, address_limit, lockout_s
        self.forget_s = forget_s
        self.clock = clock
        self._counts: dict[str, _Count] = {}

    def locked_for(self, user: str, address: str) -> float:
        """Seconds until an attempt for `user` from `address` may run again (0: it may run now)."""
        now = self.clock()
        left = [c.locked_until - now for k in (f"user:{user}", f"address:{address}")
                if (c := self._counts.get(k)) is not None]
        return max([0.0, *left])

    def failed(self, user: str, address: str) -> list[Lockout]:
        """Count a failed login; the lockouts it begins (each lockout is reported once)."""
        now = self.clock()
        self._forget(now)
        begun = []
        for key, limit in ((f"user:{user}", self.user_limit), (f"address:{address}", self.address_limit)):
            count = self._counts.setdefault(key, _Count())
            if count.locked_until and count.locked_until <= now:  # a lockout that ended starts a new count
                count.failures, count.locked_until = 0, 0.0
            count.failures += 1
            count.last = now
            if count.failures >= limit and not count.locked_until:
                count.locked_until = now + self.lockout_s
                begun.append(Lockout(key, self.lockout_s))
        return begun

    def succeeded(self, user: str) -> None:
        self._counts.pop(f"user:{user}", None)

    def _forget(self, now: float) -> None:
        """Drop counts idle for `forget_s` whose lockout is over (the table stays small)."""
        if len(self._counts) < 1024:
            return
        for key in [k for k, c in self._counts.items() if c.locked_until <= now and now - c.last > self.forget_s]:
            del self._counts[key]
