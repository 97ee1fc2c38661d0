"""Proven identities for commands: Ed25519 signatures that the engine verifies where the action takes effect.

Whoever can write a row to the command table must not be able to act as someone else. So each
principal signs what it sends with a private key kept in a 0600 file, and the engine holds only
public keys, in a directory the store's users cannot write (the desk's users file):

* a **person** (CLI) signs as themselves: signer == user;
* a **service** (the dashboard server) signs for the user it authenticated: signer is the service,
  user is the person, and the directory marks the service as one that may act for users;
* a **scheduled run** holds a *grant*: the scheduler's signed statement that a one-run key may act
  as the job, for its approved strategies and symbols, until an expiry. The run signs with that key
  and sends the grant along; the engine checks the scheduler's signature, the expiry and the scope.

The signed message is the canonical JSON of everything that decides what the command does (kind,
payload, user, target) plus who signed it, a random nonce and the time it was issued: change any of
them and the signature fails. A credential is fresh for `FRESH_S` and its nonce is accepted once
(replays are refused). Roles are ordered viewer < trader < admin; `REQUIRED_ROLE` names the least
role each command kind needs.
"""
from __future__ import annotations

import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from qlcore.store.secrets import read_private, write_private

NOT_AUTHORISED = "not authorised: "  # how the engine's refusal of an unproven or unentitled command begins
FRESH_S = 600.0  # a credential older than this (or issued this far in the future) is refused
ROLE_RANK = {"viewer": 1, "trader": 2, "admin": 3}
REQUIRED_ROLE: dict[str, str] = {
    "strategy.deploy": "trader",
    "strategy.pause": "trader",
    "strategy.resume": "trader",
    "strategy.stop": "trader",
    "order.submit": "trader",
    "order.cancel": "trader",
    "flatten": "trader",
    "halt": "trader",  # anyone who trades may stop the desk
    "resume_trading": "admin",
    "limits.set": "admin",
}


# what a scheduled run may send, each naming one of its approved strategies (so a job's flatten is
# its own strategy's, never the account's)
JOB_KINDS = frozenset({"strategy.deploy", "strategy.pause", "strategy.resume", "strategy.stop", "order.submit",
                       "flatten"})


class CredentialError(ValueError):
    """A credential that is malformed, or a key file that cannot be used; the message says which."""


def _canonical(value: Mapping[str, Any]) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


# --- keys ----------------------------------------------------------------------------------------------
class SigningKey:
    """A principal's private key: signs commands and grants."""

    def __init__(self, name: str, private: Ed25519PrivateKey) -> None:
        self.name = name
        self._private = private

    @classmethod
    def generate(cls, name: str) -> SigningKey:
        return cls(name, Ed25519PrivateKey.generate())

    @classmethod
    def load(cls, name: str, path: Path) -> SigningKey:
        """The key in `path` (hex of the 32 private bytes), refused when others may read the file."""
        text = read_private(path)
        try:
            return cls(name, Ed25519PrivateKey.from_private_bytes(bytes.fromhex(text)))
        except ValueError:
            raise CredentialError(f"{path}: not an Ed25519 private key (64 hex digits expected)") from None

    def save(self, path: Path) -> None:
        raw = self._private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        write_private(path, raw.hex() + "\n")

    @property
    def public_hex(self) -> str:
        return self._private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()

    def sign(self, message: bytes) -> str:
        return self._private.sign(message).hex()

    def sign_command(self, kind: str, payload: Mapping[str, Any], user: str, target: str, *,
                     grant: Grant | None = None, now_ns: int | None = None) -> Credential:
        nonce = secrets.token_hex(16)
        issued = time.time_ns() if now_ns is None else now_ns
        message = command_message(kind, payload, user, target, self.name, nonce, issued)
        return Credential(self.name, nonce, issued, self.sign(message), grant)

    def grant(self, job_id: str, run_key_hex: str, *, strategies: list[str], symbols: list[str],
              expires_ns: int, code_hash: str = "") -> Grant:
        """As the scheduler: let the one-run key `run_key_hex` act as job `job_id` within its scope until `expires_ns`."""
        body = Grant(self.name, job_id, run_key_hex, sorted(strategies), sorted(symbols), expires_ns, code_hash, "")
        return Grant(**{**asdict(body), "signature": self.sign(body.message())})


def verify_signature(public_hex: str, message: bytes, signature_hex: str) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_hex)).verify(bytes.fromhex(signature_hex), message)
    except (InvalidSignature, ValueError):
        return False
    return True


