"""Every control action of the dashboards goes through `Actions.perform`: role check, command, audit.

The order is fixed: look up the user's role in the users file *now* (a demoted or removed user
loses their rights at once), refuse before anything is written if the role is too low, else
validate and store the command. Both outcomes are written to the audit log with the user, the
action, its parameters (a halt's reason among them) and the outcome; a refusal names the role the
action needs and the role the user has. The widgets of a page only call `Actions.run`, which takes
the user the session's own login cookie proves at that moment (`Logins.current_user`: not the
cookies copied into the session token, never the browser's data) and sends the command to the
engine the page shows; `run_everywhere` (an admin's) sends it to every engine of the desk.

Each command is signed by the desk service's key for the user proven here (`perform`'s `user`, which
the server takes only from the session's login): the engine verifies that signature and checks the
user's role once more. The desk key may sign for any user, so it is the server's trust: it signs
only for the user whose login it has just checked (docs/security.md).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
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
from qlcore.control.identity import Signer
from qlcore.control.users import Role, UserStore
from qlcore.ui.sessions import Logins

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
AUDIT_LOGIN_LOCKED, AUDIT_LOGOUT = "ui.login_locked", "ui.logout"  # a lockout is one entry, however many tries
AUDIT_SESSION_REFUSED = "ui.session_refused"  # a websocket whose cookie is not the session's user


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

    def __init__(self, engine: Engine, users: UserStore, *, logins: Logins | None = None, target: str = "engine",
                 signer: Signer | None = None) -> None:
        self.engine = engine
        self.users = users
        self.logins = logins
        # the desk service's key (qlcore.control.keys.DESK_SERVICE) signs each command for the user this
        # server proved; the engine checks that signature and the user's role again
        self.queue = CommandQueue(engine=engine, signer=signer)
        self.target = target

    def perform(self, kind: str, payload: Mapping[str, Any], *, user: str | None,
                target: str | None = None) -> ActionResult:
        """Check `user`'s role for `kind`, then submit the command to engine `target`; audit either way.
        `ActionRefused` on refusal."""
        target = target or self.target
        role = self.users.role_of(user)
        need = ACTIONS.get(kind)
        if need is None:
            self._refuse(user, role, kind, payload, f"unknown action {kind!r}; known: {sorted(ACTIONS)}", target)
        elif not user or role is None:
            self._refuse(user, role, kind, payload, "not logged in as a known user (or the login has ended)", target)
        elif role < need:
            self._refuse(user, role, kind, payload, f"needs role {need.label}, {user} is {role.label}", target)
        assert user is not None and role is not None
        try:
            command_id = self.queue.submit(user, kind, payload, target=target)
        except CommandError as exc:
            self._refuse(user, role, kind, payload, f"malformed command: {exc}", target)
        except CommandLimitError as exc:
            self._refuse(user, role, kind, payload, str(exc), target)
        params = canonical_payload(self.queue.status(command_id).payload)
        self._audit(user, AUDIT_ACTION, kind, params, target,
                    {"role": role.label, "outcome": "submitted", "command_id": command_id, "engine": target})
        return ActionResult(command_id, kind, user, role)

    def run(self, kind: str, payload: Mapping[str, Any], *, engine_id: str | None) -> ActionResult:
        """`perform` as the current session's user, proven now by its own login, for engine `engine_id`
        (the one the page shows; None when it shows none, which is refused)."""
        user = self.logins.current_user() if self.logins is not None else None
        if not engine_id:
            self._refuse(user, self.users.role_of(user), kind, payload, "no engine is shown on this page", "")
        return self.perform(kind, payload, user=user, target=engine_id)

    def run_everywhere(self, kind: str, payload: Mapping[str, Any], engine_ids: list[str]) -> list[ActionResult]:
        """`perform_everywhere` as the current session's user, proven now by its own login."""
        user = self.logins.current_user() if self.logins is not None else None
        return self.perform_everywhere(kind, payload, user=user, engine_ids=engine_ids)

    def perform_everywhere(self, kind: str, payload: Mapping[str, Any], *, user: str | None,
                           engine_ids: list[str]) -> list[ActionResult]:
        """`perform` for every engine in `engine_ids` at once: an admin's right (a halt of the whole desk)."""
        role = self.users.role_of(user)
        if role is None or role < Role.ADMIN:
            self._refuse(user, role, kind, payload, f"acting on every engine needs role admin, "
                         f"{user or 'anonymous'} is {role.label if role else 'not logged in'}", "*")
        if not engine_ids:
            self._refuse(user, role, kind, payload, "no engine has published its status", "*")
        return [self.perform(kind, payload, user=user, target=e) for e in engine_ids]

    # --- audit --------------------------------------------------------------------------------
    def _refuse(self, user: str | None, role: Role | None, kind: str, payload: Any, reason: str, target: str) -> None:
        params = redacted(payload) if isinstance(payload, Mapping) else {"payload": repr(payload)[:200]}
        self._audit(user or "anonymous", AUDIT_REFUSED, kind, params, target,
                    {"role": role.label if role else None, "outcome": f"refused: {reason}", "engine": target})
        raise ActionRefused(user, kind, reason)

    def _audit(self, user: str, action: str, kind: str, params: Any, target: str, extra: dict[str, Any]) -> AuditEntry:
        subject = f"{target}/{params['order_id']}" if isinstance(params, dict) and params.get("order_id") else f"command/{kind}"
        return audit_append(self.engine, f"user:{user}", action, subject, {"action": kind, "params": params, **extra})


def audit_user_changes(engine: Callable[[], Engine], actor: str) -> Callable[[str, str, dict], None]:
    """A `UserStore` ``on_change``: every change of a user, role, key or service becomes an audit entry
    by `actor` (the OS user running the CLI, the server or the scheduler), on the store `engine()` opens."""
    def record(action: str, name: str, details: dict) -> None:
        audit_append(engine(), actor, action, f"user/{name}", details)

    return record


def audit_append(engine: Engine, actor: str, action: str, subject: str, details: dict[str, Any]) -> AuditEntry:
    """Append one entry to the store's audit chain, which the engine appends to as well (a conflict with
    another writer is chained again after its entries)."""
    return AuditLog(engine=engine, conflict_retries=20).record(actor, action, subject, details)
