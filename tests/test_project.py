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
