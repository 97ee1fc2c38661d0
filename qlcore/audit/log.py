"""The tamper-evident audit log: an append-only table whose entries are chained by a keyed hash.

Each entry is (seq, ts, actor, action, subject, details) and carries the hash of the entry before
it; its own hash is ``HMAC-SHA256(key, prev_hash + canonical JSON of the entry)``, the canonical
JSON having sorted keys, no spaces, Decimals as strings, and the key kept outside the store in a
0600 file (`qlcore.audit.anchors`). `verify` walks the chain from seq 1 and names the first entry
that does not fit: a hash that does not match its content (edited, or rewritten without the key),
a link to the previous hash that does not match (inserted, reordered), a gap in the numbers
(deleted), or a log that ends before the recorded head (tail deleted). It then checks the signed
anchors kept outside the database, which name a log rewritten by someone holding the key, a
truncated log and an emptied one.

Secrets: `record` scrubs the actor, subject and every string of the details of the process's secrets
and the store's password (`qlcore.store.scrub`) before the entry is chained, so no writer can put
one into the log, which is kept for good and shown to every viewer.

Writes: a single writer per log is the expected set-up. Entries are chained in memory and
committed in batches; each commit moves the head row from the seq the writer last saw to the new
one in the same transaction. A second writer that appended in the meantime makes that update
(or the unique seq) fail, and the writer raises `AuditConflict` instead of forking the chain.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from typing import Any

import orjson
from sqlalchemy import Engine, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from qlcore.audit.anchors import Anchor, AnchorFileError, Anchors, anchor_path, audit_key
from qlcore.store.db import connect
from qlcore.store.scrub import scrubber
from qlcore.store.tables import audit_head, audit_log

GENESIS = "0" * 64
CHAIN = "main"
log = logging.getLogger("qlcore.audit")


class AuditError(Exception):
    """The audit log cannot be appended to as it is (for instance its tail does not match its head)."""


class AuditConflict(AuditError):
    """Another writer appended to the log since this writer read its tail; nothing was written."""

    def __init__(self, message: str, unwritten: list[AuditEntry]) -> None:
        super().__init__(message)
        self.unwritten = unwritten


def _default(value: object) -> object:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"cannot put {type(value).__name__} in an audit entry")


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, Decimals as strings: the same text for the same content."""
    return orjson.dumps(value, default=_default, option=orjson.OPT_SORT_KEYS).decode()


def entry_body(seq: int, ts: int, actor: str, action: str, subject: str, details: str) -> str:
    """The canonical JSON of one entry; `details` is already canonical JSON text."""
    return (
        f'{{"action":{orjson.dumps(action).decode()},"actor":{orjson.dumps(actor).decode()},'
        f'"details":{details},"seq":{seq},"subject":{orjson.dumps(subject).decode()},"ts":{ts}}}'
    )


