"""Signed commands: the engine's gatekeeper accepts what a principal signed within its role and scope,
and refuses forged, altered, replayed, stale, out-of-role and out-of-scope commands with the reason."""
from __future__ import annotations

import stat
from dataclasses import dataclass, replace

import pytest

from qlcore.control.identity import Credential, CredentialError, Gatekeeper, Principal, SigningKey
from qlcore.store.secrets import SecretFileError

NS = 1_000_000_000
NOW = 1_800_000_000 * NS


@dataclass
class _Users:
    principals: dict[str, Principal]
    roles: dict[str, str]

    def principal(self, name: str) -> Principal | None:
        return self.principals.get(name)

    def role_of(self, user: str) -> str | None:
        return self.roles.get(user)


@pytest.fixture
def keys() -> dict[str, SigningKey]:
    return {n: SigningKey.generate(n) for n in ("alice", "victor", "desk", "scheduler", "mallory")}


@pytest.fixture
def gate(keys) -> Gatekeeper:
    users = _Users(
        {
            "alice": Principal("alice", keys["alice"].public_hex, "trader"),
            "victor": Principal("victor", keys["victor"].public_hex, "viewer"),
            "desk": Principal("desk", keys["desk"].public_hex, acts_for_users=True),
            "scheduler": Principal("scheduler", keys["scheduler"].public_hex, issues_grants=True),
        },
        {"alice": "trader", "victor": "viewer", "admin": "admin"},
    )
    return Gatekeeper(users)


HALT = ("halt", {"reason": "test"})


def _check(gate, kind, payload, user, cred, now=NOW):
    return gate.check(kind, payload, user, "engine", cred if cred is None else cred.text(), now_ns=now)


def test_a_command_signed_by_its_user_within_their_role_is_accepted_once(gate, keys):
    cred = keys["alice"].sign_command(*HALT, "alice", "engine", now_ns=NOW)
    assert _check(gate, *HALT, "alice", cred) is None
    assert "replayed" in _check(gate, *HALT, "alice", cred)


def test_an_unsigned_command_is_refused(gate):
    assert "unsigned" in gate.check("halt", {"reason": "x"}, "alice", "engine", None, now_ns=NOW)


def test_a_forged_user_name_is_refused(gate, keys):
    cred = keys["mallory"].sign_command(*HALT, "admin", "engine", now_ns=NOW)
    assert "unknown signer 'mallory'" in _check(gate, *HALT, "admin", cred)
    cred = keys["alice"].sign_command("resume_trading", {}, "admin", "engine", now_ns=NOW)
    assert "'alice' may not act for 'admin'" in _check(gate, "resume_trading", {}, "admin", cred)


def test_an_altered_payload_or_target_breaks_the_signature(gate, keys):
    cred = keys["alice"].sign_command("order.submit", {"strategy_id": "s", "symbol": "AAPL", "side": "BUY",
                                                        "quantity": "1"}, "alice", "engine", now_ns=NOW)
    altered = {"strategy_id": "s", "symbol": "AAPL", "side": "BUY", "quantity": "1000000"}
    assert "bad signature" in _check(gate, "order.submit", altered, "alice", cred)
    assert "bad signature" in gate.check("halt", {"reason": "test"}, "alice", "other-engine",
                                         keys["alice"].sign_command(*HALT, "alice", "engine", now_ns=NOW).text(),
                                         now_ns=NOW)


def test_a_viewer_credential_cannot_halt_and_a_trader_cannot_resume(gate, keys):
    cred = keys["victor"].sign_command(*HALT, "victor", "engine", now_ns=NOW)
    assert _check(gate, *HALT, "victor", cred) == "'victor' is a viewer; halt needs trader"
    cred = keys["alice"].sign_command("resume_trading", {}, "alice", "engine", now_ns=NOW)
    assert _check(gate, "resume_trading", {}, "alice", cred) == "'alice' is a trader; resume_trading needs admin"


