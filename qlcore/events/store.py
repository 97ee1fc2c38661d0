"""The append-only event store on SQLAlchemy 2 (SQLite by default, PostgreSQL by URL).

Each stream (a backtest run, an engine) has gap-free sequence numbers 1, 2, 3, ... assigned by its
single writer. Writes are batched: one transaction (one fsync on SQLite) per `batch_size` events;
`flush` commits the rest.

A row is (stream, seq, ts, type, payload, checksum):

* `payload` is the packed event (`codec.pack`): a JSON array of the type name and the field values,
  so the payload alone says what the event is; `type` is a copy of the name for queries and people;
* `checksum` is a chained CRC-32: the CRC of the row's UTF-8 payload continued from the previous
  row's checksum (from the CRC of the stream name for seq 1). Each checksum therefore vouches for
  the whole stream up to its row, so a batch of rows is checked with one `crc32` over its
  payloads joined, compared with the batch's last checksum. Only when that fails are the rows
  walked one by one, to name the first bad one.

A reader refuses, naming the first bad sequence number, a gap or repeat in the sequence, a payload
or checksum edited or damaged, and a payload that does not decode. Every payload is covered by the
batch check; a checksum inside a batch is only used to locate a bad payload, so damage to that
number alone (its payload intact) is noticed only by a read that starts right after it.

This format replaced JSON-object payloads with a per-row CRC of "stream, seq, type, payload"
(2026-11, before any production data); rows in the old format fail the checksum check at seq 1.
"""
from __future__ import annotations

import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError

from qlcore.events.codec import EventDecodeError, pack, unpack, unpack_many
from qlcore.events.types import Event
from qlcore.store.db import connect
from qlcore.store.tables import events as events_table


class CorruptEventLog(Exception):
    """A stream that cannot be trusted: a gap, a duplicate, a bad checksum or an undecodable event."""

    def __init__(self, stream: str, seq: int, reason: str) -> None:
        super().__init__(f"event log {stream!r} is corrupt at seq {seq}: {reason}")
        self.stream, self.seq, self.reason = stream, seq, reason


class StoreConflict(Exception):
    """Another writer appended to the same stream."""


def chain_start(stream: str) -> int:
    """The checksum a stream's chain starts from (the one 'before' seq 1)."""
    return zlib.crc32(stream.encode())


def checksum(previous: int, payload: str) -> int:
    """The checksum of a row: its payload's CRC-32 continued from the previous row's checksum."""
    return zlib.crc32(payload.encode(), previous)


@dataclass(frozen=True, slots=True)
class StoredEvent:
    seq: int
    event: Event


class EventStore:
    """Streams of events in the store database."""

    def __init__(self, url: str | None = None, *, engine: Engine | None = None) -> None:
        self.engine = engine if engine is not None else connect(url)
        ph = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
        # plain driver SQL for the batch insert: per-row parameter processing by the ORM layer
        # would cost more than encoding the events
        self.insert_sql = (
            f"INSERT INTO {events_table.name} (stream, seq, ts, type, payload, checksum) "
            f"VALUES ({ph}, {ph}, {ph}, {ph}, {ph}, {ph})"
        )

    def writer(self, stream: str, *, batch_size: int = 1000) -> StreamWriter:
        """The writer of `stream`, continuing after its last stored sequence number."""
        last = self.last_seq(stream)
        return StreamWriter(self, stream, last, self._chain_value(stream, last), batch_size)

    def last_seq(self, stream: str) -> int:
        with self.engine.connect() as conn:
            value = conn.execute(
                select(func.max(events_table.c.seq)).where(events_table.c.stream == stream)
            ).scalar()
        return int(value or 0)

    def _chain_value(self, stream: str, seq: int) -> int | None:
        """The stored checksum of `seq` (the chain's start for 0); None when that row is missing."""
        if seq == 0:
            return chain_start(stream)
        c = events_table.c
        with self.engine.connect() as conn:
            value = conn.execute(select(c.checksum).where(c.stream == stream, c.seq == seq)).scalar()
        return None if value is None else int(value)

    def count(self, stream: str) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count()).select_from(events_table).where(events_table.c.stream == stream)
                ).scalar()
                or 0
            )

    def streams(self) -> list[str]:
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(select(events_table.c.stream).distinct())]

    def read(self, stream: str, *, from_seq: int = 1, chunk: int = 1000) -> Iterator[StoredEvent]:
        """Yield the stream's events in order, checking that it is gap-free and intact."""
        for seq, event in self.iter_events(stream, from_seq=from_seq, chunk=chunk):
            yield StoredEvent(seq, event)

    def iter_events(self, stream: str, *, from_seq: int = 1, chunk: int = 1000) -> Iterator[tuple[int, Event]]:
        """(seq, event) pairs in order; raises `CorruptEventLog` at the first gap, bad checksum or bad payload."""
        for seqs, events in self.iter_batches(stream, from_seq=from_seq, chunk=chunk):
            yield from zip(seqs, events, strict=True)

    def iter_batches(
        self, stream: str, *, from_seq: int = 1, chunk: int = 1000
    ) -> Iterator[tuple[range, list[Event]]]:
        """Checked events in batches of up to `chunk`, as (sequence numbers, events): the fast path for replay.

        Nothing of a batch is yielded before all of it is checked. The first gap, repeated number,
        checksum mismatch or undecodable payload raises `CorruptEventLog` naming its sequence number.
        """
        if from_seq < 1:
            raise ValueError(f"from_seq must be >= 1, got {from_seq}")
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        previous = self._chain_value(stream, from_seq - 1)
        with self.engine.connect() as conn:
            expected = from_seq
            for rows in _fetch(conn, stream, from_seq, chunk):
                if previous is None:
                    raise CorruptEventLog(stream, from_seq - 1, "row missing: the checksum chain cannot be followed")
                seqs, payloads, checksums = zip(*rows, strict=True)
                # ORDER BY seq and the (stream, seq) unique key make the numbers strictly increasing,
                # so the first and last number tell whether the batch is gap-free
                in_order = seqs[0] == expected and seqs[-1] == expected + len(rows) - 1
                if not in_order or zlib.crc32("".join(payloads).encode(), previous) != checksums[-1]:
                    _raise_first_bad(stream, rows, expected, previous)
                try:
                    events = unpack_many(payloads)
                except EventDecodeError as exc:
                    raise CorruptEventLog(stream, seqs[exc.index or 0], str(exc)) from None
                yield range(expected, expected + len(rows)), events
                expected += len(rows)
                previous = checksums[-1]

    def events(self, stream: str) -> list[Event]:
        return [s.event for s in self.read(stream)]


