"""Desk users and services: a TOML file of salted scrypt hashes, roles, session epochs and public keys.

The users file (``users.toml`` under the data folder, mode 0600) holds one table per user, and one
per service (the dashboards' server, the scheduler) that signs commands::

    [users.alice]
    role = "trader"
    hash = "scrypt$131072$8$1$<salt, base64>$<key, base64>"
    epoch = 3
    key = "<Ed25519 public key, hex>"   # verifies the commands alice signs

    [services.desk]
    key = "<hex>"
    acts_for_users = true               # may sign for the user it authenticated

User names are unique regardless of case (``Alice`` cannot be added beside ``alice``), so one person
is one identity whatever the spelling. `UsersDirectory` is the engine's view of the file: who may
sign, with which public key, and each user's role (`qlcore.control.identity.Directory`).

No password is ever stored: `verify` recomputes the key with the stored salt and cost and compares
in constant time. The cost is OWASP's for scrypt (N=2^17, r=8, p=1); a hash of a lower cost still
verifies and is replaced by one at today's cost on that successful login. A login cookie names the
user's ``epoch``: logging out, a password change or a lower role moves it on, which ends every
session of that user at its next request or action (a removed user has no epoch at all). Roles are ordered, viewer < trader < admin; an action names the least role it
needs. The first run (`ensure_admin`) creates an ``admin`` with a generated password, written once
to ``initial-admin-password`` (0600) for the operator to read and then change.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from enum import IntEnum
from functools import cache
from pathlib import Path

from qlcore.control.identity import Principal
from qlcore.store.secrets import write_private

_USERNAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
_PUBLIC_KEY = re.compile(r"^[0-9a-f]{64}$")
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**17, 8, 1  # OWASP's minimum for scrypt: 128 MiB and a fraction of a second
_SCRYPT_MAX_N = 2**20  # a users file asking for more is refused rather than obeyed
_SCRYPT_MAXMEM = 2**30  # (a hash asking for more never matches)
MIN_PASSWORD = 8
USERS_FILE = "users.toml"
ADMIN_PASSWORD_FILE = "initial-admin-password"
COOKIE_SECRET_FILE = "cookie-secret"
NO_LOGIN = "!"  # the hash of a user without a password: no password matches it


class Role(IntEnum):
    """What a user may do; a higher role may do everything a lower one may."""

    VIEWER = 1
    TRADER = 2
    ADMIN = 3

    @classmethod
    def parse(cls, name: str) -> Role:
        try:
            return cls[name.strip().upper()]
        except (KeyError, AttributeError):
            raise AuthError(f"role: unknown role {name!r}; known: viewer, trader, admin") from None

    @property
    def label(self) -> str:
        return self.name.lower()


class AuthError(ValueError):
    """A bad user name, password, role or users file: the message names which and why."""


@dataclass(frozen=True, slots=True)
class User:
    name: str
    role: Role
    hash: str
    epoch: int = 0  # moved on to end every session of the user (logout, new password, lower role)
    key: str = ""  # Ed25519 public key (hex) that verifies the commands the user signs; "" for none


@dataclass(frozen=True, slots=True)
class Service:
    """A process that signs commands: the dashboards' server (acts for users) or the scheduler (issues job grants)."""

    name: str
    key: str
    acts_for_users: bool = False
    issues_grants: bool = False


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """The stored form of `password`: ``scrypt$n$r$p$salt$key`` (salt and key in base64)."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    key = hashlib.scrypt(password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32,
                         maxmem=_SCRYPT_MAXMEM)
    b64 = base64.b64encode
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${b64(salt).decode()}${b64(key).decode()}"


def check_password(password: str, stored: str) -> bool:
    """Does `password` match the stored hash? A malformed hash never matches."""
    try:
        algo, n, r, p, salt_b64, key_b64 = stored.split("$")
        if algo != "scrypt" or not 1 < int(n) <= _SCRYPT_MAX_N or int(r) > 64 or int(p) > 16:
            return False
        salt, key = base64.b64decode(salt_b64), base64.b64decode(key_b64)
        got = hashlib.scrypt(password.encode(), salt=salt, n=int(n), r=int(r), p=int(p), dklen=len(key),
                             maxmem=_SCRYPT_MAXMEM)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, key)


def needs_rehash(stored: str) -> bool:
    """Was `stored` made at a lower cost than today's (so the next successful login replaces it)?"""
    try:
        algo, n, r, p, *_ = stored.split("$")
        return algo != "scrypt" or (int(n), int(r), int(p)) < (_SCRYPT_N, _SCRYPT_R, _SCRYPT_P)
    except ValueError:
        return True


