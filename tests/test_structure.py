"""The package's shape, checked (issue 20): the files a newcomer reads first stay short, and the
version has one value.

* ``plots.py`` only draws and stays under ``LIMITS["plots.py"]`` lines (its maths lives in
  :mod:`benign_attention.theory`, :mod:`benign_attention.analysis` and :mod:`benign_attention.data`,
  the explorers' figures in :mod:`benign_attention.explorer_figures`);
* ``benign_attention.__version__`` (from ``_version.py``) equals ``project.version`` in pyproject.toml.

The import structure (no private names across modules, no import arrow back up) is checked in
``tests/test_imports.py``.
"""
from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

import benign_attention

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "benign_attention"

#: file (relative to the package) -> the most lines it may have
LIMITS = {"plots.py": 670}  # 649 after issue 20; the colour code and two asinh axes of issue 19


@pytest.mark.parametrize("name", sorted(LIMITS))
def test_files_stay_under_their_line_limits(name):
    lines = len((PACKAGE / name).read_text(encoding="utf-8").splitlines())
    assert lines <= LIMITS[name], f"{name} has {lines} lines, the limit is {LIMITS[name]}: split it"


def test_one_version():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert benign_attention.__version__ == project["version"]


@pytest.mark.parametrize("engine", ["exact", "gram"])
@pytest.mark.parametrize("record", [{}, {"record_every": 2}, {"record_steps": [0, 3]}])
def test_steps_is_checked_once_on_the_run_grid_path(monkeypatch, engine, record):
    """Validate once: ``steps`` is checked at ``run_grid``'s entry (engines.check_train_args) and
    trusted by everything after it (cells, families, engines)."""
    import sys

    from benign_attention import sweeps, validation

    names = []
    original = validation.check_int

    def counting(name, *args, **kwargs):
        names.append(name)
        return original(name, *args, **kwargs)

    for module in list(sys.modules.values()):
        if getattr(module, "__name__", "").startswith("benign_attention") and \
                getattr(module, "check_int", None) is original:
            monkeypatch.setattr(module, "check_int", counting)
    grid = sweeps.run_grid({"signal_norm": [5.0, 20.0]}, dict(d=40, n=6, T=4, n_test=20), steps=3,
                           engine=engine, workers=1, progress=False, **record)
    assert grid.steps[-1] == 3
    assert names.count("steps") == 1, f"steps checked {names.count('steps')} times on the run_grid path"


def test_figures_use_the_one_colour_code():
    """Issue 19: one colour code for the whole book, in display.COLORS. The figure modules name no colour
    of their own (greys and black/white excepted), so 'orange' cannot mean 'test' in one figure and
    'clean training labels' in another."""
    import re

    pattern = re.compile(r"""["'](#[0-9a-fA-F]{6}|tab:[a-z]+|C[0-9]|orange|blue|red|green|purple|brown)["']""")
    offenders = []
    for name in ("plots.py", "explorer_figures.py", "encoder_figures.py", "widgets.py"):
        for k, line in enumerate((PACKAGE / name).read_text().splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{name}:{k}: {line.strip()}")
    assert not offenders, "colours outside display.COLORS:\n" + "\n".join(offenders)
    from benign_attention.display import COLORS

    assert COLORS["test"] != COLORS["train_clean"]
