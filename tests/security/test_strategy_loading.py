"""A `strategy.deploy` names code for the engine to import: only the allowed places may provide it.

Allowed: the built-ins, the project's strategies folder (QLCORE_STRATEGIES_DIR), installed entry points
of group `qlcore.strategies`, modules named in QLCORE_STRATEGY_MODULES. Anything else is refused before
it is imported: a planted module's top-level code never runs (each writes a marker file when imported).
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import signed

from qlcore.engine.service import EngineConfig, EngineService
from qlcore.strategies import (
    Strategy,
    StrategyNotAllowedError,
    StrategyPlaces,
    UnknownStrategyError,
    strategy_class,
)
from qlcore.strategies.registry import ENTRY_POINT_GROUP

STRATEGY_CODE = '''
from pathlib import Path
from qlcore.strategies import Strategy

Path({marker!r}).write_text("imported")


class {cls}(Strategy):
    name = {name!r}

    def on_bar(self, bar):
        pass
'''


def plant(folder: Path, module: str, cls: str, marker: Path) -> Path:
    """A module that defines a strategy and writes `marker` as soon as it is imported."""
    path = folder.joinpath(*module.split(".")).with_suffix(".py")
    path.parent.mkdir(parents=True, exist_ok=True)
    for parent in path.relative_to(folder).parents:
        if parent != Path("."):
            folder.joinpath(parent, "__init__.py").touch()
    path.write_text(STRATEGY_CODE.format(marker=str(marker), cls=cls, name=module.replace(".", "_")))
    return path


@pytest.fixture
def on_sys_path(tmp_path: Path):
    """A folder on sys.path, as any folder of the engine's path would be (cleaned up after)."""
    folder = tmp_path / "site"
    folder.mkdir()
    sys.path.insert(0, str(folder))
    yield folder
    sys.path.remove(str(folder))
    _forget_modules_in(folder)


@pytest.fixture
def strategies_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "strategies"
    folder.mkdir()
    monkeypatch.setenv("QLCORE_STRATEGIES_DIR", str(folder))
    yield folder
    _forget_modules_in(folder)


def _forget_modules_in(folder: Path) -> None:
    """Unload the modules the test loaded from `folder` (only those: the rest stay imported)."""
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if path and Path(path).is_relative_to(folder):
            del sys.modules[name]


def _places(folder: Path, *modules: str) -> StrategyPlaces:
    return StrategyPlaces(folder, modules)


def test_a_deploy_command_naming_a_module_outside_the_places_is_refused_and_it_never_runs(
        sqlite_url, tmp_path, on_sys_path, strategies_dir):
    marker = tmp_path / "planted-ran"
    plant(on_sys_path, "planted_payload", "Payload", marker)
    engine = EngineService(EngineConfig(engine_id="t", url=sqlite_url, venue_path=tmp_path / "venue.sqlite",
                                        symbols=("AAPL",), command_poll_s=0.0))
    engine.start()
    try:
        queue = signed.queue(sqlite_url)
        outcomes = {}
        for ref in ("planted_payload:Payload", "os:system", "subprocess:Popen"):
            cid = queue.submit("alice", "strategy.deploy", {"strategy_id": f"x{len(outcomes)}", "strategy": ref},
                               target="t")
            engine.step()
            outcomes[ref] = queue.status(cid)
    finally:
        engine.shutdown()
    for ref, outcome in outcomes.items():
        module = ref.partition(":")[0]
        assert outcome.status == "refused"
        assert outcome.reason.startswith(f"strategy {ref!r} refused: module {module!r} is not in a place strategies "
                                         "load from, and was not imported. Allowed: the built-ins (")
        assert f"the strategies folder {strategies_dir} (QLCORE_STRATEGIES_DIR)" in outcome.reason
        assert f"entry points of group {ENTRY_POINT_GROUP!r}" in outcome.reason
        assert "modules named in QLCORE_STRATEGY_MODULES (" in outcome.reason
    assert not marker.exists(), "the planted module's top-level code ran"
    assert "planted_payload" not in sys.modules
    assert engine.manager.strategy_ids == []