def test_the_desk_server_acts_for_the_user_it_names_with_that_users_role(gate, keys):
    cred = keys["desk"].sign_command(*HALT, "alice", "engine", now_ns=NOW)
    assert _check(gate, *HALT, "alice", cred) is None
    cred = keys["desk"].sign_command(*HALT, "victor", "engine", now_ns=NOW)
    assert "viewer" in _check(gate, *HALT, "victor", cred)


def test_a_stale_credential_is_refused(gate, keys):
    cred = keys["alice"].sign_command(*HALT, "alice", "engine", now_ns=NOW - 3600 * NS)
    assert "stale" in _check(gate, *HALT, "alice", cred)


def _job(keys, *, expires=NOW + 3600 * NS, strategies=("job-s",), symbols=("AAPL",)):
    run = SigningKey.generate("job:j1")
    grant = keys["scheduler"].grant("j1", run.public_hex, strategies=list(strategies), symbols=list(symbols),
                                    expires_ns=expires, code_hash="h1")
    return run, grant


def test_a_jobs_grant_admits_its_own_strategy_and_symbols_only(gate, keys):
    run, grant = _job(keys)
    deploy = {"strategy_id": "job-s", "strategy": "sma_cross", "symbols": ["AAPL"], "code_hash": "h1"}
    assert _check(gate, "strategy.deploy", deploy, "job:j1",
                  run.sign_command("strategy.deploy", deploy, "job:j1", "engine", grant=grant, now_ns=NOW)) is None
    other = {**deploy, "strategy_id": "someone-elses"}
    assert "outside job 'j1'" in _check(gate, "strategy.deploy", other, "job:j1", run.sign_command(
        "strategy.deploy", other, "job:j1", "engine", grant=grant, now_ns=NOW))
    wider = {**deploy, "symbols": ["AAPL", "MSFT"]}
    assert "['MSFT'] are outside" in _check(gate, "strategy.deploy", wider, "job:j1", run.sign_command(
        "strategy.deploy", wider, "job:j1", "engine", grant=grant, now_ns=NOW))
    assert "a job may not send halt" in _check(gate, *HALT, "job:j1", run.sign_command(
        *HALT, "job:j1", "engine", grant=grant, now_ns=NOW))
    as_admin = run.sign_command(*HALT, "admin", "engine", grant=grant, now_ns=NOW)
    assert "acts only as 'job:j1'" in _check(gate, *HALT, "admin", as_admin)


def test_an_expired_or_self_made_grant_is_refused(gate, keys):
    run, grant = _job(keys, expires=NOW - 1)
    deploy = {"strategy_id": "job-s", "strategy": "sma_cross", "symbols": ["AAPL"]}
    assert "expired" in _check(gate, "strategy.deploy", deploy, "job:j1", run.sign_command(
        "strategy.deploy", deploy, "job:j1", "engine", grant=grant, now_ns=NOW))
    run, grant = _job(keys)
    widened = replace(grant, strategies=["job-s", "everything"])  # the run edits its own grant
    assert "bad grant signature" in _check(gate, "strategy.deploy", deploy, "job:j1", run.sign_command(
        "strategy.deploy", deploy, "job:j1", "engine", grant=widened, now_ns=NOW))
    forged = keys["mallory"].grant("j1", run.public_hex, strategies=["job-s"], symbols=["AAPL"], expires_ns=NOW + NS)
    assert "may not issue grants" in _check(gate, "strategy.deploy", deploy, "job:j1", run.sign_command(
        "strategy.deploy", deploy, "job:j1", "engine", grant=forged, now_ns=NOW))


def test_keys_live_in_0600_files_and_malformed_credentials_are_named(tmp_path, keys):
    path = tmp_path / "keys" / "alice.key"
    keys["alice"].save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert SigningKey.load("alice", path).public_hex == keys["alice"].public_hex
    path.chmod(0o640)
    with pytest.raises(SecretFileError, match="chmod 600"):
        SigningKey.load("alice", path)
    with pytest.raises(CredentialError, match="malformed"):
        Credential.parse('{"signer": "alice"}')