def command_message(kind: str, payload: Mapping[str, Any], user: str, target: str, signer: str, nonce: str,
                    issued_ns: int) -> bytes:
    """The bytes a command's signature covers."""
    return _canonical({"kind": kind, "payload": dict(payload), "user": user, "target": target, "signer": signer,
                       "nonce": nonce, "issued_ns": issued_ns})


# --- what travels with a command --------------------------------------------------------------------
@dataclass(frozen=True)
class Grant:
    """The scheduler's signed permission for one run's key to act as a job, within a scope, until expiry."""

    issuer: str
    job_id: str
    run_key: str  # public key (hex) of the run
    strategies: list[str]
    symbols: list[str]
    expires_ns: int
    code_hash: str
    signature: str

    def message(self) -> bytes:
        body = asdict(self)
        body.pop("signature")
        return _canonical(body)


@dataclass(frozen=True)
class Credential:
    """Who signed a command, with which nonce and when, the signature, and a grant for a scheduled run."""

    signer: str
    nonce: str
    issued_ns: int
    signature: str
    grant: Grant | None = None

    def text(self) -> str:
        return orjson.dumps(asdict(self)).decode()

    @classmethod
    def parse(cls, text: str | None) -> Credential:
        if not text:
            raise CredentialError("the command carries no credential (unsigned)")
        try:
            d = orjson.loads(text)
            grant = None if d.get("grant") is None else Grant(**d["grant"])
            return cls(str(d["signer"]), str(d["nonce"]), int(d["issued_ns"]), str(d["signature"]), grant)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise CredentialError(f"the command's credential is malformed ({exc.__class__.__name__})") from None


class Signer(Protocol):
    """Whatever signs a command as it is stored: a person's key, the desk signing for its user, a job run."""

    def sign_command(self, kind: str, payload: Mapping[str, Any], user: str, target: str) -> Credential: ...


@dataclass(frozen=True)
class JobSigner:
    """A scheduled run's signer: its one-run key (named ``job:<job id>``) and the scheduler's grant for it."""

    key: SigningKey
    grant: Grant

    def sign_command(self, kind: str, payload: Mapping[str, Any], user: str, target: str) -> Credential:
        return self.key.sign_command(kind, payload, user, target, grant=self.grant)


def signer_of(credential_text: str | None) -> str | None:
    """Who a stored credential says signed it (unverified: for the audit entry of a refusal), or None."""
    try:
        return Credential.parse(credential_text).signer
    except CredentialError:
        return None


# --- where the engine decides ---------------------------------------------------------------------
@dataclass(frozen=True)
class Principal:
    """A directory entry: a person (with a role) or a service (that may act for people)."""

    name: str
    public_key: str
    role: str = "viewer"
    acts_for_users: bool = False  # the dashboard server
    issues_grants: bool = False  # the scheduler


class Directory(Protocol):
    def principal(self, name: str) -> Principal | None: ...

    def role_of(self, user: str) -> str | None: ...


@dataclass(frozen=True)
class Verdict:
    """The gatekeeper's answer: `reason` None when proven and allowed; `proven` when the signature held
    (a refusal then concerns the role or scope of a known sender); `signer` as the credential names it."""

    reason: str | None
    proven: bool = False
    signer: str | None = None


