"""Where signing keys live, and how a user or service gets one.

A user's private key is ``keys/<name>.key`` beside the users file (0600), or the file named by
``QLCORE_KEY_FILE`` (a person keeping their key in their own home, away from the desk's folder);
a service's (the dashboards' server, the scheduler) is ``secrets/<name>.key``. The public halves are
in the users file, which is what the engine trusts. Issuing a key replaces the old one: commands
signed with the old key are refused from then on.
"""
from __future__ import annotations

import os
from pathlib import Path

from qlcore.control.identity import CredentialError, SigningKey
from qlcore.control.users import UserStore, user_key_file
from qlcore.store.secrets import SecretFileError

KEY_FILE_ENV = "QLCORE_KEY_FILE"
DESK_SERVICE, SCHEDULER_SERVICE = "desk", "scheduler"


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


__all__ = ["DESK_SERVICE", "KEY_FILE_ENV", "SCHEDULER_SERVICE", "issue_service_key", "issue_user_key",
           "service_key_file", "user_key_file", "user_signing_key"]
