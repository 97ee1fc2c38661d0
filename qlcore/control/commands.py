"""The command queue: how the CLI, dashboards and scheduled jobs ask the engine to act.

The engine is the only writer of trading state; everyone else writes a *command* to the `commands`
table and the engine takes them in id order, acts, and completes each one as accepted or refused
with a reason. A command is checked against its kind's declared schema before it is stored, so a
malformed one never reaches the table; a payload may never carry a secret.

A row moves through `_TRANSITIONS` only: pending -> taken (by exactly one consumer: a conditional
UPDATE whose row count says who won) -> accepted | refused. When an `AuditRecorder` is given,
commands refused at submission and every completion are written to the audit log.

`take` claims in lanes (`qlcore.control.priority`): the kill switch, then the other protective
commands, then the rest, each in id order and in bounded pages. `submit` bounds each client (its
`user`) per target: at most `CommandLimits.max_pending` commands waiting and `max_per_s` sent in
any second; beyond either it raises `CommandLimitError` naming the bound, and nothing is stored.
Protective commands are never bounded.

A queue given a `signer` (`qlcore.control.identity.Signer`: a person's key, the dashboards' server
signing for its logged-in user, a scheduled run's key and grant) signs each command as it is stored:
the signature covers the payload in its stored form (the JSON text of the row, decimals as strings),
so the engine verifies exactly what it reads. The credential's nonce is unique in the table: a copy
of a signed row cannot be stored a second time. A command stored without a credential is refused by
the engine.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import Engine, bindparam, func, select, update

from qlcore.audit.log import canonical_json
from qlcore.control.priority import FENCING, LANES, PRIORITY
from qlcore.model.enums import OrderSide, OrderType, TimeInForce
from qlcore.store.db import connect
from qlcore.store.scrub import SECRET_NAME
from qlcore.store.tables import commands as commands_table

if TYPE_CHECKING:
    from qlcore.audit.recorder import AuditRecorder
    from qlcore.control.identity import Signer

PENDING, TAKEN, ACCEPTED, REFUSED = "pending", "taken", "accepted", "refused"

# status -> the statuses it may move to. Nothing leaves accepted or refused: an outcome is final.
_TRANSITIONS: dict[str, frozenset[str]] = {
    PENDING: frozenset({TAKEN}),
    TAKEN: frozenset({ACCEPTED, REFUSED, PENDING}),  # back to pending: released unhandled by its consumer
    ACCEPTED: frozenset(),
    REFUSED: frozenset(),
}

_MAX_USER, _MAX_TARGET = 128, 64  # the columns' widths



class CommandError(ValueError):
    """A malformed command: `field` names what is wrong and `reason` why. Nothing was stored."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field, self.reason = field, reason


class _NotCompleted(Exception):
    def __init__(self, command_id: int, new: str) -> None:
        self.command_id, self.new = command_id, new


class CommandStateError(Exception):
    """A transition the command's status does not allow (completed twice, another consumer's, unknown)."""

    def __init__(self, command_id: int, reason: str) -> None:
        super().__init__(f"command {command_id}: {reason}")
        self.command_id, self.reason = command_id, reason


class CommandLimitError(Exception):
    """A client is over one of its bounds (`limit` names it, `bound` its value, `value` the client's). Nothing was stored."""

    def __init__(self, user: str, target: str, limit: str, bound: int, value: int) -> None:
        what = {
            "max_pending": f"has {value} commands waiting for {target!r}; at most {bound} may wait "
                           "(wait for the engine to take them)",
            "max_per_s": f"sent {value} commands to {target!r} in the last second; at most {bound} a second",
        }[limit]
        super().__init__(f"{user} {what} [limit {limit}, {LIMIT_ENV[limit]}]")
        self.user, self.target, self.limit, self.bound, self.value = user, target, limit, bound, value


LIMIT_ENV = {"max_pending": "QLCORE_COMMAND_MAX_PENDING", "max_per_s": "QLCORE_COMMAND_MAX_PER_S"}