def entry_hash(key: bytes, prev_hash: str, seq: int, ts: int, actor: str, action: str, subject: str,
               details: str) -> str:
    """The keyed hash of one entry: HMAC-SHA256 of the previous hash and the entry's canonical JSON."""
    body = entry_body(seq, ts, actor, action, subject, details)
    return hmac.new(key, (prev_hash + body).encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class AuditEntry:
    seq: int
    ts: int
    actor: str
    action: str
    subject: str
    details: str  # canonical JSON
    prev_hash: str
    hash: str

    @property
    def data(self) -> dict[str, Any]:
        return orjson.loads(self.details)

    def values(self) -> tuple[int, int, str, str, str, str, str, str]:
        """The row in the column order of `audit_log`."""
        return (self.seq, self.ts, self.actor, self.action, self.subject, self.details, self.prev_hash, self.hash)

    def row(self) -> dict[str, Any]:
        return {
            "seq": self.seq, "ts": self.ts, "actor": self.actor, "action": self.action, "subject": self.subject,
            "details": self.details, "prev_hash": self.prev_hash, "hash": self.hash,
        }


@dataclass(frozen=True, slots=True)
class Verification:
    """The outcome of `AuditLog.verify`: ok, how many entries, and the first bad one if any."""

    ok: bool
    entries: int
    head_seq: int
    head_hash: str
    bad_seq: int | None = None
    problem: str = ""
    anchors: int = 0  # anchors checked against the log

    def __str__(self) -> str:
        if self.ok:
            return (f"OK: {self.entries} entries, chain intact; head seq {self.head_seq} hash {self.head_hash}; "
                    f"{self.anchors} anchor(s) match")
        return f"FAILED at seq {self.bad_seq}: {self.problem} ({self.entries} entries checked before it)"


class AuditLog:
    """Append to and check the audit log of a store (`record`, `verify`, `entries`)."""

    def __init__(
        self, url: str | None = None, *, engine: Engine | None = None, batch_size: int = 1, conflict_retries: int = 0,
        key: bytes | None = None, anchors: Anchors | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.engine = engine if engine is not None else connect(url)
        self.key = audit_key() if key is None else key
        self.anchors = anchors if anchors is not None else Anchors(anchor_path(self.engine.url), self.key)
        self.batch_size = batch_size
        # every entry passes here: the secrets of this process (and the store's password) never reach the log
        self.secrets = scrubber(urls=[self.engine.url])
        # several processes append to one chain (engine, dashboards, scheduler): with retries, entries
        # that lost the race are chained again after the other writer's and committed again
        self.conflict_retries = conflict_retries
        ph = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
        self._insert_sql = (
            f"INSERT INTO {audit_log.name} (seq, ts, actor, action, subject, details, prev_hash, hash) "
            f"VALUES ({', '.join([ph] * 8)})"
        )
        self._tail: tuple[int, str] | None = None  # (seq, hash) of the last entry, once read
        self._committed = 0
        self._buffer: list[AuditEntry] = []
        self._uncertain = False  # the last commit failed: it may have gone through all the same

    # --- writing ---------------------------------------------------------------------------------
    def record(
        self, actor: str, action: str, subject: str, details: Mapping[str, Any] | None = None, *, ts: int | None = None
    ) -> AuditEntry:
        """Chain one entry onto the log; it is committed when the batch is full (at once by default)."""
        if not actor or not action:
            raise ValueError(f"an audit entry needs an actor and an action (got {actor!r}, {action!r})")
        ts = time.time_ns() if ts is None else int(ts)
        clean = self.secrets
        text = canonical_json(dict(details or {}))
        # without an escape, every string of the details is a piece of their JSON text: one search of
        # the text tells whether any holds a secret (an escape can hide a spaced one: then look at each)
        if clean and ("\\" in text or clean.found(text)):
            text = canonical_json(clean.value(dict(details or {})))
        entry = self._chain(clean.text(actor), action, clean.text(subject), text, ts)
        if len(self._buffer) >= self.batch_size:
            return self.flush()[-1]  # as committed (chained again if another writer came first)
        return entry

    def _chain(self, actor: str, action: str, subject: str, text: str, ts: int) -> AuditEntry:
        if self._tail is None:
            self._tail = self._read_tail()
            self._committed = self._tail[0]
        seq = self._tail[0] + 1
        digest = entry_hash(self.key, self._tail[1], seq, ts, actor, action, subject, text)
        entry = AuditEntry(seq, ts, actor, action, subject, text, self._tail[1], digest)
        self._buffer.append(entry)
        self._tail = (seq, digest)
        return entry

    def flush(self) -> list[AuditEntry]:
        """Commit the buffered entries and move the head, in one transaction (all or nothing); return them.

        `AuditConflict` when another writer appended first, unless `conflict_retries` allow chaining
        the entries again after the other writer's (a short pause between attempts)."""
        for attempt in range(self.conflict_retries + 1):
            try:
                return self._commit()
            except AuditConflict as conflict:
                if attempt == self.conflict_retries:
                    raise
                time.sleep(0.005 * (attempt + 1))
                for e in conflict.unwritten:
                    self._chain(e.actor, e.action, e.subject, e.details, e.ts)
        raise AssertionError("unreachable")

    def _commit(self) -> list[AuditEntry]:
        if not self._buffer:
            return []
        rows, self._buffer = self._buffer, []
        first, last = rows[0], rows[-1]
        try:
            with self.engine.begin() as conn:
                if self._committed == 0:
                    conn.execute(insert(audit_head).values(chain=CHAIN, seq=last.seq, hash=last.hash))
                else:
                    moved = conn.execute(
                        update(audit_head)
                        .where(audit_head.c.chain == CHAIN, audit_head.c.seq == self._committed)
                        .values(seq=last.seq, hash=last.hash)
                    ).rowcount
                    if moved != 1:
                        raise _Stale()
                # plain driver SQL: the ORM's per-row parameter processing would cost more than hashing
                conn.exec_driver_sql(self._insert_sql, [e.values() for e in rows])
        except (IntegrityError, _Stale):
            ours = self._stored_prefix(rows) if self._uncertain else 0
            if ours:  # the failed attempt did commit: those rows are on file, the rest follows
                self._uncertain = False
                self._committed = rows[ours - 1].seq
                self._buffer = rows[ours:] + self._buffer
                return rows[:ours] + self._commit()
            self._tail = None  # read again before the next record
            raise AuditConflict(
                f"audit log: another writer appended after seq {self._committed}; entries seq "
                f"{first.seq}..{last.seq} of this writer were not written (the chain is not forked: "
                f"record them again to chain them after the other writer's entries)",
                rows,
            ) from None
        except Exception:
            # the store failed (locked, read-only, connection lost): keep the entries, chained as
            # they are, for the next flush; the commit may have gone through before the error
            # reached us, which the next attempt finds out (`_stored`)
            self._buffer = rows + self._buffer
            self._uncertain = True
            raise
        self._uncertain = False
        self._committed = last.seq
        try:
            self.anchors.maybe_write(last.seq, last.hash)
        except OSError as exc:  # the entries are committed; a missed anchor is reported, not fatal
            log.warning("audit anchor not written to %s: %s", self.anchors.path, exc)
        return rows

    def _stored_prefix(self, rows: list[AuditEntry]) -> int:
        """How many leading `rows` the log holds as this writer chained them (hash vouches for the chain)."""
        with self.engine.connect() as conn:
            head = conn.execute(select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.chain == CHAIN)).one_or_none()
        if head is None or not rows[0].seq <= head.seq <= rows[-1].seq:
            return 0
        i = head.seq - rows[0].seq
        return i + 1 if rows[i].hash == head.hash else 0

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.flush()  # what was recorded is kept even when the block fails

    def _read_tail(self) -> tuple[int, str]:
        # one statement, so one snapshot: two queries could see another writer's commit in between
        newest = select(audit_log.c.seq, audit_log.c.hash).order_by(audit_log.c.seq.desc()).limit(1).subquery()
        head = select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.chain == CHAIN).subquery()
        query = select(
            select(newest.c.seq).scalar_subquery(),
            select(newest.c.hash).scalar_subquery(),
            select(head.c.seq).scalar_subquery(),
            select(head.c.hash).scalar_subquery(),
        )
        with self.engine.connect() as conn:
            last_seq, last_hash, head_seq, head_hash = conn.execute(query).one()
        tail = (0, GENESIS) if last_seq is None else (int(last_seq), last_hash)
        recorded = (0, GENESIS) if head_seq is None else (int(head_seq), head_hash)
        if tail != recorded:
            raise AuditError(
                f"audit log ends at seq {tail[0]} but its head records seq {recorded[0]}: "
                "it was changed outside this API; run `qlcore audit verify` before appending"
            )
        return tail

    # --- reading ---------------------------------------------------------------------------------
    def entries(self, *, subject: str | None = None, subjects: list[str] | None = None,
                from_seq: int = 1) -> list[AuditEntry]:
        """Stored entries in seq order, optionally only those about `subject` (or any of `subjects`)."""
        self.flush()
        q = select(audit_log).where(audit_log.c.seq >= from_seq).order_by(audit_log.c.seq)
        if subject is not None:
            q = q.where(audit_log.c.subject == subject)
        if subjects is not None:
            q = q.where(audit_log.c.subject.in_(subjects))
        with self.engine.connect() as conn:
            return [AuditEntry(int(r.seq), int(r.ts), r.actor, r.action, r.subject, r.details, r.prev_hash, r.hash)
                    for r in conn.execute(q)]

    def subjects_like(self, suffix: str) -> list[str]:
        """Subjects equal to `suffix` or ending in ``/suffix`` (an order id in any run)."""
        escaped = suffix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(audit_log.c.subject, audit_log.c.seq)
                .where((audit_log.c.subject == suffix) | audit_log.c.subject.like(f"%/{escaped}", escape="\\"))
                .order_by(audit_log.c.seq)
            )
            seen: dict[str, None] = {}
            for subject, _ in rows:
                seen.setdefault(subject, None)
        return list(seen)

    def count(self) -> int:
        self.flush()
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(audit_log)).scalar() or 0)

    def _rows(self, chunk: int = 5000) -> Iterator[tuple]:
        last = None
        with self.engine.connect() as conn:
            while True:
                q = select(
                    audit_log.c.seq, audit_log.c.ts, audit_log.c.actor, audit_log.c.action, audit_log.c.subject,
                    audit_log.c.details, audit_log.c.prev_hash, audit_log.c.hash,
                ).order_by(audit_log.c.seq).limit(chunk)
                if last is not None:
                    q = q.where(audit_log.c.seq > last)
                rows = conn.execute(q).all()
                if not rows:
                    return
                yield from rows
                last = rows[-1][0]

    def verify(self) -> Verification:
        """Walk the chain from seq 1; stop at the first entry that is not what was written."""
        self.flush()
        expected_seq, prev = 1, GENESIS
        n = 0
        try:
            anchors = self.anchors.read()
        except AnchorFileError as exc:
            return Verification(False, 0, 0, GENESIS, 0, str(exc))
        anchored: dict[int, str | None] = {a.seq: None for a in anchors}  # seq -> the log's hash there

        def bad(seq: Any, problem: str) -> Verification:
            return Verification(False, n, expected_seq - 1, prev, seq, problem)

        for seq, ts, actor, action, subject, details, prev_hash, digest in self._rows():
            if seq != expected_seq:
                if isinstance(seq, int) and seq > expected_seq:
                    missing = f"seq {expected_seq}" if seq == expected_seq + 1 else f"seq {expected_seq}..{seq - 1}"
                    return bad(expected_seq, f"{missing} missing: the log jumps from seq {expected_seq - 1} to {seq} (deleted)")
                return bad(seq, f"an entry numbered {seq} where seq {expected_seq} was expected (inserted)")
            try:
                text = canonical_json(orjson.loads(details))
            except orjson.JSONDecodeError:
                return bad(seq, "details are not valid JSON (edited)")
            if text != details:
                return bad(seq, "details are not in canonical form (edited)")
            if prev_hash != prev:
                return bad(seq, f"prev_hash does not match the hash of seq {seq - 1} (inserted, reordered or rewritten)")
            if entry_hash(self.key, prev, seq, int(ts), actor, action, subject, details) != digest:
                return bad(seq, f"hash does not match the entry's content under the audit key "
                                f"(edited, or rewritten without the key: {action} {subject})")
            if seq in anchored:
                anchored[seq] = digest
            prev = digest
            expected_seq += 1
            n += 1
        with self.engine.connect() as conn:
            head = conn.execute(select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.chain == CHAIN)).first()
        head_seq, head_hash = (0, GENESIS) if head is None else (int(head[0]), head[1])
        last_seq = expected_seq - 1
        if head_seq > last_seq:
            return bad(last_seq + 1, f"the log ends at seq {last_seq} but its head records seq {head_seq} (tail deleted)")
        if head_seq < last_seq:
            return bad(head_seq + 1, f"entries after seq {head_seq} are not covered by the head (appended outside the API)")
        if head_hash != prev:
            return bad(last_seq, "the head's hash does not match the last entry (rewritten)")
        problem = _against_anchors(anchors, anchored, last_seq)
        if problem is not None:
            return Verification(False, n, last_seq, prev, problem[0], problem[1], len(anchors))
        return Verification(True, n, last_seq, prev, anchors=len(anchors))

    def anchor(self) -> Anchor:
        """Anchor the log's head now (after committing what is buffered)."""
        self.flush()
        with self.engine.connect() as conn:
            head = conn.execute(select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.chain == CHAIN)).first()
        seq, digest = (0, GENESIS) if head is None else (int(head[0]), head[1])
        return self.anchors.write(seq, digest)


def _against_anchors(anchors: list[Anchor], found: dict[int, str | None], last_seq: int) -> tuple[int, str] | None:
    """The first anchor the log contradicts, as (seq, problem): emptied, truncated or rewritten."""
    for a in sorted(anchors, key=lambda a: -a.seq):
        if a.seq > last_seq:
            kind = "emptied" if last_seq == 0 else f"truncated: it ends at seq {last_seq}"
            return a.seq, f"the log was anchored at seq {a.seq} on {a.when} (anchor line {a.line}) but is {kind}"
    for a in sorted(anchors, key=lambda a: a.seq):
        if a.seq and found.get(a.seq) != a.hash:
            return a.seq, (f"seq {a.seq} differs from its anchor of {a.when} (anchor line {a.line}): the log was "
                           "rewritten with a recomputed chain")
    return None


class _Stale(Exception):
    pass
