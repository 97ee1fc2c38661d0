"""A store made before commands were signed gains the new columns in place, its rows kept."""
from __future__ import annotations

from sqlalchemy import inspect, text

from qlcore.control.commands import CommandQueue
from qlcore.store.db import connect, dispose_all


def test_a_commands_table_without_credential_and_nonce_gets_them_and_keeps_its_rows(store_url: str) -> None:
    db = connect(store_url)
    with db.begin() as conn:  # the table as an older version made it
        conn.execute(text("DROP INDEX uq_commands_nonce"))
        conn.execute(text("ALTER TABLE commands DROP COLUMN nonce"))
        conn.execute(text("ALTER TABLE commands DROP COLUMN credential"))
        conn.execute(text("INSERT INTO commands (ts_submitted, \"user\", target, kind, payload, status) "
                          "VALUES (1, 'old', 'engine', 'halt', '{\"reason\":\"before\"}', 'accepted')"))
    assert "nonce" not in {c["name"] for c in inspect(db).get_columns("commands")}
    dispose_all()

    db = connect(store_url)
    columns = {c["name"] for c in inspect(db).get_columns("commands")}
    assert {"credential", "nonce"} <= columns
    assert "uq_commands_nonce" in {ix["name"] for ix in inspect(db).get_indexes("commands")}
    [old] = CommandQueue(engine=db).history()
    assert (old.user, old.kind, old.payload, old.credential) == ("old", "halt", {"reason": "before"}, None)
