"""Finding strategies: by built-in or entry-point name, or by `module:Class` from the allowed places.

A `strategy.deploy` command names the strategy to run, so the name decides which code the engine
imports. Only these places are allowed (`StrategyPlaces`):

* the built-ins (`BUILTINS`, and modules under ``qlcore.strategies``);
* the project's strategies folder: ``QLCORE_STRATEGIES_DIR``, else ``<project root>/strategies``
  (the checkout's root, else the working directory). ``my_strategy:MyStrategy`` loads
  ``<folder>/my_strategy.py`` (``pkg.mod:Cls`` loads ``<folder>/pkg/mod.py``); the folder is not put
  on ``sys.path``, and a module whose name an installed module already has is refused;
* installed entry points of group ``qlcore.strategies`` (``name = "package.module:Class"``): by
  their name, or as ``package.module:Class``;
* modules named in ``QLCORE_STRATEGY_MODULES`` (comma-separated; a package name allows its
  submodules), read when the engine starts.

Anything else is refused with `StrategyNotAllowedError` before it is imported: the decision is made
from the module's name and, for the folder, from the files there (`PathFinder.find_spec` looks for
files; it runs nothing), so a refused module's top-level code never runs.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.machinery import ModuleSpec, PathFinder
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from types import ModuleType
from typing import Any

from qlcore.strategies.base import Strategy
from qlcore.strategies.mean_reversion import MeanReversion
from qlcore.strategies.rebalance import Rebalance
from qlcore.strategies.sma_cross import SmaCross

BUILTINS: dict[str, type[Strategy]] = {cls.name: cls for cls in (SmaCross, MeanReversion, Rebalance)}
BUILTIN_PACKAGE = "qlcore.strategies"
ENTRY_POINT_GROUP = "qlcore.strategies"
STRATEGIES_DIR_ENV = "QLCORE_STRATEGIES_DIR"
STRATEGY_MODULES_ENV = "QLCORE_STRATEGY_MODULES"


class UnknownStrategyError(LookupError):
    """A strategy name that is neither built in, an entry point, nor a loadable `module:Class`."""

    def __str__(self) -> str:  # KeyError-style quoting would hide the list
        return str(self.args[0])


class StrategyNotAllowedError(UnknownStrategyError):
    """A `module:Class` whose module is in none of the places strategies load from (not imported)."""


def project_strategies_dir() -> Path:
    """``QLCORE_STRATEGIES_DIR``, else the ``strategies`` folder of the project root."""
    env = os.environ.get(STRATEGIES_DIR_ENV)
    if env:
        return Path(env).expanduser().resolve()
    from qlcore.store.db import project_root

    return project_root() / "strategies"


@dataclass(frozen=True, slots=True)
class StrategyPlaces:
    """Where `module:Class` strategies may load from (besides the built-ins and entry points)."""

    folder: Path
    modules: tuple[str, ...] = ()  # extra module names; a package allows its submodules

    def __post_init__(self) -> None:
        bad = [m for m in self.modules if not _module_name(m)]
        if bad:
            raise ValueError(f"{STRATEGY_MODULES_ENV}: not module names: {bad} (expected e.g. 'desk.strategies,other')")

    @classmethod
    def from_env(cls) -> StrategyPlaces:
        """The project's strategies folder and ``QLCORE_STRATEGY_MODULES``, as the environment says now."""
        modules = tuple(m.strip() for m in os.environ.get(STRATEGY_MODULES_ENV, "").split(",") if m.strip())
        return cls(project_strategies_dir(), modules)

    def entry_points(self) -> dict[str, EntryPoint]:
        """The installed entry points of group ``qlcore.strategies``, by name (metadata only: nothing imported)."""
        return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}

    def describe(self) -> str:
        eps = sorted(self.entry_points())
        folder = f"{self.folder}" + ("" if self.folder.is_dir() else ", which does not exist")
        return (
            f"the built-ins ({', '.join(sorted(BUILTINS))}; modules under {BUILTIN_PACKAGE}); "
            f"the strategies folder {folder} ({STRATEGIES_DIR_ENV}); "
            f"entry points of group {ENTRY_POINT_GROUP!r} ({', '.join(eps) if eps else 'none installed'}); "
            f"modules named in {STRATEGY_MODULES_ENV} ({', '.join(self.modules) if self.modules else 'none'})"
        )

    # --- loading --------------------------------------------------------------------------------
    def import_module(self, module_name: str, reference: str) -> ModuleType:
        """Import `module_name` if it lives in an allowed place; `StrategyNotAllowedError` (nothing
        imported) if not."""
        if (_under(module_name, BUILTIN_PACKAGE) or any(_under(module_name, m) for m in self.modules)
                or module_name in {ep.module for ep in self.entry_points().values()}):
            return importlib.import_module(module_name)
        top = module_name.partition(".")[0]
        spec = self._folder_spec(top)
        if spec is None:
            raise StrategyNotAllowedError(
                f"strategy {reference!r} refused: module {module_name!r} is not in a place strategies load "
                f"from, and was not imported. Allowed: {self.describe()}"
            )
        self._load_top(top, spec, reference)
        return importlib.import_module(module_name)  # submodules are found in the package's own folder

    def _folder_spec(self, top: str) -> ModuleSpec | None:
        if not self.folder.is_dir():
            return None
        spec = PathFinder.find_spec(top, [str(self.folder)])
        if spec is None:  # a file made since the folder's listing was cached
            importlib.invalidate_caches()
            spec = PathFinder.find_spec(top, [str(self.folder)])
        return spec

    def _load_top(self, top: str, spec: ModuleSpec, reference: str) -> None:
        """The folder's top-level module or package under its own name, unless another module has it."""
        loaded = sys.modules.get(top)
        if loaded is not None:
            if self._inside(getattr(loaded, "__file__", None)):
                return
            raise StrategyNotAllowedError(
                f"strategy {reference!r} refused: {spec.origin} in the strategies folder has the name of the "
                f"module {top!r} already loaded from elsewhere; rename it"
            )
        other = None if top in sys.builtin_module_names else PathFinder.find_spec(top)
        if top in sys.builtin_module_names or top in sys.stdlib_module_names or (
                other is not None and not self._inside(other.origin)):
            raise StrategyNotAllowedError(
                f"strategy {reference!r} refused: {spec.origin} in the strategies folder has the name of an "
                f"installed module ({top!r}); rename it"
            )
        module = importlib.util.module_from_spec(spec)
        sys.modules[top] = module
        try:
            assert spec.loader is not None
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[top]
            raise

    def _inside(self, path: str | None) -> bool:
        if not path:
            return False
        return Path(path).resolve().is_relative_to(self.folder.resolve())