def _toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class UserStore:
    """The users file: add users, change passwords and roles, end sessions, verify a login.

    Every change is a read-modify-write under an exclusive lock on ``<users file>.lock``, so two
    processes (a login upgrading a hash, `qlcore users role`) never lose each other's change.

    `on_change(action, name, details)` is told of every change of a user, role, key or service once it
    is saved (``users.add``, ``users.passwd``, ``users.role``, ``users.remove``, ``users.key``,
    ``users.service``), never of a password or hash: whoever opens the store for a person or a process
    records it in the audit log under that actor. Logouts and a login's rehash are not reported."""

    def __init__(self, path: Path, *, on_change: Callable[[str, str, dict], None] | None = None) -> None:
        self.path = Path(path)
        self.on_change = on_change

    def _tell(self, action: str, name: str, **details: object) -> None:
        if self.on_change is not None:
            self.on_change(action, name, details)

    def users(self) -> dict[str, User]:
        data = self._data()
        out: dict[str, User] = {}
        for name, entry in (data.get("users") or {}).items():
            if not isinstance(entry, dict) or not isinstance(entry.get("hash"), str):
                raise AuthError(f"{self.path}: [users.{name}] needs a hash and a role")
            epoch = entry.get("epoch", 0)
            if not isinstance(epoch, int) or epoch < 0:
                raise AuthError(f"{self.path}: [users.{name}] epoch must be a whole number >= 0, got {epoch!r}")
            key = entry.get("key", "")
            if not isinstance(key, str) or (key and not _PUBLIC_KEY.match(key)):
                raise AuthError(f"{self.path}: [users.{name}] key must be an Ed25519 public key (64 hex digits)")
            out[name] = User(name, Role.parse(str(entry.get("role", ""))), entry["hash"], epoch, key)
        return out

    def services(self) -> dict[str, Service]:
        """The services that sign commands (the dashboards' server, the scheduler)."""
        out: dict[str, Service] = {}
        for name, entry in (self._data().get("services") or {}).items():
            key = entry.get("key") if isinstance(entry, dict) else None
            if not isinstance(key, str) or not _PUBLIC_KEY.match(key):
                raise AuthError(f"{self.path}: [services.{name}] needs key = an Ed25519 public key (64 hex digits)")
            out[name] = Service(name, key, entry.get("acts_for_users") is True, entry.get("issues_grants") is True)
        return out

    def _data(self) -> dict:
        if not self.path.exists():
            return {}
        try:
            return tomllib.loads(self.path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise AuthError(f"{self.path}: not valid TOML: {exc}") from None

    def _save(self, users: dict[str, User], services: dict[str, Service] | None = None) -> None:
        services = self.services() if services is None else services
        lines = ["# Desk users and services: salted scrypt hashes (never passwords) and public keys. "
                 "Edit with `qlcore users`.", ""]
        for user in sorted(users.values(), key=lambda u: u.name):
            lines += [f"[users.{_toml_str(user.name)}]", f"role = {_toml_str(user.role.label)}",
                      f"hash = {_toml_str(user.hash)}", f"epoch = {user.epoch}"]
            lines += [f"key = {_toml_str(user.key)}"] if user.key else []
            lines.append("")
        for svc in sorted(services.values(), key=lambda v: v.name):
            lines += [f"[services.{_toml_str(svc.name)}]", f"key = {_toml_str(svc.key)}",
                      f"acts_for_users = {str(svc.acts_for_users).lower()}",
                      f"issues_grants = {str(svc.issues_grants).lower()}", ""]
        write_private(self.path, "\n".join(lines))

    @contextmanager
    def _locked(self) -> Iterator[None]:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _change(self, name: str, change: Callable[[User], User | None]) -> None:
        """Replace user `name` by `change(user)` (None removes them), under the lock."""
        with self._locked():
            users = self.users()
            if name not in users:
                raise AuthError(f"user: no user {name!r}")
            changed = change(users[name])
            if changed is None:
                del users[name]
            else:
                users[name] = changed
            self._save(users)

    def add(self, name: str, role: Role | str, password: str) -> User:
        """Add a user; `AuthError` if the name is taken or malformed, or the password too short."""
        user = User(_check_name(name), role if isinstance(role, Role) else Role.parse(role), hash_password(_check_password(password)))
        with self._locked():
            users = self.users()
            same = [u for u in [*users, *self.services()] if u.casefold() == name.casefold()]
            if same:
                raise AuthError(f"user: {same[0]!r} already exists (names are unique regardless of case; "
                                "use `qlcore users passwd`)")
            users[name] = user
            self._save(users)
        self._tell("users.add", name, role=user.role.label)
        return user

    def add_signer(self, name: str, role: Role | str, public_hex: str) -> User:
        """Add a user who signs commands with the key `public_hex` and has no password (cannot log in):
        a test rig's or a benchmark's users, a program trading under its own name."""
        user = User(_check_name(name), role if isinstance(role, Role) else Role.parse(role), NO_LOGIN, 0,
                    _check_key(public_hex))
        with self._locked():
            users = self.users()
            if any(u.casefold() == name.casefold() for u in [*users, *self.services()]):
                raise AuthError(f"user: {name!r} already exists (as a user or a service)")
            users[name] = user
            self._save(users)
        self._tell("users.add", name, role=user.role.label, key=user.key, password=False)
        return user

    def set_password(self, name: str, password: str) -> None:
        """A new password; every session of the user ends."""
        new_hash = hash_password(_check_password(password))
        self._change(name, lambda u: replace(u, hash=new_hash, epoch=u.epoch + 1))
        self._tell("users.passwd", name)

    def set_role(self, name: str, role: Role | str) -> None:
        """A new role; a lower one also ends every session of the user (a higher one needs no new login)."""
        new = role if isinstance(role, Role) else Role.parse(role)
        old: list[Role] = []

        def change(u: User) -> User:
            old.append(u.role)
            return replace(u, role=new, epoch=u.epoch + (1 if new < u.role else 0))

        self._change(name, change)
        self._tell("users.role", name, role=new.label, was=old[0].label)

    def end_sessions(self, name: str) -> None:
        """End every session of the user (logout): their login cookies stop working at once."""
        self._change(name, lambda u: replace(u, epoch=u.epoch + 1))

    def remove(self, name: str) -> None:
        self._change(name, lambda u: None)
        self._tell("users.remove", name)

    def set_key(self, name: str, public_hex: str) -> None:
        """The public key that verifies the user's signed commands (a new one replaces the old)."""
        _check_key(public_hex)
        self._change(name, lambda u: replace(u, key=public_hex))
        self._tell("users.key", name, key=public_hex)

    def set_service(self, name: str, public_hex: str, *, acts_for_users: bool = False,
                    issues_grants: bool = False) -> Service:
        """Add or replace a signing service (its name must not be a user's)."""
        _check_name(name)
        service = Service(name, _check_key(public_hex), acts_for_users, issues_grants)
        with self._locked():
            users = self.users()
            if any(u.casefold() == name.casefold() for u in users):
                raise AuthError(f"service: {name!r} is a user's name")
            self._save(users, {**self.services(), name: service})
        self._tell("users.service", name, key=public_hex, acts_for_users=acts_for_users, issues_grants=issues_grants)
        return service

    def verify(self, name: str, password: str) -> User | None:
        """The user if `password` is theirs, else None (unknown users cost the same time as known ones).

        A hash made at a lower cost than today's is replaced by one at today's cost."""
        user = self.users().get(name)
        if user is None:
            check_password(password, _dummy_hash())
            return None
        if not check_password(password, user.hash):
            return None
        if needs_rehash(user.hash):
            new_hash = hash_password(password)
            self._change(name, lambda u: replace(u, hash=new_hash) if u.hash == user.hash else u)
        return user

    def role_of(self, name: str | None) -> Role | None:
        """The user's role as the file says now (a removed user has none)."""
        if not name:
            return None
        user = self.users().get(name)
        return None if user is None else user.role


@cache
def _dummy_hash() -> str:
    return hash_password("not a password", salt=b"\0" * 16)


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _USERNAME.match(name):
        raise AuthError(f"user: {name!r} is not a valid name (1-64 letters, digits, _ . @ -)")
    return name


def _check_key(public_hex: str) -> str:
    if not isinstance(public_hex, str) or not _PUBLIC_KEY.match(public_hex):
        raise AuthError("key: must be an Ed25519 public key (64 lowercase hex digits)")
    return public_hex


def _check_password(password: str) -> str:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise AuthError(f"password: must be at least {MIN_PASSWORD} characters")
    return password


def user_key_file(users_file: Path, name: str) -> Path:
    """Where user `name`'s private signing key is kept beside the users file (0600)."""
    return Path(users_file).parent / "keys" / f"{name}.key"


def ensure_admin(store: UserStore) -> str | None:
    """On first run (no users at all) add ``admin`` with a generated password; return it, else None.

    The password is also written to ``initial-admin-password`` (0600) beside the users file, and the
    admin's signing key to ``keys/admin.key``."""
    if store.users():
        return None
    from qlcore.control.identity import SigningKey

    password = secrets.token_urlsafe(15)
    store.add("admin", Role.ADMIN, password)
    write_private(store.path.parent / ADMIN_PASSWORD_FILE, password + "\n")
    key = SigningKey.generate("admin")  # the admin's signing key, beside the users file (qlcore.control.keys)
    store.set_key("admin", key.public_hex)
    key.save(user_key_file(store.path, "admin"))
    return password


def cookie_secret(data_dir: Path) -> str:
    """The secret that signs login cookies: generated once, kept 0600 under the data folder."""
    path = Path(data_dir) / COOKIE_SECRET_FILE
    if path.exists():
        secret = path.read_text(encoding="utf-8").strip()
        if len(secret) >= 32:
            return secret
    secret = secrets.token_urlsafe(48)
    write_private(path, secret + "\n")
    return secret


class UsersDirectory:
    """The engine's view of the users file: who may sign commands, with which key, and each user's role.

    The file is parsed again only when it changes (its size, time or inode), so a removed user or a
    lower role counts from the next command on, at the cost of one `stat` per look-up."""

    def __init__(self, path: Path) -> None:
        self.store = UserStore(path)
        self._seen: tuple[int, int, int] | None = None
        self._principals: dict[str, Principal] = {}
        self._roles: dict[str, str] = {}

    def _refresh(self) -> None:
        try:
            st = self.store.path.stat()
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            stamp = (0, 0, 0)
        if stamp == self._seen:
            return
        users, services = self.store.users(), self.store.services()
        principals = {u.name: Principal(u.name, u.key, u.role.label) for u in users.values() if u.key}
        for svc in services.values():
            principals[svc.name] = Principal(svc.name, svc.key, "viewer", svc.acts_for_users, svc.issues_grants)
        self._principals, self._roles = principals, {u.name: u.role.label for u in users.values()}
        self._seen = stamp

    def principal(self, name: str) -> Principal | None:
        self._refresh()
        return self._principals.get(name)

    def role_of(self, user: str) -> str | None:
        self._refresh()
        return self._roles.get(user)
