"""What an approval covers, as files: the notebook and the local modules it imports, addressed by hash.

A *bundle* is the notebook (kept as ``notebook.ipynb``) plus every Python file of its own folder
that its import statements name (``import helper``, ``from helper import x``, a package folder with
all its ``.py`` files, ``importlib.import_module("helper")`` with a literal name), followed through
those modules' own imports. Its hash (`Bundle.code_hash`) is the SHA-256 of the normalised notebook
(`qlcore.ops.notebooks.notebook_hash`) and of each module's name and bytes.

`qlcore submit` snapshots the bundle into the submission's folder and runs that snapshot;
`qlcore approve` copies it to ``<data>/approved/<code hash>/``, read-only (files 0444, folder 0555).
A scheduled run reads that copy once, checks its hash, and writes the run's input from the very
bytes it checked, so a file swapped between the check and the run is never what runs. The run's
working folder is the bundle's, so a module the bundle does not hold cannot be imported from the
notebook's working folder either (a name built at run time, `exec(open(...))` of an absolute path
and the installed packages are outside it; the packages are covered by `environment_hash`).
"""
from __future__ import annotations

import ast
import hashlib
import json
import os
import re
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from qlcore.ops.notebooks import _source, notebook_digest, parse_notebook

NOTEBOOK = "notebook.ipynb"
APPROVED = "approved"
_MAGIC = re.compile(r"^\s*[%!]|\?\s*$")  # IPython magics, shell escapes, help: not Python
_HASH = re.compile(r"^[0-9a-f]{64}$")


class BundleError(ValueError):
    """An approved copy that is missing or does not hash to what was approved; the message says which."""


@dataclass(frozen=True, slots=True)
class Bundle:
    """The notebook's bytes and its local modules' bytes (path relative to the notebook's folder)."""

    notebook: bytes
    modules: dict[str, bytes]
    code_hash: str

    def write(self, folder: Path, *, read_only: bool = False) -> Path:
        """Write the bundle's files into `folder` (made read-only when asked); the notebook's path."""
        folder.mkdir(parents=True, exist_ok=True)
        for rel, data in [(NOTEBOOK, self.notebook), *sorted(self.modules.items())]:
            target = folder / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            if read_only:
                target.chmod(0o444)
        if read_only:
            for sub in sorted({p for p in folder.rglob("*") if p.is_dir()}, key=lambda p: -len(p.parts)):
                sub.chmod(0o555)
            folder.chmod(0o555)
        return folder / NOTEBOOK


def code_hash(notebook: bytes, modules: dict[str, bytes], where: str | os.PathLike = "notebook") -> str:
    """The bundle's hash: the normalised notebook's and each local module's (name and bytes)."""
    parts = {"notebook": notebook_digest(parse_notebook(notebook, where)),
             "modules": {rel: hashlib.sha256(data).hexdigest() for rel, data in sorted(modules.items())}}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def read_bundle(path: str | os.PathLike) -> Bundle:
    """The bundle of the notebook at `path` (each file read once): `NotANotebookError` for a non-notebook."""
    nb_path = Path(path)
    if not nb_path.is_file():
        raise FileNotFoundError(f"notebook not found: {nb_path}")
    data = nb_path.read_bytes()
    nb = parse_notebook(data, nb_path)
    folder = nb_path.parent
    modules: dict[str, bytes] = {}
    pending = [_source(c) for c in nb.cells if c.get("cell_type") == "code"]
    seen: set[str] = set()
    while pending:
        for name in _imported(pending.pop()):
            if name in seen:
                continue
            seen.add(name)
            for file in _local_files(folder, name):
                rel = file.relative_to(folder).as_posix()
                if rel not in modules:
                    modules[rel] = file.read_bytes()
                    pending.append(modules[rel].decode("utf-8", errors="replace"))
    return Bundle(data, modules, code_hash(data, modules, nb_path))