@dataclass
class Gatekeeper:
    """Verifies a command's credential and role; `check` returns None (proven and allowed) or the reason."""

    directory: Directory
    fresh_s: float = FRESH_S
    seen: dict[str, int] = field(default_factory=dict)  # nonce -> issued_ns, kept while fresh

    def check(self, kind: str, payload: Mapping[str, Any], user: str, target: str, credential_text: str | None,
              *, now_ns: int | None = None) -> str | None:
        return self.verify(kind, payload, user, target, credential_text, now_ns=now_ns).reason

    def verify(self, kind: str, payload: Mapping[str, Any], user: str, target: str, credential_text: str | None,
               *, now_ns: int | None = None) -> Verdict:
        """Who sent the command (signature, freshness, nonce), then whether they may (role, or a job's scope)."""
        now = time.time_ns() if now_ns is None else now_ns
        try:
            cred = Credential.parse(credential_text)
        except CredentialError as exc:
            return Verdict(str(exc))
        signer = self.directory.principal(cred.signer)
        grant = cred.grant
        if grant is not None:
            problem = self._check_grant(grant, cred, user, now)
            if problem is not None:
                return Verdict(problem, signer=cred.signer)
            public_key = grant.run_key
        elif signer is None:
            return Verdict(f"unknown signer {cred.signer!r}: no public key for it in the users file", signer=cred.signer)
        else:
            public_key = signer.public_key
        message = command_message(kind, payload, user, target, cred.signer, cred.nonce, cred.issued_ns)
        if not verify_signature(public_key, message, cred.signature):
            return Verdict(f"bad signature by {cred.signer!r}: the command was not sent as signed (forged or altered)",
                           signer=cred.signer)
        age_s = (now - cred.issued_ns) / 1e9
        if abs(age_s) > self.fresh_s:
            return Verdict(f"credential issued {age_s:.0f} s ago; accepted for {self.fresh_s:.0f} s (stale or replayed)",
                           signer=cred.signer)
        if cred.nonce in self.seen:
            return Verdict(f"replayed command: nonce {cred.nonce} was already used", signer=cred.signer)
        self._remember(cred.nonce, cred.issued_ns, now)  # proven: never again, whatever the outcome
        if grant is not None:
            problem = self._check_scope(grant, kind, payload)
        else:
            assert signer is not None
            problem = self._check_role(signer, cred, kind, user)
        return Verdict(problem, proven=True, signer=cred.signer)

    def _check_role(self, signer: Principal, cred: Credential, kind: str, user: str) -> str | None:
        if cred.signer != user and not signer.acts_for_users:
            return f"{cred.signer!r} may not act for {user!r}"
        role = self.directory.role_of(user)
        if role is None:
            return f"unknown user {user!r}"
        needed = REQUIRED_ROLE.get(kind, "admin")
        if ROLE_RANK.get(role, 0) < ROLE_RANK[needed]:
            return f"{user!r} is a {role}; {kind} needs {needed}"
        return None

    def _check_grant(self, grant: Grant, cred: Credential, user: str, now: int) -> str | None:
        issuer = self.directory.principal(grant.issuer)
        if issuer is None or not issuer.issues_grants:
            return f"grant issued by {grant.issuer!r}, which may not issue grants"
        if not verify_signature(issuer.public_key, grant.message(), grant.signature):
            return "bad grant signature: the job's grant was forged or altered"
        if now > grant.expires_ns:
            return f"the grant of job {grant.job_id!r} has expired"
        if user != f"job:{grant.job_id}" or cred.signer != f"job:{grant.job_id}":
            return f"a grant for job {grant.job_id!r} acts only as 'job:{grant.job_id}'"
        return None

    def _check_scope(self, grant: Grant, kind: str, payload: Mapping[str, Any]) -> str | None:
        if kind not in JOB_KINDS:
            return f"a job may not send {kind}"
        sid = payload.get("strategy_id")
        if sid not in grant.strategies:
            return f"strategy {sid!r} is outside job {grant.job_id!r}'s approved strategies {grant.strategies}"
        symbols = payload.get("symbols") or ([payload["symbol"]] if payload.get("symbol") else [])
        outside = sorted(set(symbols) - set(grant.symbols))
        if outside:
            return f"symbols {outside} are outside job {grant.job_id!r}'s approved symbols {grant.symbols}"
        if payload.get("code_hash") not in (None, grant.code_hash):
            return f"code hash {payload.get('code_hash')!r} is not the job's approved {grant.code_hash!r}"
        if payload.get("job_id") not in (None, grant.job_id):
            return f"job id {payload.get('job_id')!r} is not the grant's {grant.job_id!r}"
        return None

    def remember(self, credential_texts: Iterable[str | None], *, now_ns: int | None = None) -> int:
        """Take the nonces of credentials already acted on (what an engine restarting reads from the
        command table) as used, where still fresh; how many were taken."""
        now = time.time_ns() if now_ns is None else now_ns
        taken = 0
        for text in credential_texts:
            try:
                cred = Credential.parse(text)
            except CredentialError:
                continue
            if abs(now - cred.issued_ns) <= self.fresh_s * 1e9:
                self._remember(cred.nonce, cred.issued_ns, now)
                taken += 1
        return taken

    def _remember(self, nonce: str, issued_ns: int, now: int) -> None:
        self.seen[nonce] = issued_ns
        if len(self.seen) > 10_000:  # forget nonces whose credentials are no longer fresh anyway
            horizon = now - int(self.fresh_s * 1e9)
            self.seen = {n: t for n, t in self.seen.items() if t >= horizon}


__all__ = [
    "FRESH_S",
    "JOB_KINDS",
    "NOT_AUTHORISED",
    "REQUIRED_ROLE",
    "ROLE_RANK",
    "Credential",
    "CredentialError",
    "Directory",
    "Gatekeeper",
    "Grant",
    "JobSigner",
    "Principal",
    "Signer",
    "SigningKey",
    "Verdict",
    "command_message",
    "signer_of",
    "verify_signature",
]
