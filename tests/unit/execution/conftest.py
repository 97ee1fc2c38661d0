"""A kernel wired to an execution client over a faulty simulated broker, on a fake clock."""
from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import pytest

from qlcore.brokers.faulty import Fault, FaultRates, FaultyBroker
from qlcore.brokers.simulated import SimulatedBroker
from qlcore.engine.kernel import Kernel
from qlcore.events.types import Event
from qlcore.execution.client import ExecutionClient
from qlcore.execution.ids import ClientOrderIds
from qlcore.execution.policy import Backoff, ExecutionConfig
from qlcore.model.instruments import Instrument
from qlcore.model.market import Bar

START_NS = 1_764_000_000_000_000_000  # 2025-11-24, in nanoseconds


class FakeTime:
    """The engine clock and the client's sleep: sleeping only moves the clock, and is recorded."""

    def __init__(self, now: int = START_NS) -> None:
        self.now = now
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.slept.append(seconds)
        self.now += round(seconds * 1_000_000_000)


@dataclass
class Rig:
    time: FakeTime
    kernel: Kernel
    client: ExecutionClient
    venue: FaultyBroker
    records: list[Event] = field(default_factory=list)

    def settle(self, max_polls: int = 100_000) -> int:
        """Run the client's timers on the fake clock until nothing is in flight; return the polls."""
        polls = 0
        while (due := self.client.next_due()) is not None:
            self.time.now = max(self.time.now, due)
            self.client.poll()
            polls += 1
            assert polls < max_polls, "orders never settled"
        return polls

    def bar(self, symbol: str = "AAPL", price: float = 100.0) -> None:
        self.time.now += 60_000_000_000
        self.client.on_bar(Bar(symbol, self.time.now, price, price, price, price, 1e9))

    def of(self, kind: type[Event], order_id: str | None = None) -> list[Event]:
        return [
            r for r in self.records
            if type(r) is kind and (order_id is None or r.order_id == order_id)  # type: ignore[attr-defined]
        ]


CONFIG = ExecutionConfig(
    max_send_attempts=4,
    send_backoff=Backoff(base_s=0.05, cap_s=0.15),
    query_backoff=Backoff(base_s=0.2, cap_s=1.0),
    ack_timeout_s=1.0,
    order_timeout_s=5.0,
)


@pytest.fixture
def make_rig() -> Callable[..., Rig]:
    def make(
        rates: FaultRates | None = None,
        *,
        script: Iterable[Fault] = (),
        seed: int = 7,
        config: ExecutionConfig = CONFIG,
        inner: object | None = None,
    ) -> Rig:
        time = FakeTime()
        venue = FaultyBroker(inner or SimulatedBroker(), rates, seed=seed, script=script)  # type: ignore[arg-type]
        records: list[Event] = []
        client = ExecutionClient(
            venue, clock=time, record=records.append, config=config,
            rng=random.Random(seed + 1), sleep=time.sleep,
        )
        ids = ClientOrderIds.new_session("T1", time.now, random.Random(seed))
        kernel = Kernel(
            clock=time, broker=client, instruments={"AAPL": Instrument("AAPL")}, order_id_prefix=ids.prefix
        )
        return Rig(time, kernel, client, venue, records)

    return make