def _imported(source: str) -> set[str]:
    """Top-level module names that `source` imports (magics blanked; unparsable code names none)."""
    lines = ["" if _MAGIC.search(line) else line for line in source.splitlines()]
    try:
        tree = ast.parse("\n".join(lines))
    except SyntaxError:
        return set()
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and ((isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                   or (isinstance(node.func, ast.Name) and node.func.id in ("import_module", "__import__")))):
            names.add(node.args[0].value.split(".")[0])
    return names


def _local_files(folder: Path, name: str) -> list[Path]:
    if not name.isidentifier():
        return []
    module = folder / f"{name}.py"
    if module.is_file():
        return [module]
    package = folder / name
    if (package / "__init__.py").is_file():
        return sorted(p for p in package.rglob("*.py") if p.is_file() and "__pycache__" not in p.parts)
    return []


# --- the approved copies -------------------------------------------------------------------------------
def approved_dir(data_dir: Path, code_hash: str) -> Path:
    if not _HASH.match(code_hash or ""):
        raise BundleError(f"code hash {code_hash!r} is not a SHA-256 (64 lowercase hex digits)")
    return Path(data_dir) / APPROVED / code_hash


def store_approved(bundle: Bundle, data_dir: Path) -> Path:
    """The read-only approved copy of `bundle` (written once; an existing copy is checked, not rewritten)."""
    folder = approved_dir(data_dir, bundle.code_hash)
    if folder.is_dir():
        load_approved(data_dir, bundle.code_hash)  # an existing copy must be the same bytes
        return folder
    tmp = folder.with_name(f".{bundle.code_hash}.{os.getpid()}.tmp")
    bundle.write(tmp, read_only=True)
    try:
        os.rename(tmp, folder)
    except OSError:  # another approval of the same bytes came first
        _remove_tree(tmp)
        load_approved(data_dir, bundle.code_hash)
    return folder


def _remove_tree(folder: Path) -> None:
    import shutil

    for p in [folder, *folder.rglob("*")]:
        if p.is_dir():
            p.chmod(0o755)
    shutil.rmtree(folder, ignore_errors=True)


def load_approved(data_dir: Path, expected: str) -> Bundle:
    """The approved copy, each file read once, checked against `expected`; `BundleError` when it does not match."""
    return load_bundle(approved_dir(data_dir, expected), expected, "approved copy")


def load_bundle(folder: Path, expected: str, what: str = "copy") -> Bundle:
    """The bundle written in `folder`, each file read once, checked against `expected`."""
    nb_file = folder / NOTEBOOK
    if not nb_file.is_file():
        raise BundleError(f"the {what} {folder} is missing: approve the submission again")
    notebook = nb_file.read_bytes()
    modules = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
               if p.is_file() and p.name != NOTEBOOK and "__pycache__" not in p.parts}
    try:
        found = code_hash(notebook, modules, nb_file)
    except ValueError:
        found = "(not a notebook)"
    if found != expected:
        raise BundleError(f"the {what} {folder} was changed: it hashes to {found}, approved {expected}")
    return Bundle(notebook, modules, found)


# --- the environment ----------------------------------------------------------------------------------
def environment_lock() -> list[str]:
    """The installed distributions, ``name==version``, sorted (names normalised as PEP 503 does)."""
    found = set()
    for dist in metadata.distributions():
        name = dist.metadata["Name"] if dist.metadata else None
        if name:
            found.add(f"{re.sub(r'[-_.]+', '-', name).lower()}=={dist.version}")
    return sorted(found)


def environment_hash() -> str:
    """SHA-256 of `environment_lock`: what a submission ran with, and what an approval covers."""
    return hashlib.sha256("\n".join(environment_lock()).encode()).hexdigest()


__all__ = ["APPROVED", "NOTEBOOK", "Bundle", "BundleError", "approved_dir", "code_hash", "environment_hash",
           "environment_lock", "load_approved", "load_bundle", "read_bundle", "store_approved"]
