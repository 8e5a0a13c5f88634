"""Private names stay private: no module of the package uses another module's underscore names.

What one module needs from another is a public name (the internal API is listed in each module's
docstring, e.g. :mod:`benign_attention.engines`); validators live in
:mod:`benign_attention.validation`. Checked by parsing every module with ``ast``:

* ``from .x import _y`` / ``from benign_attention.x import _y`` (also inside functions);
* ``x._y`` where ``x`` is a module of the package bound by an import (``from . import plots``,
  ``import benign_attention.sweeps as sweeps``).

Dunder names (``__version__``) are public.

No import arrow runs back up either: no module imports a name from the ``__init__`` of its own
package or of a package above it (``from . import __version__``, ``from .. import train``); it
imports the module that defines the name (``from ._version import __version__``). Importing a
sibling module through its package (``from . import plots``, ``from .. import engines``) is fine.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "benign_attention"
MODULES = sorted(PACKAGE.rglob("*.py"))


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(path: Path, node: ast.ImportFrom) -> str | None:
    """The absolute module an ``ImportFrom`` names, or None if it is outside the package."""
    if node.level == 0:
        mod = node.module or ""
        return mod if mod.split(".")[0] == "benign_attention" else None
    here = _module_name(path).split(".")
    if path.name != "__init__.py":
        here = here[:-1]
    base = here[:len(here) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    own = _module_name(path)
    found, modules = [], set()  # names bound to package modules
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            src = _resolve(path, node)
            if src is None:
                continue
            for alias in node.names:
                if _private(alias.name) and src != own:
                    found.append(f"line {node.lineno}: from {src} import {alias.name}")
                if not _private(alias.name) and (PACKAGE.parent / (src.replace(".", "/") + f"/{alias.name}.py")).exists():
                    modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "benign_attention":
                    modules.add(alias.asname or alias.name.split(".")[0])
                    if any(_private(p) for p in alias.name.split(".")[1:]):
                        found.append(f"line {node.lineno}: import {alias.name}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            base = node.value
            while isinstance(base, ast.Attribute):
                base = base.value
            if isinstance(base, ast.Name) and base.id in modules:
                found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(PACKAGE)) for p in MODULES])
def test_no_module_uses_another_modules_private_names(path: Path):
    bad = violations(path)
    assert not bad, f"{path.relative_to(PACKAGE.parent)} uses private names of other modules: {bad}"


def test_the_check_catches_both_forms(tmp_path, monkeypatch):
    """The checker itself: both forms are caught, own-module and dunder names are not."""
    fake = PACKAGE / "_probe_for_test_imports.py"
    src = ("from .engines import _lowdim_loop, train\nfrom . import plots\nfrom . import __version__\n"
           "def f():\n    from .sweeps import _BASES\n    return plots._edges, _private_here\n"
           "_private_here = 1\n")
    monkeypatch.setattr(Path, "read_text", lambda self, encoding=None: src if self == fake else
                        Path.read_bytes(self).decode(encoding or "utf-8"))
    bad = violations(fake)
    assert len(bad) == 3 and any("_lowdim_loop" in b for b in bad) and any("_BASES" in b for b in bad)
    assert any("plots._edges" in b for b in bad)


def _lines_of_function(path: Path, name: str) -> int:
    """Lines of the top-level function ``name`` in ``path``, from ``def`` to its last line (docstring included)."""
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node.end_lineno - node.lineno + 1
    raise AssertionError(f"{path.name} has no function {name}")


def test_encoder_package_and_grid_runner_sizes():
    """Issue 20's structure limits for the encoder package and the grid mechanism: every file of
    ``benign_attention/encoder/`` under 300 lines, and ``sweeps.run_grid`` under 50 lines."""
    files = sorted((PACKAGE / "encoder").glob("*.py"))
    assert {p.name for p in files} >= {"__init__.py", "model.py", "train.py", "grid.py"}
    for p in files:
        n = len(p.read_text(encoding="utf-8").splitlines())
        assert n < 300, f"encoder/{p.name} has {n} lines (limit: under 300)"
    n = _lines_of_function(PACKAGE / "sweeps.py", "run_grid")
    assert n < 50, f"sweeps.run_grid has {n} lines (limit: under 50)"


def upward_imports(path: Path) -> list[str]:
    """Imports of names from the ``__init__`` of ``path``'s own package or of a package above it."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    own = _module_name(path)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            src = _resolve(path, node)
            if src is None or not (PACKAGE.parent / src.replace(".", "/") / "__init__.py").exists():
                continue  # outside the package, or a module (not a package's __init__)
            if src == own or not (own.startswith(src + ".") or path.name != "__init__.py" and own == src):
                continue  # a package's __init__ reading its own submodules, or a package not above
            for alias in node.names:
                if not (PACKAGE.parent / src.replace(".", "/") / f"{alias.name}.py").exists() and \
                        not (PACKAGE.parent / src.replace(".", "/") / alias.name / "__init__.py").exists():
                    found.append(f"line {node.lineno}: from {src} import {alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "benign_attention":
                    found.append(f"line {node.lineno}: import {alias.name}")
    return found


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(PACKAGE)) for p in MODULES])
def test_no_module_imports_from_a_package_above_it(path: Path):
    bad = upward_imports(path)
    assert not bad, f"{path.relative_to(PACKAGE.parent)} imports from a package's __init__ above it: {bad}"


def test_the_upward_check_catches_init_names(monkeypatch):
    """The checker itself: names from ``__init__`` above are caught, sibling modules are not."""
    fake = PACKAGE / "realdata" / "_probe_for_test_imports.py"
    src = ("from .. import __version__, engines\nfrom . import grid\nfrom benign_attention import train\n"
           "import benign_attention\nfrom .._version import __version__ as v\n")
    monkeypatch.setattr(Path, "read_text", lambda self, encoding=None: src if self == fake else
                        Path.read_bytes(self).decode(encoding or "utf-8"))
    bad = upward_imports(fake)
    assert len(bad) == 3 and any("__version__" in b for b in bad) and any("import train" in b for b in bad)