def test_a_module_in_the_strategies_folder_loads_and_deploys(sqlite_url, tmp_path, strategies_dir):
    marker = tmp_path / "desk-trend-ran"
    plant(strategies_dir, "desk_trend", "Trend", marker)
    plant(strategies_dir, "deskpkg.breakout", "Breakout", tmp_path / "breakout-ran")
    engine = EngineService(EngineConfig(engine_id="t", url=sqlite_url, venue_path=tmp_path / "venue.sqlite",
                                        symbols=("AAPL",), command_poll_s=0.0))
    engine.start()
    try:
        queue = signed.queue(sqlite_url)
        cid = queue.submit("alice", "strategy.deploy", {"strategy_id": "t1", "strategy": "desk_trend:Trend"}, target="t")
        engine.step()
        outcome = queue.status(cid)
        deployed = engine.manager.strategy("t1")
    finally:
        engine.shutdown()
    assert outcome.status == "accepted" and outcome.reason.startswith("deployed t1 (desk_trend:Trend)")
    assert type(deployed).__name__ == "Trend" and marker.read_text() == "imported"
    assert sys.modules["desk_trend"].__file__ == str(strategies_dir / "desk_trend.py")
    assert str(strategies_dir) not in sys.path  # loaded from the folder, not by putting it on the path
    breakout = strategy_class("deskpkg.breakout:Breakout")
    assert issubclass(breakout, Strategy) and breakout.__module__ == "deskpkg.breakout"


def test_a_strategies_folder_module_named_like_an_installed_module_is_refused_unrun(tmp_path, strategies_dir):
    marker = tmp_path / "shadow-ran"
    for name in ("json", "tabnanny", "pytest"):  # loaded, stdlib not yet loaded, installed
        plant(strategies_dir, name, "Shadow", marker)
        with pytest.raises(StrategyNotAllowedError, match=rf"{strategies_dir / name}.py in the strategies folder has "
                                                          rf"the name of .*{name}.*rename it"):
            strategy_class(f"{name}:Shadow", _places(strategies_dir))
    assert not marker.exists()
    assert "tabnanny" not in sys.modules


def test_an_installed_entry_point_loads_by_name_and_by_module(tmp_path, on_sys_path):
    plant(on_sys_path, "vendor_strats.momentum", "Momentum", tmp_path / "vendor-ran")
    dist = on_sys_path / "vendor_strats-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: vendor-strats\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nvendor_momentum = vendor_strats.momentum:Momentum\n")
    marker = tmp_path / "sibling-ran"
    plant(on_sys_path, "vendor_other", "Other", marker)  # beside it on the path, but no entry point
    places = _places(tmp_path / "no-strategies-folder")

    assert "vendor_momentum" in places.entry_points()
    by_name = strategy_class("vendor_momentum", places)
    assert by_name.__name__ == "Momentum" and by_name.__module__ == "vendor_strats.momentum"
    assert strategy_class("vendor_strats.momentum:Momentum", places) is by_name
    with pytest.raises(StrategyNotAllowedError, match=r"entry points of group 'qlcore.strategies' \(.*vendor_momentum"):
        strategy_class("vendor_other:Other", places)
    assert not marker.exists()


def test_modules_named_in_the_configuration_load_and_their_name_is_not_a_prefix_of_others(tmp_path, on_sys_path):
    plant(on_sys_path, "deskmods.alpha", "Alpha", tmp_path / "alpha-ran")
    marker = tmp_path / "evil-ran"
    plant(on_sys_path, "deskmods_evil", "Evil", marker)
    places = _places(tmp_path / "none", "deskmods")
    assert strategy_class("deskmods.alpha:Alpha", places).__name__ == "Alpha"
    with pytest.raises(StrategyNotAllowedError, match=r"modules named in QLCORE_STRATEGY_MODULES \(deskmods\)"):
        strategy_class("deskmods_evil:Evil", places)
    assert not marker.exists()


def test_the_configuration_is_read_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("QLCORE_STRATEGY_MODULES", " desk.strats , other ")
    monkeypatch.setenv("QLCORE_STRATEGIES_DIR", str(tmp_path / "mine"))
    places = StrategyPlaces.from_env()
    assert places == StrategyPlaces((tmp_path / "mine").resolve(), ("desk.strats", "other"))
    monkeypatch.setenv("QLCORE_STRATEGY_MODULES", "ok,../evil")
    with pytest.raises(ValueError, match=r"QLCORE_STRATEGY_MODULES: not module names: \['../evil'\]"):
        StrategyPlaces.from_env()


@pytest.mark.parametrize("ref", ["../../tmp/x:Y", "os:system; rm -rf", ":Cls", "os:", "a..b:C"])
def test_malformed_references_are_refused_before_any_lookup(ref, tmp_path):
    with pytest.raises(UnknownStrategyError, match=r"expected 'package\.module:ClassName'"):
        strategy_class(ref, _places(tmp_path))


def test_a_non_strategy_in_an_allowed_module_is_refused(tmp_path):
    with pytest.raises(UnknownStrategyError, match=r"'qlcore.strategies.registry:StrategyPlaces' is not a Strategy"):
        strategy_class("qlcore.strategies.registry:StrategyPlaces", _places(tmp_path))
    assert strategy_class("qlcore.strategies.sma_cross:SmaCross", _places(tmp_path)).name == "sma_cross"
