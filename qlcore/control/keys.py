"""Where signing keys live, and how a user or service gets one.

A user's private key is ``keys/<name>.key`` beside the users file (0600), or the file named by
``QLCORE_KEY_FILE`` (a person keeping their key in their own home, away from the desk's folder);
a service's (the dashboards' server, the scheduler) is ``secrets/<name>.key``. The public halves are
in the users file, which is what the engine trusts. Issuing a key replaces the old one: commands
signed with the old key are refused from then on.
"""
from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from qlcore.control.identity import Credential, CredentialError, Grant, JobSigner, SigningKey
from qlcore.control.users import UserStore, user_key_file
from qlcore.store.secrets import SecretFileError

KEY_FILE_ENV = "QLCORE_KEY_FILE"
DESK_SERVICE, SCHEDULER_SERVICE = "desk", "scheduler"
# what a scheduled run's kernel finds in its environment: the path of its one-run key (0600, removed
# with the run's folder) and the scheduler's grant for that key (public: it proves nothing without the key)
RUN_KEY_FILE_ENV, JOB_GRANT_ENV = "QLCORE_RUN_KEY_FILE", "QLCORE_JOB_GRANT"


def service_key_file(users_file: Path, name: str) -> Path:
    return Path(users_file).parent / "secrets" / f"{name}.key"


def issue_user_key(store: UserStore, name: str) -> Path:
    """A new key pair for user `name`: the private key to its 0600 file, the public one to the users file."""
    key = SigningKey.generate(name)
    path = user_key_file(store.path, name)
    store.set_key(name, key.public_hex)  # refuses an unknown user before any file is written
    key.save(path)
    return path


def issue_service_key(store: UserStore, name: str, *, acts_for_users: bool = False,
                      issues_grants: bool = False) -> SigningKey:
    """The service's key, made and registered on first use; the same key afterwards."""
    path = service_key_file(store.path, name)
    known = store.services().get(name)
    if known is not None and path.exists():
        key = SigningKey.load(name, path)
        if key.public_hex == known.key and (known.acts_for_users, known.issues_grants) == (acts_for_users, issues_grants):
            return key
    key = SigningKey.load(name, path) if path.exists() else SigningKey.generate(name)
    if not path.exists():
        key.save(path)
    store.set_service(name, key.public_hex, acts_for_users=acts_for_users, issues_grants=issues_grants)
    return key


def user_signing_key(users_file: Path, name: str) -> SigningKey:
    """User `name`'s private key: from ``QLCORE_KEY_FILE`` when set, else from ``keys/<name>.key``.

    `CredentialError` says where it looked and how to get a key."""
    env = os.environ.get(KEY_FILE_ENV, "").strip()
    path = Path(env) if env else user_key_file(users_file, name)
    try:
        return SigningKey.load(name, path)
    except SecretFileError as exc:
        raise CredentialError(
            f"no usable signing key for {name!r}: {exc} (an admin issues one with `qlcore users key {name}`; "
            f"{KEY_FILE_ENV} names a key kept elsewhere)"
        ) from None


def signer_from_env(environ: Mapping[str, str] | None = None) -> JobSigner:
    """A scheduled run's signer: its one-run key and grant, from the environment the scheduler gave it.

    `CredentialError` when the run has none (a notebook run by hand, not by the scheduler)."""
    env = os.environ if environ is None else environ
    key_file, grant_text = env.get(RUN_KEY_FILE_ENV, ""), env.get(JOB_GRANT_ENV, "")
    if not key_file or not grant_text:
        raise CredentialError(f"no job credential: {RUN_KEY_FILE_ENV} and {JOB_GRANT_ENV} are set only in a run "
                              "the scheduler started (`qlcore jobs run-now`)")
    try:
        grant = Grant(**orjson.loads(grant_text))
    except (orjson.JSONDecodeError, TypeError) as exc:
        raise CredentialError(f"{JOB_GRANT_ENV}: not a grant ({exc.__class__.__name__})") from None
    try:
        key = SigningKey.load(f"job:{grant.job_id}", Path(key_file))
    except SecretFileError as exc:
        raise CredentialError(f"{RUN_KEY_FILE_ENV}: {exc}") from None
    if key.public_hex != grant.run_key:
        raise CredentialError(f"{RUN_KEY_FILE_ENV}: the key is not the one job {grant.job_id!r}'s grant names")
    return JobSigner(key, grant)