@dataclass(frozen=True, slots=True)
class CommandLimits:
    """Per client and target: at most `max_pending` commands waiting, at most `max_per_s` sent in any
    second (0 turns a bound off). Protective commands (halt, cancel, flatten, pause, stop) are never bounded."""

    max_pending: int = 500
    max_per_s: int = 200  # the paced loads of bench_engine and bench_dashboards send 100 a second

    def __post_init__(self) -> None:
        for name in LIMIT_ENV:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"command limit {name}: must be an integer >= 0 (0: no bound), got {value!r}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> CommandLimits:
        """The limits from QLCORE_COMMAND_MAX_PENDING and QLCORE_COMMAND_MAX_PER_S, the defaults where unset."""
        values: dict[str, int] = {}
        for name, var in LIMIT_ENV.items():
            text = environ.get(var, "").strip()
            if not text:
                continue
            try:
                values[name] = int(text)
            except ValueError:
                raise ValueError(f"{var}: must be an integer >= 0 (0: no bound), got {text!r}") from None
        return cls(**values)


# --- schemas ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One payload field: its type (str, bool, int, decimal, dict, list[str]), whether required, choices."""

    type: str
    required: bool = True
    choices: frozenset[str] | None = None


def _req(type_: str, choices: type[StrEnum] | None = None) -> FieldSpec:
    return FieldSpec(type_, True, frozenset(c.value for c in choices) if choices else None)


def _opt(type_: str, choices: type[StrEnum] | None = None) -> FieldSpec:
    return FieldSpec(type_, False, frozenset(c.value for c in choices) if choices else None)


SCHEMAS: dict[str, dict[str, FieldSpec]] = {
    "strategy.deploy": {
        "strategy_id": _req("str"),
        "strategy": _req("str"),  # a registered name or "module:Class"
        "params": _opt("dict"),
        "symbols": _opt("list[str]"),
        "capital": _opt("decimal"),
        "limits": _opt("dict"),
        "job_id": _opt("str"),  # set when a scheduled notebook job sent it
        "code_hash": _opt("str"),  # the job's approved notebook hash
    },
    "strategy.pause": {"strategy_id": _req("str"), "cancel_open_orders": _opt("bool")},
    "strategy.resume": {"strategy_id": _req("str")},
    "strategy.stop": {"strategy_id": _req("str"), "flatten": _opt("bool")},
    "order.submit": {
        "strategy_id": _req("str"),
        "symbol": _req("str"),
        "side": _req("str", OrderSide),
        "quantity": _req("decimal"),
        "order_type": _opt("str", OrderType),
        "price": _opt("decimal"),
        "trigger_price": _opt("decimal"),
        "time_in_force": _opt("str", TimeInForce),
        "job_id": _opt("str"),
        "code_hash": _opt("str"),
    },
    "order.cancel": {"order_id": _req("str")},
    "flatten": {"strategy_id": _opt("str"), "symbol": _opt("str")},  # neither: the whole account
    "halt": {"reason": _req("str"), "flatten": _opt("bool")},
    "resume_trading": {"reason": _opt("str"), "strategy_id": _opt("str")},  # no strategy: the whole account
    "limits.set": {"limits": _req("dict"), "strategy_id": _opt("str"), "reason": _opt("str")},
}
# decimals that must be above zero (a zero or negative quantity or price is malformed, not risky)
_POSITIVE = frozenset({"quantity", "price", "trigger_price", "capital"})


def _find_secret(value: Any, path: str) -> str | None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if SECRET_NAME.search(str(key)):
                return where
            found = _find_secret(item, where)
            if found:
                return found
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            found = _find_secret(item, f"{path}[{i}]")
            if found:
                return found
    return None


def _check_field(name: str, spec: FieldSpec, value: Any) -> Any:
    """The field's stored form (decimals as canonical strings), or `CommandError`."""
    t = spec.type
    if t == "str":
        if not isinstance(value, str) or not value.strip():
            raise CommandError(name, f"must be a non-empty string, got {value!r}")
        if spec.choices is not None and value not in spec.choices:
            raise CommandError(name, f"must be one of {sorted(spec.choices)}, got {value!r}")
        return value
    if t == "bool":
        if not isinstance(value, bool):
            raise CommandError(name, f"must be true or false, got {value!r}")
        return value
    if t == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise CommandError(name, f"must be an integer, got {value!r}")
        return value
    if t == "decimal":
        # floats are refused: an amount travels as a Decimal, an int or a decimal string
        if isinstance(value, bool) or not isinstance(value, Decimal | int | str):
            raise CommandError(name, f"must be a decimal (Decimal, int or string), got {type(value).__name__} {value!r}")
        try:
            d = Decimal(value)
        except InvalidOperation:
            raise CommandError(name, f"is not a decimal number: {value!r}") from None
        if not d.is_finite():
            raise CommandError(name, f"must be finite, got {value!r}")
        if name in _POSITIVE and d <= 0:
            raise CommandError(name, f"must be greater than zero, got {value!r}")
        return str(d)
    if t == "dict":
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise CommandError(name, f"must be an object with string keys, got {value!r}")
        return dict(value)
    if t == "list[str]":
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) and v for v in value):
            raise CommandError(name, f"must be a list of non-empty strings, got {value!r}")
        return list(value)
    raise AssertionError(f"unknown field type {t!r} in a command schema")


