"""The hash-chained audit log on a real SQLite file and on PostgreSQL: tampering is found and named."""
from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from qlcore.audit import AuditConflict, AuditError, AuditLog, canonical_json
from qlcore.audit.cli import audit_app
from qlcore.audit.log import GENESIS, entry_hash


@pytest.fixture
def log(store_url) -> AuditLog:
    log = AuditLog(store_url)
    for i in range(1, 8):
        log.record(f"user:u{i}", "command.test", f"run/O-{i}", {"n": i, "px": Decimal("10.50")}, ts=1000 + i)
    return log


def sql(log: AuditLog, statement: str, **params) -> None:
    with log.engine.begin() as conn:
        conn.execute(text(statement), params)


def row(log: AuditLog, seq: int) -> dict:
    with log.engine.connect() as conn:
        return dict(conn.execute(text("SELECT * FROM audit_log WHERE seq = :s"), {"s": seq}).mappings().one())


def test_untouched_chain_verifies(log):
    result = log.verify()
    assert result.ok and result.entries == 7 and result.head_seq == 7
    assert result.head_hash == row(log, 7)["hash"]
    assert str(result).startswith("OK: 7 entries, chain intact; head seq 7 hash ")


def test_hash_is_the_keyed_sha256_of_prev_hash_and_canonical_entry(log):
    first, second = row(log, 1), row(log, 2)
    assert first["prev_hash"] == GENESIS and second["prev_hash"] == first["hash"]
    assert first["details"] == '{"n":1,"px":"10.50"}'
    import hashlib
    import hmac

    body = canonical_json({"seq": 1, "ts": 1001, "actor": "user:u1", "action": "command.test",
                           "subject": "run/O-1", "details": {"n": 1, "px": "10.50"}})
    assert first["hash"] == hmac.new(log.key, (GENESIS + body).encode(), hashlib.sha256).hexdigest()
    assert first["hash"] != hashlib.sha256((GENESIS + body).encode()).hexdigest()


def test_empty_log_verifies(store_url):
    result = AuditLog(store_url).verify()
    assert result.ok and result.entries == 0


def test_edited_details_are_named(log):
    sql(log, "UPDATE audit_log SET details = :d WHERE seq = 4", d='{"n":40,"px":"10.50"}')
    result = log.verify()
    assert not result.ok and result.bad_seq == 4 and result.entries == 3
    assert "hash does not match the entry's content under the audit key (edited, or rewritten without the key: command.test run/O-4)" in result.problem


def test_non_canonical_edit_is_named(log):
    sql(log, "UPDATE audit_log SET details = :d WHERE seq = 2", d='{"px": "10.50", "n": 2}')
    result = log.verify()
    assert (result.bad_seq, result.problem) == (2, "details are not in canonical form (edited)")


def test_edited_actor_is_named(log):
    sql(log, "UPDATE audit_log SET actor = 'user:mallory' WHERE seq = 6")
    assert log.verify().bad_seq == 6


def test_edit_with_a_recomputed_hash_breaks_the_next_link(log):
    r = row(log, 3)
    details = '{"n":3,"px":"99.00"}'
    forged = entry_hash(log.key, r["prev_hash"], 3, r["ts"], r["actor"], r["action"], r["subject"], details)
    sql(log, "UPDATE audit_log SET details = :d, hash = :h WHERE seq = 3", d=details, h=forged)
    result = log.verify()
    assert result.bad_seq == 4 and "prev_hash does not match the hash of seq 3" in result.problem


def test_deleted_row_is_named(log):
    sql(log, "DELETE FROM audit_log WHERE seq = 3")
    result = log.verify()
    assert (result.bad_seq, result.problem) == (3, "seq 3 missing: the log jumps from seq 2 to 4 (deleted)")


def test_deleted_tail_is_found_through_the_head(log):
    sql(log, "DELETE FROM audit_log WHERE seq >= 6")
    result = log.verify()
    assert result.bad_seq == 6
    assert result.problem == "the log ends at seq 5 but its head records seq 7 (tail deleted)"


def _shift_up_from(log: AuditLog, seq: int) -> None:
    # make room for an entry at `seq` (the primary key forbids overlapping numbers on the way)
    sql(log, "UPDATE audit_log SET seq = seq + 1000 WHERE seq >= :s", s=seq)
    sql(log, "UPDATE audit_log SET seq = seq - 999 WHERE seq >= 1000")


def test_inserted_row_with_a_valid_hash_breaks_the_following_link(log):
    _shift_up_from(log, 4)
    prev = row(log, 3)
    details = '{"n":99}'
    digest = entry_hash(log.key, prev["hash"], 4, 1003, "user:mallory", "command.test", "run/O-99", details)
    sql(
        log,
        "INSERT INTO audit_log (seq, ts, actor, action, subject, details, prev_hash, hash) "
        "VALUES (4, 1003, 'user:mallory', 'command.test', 'run/O-99', :d, :p, :h)",
        d=details, p=prev["hash"], h=digest,
    )
    result = log.verify()
    assert result.bad_seq == 5 and "prev_hash does not match the hash of seq 4" in result.problem


