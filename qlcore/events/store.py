"""The append-only event store on SQLAlchemy 2 (SQLite by default, PostgreSQL by URL).

Each stream (a backtest run, an engine) has gap-free sequence numbers 1, 2, 3, ... assigned by its
single writer. Rows carry a CRC-32 of stream, sequence, type and payload, so that a corrupted row is
found on read and named by its sequence number. Writes are batched: one transaction (one fsync on
SQLite) per `batch_size` events; `flush` commits the rest.
"""
from __future__ import annotations

import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError

from qlcore.events.codec import EventDecodeError, decode, encode
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


def checksum(stream: str, seq: int, type_name: str, payload: str) -> int:
    return zlib.crc32(f"{stream}\x1f{seq}\x1f{type_name}\x1f{payload}".encode())


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
        return StreamWriter(self, stream, self.last_seq(stream), batch_size)

    def last_seq(self, stream: str) -> int:
        with self.engine.connect() as conn:
            value = conn.execute(
                select(func.max(events_table.c.seq)).where(events_table.c.stream == stream)
            ).scalar()
        return int(value or 0)

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

    def read(self, stream: str, *, from_seq: int = 1, chunk: int = 20_000) -> Iterator[StoredEvent]:
        """Yield the stream's events in order, checking that it is gap-free and intact."""
        for seq, event in self.iter_events(stream, from_seq=from_seq, chunk=chunk):
            yield StoredEvent(seq, event)

    def iter_events(self, stream: str, *, from_seq: int = 1, chunk: int = 20_000) -> Iterator[tuple[int, Event]]:
        """(seq, event) pairs in order; raises `CorruptEventLog` at the first gap, bad checksum or bad payload."""
        for seqs, events in self.iter_batches(stream, from_seq=from_seq, chunk=chunk):
            yield from zip(seqs, events, strict=True)

    def iter_batches(
        self, stream: str, *, from_seq: int = 1, chunk: int = 20_000
    ) -> Iterator[tuple[range, list[Event]]]:
        """Checked events in chunks, as (sequence numbers, events): the fast path for replay.

        The first gap, repeated number, checksum mismatch or undecodable payload raises
        `CorruptEventLog` naming its sequence number.
        """
        with self.engine.connect() as conn:
            for first, types, payloads in _checked_chunks(conn, stream, from_seq, chunk):
                yield range(first, first + len(types)), _decode_chunk(stream, first, types, payloads)

    def events(self, stream: str) -> list[Event]:
        return [s.event for s in self.read(stream)]


def _checked_chunks(conn, stream: str, from_seq: int, chunk: int) -> Iterator[tuple[int, tuple[str, ...], tuple[str, ...]]]:
    """(first seq, type names, payloads) of each chunk, after checking order and checksums."""
    # the driver's own cursor: SQLAlchemy's Row objects would cost more than the decoding
    ph = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    sql = (
        f"SELECT seq, type, payload, checksum FROM {events_table.name} "
        f"WHERE stream = {ph} AND seq >= {ph} ORDER BY seq"
    )
    raw = conn.connection.driver_connection
    server_side = conn.dialect.name == "postgresql"
    cursor = raw.cursor(name=f"replay_{os.getpid()}") if server_side else raw.cursor()
    cursor.execute(sql, (stream, from_seq))
    prefix = f"{stream}\x1f"
    crc32 = zlib.crc32
    expected = from_seq
    try:
        while rows := cursor.fetchmany(chunk):
            start = expected
            for seq, type_name, payload, crc in rows:
                if seq != expected or crc32(f"{prefix}{seq}\x1f{type_name}\x1f{payload}".encode()) != crc:
                    _check_rows(stream, rows, start)  # raises, naming the first bad row
                    raise AssertionError("unreachable: _check_rows found nothing wrong")
                expected += 1
            _, types, payloads, _ = zip(*rows, strict=True)
            yield start, types, payloads
    finally:
        cursor.close()


def _decode_chunk(stream: str, first: int, types: tuple[str, ...], payloads: tuple[str, ...]) -> list[Event]:
    events: list[Event] = []
    append = events.append
    try:
        for type_name, payload in zip(types, payloads, strict=True):
            append(decode(type_name, payload))
    except EventDecodeError as exc:
        raise CorruptEventLog(stream, first + len(events), str(exc)) from None
    return events


def _check_rows(stream: str, rows: list[tuple], expected: int) -> list[Event]:
    """The slow path: walk a chunk row by row and raise at the first bad one."""
    events = []
    for seq, type_name, payload, crc in rows:
        if seq != expected:
            if seq < expected:
                raise CorruptEventLog(stream, seq, "sequence number repeated")
            missing = f"{expected}" if seq == expected + 1 else f"{expected}..{seq - 1}"
            raise CorruptEventLog(stream, expected, f"gap: seq {missing} missing before {seq}")
        if checksum(stream, seq, type_name, payload) != crc:
            raise CorruptEventLog(stream, seq, "checksum mismatch (row edited or damaged)")
        try:
            events.append(decode(type_name, payload))
        except EventDecodeError as exc:
            raise CorruptEventLog(stream, seq, str(exc)) from None
        expected += 1
    return events


class StreamWriter:
    """Appends events to one stream, committing in batches."""

    def __init__(self, store: EventStore, stream: str, last_seq: int, batch_size: int) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.store = store
        self.stream = stream
        self.seq = last_seq
        self.batch_size = batch_size
        self._buffer: list[tuple] = []
        self._prefix = f"{stream}\x1f"
        self.committed_seq = last_seq

    def append(self, event: Event) -> int:
        """Encode and buffer one event; return its sequence number. Commits when the batch is full."""
        type_name, payload_bytes = encode(event)
        payload = payload_bytes.decode()
        self.seq += 1
        seq = self.seq
        crc = zlib.crc32(f"{self._prefix}{seq}\x1f{type_name}\x1f{payload}".encode())
        self._buffer.append((self.stream, seq, event.ts, type_name, payload, crc))  # type: ignore[attr-defined]
        if len(self._buffer) >= self.batch_size:
            self.flush()
        return seq

    def extend(self, events: list[Event]) -> int:
        for event in events:
            self.append(event)
        return self.seq

    def flush(self) -> None:
        """Commit everything buffered in one transaction (all or nothing)."""
        if not self._buffer:
            return
        rows, self._buffer = self._buffer, []
        try:
            with self.store.engine.begin() as conn:
                conn.exec_driver_sql(self.store.insert_sql, rows)
        except IntegrityError as exc:
            self.seq = self.committed_seq
            raise StoreConflict(
                f"stream {self.stream!r}: seq {rows[0][1]}..{rows[-1][1]} already stored "
                f"(another writer on the same stream?): {exc.orig}"
            ) from None
        except Exception:
            self.seq = self.committed_seq
            raise
        self.committed_seq = rows[-1][1]

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def __enter__(self) -> StreamWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.flush()
