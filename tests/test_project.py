"""The project's own files agree with each other: environment.yml mirrors pyproject.toml."""
from __future__ import annotations

import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _pyproject_requirements() -> set[str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return set(data["project"]["dependencies"]) | set(data["dependency-groups"]["dev"])


def _conda_pip_requirements() -> set[str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    return {r for r in pip if not r.startswith("-e")}


def test_environment_yml_lists_exactly_the_pyproject_requirements():
    assert _conda_pip_requirements() == _pyproject_requirements()


def test_environment_yml_python_matches_requires_python():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "python=3.11" in env["dependencies"]
    assert data["project"]["requires-python"].startswith(">=3.11")


def test_ci_runs_make_test_with_postgres_url():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci and "QLCORE_TEST_PG_URL" in ci and "CI=true" in ci


def test_notebooks_load_their_plotting_code_from_the_desk_not_from_a_cdn():
    """Plots and pages work offline: no committed notebook output refers to an outside address, and
    the notebooks load BokehJS inline (`hv.extension(..., inline=False)` wrote CDN loaders)."""
    import json
    import re

    outside = re.compile(r"https?://")
    for path in sorted((ROOT / "notebooks").rglob("*.ipynb")):
        nb = json.loads(path.read_text())
        for i, cell in enumerate(nb["cells"]):
            source = "".join(cell["source"])
            assert "inline=False" not in source, f"{path.name} cell {i} loads its plotting code from a CDN"
            if "hv.extension(" in source:
                assert "inline=True" in source, f"{path.name} cell {i}: hv.extension without inline=True"
            hits = outside.findall(json.dumps(cell.get("outputs", [])))
            assert not hits, f"{path.name} cell {i}: its saved output refers to an outside address"