def job_signer(issuer: SigningKey, job_id: str, *, strategies: list[str], symbols: list[str], code_hash: str,
               valid_s: float) -> JobSigner:
    """A new one-run key for job `job_id` and the issuer's (the scheduler's) grant for it: what the
    scheduler gives each run, valid for `valid_s` seconds, within the job's approved scope."""
    key = SigningKey.generate(f"job:{job_id}")
    grant = issuer.grant(job_id, key.public_hex, strategies=strategies, symbols=symbols, code_hash=code_hash,
                         expires_ns=time.time_ns() + int(valid_s * 1e9))
    return JobSigner(key, grant)


class KeyRing:
    """The signing keys of several users, each command signed with the key of the user it names: the
    users of a test rig, a benchmark or the demo, made with `provision`."""

    def __init__(self, keys: Mapping[str, SigningKey] | None = None, *, store: UserStore | None = None,
                 role_of_new: Mapping[str, str] | None = None) -> None:
        self.keys = dict(keys or {})
        self.store = store  # with a store, a user not yet known is provisioned on first use
        self.role_of_new = dict(role_of_new or {})

    def sign_command(self, kind: str, payload: Mapping[str, Any], user: str, target: str) -> Credential:
        key = self.keys.get(user)
        if key is None:
            if self.store is None:
                raise CredentialError(f"no signing key for {user!r} in this key ring")
            key = self.keys[user] = provision(self.store, {user: self.role_of_new.get(user, "admin")})[user]
        return key.sign_command(kind, payload, user, target)


def provision(store: UserStore, roles: Mapping[str, str]) -> dict[str, SigningKey]:
    """Users who sign commands and cannot log in (`UserStore.add_signer`), each with a key in its 0600
    file (``keys/<name>.key``); a user already there with its key file is taken as it is."""
    keys: dict[str, SigningKey] = {}
    known = store.users()
    for name, role in roles.items():
        path = user_key_file(store.path, name)
        if name in known and known[name].key and path.exists():
            key = SigningKey.load(name, path)
            if key.public_hex == known[name].key:
                keys[name] = key
                continue
        key = SigningKey.generate(name)
        key.save(path)
        if name in known:
            store.set_key(name, key.public_hex)
        else:
            store.add_signer(name, role, key.public_hex)
        keys[name] = key
    return keys


__all__ = [
    "DESK_SERVICE",
    "JOB_GRANT_ENV",
    "KEY_FILE_ENV",
    "RUN_KEY_FILE_ENV",
    "SCHEDULER_SERVICE",
    "KeyRing",
    "issue_service_key",
    "issue_user_key",
    "job_signer",
    "proven_admin",
    "provision",
    "service_key_file",
    "signer_from_env",
    "user_key_file",
    "user_signing_key",
]


def proven_admin(users_file: Path, name: str) -> str:
    """`name`, when its private key is at hand (``keys/<name>.key`` or ``QLCORE_KEY_FILE``), is the one
    the users file holds for it, and the user is an admin; else `CredentialError` saying which fails.
    What an admin's say means for a decision taken where no command travels (an engine's start)."""
    from qlcore.control.users import UsersDirectory

    key = user_signing_key(users_file, name)
    principal = UsersDirectory(Path(users_file)).principal(name)
    if principal is None or principal.public_key != key.public_hex:
        raise CredentialError(f"{name!r}'s key is not the one {users_file} holds for {name!r}")
    if principal.role != "admin":
        raise CredentialError(f"{name!r} is a {principal.role}: only an admin may say so")
    return name
