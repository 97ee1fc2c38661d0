"""Dashboard actions reach the engine the page shows (not a fixed name); only an admin acts on every
engine at once, and a refusal of that is audited like any other."""
from __future__ import annotations

from pathlib import Path

import pytest

from qlcore.control.commands import CommandQueue
from qlcore.control.users import UserStore
from qlcore.store.db import connect
from qlcore.ui.actions import AUDIT_REFUSED, ActionRefused, Actions
from qlcore.ui.readmodel import ReadModel


@pytest.fixture
def actions(tmp_path: Path) -> Actions:
    users = UserStore(tmp_path / "users.toml")
    users.add("tina", "trader", "tina-trader-pw")
    users.add("ada", "admin", "ada-admin-pw1")
    return Actions(connect(f"sqlite:///{tmp_path / 'qlcore.db'}"), users)


def test_an_action_goes_to_the_engine_named(actions: Actions) -> None:
    result = actions.perform("halt", {"reason": "drill"}, user="tina", target="desk-b")
    assert CommandQueue(engine=actions.engine).status(result.command_id).target == "desk-b"


def test_an_admin_halts_every_engine_and_a_trader_may_not(actions: Actions) -> None:
    with pytest.raises(ActionRefused, match="acting on every engine needs role admin, tina is trader"):
        actions.perform_everywhere("halt", {"reason": "drill"}, user="tina", engine_ids=["a", "b"])
    assert CommandQueue(engine=actions.engine).history() == []
    [refused] = ReadModel(engine=actions.engine).audit_search(action=AUDIT_REFUSED)
    assert refused.actor == "user:tina" and refused.data["engine"] == "*"
    results = actions.perform_everywhere("halt", {"reason": "drill"}, user="ada", engine_ids=["a", "b"])
    commands = [CommandQueue(engine=actions.engine).status(r.command_id) for r in results]
    assert [(c.target, c.kind, c.user) for c in commands] == [("a", "halt", "ada"), ("b", "halt", "ada")]


def test_outside_a_logged_in_session_nobody_acts(actions: Actions) -> None:
    with pytest.raises(ActionRefused, match="not logged in"):
        actions.run("halt", {"reason": "drill"}, engine_id="desk-b")
    with pytest.raises(ActionRefused, match="no engine is shown"):
        actions.run("halt", {"reason": "drill"}, engine_id=None)
