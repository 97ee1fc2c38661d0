"""Every control action of the dashboards goes through `Actions.perform`: role check, command, audit.

The order is fixed: look up the user's role in the users file *now* (a demoted or removed user
loses their rights at once), refuse before anything is written if the role is too low, else
validate and store the command. Both outcomes are written to the audit log with the user, the
action, its parameters (a halt's reason among them) and the outcome; a refusal names the role the
action needs and the role the user has. The widgets of a page only call `Actions.run`, which takes
the user from the session's signed login cookie (`pn.state.user`), never from the browser's data.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from qlcore.audit.log import AuditEntry, AuditLog
from qlcore.control.commands import (
    CommandError,
    CommandLimitError,
    CommandQueue,
    canonical_payload,
    redacted,
)
from qlcore.ui.auth import Role, UserStore

# action -> the least role that may do it. Halting is a trader's right (anyone who can trade can
# stop trading); resuming after a halt and changing limits are an admin's.
ACTIONS: dict[str, Role] = {
    "strategy.pause": Role.TRADER,
    "strategy.resume": Role.TRADER,
    "strategy.stop": Role.TRADER,
    "order.submit": Role.TRADER,
    "order.cancel": Role.TRADER,
    "flatten": Role.TRADER,
    "halt": Role.TRADER,
    "resume_trading": Role.ADMIN,
    "limits.set": Role.ADMIN,
    "strategy.deploy": Role.ADMIN,
}

AUDIT_ACTION = "ui.action"
AUDIT_REFUSED = "ui.refused"
AUDIT_LOGIN, AUDIT_LOGIN_REFUSED = "ui.login", "ui.login_refused"


class ActionRefused(PermissionError):
    """The user may not do this (role too low, not logged in) or the command is malformed; nothing was sent."""

    def __init__(self, user: str | None, kind: str, reason: str) -> None:
        super().__init__(f"{kind} refused for {user or 'anonymous'}: {reason}")
        self.user, self.kind, self.reason = user, kind, reason


@dataclass(frozen=True, slots=True)
class ActionResult:
    command_id: int
    kind: str
    user: str
    role: Role


def allowed(role: Role | None, kind: str) -> bool:
    """May a user with `role` do `kind`? (What a page uses to decide which controls to show.)"""
    need = ACTIONS.get(kind)
    return role is not None and need is not None and role >= need


class Actions:
    """The one way the dashboards act: `perform(kind, payload, user=...)`, or `run` for the session's user."""

    def __init__(self, engine: Engine, users: UserStore, *, target: str = "engine") -> None:
        self.engine = engine
        self.users = users
        self.queue = CommandQueue(engine=engine)
        self.target = target

    def perform(self, kind: str, payload: Mapping[str, Any], *, user: str | None) -> ActionResult:
        """Check `user`'s role for `kind`, then submit the command; audit either way. `ActionRefused` on refusal."""
        role = self.users.role_of(user)
        need = ACTIONS.get(kind)
        if need is None:
            self._refuse(user, role, kind, payload, f"unknown action {kind!r}; known: {sorted(ACTIONS)}")
        elif not user or role is None:
            self._refuse(user, role, kind, payload, "not logged in as a known user")
        elif role < need:
            self._refuse(user, role, kind, payload, f"needs role {need.label}, {user} is {role.label}")
        assert user is not None and role is not None
        try:
            command_id = self.queue.submit(user, kind, payload, target=self.target)
        except CommandError as exc:
            self._refuse(user, role, kind, payload, f"malformed command: {exc}")
        except CommandLimitError as exc:
            self._refuse(user, role, kind, payload, str(exc))
        params = canonical_payload(self.queue.status(command_id).payload)
        self._audit(user, AUDIT_ACTION, kind, params, {"role": role.label, "outcome": "submitted", "command_id": command_id})
        return ActionResult(command_id, kind, user, role)

    def run(self, kind: str, payload: Mapping[str, Any]) -> ActionResult:
        """`perform` as the user of the current Panel session (from the signed login cookie)."""
        import panel as pn

        return self.perform(kind, payload, user=pn.state.user)

    # --- audit --------------------------------------------------------------------------------
    def _refuse(self, user: str | None, role: Role | None, kind: str, payload: Any, reason: str) -> None:
        params = redacted(payload) if isinstance(payload, Mapping) else {"payload": repr(payload)[:200]}
        self._audit(user or "anonymous", AUDIT_REFUSED, kind, params,
                    {"role": role.label if role else None, "outcome": f"refused: {reason}"})
        raise ActionRefused(user, kind, reason)

    def _audit(self, user: str, action: str, kind: str, params: Any, extra: dict[str, Any]) -> AuditEntry:
        subject = f"{self.target}/{params['order_id']}" if isinstance(params, dict) and params.get("order_id") else f"command/{kind}"
        return audit_append(self.engine, f"user:{user}", action, subject, {"action": kind, "params": params, **extra})


def audit_append(engine: Engine, actor: str, action: str, subject: str, details: dict[str, Any]) -> AuditEntry:
    """Append one entry to the store's audit chain, which the engine appends to as well (a conflict with
    another writer is chained again after its entries)."""
    return AuditLog(engine=engine, conflict_retries=20).record(actor, action, subject, details)
