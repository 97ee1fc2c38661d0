"""Client order ids: unique forever, short, deterministic under a seed."""
from __future__ import annotations

import random

import pytest

from qlcore.execution.ids import ClientOrderIds, session_token

NS = 1_764_000_000_000_000_000


def test_ids_are_engine_session_counter_and_fit_venue_limits():
    ids = ClientOrderIds.new_session("E1", NS, random.Random(1))
    first, second = ids.next(), ids.next()
    engine, session, n = first.split("-")
    assert (engine, n) == ("E1", "1")
    assert len(session) == 18
    assert second == f"E1-{session}-2"
    assert len(f"{ids.prefix}{10**9}") <= 36


def test_sessions_started_in_the_same_millisecond_differ():
    tokens = {session_token(NS, random.Random(seed)) for seed in range(2_000)}
    assert len(tokens) == 2_000


def test_session_tokens_sort_by_start_time():
    rng = random.Random(5)
    earlier = session_token(NS, rng)
    later = session_token(NS + 1_000_000, rng)
    assert earlier[:10] < later[:10]


def test_same_seed_and_clock_give_the_same_ids():
    a = ClientOrderIds.new_session("E1", NS, random.Random(9))
    b = ClientOrderIds.new_session("E1", NS, random.Random(9))
    assert [a.next() for _ in range(3)] == [b.next() for _ in range(3)]


def test_unseeded_sessions_use_fresh_randomness():
    assert session_token(NS) != session_token(NS)


@pytest.mark.parametrize(
    ("engine_id", "session"), [("", "0" * 18), ("E-1", "0" * 18), ("E1", "0" * 17), ("E1", "I" * 18)]
)
def test_malformed_engine_id_or_session_is_refused(engine_id, session):
    with pytest.raises(ValueError, match=r"engine_id|session"):
        ClientOrderIds(engine_id, session)