def validate(kind: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """The payload as it will be stored, or `CommandError` naming the field and why."""
    schema = SCHEMAS.get(kind) if isinstance(kind, str) else None
    if schema is None:
        raise CommandError("kind", f"unknown command kind {kind!r}; known: {sorted(SCHEMAS)}")
    if not isinstance(payload, Mapping):
        raise CommandError("payload", f"must be an object, got {type(payload).__name__}")
    secret = _find_secret(payload, "")
    if secret is not None:
        raise CommandError(secret, "looks like a secret; credentials never travel in commands")
    for key in payload:
        if key not in schema:
            raise CommandError(str(key), f"unknown field for {kind}; allowed: {sorted(schema)}")
    out: dict[str, Any] = {}
    for name, spec in schema.items():
        if name not in payload or payload[name] is None:
            if spec.required:
                raise CommandError(name, f"is required for {kind}")
            continue
        out[name] = _check_field(name, spec, payload[name])
    return out


def _serialize(stored: dict[str, Any]) -> str:
    try:
        return canonical_json(stored)
    except TypeError as exc:  # e.g. a set or an object inside `params`
        raise CommandError("payload", f"is not plain JSON: {exc}") from None


def _decode_payload(kind: str, text: str) -> dict[str, Any]:
    payload: dict[str, Any] = orjson.loads(text)
    schema = SCHEMAS.get(kind, {})
    for name, value in payload.items():
        spec = schema.get(name)
        if spec is not None and spec.type == "decimal" and isinstance(value, str):
            payload[name] = Decimal(value)
    return payload


# --- the queue -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Command:
    """One stored command. `payload` has its decimals back as `Decimal`."""

    id: int
    ts_submitted: int
    user: str
    kind: str
    payload: dict[str, Any]
    status: str
    target: str = "engine"
    consumer: str | None = None
    ts_taken: int | None = None
    ts_completed: int | None = None
    reason: str | None = None
    credential: str | None = None  # the sender's proof, as stored (None: unsigned)
    payload_text: str = ""  # the payload as stored: what the credential's signature covers

    @property
    def done(self) -> bool:
        return self.status in (ACCEPTED, REFUSED)

    def signed_payload(self) -> dict[str, Any]:
        """The payload exactly as it was signed: the stored JSON (decimals as their strings)."""
        loaded: dict[str, Any] = orjson.loads(self.payload_text) if self.payload_text else canonical_payload(self.payload)
        return loaded


def _command(row: Any) -> Command:
    return Command(
        id=row.id,
        ts_submitted=row.ts_submitted,
        user=row.user,
        kind=row.kind,
        payload=_decode_payload(row.kind, row.payload),
        status=row.status,
        target=row.target,
        consumer=row.consumer,
        ts_taken=row.ts_taken,
        ts_completed=row.ts_completed,
        reason=row.reason,
        credential=row.credential,
        payload_text=row.payload,
    )


_C = commands_table.c
# the two writes of the engine's every turn, built once: claim a pending row, complete a taken one
_CLAIM = (
    update(commands_table)
    .where(_C.id == bindparam("cid"), _C.status == PENDING)
    .values(status=TAKEN, consumer=bindparam("who"), ts_taken=bindparam("at"))
)
_ANY_PENDING = select(_C.id).where(_C.target == bindparam("target"), _C.status == PENDING).limit(1)
_COMPLETE = (
    update(commands_table)
    .where(_C.id == bindparam("cid"), _C.status == TAKEN, _C.consumer == bindparam("who"))
    .values(status=bindparam("new"), reason=bindparam("why"), ts_completed=bindparam("at"))
)


class CommandQueue:
    """Commands in the store: `submit` from any process; `take` and `complete` from the engine."""

    def __init__(
        self,
        url: str | None = None,
        *,
        engine: Engine | None = None,
        audit: AuditRecorder | None = None,
        clock: Callable[[], int] = time.time_ns,
        limits: CommandLimits | None = None,
        signer: Signer | None = None,
    ) -> None:
        self.engine = engine if engine is not None else connect(url)
        self.audit = audit
        self.signer = signer
        self.clock = clock
        self.limits = limits if limits is not None else CommandLimits.from_env()

    # --- producers ----------------------------------------------------------------------------
    def submit(self, user: str, kind: str, payload: Mapping[str, Any], *, target: str = "engine") -> int:
        """Validate, sign (with the queue's signer) and store a command; its id. A malformed one raises
        `CommandError`, one beyond its client's bounds `CommandLimitError`; neither is stored."""
        try:
            if not isinstance(user, str) or not user.strip():
                raise CommandError("user", "a command carries the non-empty name of who sent it")
            if len(user) > _MAX_USER:
                raise CommandError("user", f"longer than {_MAX_USER} characters")
            if not isinstance(target, str) or not target.strip() or len(target) > _MAX_TARGET:
                raise CommandError("target", f"must be a non-empty string of at most {_MAX_TARGET} characters")
            text = _serialize(validate(kind, payload))
        except CommandError as exc:
            self._audit_refused_submission(user, kind, payload, exc)
            raise
        now = self.clock()
        if kind not in PRIORITY:
            try:
                self._check_bounds(user, target, now)
            except CommandLimitError as exc:
                self._audit_refused_submission(user, kind, payload, exc)
                raise
        credential = nonce = None
        if self.signer is not None:  # signed as stored: the engine rebuilds the same bytes from the row
            signed = self.signer.sign_command(kind, orjson.loads(text), user, target)
            credential, nonce = signed.text(), signed.nonce
        with self.engine.begin() as conn:
            result = conn.execute(
                commands_table.insert().values(
                    ts_submitted=now,
                    user=user,
                    target=target,
                    kind=kind,
                    payload=text,
                    status=PENDING,
                    credential=credential,
                    nonce=nonce,
                )
            )
            pk = result.inserted_primary_key
            assert pk is not None
            return int(pk[0])

    def _check_bounds(self, user: str, target: str, now: int) -> None:
        """`CommandLimitError` if `user` is over a bound for `target`. Checked before the insert, outside
        its transaction: concurrent submits of one client may pass a bound by their number."""
        c = commands_table.c
        mine = (c.target == target, c.user == user, c.kind.not_in(PRIORITY))  # protective ones are not counted
        with self.engine.connect() as conn:
            if self.limits.max_pending:
                waiting = conn.execute(
                    select(func.count()).select_from(commands_table).where(*mine, c.status == PENDING)
                ).scalar_one()
                if waiting >= self.limits.max_pending:
                    raise CommandLimitError(user, target, "max_pending", self.limits.max_pending, waiting)
            if self.limits.max_per_s:
                recent = conn.execute(
                    select(func.count()).select_from(commands_table)
                    .where(*mine, c.status.in_(tuple(_TRANSITIONS)), c.ts_submitted > now - 1_000_000_000)
                ).scalar_one()
                if recent >= self.limits.max_per_s:
                    raise CommandLimitError(user, target, "max_per_s", self.limits.max_per_s, recent)

    # --- consumers ----------------------------------------------------------------------------
    def take(
        self, consumer: str, *, target: str = "engine", limit: int = 100,
        lanes: tuple[frozenset[str] | None, ...] = LANES,
    ) -> list[Command]:
        """Claim up to `limit` pending commands for `consumer`, in the order they are to be handled: the
        kill switch, then the other protective commands, then the rest, each lane in id order
        (`qlcore.control.priority`; `lanes` picks some of them). No two consumers get the same one."""
        if not consumer:
            raise ValueError("take needs the consumer's id")
        with self.engine.connect() as conn:  # the engine polls often and finds nothing most times:
            if conn.execute(_ANY_PENDING, {"target": target}).first() is None:  # one prepared look-up
                return []
        taken: list[int] = []
        for lane in lanes:
            if len(taken) >= limit:
                break
            taken += self._claim(consumer, target, lane, limit - len(taken))
        if not taken:
            return []
        c = commands_table.c
        with self.engine.connect() as conn:
            rows = {r.id: r for r in conn.execute(select(commands_table).where(c.id.in_(taken))).all()}
        return [_command(rows[cid]) for cid in taken]

    def _claim(self, consumer: str, target: str, lane: frozenset[str] | None, limit: int) -> list[int]:
        c = commands_table.c
        kinds = c.kind.in_(lane) if lane is not None else c.kind.not_in(PRIORITY)
        taken: list[int] = []
        while len(taken) < limit:
            # read first, then claim each row with a conditional UPDATE: the row count says whether
            # this consumer won it (on SQLite the writes serialize; on PostgreSQL a concurrent claim
            # makes the WHERE fail once the other commits). A lost row is simply someone else's.
            with self.engine.connect() as conn:
                ids = conn.execute(
                    select(c.id)
                    .where(c.target == target, c.status == PENDING, kinds)
                    .order_by(c.id)
                    .limit(limit - len(taken))
                ).scalars().all()
            if not ids:
                break
            now = self.clock()
            with self.engine.begin() as conn:
                for cid in ids:
                    if conn.execute(_CLAIM, {"cid": cid, "who": consumer, "at": now}).rowcount == 1:
                        taken.append(cid)
        return taken

    def waiting(self, target: str, kinds: frozenset[str]) -> bool:
        """Is a command of one of `kinds` pending for `target`? (One indexed look-up.)"""
        c = commands_table.c
        with self.engine.connect() as conn:
            return conn.execute(
                select(c.id).where(c.target == target, c.status == PENDING, c.kind.in_(kinds)).limit(1)
            ).first() is not None

    def release(self, command_ids: Sequence[int], *, consumer: str) -> int:
        """Give back commands `consumer` took and has not acted on: pending again, in their place (their
        ids). Returns how many were released."""
        c = commands_table.c
        with self.engine.begin() as conn:
            return conn.execute(
                update(commands_table)
                .where(c.id.in_(command_ids), c.status == TAKEN, c.consumer == consumer)
                .values(status=PENDING, consumer=None, ts_taken=None)
            ).rowcount

    def fences_since_oldest_pending(self, target: str = "engine") -> list[Command]:
        """The completed commands that set fences (`qlcore.control.priority.FENCING`) sent after the
        oldest pending command for `target`: what a restarted engine must remember to take the rest."""
        c = commands_table.c
        with self.engine.connect() as conn:
            oldest = conn.execute(
                select(func.min(c.id)).where(c.target == target, c.status == PENDING)
            ).scalar_one()
            if oldest is None:
                return []
            rows = conn.execute(
                select(commands_table)
                .where(c.target == target, c.status.in_((ACCEPTED, REFUSED)), c.kind.in_(FENCING), c.id > oldest)
                .order_by(c.id)
            ).all()
        return [_command(r) for r in rows]

    def credentials_since(self, since_ns: int, *, target: str = "engine") -> list[str]:
        """The credentials of the commands for `target` completed and sent at or after `since_ns`: what a
        restarting engine takes as used, so that none of them is acted on twice."""
        c = commands_table.c
        with self.engine.connect() as conn:
            return list(conn.execute(
                select(c.credential).where(c.target == target, c.status.in_((ACCEPTED, REFUSED)),
                                           c.ts_submitted >= since_ns, c.credential.is_not(None))
            ).scalars())

    def in_flight(self, consumer: str, *, target: str = "engine") -> list[Command]:
        """Commands `consumer` took and has not completed (what a restarted engine must settle first)."""
        c = commands_table.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(commands_table)
                .where(c.target == target, c.status == TAKEN, c.consumer == consumer)
                .order_by(c.id)
            ).all()
        return [_command(r) for r in rows]

    def complete(self, command_id: int, accepted: bool, reason: str = "", *, consumer: str) -> Command:
        """Record the outcome of a command `consumer` took: accepted, or refused with a reason."""
        self.complete_all([(command_id, accepted, reason)], consumer=consumer)
        return self.status(command_id)

    def complete_all(self, outcomes: Sequence[tuple[int, bool, str]], *, consumer: str) -> None:
        """Record the outcomes (command id, accepted, reason) of commands `consumer` took, in the order
        given and in one transaction: all of them, or none and `CommandStateError` naming the first that
        cannot be completed."""
        for command_id, accepted, reason in outcomes:
            if not accepted and not reason.strip():
                raise ValueError(f"command {command_id}: a refusal needs a reason")
        try:
            with self.engine.begin() as conn:
                for command_id, accepted, reason in outcomes:
                    new = ACCEPTED if accepted else REFUSED
                    values = {"cid": command_id, "who": consumer, "new": new, "why": reason, "at": self.clock()}
                    if conn.execute(_COMPLETE, values).rowcount != 1:
                        raise _NotCompleted(command_id, new)
        except _NotCompleted as exc:
            self._raise_bad_completion(exc.command_id, consumer, exc.new)
        if self.audit is not None:
            for command_id, accepted, reason in outcomes:
                cmd = self.status(command_id)
                outcome = ACCEPTED if accepted else f"{REFUSED}: {reason}"
                params = {"command_id": cmd.id, "target": cmd.target, **canonical_payload(cmd.payload)}
                self.audit.record_command(cmd.user, cmd.kind, params, outcome, ts=cmd.ts_completed)

    # --- readers ------------------------------------------------------------------------------
    def pending(self, target: str = "engine", after_id: int = 0, limit: int = 100) -> list[Command]:
        """Pending commands for `target` with id above `after_id`, in id order (read only: claims nothing)."""
        c = commands_table.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(commands_table)
                .where(c.target == target, c.status == PENDING, c.id > after_id)
                .order_by(c.id)
                .limit(limit)
            ).all()
        return [_command(r) for r in rows]

    def status(self, command_id: int) -> Command:
        """The command as stored now; `KeyError` for an unknown id."""
        with self.engine.connect() as conn:
            row = conn.execute(select(commands_table).where(commands_table.c.id == command_id)).first()
        if row is None:
            raise KeyError(f"no command {command_id}")
        return _command(row)

    def history(self, limit: int = 100, *, target: str | None = None) -> list[Command]:
        """The latest `limit` commands, newest first, whatever their status."""
        c = commands_table.c
        query = select(commands_table).order_by(c.id.desc()).limit(limit)
        if target is not None:
            query = query.where(c.target == target)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [_command(r) for r in rows]

    def wait_for(self, command_id: int, timeout_s: float = 5.0, *, poll_s: float = 0.01) -> Command:
        """Poll until the command is accepted or refused; `TimeoutError` naming it otherwise (for the CLI)."""
        deadline = time.monotonic() + timeout_s
        while True:
            cmd = self.status(command_id)
            if cmd.done:
                return cmd
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"command {command_id} ({cmd.kind}) still {cmd.status} after {timeout_s:g} s"
                    + (f" (taken by {cmd.consumer})" if cmd.consumer else "; is the engine running?")
                )
            time.sleep(poll_s)

    # --- helpers ------------------------------------------------------------------------------
    def _raise_bad_completion(self, command_id: int, consumer: str, new: str) -> None:
        try:
            cmd = self.status(command_id)
        except KeyError:
            raise CommandStateError(command_id, "no such command") from None
        if cmd.status == TAKEN and cmd.consumer != consumer:
            raise CommandStateError(command_id, f"taken by {cmd.consumer!r}, not {consumer!r}")
        allowed = _TRANSITIONS[cmd.status]
        raise CommandStateError(
            command_id,
            f"cannot go from {cmd.status} to {new}"
            + (f" (already {cmd.status}: {cmd.reason})" if cmd.done and cmd.reason else "")
            + (f"; allowed: {sorted(allowed)}" if allowed else ""),
        )

    def _audit_refused_submission(self, user: Any, kind: Any, payload: Any, exc: Exception) -> None:
        if self.audit is None:
            return
        who = user[:100] if isinstance(user, str) and user.strip() else "unknown"
        params = redacted(payload) if isinstance(payload, Mapping) else {"payload": repr(payload)[:200]}
        self.audit.record_command(who, str(kind)[:48], params, f"{REFUSED}: {exc}")


def canonical_payload(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The payload as plain JSON values (decimals as strings)."""
    loaded: dict[str, Any] = orjson.loads(canonical_json(dict(payload)))
    return loaded


def redacted(value: Any) -> Any:
    """`value` with every secret-looking key's value replaced, for recording a refused command."""
    if isinstance(value, Mapping):
        return {
            str(k): "<redacted>" if SECRET_NAME.search(str(k)) else redacted(v) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redacted(v) for v in value]
    if isinstance(value, str | int | bool | Decimal) or value is None:
        return value
    return repr(value)[:200]