def _fetch(conn: Any, stream: str, from_seq: int, chunk: int) -> Iterator[list[tuple[int, str, int]]]:
    """The stream's rows as (seq, payload, checksum), `chunk` at a time, through the driver's own cursor.

    SQLAlchemy's Row objects would cost more than decoding the events. PostgreSQL reads through a
    server-side cursor, so that a long stream is not held in memory at once.
    """
    ph = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    sql = (
        f"SELECT seq, payload, checksum FROM {events_table.name} "
        f"WHERE stream = {ph} AND seq >= {ph} ORDER BY seq"
    )
    raw = conn.connection.driver_connection
    server_side = conn.dialect.name == "postgresql"
    cursor = raw.cursor(name=f"replay_{os.getpid()}") if server_side else raw.cursor()
    try:
        cursor.execute(sql, (stream, from_seq))
        while rows := cursor.fetchmany(chunk):
            yield rows
    finally:
        cursor.close()


def _raise_first_bad(stream: str, rows: list[tuple[int, str, int]], expected: int, previous: int) -> None:
    """The slow path: walk a batch that failed its check row by row and raise at the first bad row."""
    for seq, payload, crc in rows:
        if seq != expected:
            if seq < expected:
                raise CorruptEventLog(stream, seq, "sequence number repeated")
            missing = f"{expected}" if seq == expected + 1 else f"{expected}..{seq - 1}"
            raise CorruptEventLog(stream, expected, f"gap: seq {missing} missing before {seq}")
        if checksum(previous, payload) != crc:
            raise CorruptEventLog(stream, seq, "checksum mismatch (row edited or damaged)")
        try:
            unpack(payload)
        except EventDecodeError as exc:
            raise CorruptEventLog(stream, seq, str(exc)) from None
        expected += 1
        previous = crc
    raise AssertionError("unreachable: a batch failed its check but every row passes")


class StreamWriter:
    """Appends events to one stream, committing in batches."""

    def __init__(self, store: EventStore, stream: str, last_seq: int, last_checksum: int | None, batch_size: int) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if last_checksum is None:
            raise CorruptEventLog(stream, last_seq, "last row has no checksum to continue the chain from")
        self.store = store
        self.stream = stream
        self.seq = self.committed_seq = last_seq
        self._chain = last_checksum
        self.batch_size = batch_size
        self._buffer: list[tuple] = []

    def append(self, event: Event) -> int:
        """Encode and buffer one event; return its sequence number. Commits when the batch is full."""
        payload = pack(event)
        self.seq += 1
        self._chain = zlib.crc32(payload, self._chain)
        self._buffer.append(
            (self.stream, self.seq, event.ts, type(event).__name__, payload.decode(), self._chain)  # type: ignore[attr-defined]
        )
        if len(self._buffer) >= self.batch_size:
            self.flush()
        return self.seq

    def extend(self, events: list[Event]) -> int:
        for event in events:
            self.append(event)
        return self.seq

    def flush(self) -> None:
        """Commit everything buffered in one transaction (all or nothing).

        A commit that fails keeps the buffer and its sequence numbers: the events it holds have
        already been applied in memory, so they must reach the log under the same numbers, never
        be dropped or renumbered. The next `flush` tries again. A commit whose outcome is uncertain
        (the database may have committed before the error reached us) is settled then: the rows
        the store holds with exactly this buffer's chain are ours, and only the rest is written.
        """
        while self._buffer:
            rows = self._buffer
            try:
                with self.store.engine.begin() as conn:
                    conn.exec_driver_sql(self.store.insert_sql, rows)
            except IntegrityError as exc:
                ours = self._stored_prefix(rows)
                if ours == 0:
                    raise StoreConflict(
                        f"stream {self.stream!r}: seq {rows[0][1]}..{rows[-1][1]} already stored "
                        f"(another writer on the same stream?): {exc.orig}"
                    ) from None
                self._committed(ours)  # an earlier commit of ours that did go through: the rest follows
                continue
            self._committed(len(rows))

    def _committed(self, n: int) -> None:
        self.committed_seq = self._buffer[n - 1][1]
        del self._buffer[:n]

    def _stored_prefix(self, rows: list[tuple]) -> int:
        """How many leading rows of `rows` the store already holds from an earlier commit of ours whose
        outcome was uncertain: the stream's last stored row must be one of them with this chain's
        checksum (which vouches for every row before it). 0 when another writer stored them."""
        last = self.store.last_seq(self.stream)
        first = rows[0][1]
        if not first <= last <= rows[-1][1]:
            return 0
        i = last - first
        return i + 1 if self.store._chain_value(self.stream, last) == rows[i][5] else 0

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def __enter__(self) -> StreamWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.flush()