def _module_name(name: str) -> bool:
    return bool(name) and all(part.isidentifier() for part in name.split("."))


def _under(module_name: str, package: str) -> bool:
    return module_name == package or module_name.startswith(package + ".")


def strategy_class(name: str, places: StrategyPlaces | None = None) -> type[Strategy]:
    """The class for a built-in name, an entry point's name, or a `package.module:ClassName` in an
    allowed place (`places`; default: `StrategyPlaces.from_env()`)."""
    if name in BUILTINS:
        return BUILTINS[name]
    places = places or StrategyPlaces.from_env()
    if ":" not in name:
        ep = places.entry_points().get(name)
        if ep is None:
            raise UnknownStrategyError(
                f"unknown strategy {name!r}; built-in strategies: {', '.join(sorted(BUILTINS))} "
                f"(or an entry point's name, or a 'package.module:ClassName' from: {places.describe()})"
            )
        try:
            return _strategy(ep.load(), name)
        except (ImportError, AttributeError) as exc:
            raise UnknownStrategyError(f"cannot load strategy {name!r} (entry point {ep.value}): {exc}") from None
    module_name, _, attr = name.partition(":")
    if not _module_name(module_name) or not attr.isidentifier():
        raise UnknownStrategyError(f"strategy {name!r}: expected 'package.module:ClassName'")
    try:
        module = places.import_module(module_name, name)
        cls = getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise UnknownStrategyError(f"cannot load strategy {name!r}: {exc}") from None
    return _strategy(cls, name)


def _strategy(cls: Any, name: str) -> type[Strategy]:
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise UnknownStrategyError(f"{name!r} is not a Strategy subclass")
    return cls


def create_strategy(
    name: str, params: Mapping[str, Any] | None = None, *, strategy_id: str | None = None,
    places: StrategyPlaces | None = None,
) -> Strategy:
    """Instantiate a strategy; string parameter values (from the CLI) are converted to their declared types."""
    return strategy_class(name, places)(strategy_id=strategy_id, **dict(params or {}))
