"""The command queue: how the CLI, dashboards and scheduled jobs ask the engine to act.

The engine is the only writer of trading state; everyone else writes a *command* to the `commands`
table and the engine takes them in id order, acts, and completes each one as accepted or refused
with a reason. A command is checked against its kind's declared schema before it is stored, so a
malformed one never reaches the table; a payload may never carry a secret.

A row moves through `_TRANSITIONS` only: pending -> taken (by exactly one consumer: a conditional
UPDATE whose row count says who won) -> accepted | refused. When an `AuditRecorder` is given,
commands refused at submission and every completion are written to the audit log.
"""
from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import Engine, select, update

from qlcore.audit.log import canonical_json
from qlcore.model.enums import OrderSide, OrderType, TimeInForce
from qlcore.store.db import connect
from qlcore.store.tables import commands as commands_table

if TYPE_CHECKING:
    from qlcore.audit.recorder import AuditRecorder

PENDING, TAKEN, ACCEPTED, REFUSED = "pending", "taken", "accepted", "refused"

# status -> the statuses it may move to. Nothing leaves accepted or refused: an outcome is final.
_TRANSITIONS: dict[str, frozenset[str]] = {
    PENDING: frozenset({TAKEN}),
    TAKEN: frozenset({ACCEPTED, REFUSED}),
    ACCEPTED: frozenset(),
    REFUSED: frozenset(),
}

_MAX_USER, _MAX_TARGET = 128, 64  # the columns' widths

# any key that looks like a credential, at any depth of the payload
_SECRET_KEY = re.compile(r"pass(word|wd|phrase)?|secret|token|api[_-]?key|private[_-]?key|credential", re.I)


class CommandError(ValueError):
    """A malformed command: `field` names what is wrong and `reason` why. Nothing was stored."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field, self.reason = field, reason


class CommandStateError(Exception):
    """A transition the command's status does not allow (completed twice, another consumer's, unknown)."""

    def __init__(self, command_id: int, reason: str) -> None:
        super().__init__(f"command {command_id}: {reason}")
        self.command_id, self.reason = command_id, reason


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
            if _SECRET_KEY.search(str(key)):
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

    @property
    def done(self) -> bool:
        return self.status in (ACCEPTED, REFUSED)


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
    ) -> None:
        self.engine = engine if engine is not None else connect(url)
        self.audit = audit
        self.clock = clock

    # --- producers ----------------------------------------------------------------------------
    def submit(self, user: str, kind: str, payload: Mapping[str, Any], *, target: str = "engine") -> int:
        """Validate and store a command; its id. A malformed one raises `CommandError` and is not stored."""
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
        with self.engine.begin() as conn:
            result = conn.execute(
                commands_table.insert().values(
                    ts_submitted=self.clock(),
                    user=user,
                    target=target,
                    kind=kind,
                    payload=text,
                    status=PENDING,
                )
            )
            pk = result.inserted_primary_key
            assert pk is not None
            return int(pk[0])

    # --- consumers ----------------------------------------------------------------------------
    def take(self, consumer: str, *, target: str = "engine", limit: int = 100) -> list[Command]:
        """Claim up to `limit` pending commands for `consumer`, in id order. No two consumers get the same one."""
        if not consumer:
            raise ValueError("take needs the consumer's id")
        c = commands_table.c
        taken: list[int] = []
        while len(taken) < limit:
            # read first, then claim each row with a conditional UPDATE: the row count says whether
            # this consumer won it (on SQLite the writes serialize; on PostgreSQL a concurrent claim
            # makes the WHERE fail once the other commits). A lost row is simply someone else's.
            with self.engine.connect() as conn:
                ids = conn.execute(
                    select(c.id)
                    .where(c.target == target, c.status == PENDING)
                    .order_by(c.id)
                    .limit(limit - len(taken))
                ).scalars().all()
            if not ids:
                break
            now = self.clock()
            with self.engine.begin() as conn:
                for cid in ids:
                    won = conn.execute(
                        update(commands_table)
                        .where(c.id == cid, c.status == PENDING)
                        .values(status=TAKEN, consumer=consumer, ts_taken=now)
                    ).rowcount
                    if won == 1:
                        taken.append(cid)
        if not taken:
            return []
        with self.engine.connect() as conn:
            rows = conn.execute(select(commands_table).where(c.id.in_(taken)).order_by(c.id)).all()
        return [_command(r) for r in rows]

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
        new = ACCEPTED if accepted else REFUSED
        if not accepted and not reason.strip():
            raise ValueError(f"command {command_id}: a refusal needs a reason")
        c = commands_table.c
        with self.engine.begin() as conn:
            done = conn.execute(
                update(commands_table)
                .where(c.id == command_id, c.status == TAKEN, c.consumer == consumer)
                .values(status=new, reason=reason, ts_completed=self.clock())
            ).rowcount
        if done != 1:
            self._raise_bad_completion(command_id, consumer, new)
        cmd = self.status(command_id)
        if self.audit is not None:
            outcome = ACCEPTED if accepted else f"{REFUSED}: {reason}"
            params = {"command_id": cmd.id, "target": cmd.target, **canonical_payload(cmd.payload)}
            self.audit.record_command(cmd.user, cmd.kind, params, outcome, ts=cmd.ts_completed)
        return cmd

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

    def _audit_refused_submission(self, user: Any, kind: Any, payload: Any, exc: CommandError) -> None:
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
            str(k): "<redacted>" if _SECRET_KEY.search(str(k)) else redacted(v) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redacted(v) for v in value]
    if isinstance(value, str | int | bool | Decimal) or value is None:
        return value
    return repr(value)[:200]
