"""Whoever can write a row to the command table cannot act as someone else, nor beyond their role.

The attacker here writes rows straight into the `commands` table (what anyone holding the store's
URL can do), replays a signed row, uses a viewer's or a trader's real key for what their role does
not allow, uses a scheduled run's credential outside its job, and names another user on the CLI. A
real engine on a real store (a SQLite file, and PostgreSQL when QLCORE_TEST_PG_URL is set) verifies
each command against its users file and refuses, naming why; the audit log names the signer.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from qlcore.control.commands import Command, CommandQueue
from qlcore.control.identity import SigningKey
from qlcore.control.keys import SCHEDULER_SERVICE, issue_service_key, job_signer, provision
from qlcore.control.users import UserStore
from qlcore.engine.service import EngineConfig, EngineService
from qlcore.store.tables import commands
from qlcore.ui.readmodel import ReadModel

TARGET = "guarded"


class _Silent:
    exhausted = False

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def poll(self, max_steps: int | None = None) -> list:
        return []


@dataclass
class Rig:
    engine: EngineService
    users: UserStore
    keys: dict[str, SigningKey]
    url: str
    tmp: Path

    def start_engine(self) -> EngineService:
        config = EngineConfig(engine_id=TARGET, url=self.url, venue_path=self.tmp / "venue.sqlite",
                              symbols=("AAPL", "MSFT"), command_poll_s=0.0, feed_stale_s=1e9, feed_reduce_s=1e9,
                              users_file=self.users.path)
        engine = EngineService(config, feed=_Silent())
        engine.start()
        return engine

    def send(self, user: str, kind: str, payload: dict[str, Any], *, signer: Any = None) -> Command:
        """A command through the queue, signed by `signer` (default: `user`'s own key); the engine's outcome."""
        queue = CommandQueue(self.url, signer=signer if signer is not None else self.keys[user])
        return self.settle(queue.submit(user, kind, payload, target=TARGET))

    def insert(self, **row: Any) -> int:
        """A row written straight into the table, as anyone with the store's URL can."""
        values = {"ts_submitted": time.time_ns(), "target": TARGET, "status": "pending", **row}
        with self.engine.db.begin() as conn:
            pk = conn.execute(commands.insert().values(**values)).inserted_primary_key
        assert pk is not None
        return int(pk[0])

    def settle(self, command_id: int) -> Command:
        for _ in range(3):
            self.engine.step()
        return CommandQueue(self.url).status(command_id)

    def audit_of(self, command_id: int) -> Any:
        [entry] = [e for e in ReadModel(engine=self.engine.db).audit_search(action="command.")
                   if e.data.get("params", {}).get("command_id") == command_id]
        return entry


@pytest.fixture
def rig(store_url: str, tmp_path: Path) -> Iterator[Rig]:
    users = UserStore(tmp_path / "users.toml")
    keys = provision(users, {"ada": "admin", "tom": "trader", "vera": "viewer"})
    rig = Rig(None, users, keys, store_url, tmp_path)  # type: ignore[arg-type]
    rig.engine = rig.start_engine()
    yield rig
    rig.engine.shutdown()


def _row(rig: Rig, command_id: int) -> Any:
    with rig.engine.db.connect() as conn:
        return conn.execute(select(commands).where(commands.c.id == command_id)).one()


def test_a_row_that_names_admin_without_a_credential_is_refused_and_changes_no_limit(rig: Rig) -> None:
    before = rig.engine.risk.config.to_dict()
    cid = rig.insert(user="admin", kind="limits.set", payload='{"limits":{"max_order_quantity":"1000000"}}')
    out = rig.settle(cid)
    assert out.status == "refused"
    assert out.reason == "not authorised: the command carries no credential (unsigned)"
    assert rig.engine.risk.config.to_dict() == before
    entry = rig.audit_of(cid)
    assert entry.actor == "unverified:admin"
    assert entry.data["claimed_user"] == "admin" and entry.data["signer"] is None
    assert entry.data["outcome"] == f"refused: {out.reason}"


def test_a_viewer_signing_for_admin_is_refused_and_the_audit_names_both(rig: Rig) -> None:
    payload = {"limits": {"max_order_quantity": "1000000"}}
    out = rig.send("admin", "limits.set", payload, signer=rig.keys["vera"])  # vera's real key, admin's name
    assert (out.status, out.reason) == ("refused", "not authorised: 'vera' may not act for 'admin'")
    entry = rig.audit_of(out.id)
    assert (entry.data["signer"], entry.data["claimed_user"]) == ("vera", "admin")


def test_a_row_altered_after_signing_fails_its_signature(rig: Rig) -> None:
    queue = CommandQueue(rig.url, signer=rig.keys["tom"])
    cid = queue.submit("tom", "order.submit", {"strategy_id": "s", "symbol": "AAPL", "side": "BUY", "quantity": "1"},
                       target=TARGET)
    with rig.engine.db.begin() as conn:  # the quantity raised in the stored row
        conn.execute(commands.update().where(commands.c.id == cid).values(
            payload='{"quantity":"1000","side":"BUY","strategy_id":"s","symbol":"AAPL"}'))
    out = rig.settle(cid)
    assert out.status == "refused"
    assert out.reason == "not authorised: bad signature by 'tom': the command was not sent as signed (forged or altered)"
    assert rig.audit_of(cid).actor == "unverified:tom"


def test_a_viewer_may_not_halt_and_a_trader_may_not_set_limits(rig: Rig) -> None:
    halt = rig.send("vera", "halt", {"reason": "just looking"})
    assert (halt.status, halt.reason) == ("refused", "not authorised: 'vera' is a viewer; halt needs trader")
    assert rig.engine.trading_mode()[0] == "ACTIVE"
    before = rig.engine.risk.config.to_dict()
    limits = rig.send("tom", "limits.set", {"limits": {"max_order_quantity": "99999"}})
    assert (limits.status, limits.reason) == ("refused", "not authorised: 'tom' is a trader; limits.set needs admin")
    assert rig.engine.risk.config.to_dict() == before
    entry = rig.audit_of(limits.id)  # proven sender, refused for the role: recorded under the user
    assert (entry.actor, entry.data["signer"]) == ("user:tom", "tom")


def test_an_accepted_command_is_audited_with_its_signer(rig: Rig) -> None:
    out = rig.send("tom", "halt", {"reason": "desk review"})
    assert out.status == "accepted" and rig.engine.trading_mode()[0] == "HALTED"
    entry = rig.audit_of(out.id)
    assert (entry.actor, entry.action, entry.data["signer"], entry.data["claimed_user"]) == (
        "user:tom", "command.halt", "tom", "tom")


def test_an_unknown_signer_and_a_user_without_a_key_are_refused(rig: Rig) -> None:
    stranger = SigningKey.generate("mallory")
    out = rig.send("mallory", "halt", {"reason": "x"}, signer=stranger)
    assert out.reason == "not authorised: unknown signer 'mallory': no public key for it in the users file"
    rig.users.add("nokey", "admin", "nokey-password")  # a user who has a password but was never issued a key
    out = rig.send("nokey", "halt", {"reason": "x"}, signer=SigningKey.generate("nokey"))
    assert out.reason == "not authorised: unknown signer 'nokey': no public key for it in the users file"
    assert rig.engine.trading_mode()[0] == "ACTIVE"


def test_a_stale_credential_is_refused(rig: Rig) -> None:
    class Late:
        def sign_command(self, kind: str, payload: Any, user: str, target: str) -> Any:
            return rig.keys["ada"].sign_command(kind, payload, user, target, now_ns=time.time_ns() - 3600 * 10**9)

    out = rig.send("ada", "halt", {"reason": "old"}, signer=Late())
    assert out.status == "refused" and out.reason.startswith("not authorised: credential issued 3600 s ago")


def test_a_replayed_command_is_refused_at_the_insert_by_the_engine_and_after_a_restart(rig: Rig) -> None:
    first = rig.send("tom", "strategy.pause", {"strategy_id": "nope"})  # refused by the handler, but proven
    assert first.status == "refused" and "not authorised" not in (first.reason or "")
    row = _row(rig, first.id)
    copy = {"user": row.user, "kind": row.kind, "payload": row.payload, "credential": row.credential}
    with pytest.raises(IntegrityError):  # the same nonce cannot be stored twice
        rig.insert(**copy, nonce=row.nonce)
    replay = rig.settle(rig.insert(**copy))  # the nonce column left empty: the engine knows the nonce
    assert replay.status == "refused"
    assert replay.reason == f"not authorised: replayed command: nonce {row.nonce} was already used"

    rig.engine.shutdown()
    rig.engine = rig.start_engine()  # a restart remembers the nonces of the commands still fresh
    again = rig.settle(rig.insert(**copy))
    assert again.reason == f"not authorised: replayed command: nonce {row.nonce} was already used"


def test_a_jobs_credential_is_refused_outside_its_strategy_symbols_and_kinds(rig: Rig) -> None:
    issuer = issue_service_key(rig.users, SCHEDULER_SERVICE, issues_grants=True)
    # as the scheduler grants a run of job "nightly": its strategy and symbols, its approved hash
    signer = job_signer(issuer, "nightly", strategies=["nightly-s"], symbols=["AAPL"], code_hash="h" * 64, valid_s=60)

    def send(kind: str, payload: dict[str, Any]) -> Command:
        return rig.send("job:nightly", kind, payload, signer=signer)

    order = {"strategy_id": "nightly-s", "symbol": "AAPL", "side": "BUY", "quantity": "1", "order_type": "LIMIT",
             "price": "100"}
    other = send("order.submit", {**order, "strategy_id": "someone-else"})
    assert other.reason == ("not authorised: strategy 'someone-else' is outside job 'nightly''s approved "
                            "strategies ['nightly-s']")
    msft = send("order.submit", {**order, "symbol": "MSFT"})
    assert msft.reason == "not authorised: symbols ['MSFT'] are outside job 'nightly''s approved symbols ['AAPL']"
    limits = send("limits.set", {"limits": {"max_order_quantity": "5"}})
    assert limits.reason == "not authorised: a job may not send limits.set"
    halt = send("halt", {"reason": "job says so"})
    assert halt.reason == "not authorised: a job may not send halt"
    flatten_all = send("flatten", {})
    assert flatten_all.reason == ("not authorised: strategy None is outside job 'nightly''s approved "
                                  "strategies ['nightly-s']")
    as_admin = rig.send("admin", "order.submit", order, signer=signer)  # the run's key, another user's name
    assert as_admin.reason == "not authorised: a grant for job 'nightly' acts only as 'job:nightly'"
    own = send("order.submit", order)  # within its grant: past the gatekeeper, to the order path
    assert own.status == "accepted", own.reason
    assert rig.engine.trading_mode()[0] == "ACTIVE"


def test_a_grant_not_signed_by_the_scheduler_is_refused(rig: Rig) -> None:
    forger = SigningKey.generate(SCHEDULER_SERVICE)  # not the registered scheduler key
    issue_service_key(rig.users, SCHEDULER_SERVICE, issues_grants=True)
    signer = job_signer(forger, "nightly", strategies=["nightly-s"], symbols=["AAPL"], code_hash="", valid_s=60)
    out = rig.send("job:nightly", "flatten", {"strategy_id": "nightly-s"}, signer=signer)
    assert out.reason == "not authorised: bad grant signature: the job's grant was forged or altered"


def test_the_cli_cannot_send_as_admin_without_admins_key(rig: Rig) -> None:
    admin_key = rig.users.path.parent / "keys" / "ada.key"
    admin_key.unlink()  # as another OS user sees it: ada's key file is not theirs to read
    args = ["halt", "--reason", "mine now", "--user", "ada", "--users-file", str(rig.users.path), "--db", rig.url,
            "--engine-id", TARGET, "--wait", "0"]
    env = {k: v for k, v in os.environ.items() if k != "QLCORE_KEY_FILE"}
    cli = [str(Path(sys.executable).with_name("qlcore")), *args]  # the installed console script, as a user runs it
    result = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "cannot sign as 'ada'" in result.stderr
    assert "qlcore users key ada" in result.stderr
    # vera's own key file, offered as ada's
    env["QLCORE_KEY_FILE"] = str(rig.users.path.parent / "keys" / "vera.key")
    result = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "is not 'ada''s signing key" in result.stderr, result.stderr
    assert CommandQueue(rig.url).history() == []  # nothing was stored
    assert rig.engine.trading_mode()[0] == "ACTIVE"


def test_the_payload_signed_is_the_one_stored_decimals_included(rig: Rig) -> None:
    out = rig.send("tom", "order.submit", {"strategy_id": "s", "symbol": "AAPL", "side": "BUY", "order_type": "LIMIT",
                                           "quantity": Decimal("2.0"), "price": Decimal("100.10")})
    assert out.status == "accepted", out.reason
    assert orjson.loads(_row(rig, out.id).payload)["quantity"] == "2.0"