def test_inserted_row_with_a_made_up_hash_is_named(log):
    _shift_up_from(log, 2)
    sql(
        log,
        "INSERT INTO audit_log (seq, ts, actor, action, subject, details, prev_hash, hash) "
        "VALUES (2, 1001, 'user:mallory', 'command.test', 'x', '{}', :p, :h)",
        p=row(log, 1)["hash"], h="f" * 64,
    )
    result = log.verify()
    assert result.bad_seq == 2 and "hash does not match" in result.problem


def test_row_slipped_between_two_numbers_is_named(sqlite_url):
    log = AuditLog(sqlite_url)
    for i in range(4):
        log.record("engine", "tick", "t", {"i": i}, ts=i)
    sql(log, "INSERT INTO audit_log (seq, ts, actor, action, subject, details, prev_hash, hash) "
             "VALUES (2.5, 2, 'user:mallory', 'x', 'x', '{}', :h, :h)", h="0" * 64)
    result = log.verify()
    assert result.bad_seq == 2.5
    assert result.problem == "an entry numbered 2.5 where seq 3 was expected (inserted)"


def test_a_second_writer_cannot_fork_the_chain(store_url):
    a, b = AuditLog(store_url), AuditLog(store_url)
    a.record("engine", "start", "s", {})  # seq 1
    b.record("user:bob", "command.pause", "s", {})  # b reads the tail: seq 2
    with pytest.raises(AuditConflict) as info:
        a.record("engine", "tick", "s", {})  # a still believes the tail is seq 1
    assert str(info.value).startswith("audit log: another writer appended after seq 1; entries seq 2..2")
    assert [e.action for e in info.value.unwritten] == ["tick"]
    assert a.verify().ok and a.count() == 2
    a.record("engine", "tick", "s", {})  # re-reads the tail and chains after b's entry
    assert [e.action for e in a.entries()] == ["start", "command.pause", "tick"]
    assert b.verify().ok


def test_two_writers_on_an_empty_log(store_url):
    a, b = AuditLog(store_url, batch_size=10), AuditLog(store_url, batch_size=10)
    a.record("engine", "x", "s", {})
    b.record("engine", "y", "s", {})
    a.flush()
    with pytest.raises(AuditConflict):
        b.flush()
    assert a.verify().ok and a.count() == 1


def test_writer_refuses_to_extend_a_log_whose_tail_was_deleted(log, store_url):
    sql(log, "DELETE FROM audit_log WHERE seq = 7")
    with pytest.raises(AuditError, match="ends at seq 6 but its head records seq 7"):
        AuditLog(store_url).record("engine", "x", "s", {})


def test_batched_entries_are_written_on_flush_and_on_exit(store_url):
    with AuditLog(store_url, batch_size=100) as log:
        for i in range(5):
            log.record("engine", "tick", "s", {"i": i})
        assert log.pending == 5 and AuditLog(store_url).count() == 0
    assert AuditLog(store_url).count() == 5 and AuditLog(store_url).verify().ok


def test_cli_verify_ok_and_tampered(log, store_url):
    runner = CliRunner()
    ok = runner.invoke(audit_app, ["verify", "--db", store_url])
    assert ok.exit_code == 0 and "OK: 7 entries" in ok.output
    sql(log, "DELETE FROM audit_log WHERE seq = 5")
    bad = runner.invoke(audit_app, ["verify", "--db", store_url])
    assert bad.exit_code == 1
    assert "FAILED at seq 5: seq 5 missing" in bad.output


def test_with_conflict_retries_a_batch_that_lost_the_race_is_chained_after_the_other_writer(store_url):
    engine_log = AuditLog(store_url, batch_size=100, conflict_retries=3)
    engine_log.record("engine", "start", "s", {})
    engine_log.flush()  # seq 1
    engine_log.record("engine", "order", "s/O-1", {"n": 1}, ts=10)
    engine_log.record("engine", "fill", "s/O-1", {"n": 2}, ts=11)
    AuditLog(store_url).record("user:bob", "command.pause", "s", {})  # seq 2, while the engine's batch waits
    written = engine_log.flush()
    assert [(e.seq, e.action) for e in written] == [(3, "order"), (4, "fill")]
    assert [e.action for e in engine_log.entries()] == ["start", "command.pause", "order", "fill"]
    assert engine_log.verify().ok
    last = AuditLog(store_url, conflict_retries=1).record("user:eve", "command.halt", "s", {})
    assert last.seq == 5 and last.prev_hash == written[-1].hash
