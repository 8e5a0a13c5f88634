"""The lock: one pinned version of every package, matching pyproject.toml, Binder and Colab.

``requirements.lock`` is written by ``make lock`` (``scripts/lock.py``, ``uv pip compile``) from
``pyproject.toml``'s ranges; ``make venv`` installs it with ``--require-hashes --no-deps``. These
checks fail when the lock and the ranges disagree, when an extra is missing from it, when it was
edited so that a pin lost its hashes, and when the environment the tests run in is not the locked one.
"""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("lockfile", ROOT / "scripts" / "lock.py")
lockfile = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lockfile)

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
LOCK = lockfile.read_lock()
UNLOCKED = os.environ.get("BENIGN_ATTENTION_UNLOCKED") == "1"  # make test-latest


def _requirements(extra=None) -> list[Requirement]:
    reqs = PROJECT["dependencies"] if extra is None else PROJECT["optional-dependencies"][extra]
    return [Requirement(r) for r in reqs]


def _versions(name: str) -> list[Version]:
    return [Version(v) for v in LOCK[lockfile.canon(name)].split(",")]


@pytest.mark.parametrize("extra", [None, *PROJECT["optional-dependencies"]])
def test_lock_covers_the_extra_within_its_ranges(extra):
    own = lockfile.canon(PROJECT["name"])
    for req in _requirements(extra):
        if lockfile.canon(req.name) == own:
            continue  # an extra that names others (book -> lab)
        assert lockfile.canon(req.name) in LOCK, f"{req} ({extra or 'core'}) is not in requirements.lock: run make lock"
        for version in _versions(req.name):
            assert req.specifier.contains(version, prereleases=True), (
                f"requirements.lock pins {req.name}=={version}, outside pyproject.toml's {req}: run make lock")
        for e in req.extras:  # dask[distributed]: the extra's own requirements are locked too
            assert e != "distributed" or "distributed" in LOCK, f"{req}: the {e} extra is not locked"


def test_every_pin_has_hashes_and_one_version():
    text = (ROOT / "requirements.lock").read_text()
    entries = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 4)[-1])
    for entry in entries:
        if not entry.strip() or entry.startswith("#"):
            continue
        head = entry.splitlines()[0]
        assert re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[^\]]*\])?==\S+", head), f"not an exact pin: {head}"
        assert "--hash=sha256:" in entry, f"no hash for {head}: the lock must come from make lock"
    assert not [n for n in LOCK if lockfile.CUDA_ONLY.match(n)], "CUDA-only packages belong to torch's own install"


def test_lock_records_the_torch_the_makefile_installs():
    make = subprocess.run(["make", "-n", "venv", "-W", "pyproject.toml", "VENV=/nonexistent-venv"], cwd=ROOT,
                          capture_output=True, text=True).stdout
    assert f'"torch=={lockfile.torch_version()}"' in make, make[-2000:]
    assert "--require-hashes -r requirements.lock" in make and "--no-deps" in make, make[-2000:]


def test_no_chapter_records_a_tool_version():
    """A header with jupytext_version changes whenever another jupytext saves the chapter."""
    bad = [md.name for md in sorted((ROOT / "book").glob("*.md"))
           if re.search(r"^\s*jupytext_version:", md.read_text(encoding="utf-8"), re.M)]
    assert not bad, f"chapter headers record a jupytext version: {bad} (jupytext.toml filters it; run make sync)"
    unfiltered = [md.name for md in sorted((ROOT / "book").glob("*.md"))
                  if md.read_text(encoding="utf-8").startswith("---\njupytext:")
                  and "notebook_metadata_filter: -jupytext.text_representation.jupytext_version" not in md.read_text()]
    assert not unfiltered, f"chapters without the version filter in their header (JupyterLab's save needs it): {unfiltered}"


@pytest.mark.skipif(UNLOCKED, reason="make test-latest runs without the lock on purpose")
def test_this_environment_is_the_locked_one():
    """Every package pip lists here has the lock's version (torch may carry a build label)."""
    freeze = subprocess.run([sys.executable, "-m", "pip", "freeze", "--exclude-editable", "--all"],
                            capture_output=True, text=True, check=True).stdout.split()
    ignore = {"pip", lockfile.canon(PROJECT["name"])}
    wrong = {}
    for line in freeze:
        if "==" not in line:
            continue
        name, version = line.split("==", 1)
        name = lockfile.canon(name)
        if name in ignore or (lockfile.CUDA_ONLY.match(name) and "torch" in LOCK):
            continue
        if version.split("+")[0] not in LOCK.get(name, "").split(","):
            wrong[name] = (version, LOCK.get(name))
    assert not wrong, f"installed versions differ from requirements.lock ((installed, lock)): {wrong}"
