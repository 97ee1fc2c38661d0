"""Client order ids that are unique forever: `<engine id>-<session token>-<counter>`.

The session token is drawn once when the engine starts: 48 bits of milliseconds since the epoch and
40 random bits, in Crockford base32 (ULID-like, 18 characters). Within a session a plain counter
numbers the orders.

Why this and not a persisted counter: a counter is unique across restarts only if it is durable
before each order leaves, which costs a write on the hot path (and a crash between send and write
reuses an id). The token needs no storage: two sessions collide only if they start in the same
millisecond and draw the same 40 random bits, and the random part still separates sessions if the
clock steps back. The counter keeps ids short (under 36 characters, the tightest common venue limit),
ordered within a session, and deterministic in a backtest given a seeded `rng` and clock.
"""
from __future__ import annotations

import random
import re
import secrets

from qlcore.model.ids import ClientOrderId

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_ENGINE_ID = re.compile(r"[A-Za-z0-9]{1,8}")
_TOKEN = re.compile(r"[0-9A-HJKMNP-TV-Z]{18}")


def session_token(now_ns: int, rng: random.Random | None = None) -> str:
    """A ULID-like token: 48 bits of epoch milliseconds, then 40 random bits (18 characters)."""
    ms = (now_ns // 1_000_000) & ((1 << 48) - 1)
    noise = rng.getrandbits(40) if rng is not None else secrets.randbits(40)
    value = (ms << 40) | noise
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(85, -1, -5))


class ClientOrderIds:
    """Hands out `<engine>-<session>-<n>` ids; `prefix` also fits the kernel's `order_id_prefix`."""

    __slots__ = ("_next", "prefix")

    def __init__(self, engine_id: str, session: str) -> None:
        if not _ENGINE_ID.fullmatch(engine_id):
            raise ValueError(f"engine_id: 1 to 8 letters or digits, got {engine_id!r}")
        if not _TOKEN.fullmatch(session):
            raise ValueError(f"session: 18 Crockford base32 characters, got {session!r}")
        self.prefix = f"{engine_id}-{session}-"
        self._next = 0

    @classmethod
    def new_session(cls, engine_id: str, now_ns: int, rng: random.Random | None = None) -> ClientOrderIds:
        return cls(engine_id, session_token(now_ns, rng))

    @classmethod
    def for_engine(cls, engine_id: str, now_ns: int, rng: random.Random | None = None) -> ClientOrderIds:
        """A new session for an engine whose id may be longer or hold other characters: its first
        8 letters and digits name it in the ids ("E" if it has none). The session token, not the
        name, is what makes the ids unique."""
        tag = "".join(c for c in engine_id if c.isascii() and c.isalnum())[:8] or "E"
        return cls.new_session(tag, now_ns, rng)

    def next(self) -> ClientOrderId:
        self._next += 1
        return ClientOrderId(f"{self.prefix}{self._next}")
