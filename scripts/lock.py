"""Write the book's pinned install files from ``pyproject.toml``'s ranges: ``make lock`` runs this.

Three files come out, all from one resolution by ``uv pip compile`` (never edit them by hand):

``requirements.lock``
    Every package of every extra (``book``, ``lab``, ``test``, ``realdata``; Dask comes with
    ``test``) at one exact version with its hashes, for Python >= 3.11 on every platform
    (``--universal``). PyTorch is recorded (``torch==TORCH_VERSION``) but ``make venv`` installs it
    first, on its own, with the build you choose (``TORCH_PIP_ARGS``); the packages that only
    PyTorch's CUDA build needs (``nvidia-*``, ``cuda-*``, ``triton``) are left out, since that build
    brings them itself. ``make venv`` installs the rest with ``pip install --no-deps
    --require-hashes -r requirements.lock``, so nothing else is resolved at install time.
``environment.yml``
    Binder's environment: the ``realdata`` and ``lab`` extras (what ``postBuild`` asks for) at the
    lock's versions, Python 3.11 on Linux, PyTorch's CPU build. No hashes: conda's pip section
    cannot carry the CPU index's hashes beside PyPI's.
the Colab cell of every chapter
    One line, written into each chapter's first cell from ``_config.yml``'s ``repository.url`` and
    the release tag ``v<version>``: the package at that tag plus, at the lock's versions, every
    direct requirement that a Colab runtime does not already hold loaded in its kernel. Colab's own
    PyTorch, NumPy, Matplotlib, ipywidgets and IPython kernel are kept (see :data:`COLAB_KEEPS`).

Usage::

    python scripts/lock.py            # refresh all three (needs network to PyPI and ``uv``)
    python scripts/lock.py --cells    # rewrite only the Colab cells from the existing lock
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import jupytext
import yaml

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"
ENV_FILE = ROOT / "environment.yml"
BOOK = ROOT / "book"
PYTHON = "3.11"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
#: Packages that only PyTorch's CUDA build needs: that build installs them itself.
CUDA_ONLY = re.compile(r"^(nvidia-.*|cuda-.*|triton)$")
#: Extras that Binder's postBuild installs (and so environment.yml holds).
BINDER_EXTRAS = ("realdata", "lab")
#: What a Colab runtime already has loaded, or built against its own NumPy: replacing them from a
#: cell would need a runtime restart, so the Colab cell leaves them as Colab ships them.
COLAB_KEEPS = {"torch", "numpy", "matplotlib", "ipywidgets", "ipykernel"}
#: The Colab cell's extras.
COLAB_EXTRAS = ("realdata",)
COLAB_MARK = "%pip install"


def canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def read_lock(path: Path = LOCK) -> dict[str, str]:
    """``{canonical name: version}`` of a compiled requirements file (markers and hashes dropped).
    A name pinned twice for different markers keeps every version, comma-joined."""
    pins: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)", line)
        if m:
            pins.setdefault(canon(m.group(1)), []).append(m.group(2))
    return {k: ",".join(sorted(set(v))) for k, v in pins.items()}


def torch_version(path: Path = LOCK) -> str:
    return read_lock(path)["torch"]


def _uv(args: list[str]) -> None:
    cmd = [sys.executable, "-m", "uv", "pip", "compile", "--quiet", "--no-header", *args]
    subprocess.run(cmd, cwd=ROOT, check=True)


def _via(path: Path) -> dict[str, set[str]]:
    """Reverse dependencies from uv's ``# via`` annotations."""
    via, current = {}, None
    for line in path.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==", line)
        if m:
            current = canon(m.group(1))
            via[current] = set()
            continue
        m = re.match(r"^\s+#\s+(?:via\s+)?([A-Za-z0-9][A-Za-z0-9._-]*)", line)
        if current and m and m.group(1) != "via":
            via[current].add(canon(m.group(1)))
    return via


def compile_lock(torch: str) -> None:
    """requirements.lock, from pyproject.toml's ranges with PyTorch pinned to ``torch``."""
    with tempfile.TemporaryDirectory() as tmp:
        pin = Path(tmp, "torch.txt")
        pin.write_text(f"torch=={torch}\n")
        plain = Path(tmp, "plain.txt")
        common = ["pyproject.toml", "--all-extras", "--universal", "--python-version", PYTHON,
                  "--constraint", str(pin)]
        _uv([*common, "-o", str(plain)])
        via = _via(plain)
        cuda = sorted(n for n in via if CUDA_ONLY.match(n))
        # Make sure they really are PyTorch's alone (else leaving them out would break something).
        for name in cuda:
            parents = via[name] - set(cuda) - {"torch"}
            if parents:
                raise SystemExit(f"{name} is needed by {parents}, not only by PyTorch's CUDA build")
        skip = [a for n in cuda for a in ("--no-emit-package", n)]
        header = ("# The book's lock: every package of every extra at one version, with hashes.\n"
                  "# Generated by `make lock` (scripts/lock.py) from pyproject.toml's ranges; do not edit.\n"
                  "# `make venv` installs torch first (its own build), then this file with --no-deps.\n"
                  f"# Left out (PyTorch's CUDA build brings them): {', '.join(cuda) or 'none'}\n")
        out = Path(tmp, "lock.txt")
        _uv([*common, "--generate-hashes", *skip, "-o", str(out)])
        LOCK.write_text(header + out.read_text(), encoding="utf-8")


def binder_pins() -> dict[str, str]:
    """The realdata and lab extras resolved for Binder (Linux, Python 3.11) inside the lock."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp, "binder.txt")
        cons = Path(tmp, "constraints.txt")
        cons.write_text("\n".join(f"{k}=={v}" for k, v in read_lock().items() if "," not in v) + "\n")
        args = ["pyproject.toml", "--python-version", PYTHON, "--python-platform", "x86_64-manylinux_2_28",
                "--constraint", str(cons), "-o", str(out)]
        for extra in BINDER_EXTRAS:
            args += ["--extra", extra]
        _uv(args)
        pins = read_lock(out)
    return {k: v for k, v in pins.items() if not CUDA_ONLY.match(k)}


def write_environment(pins: dict[str, str]) -> None:
    name = canon(project()["name"])
    pins = {k: v for k, v in pins.items() if k != name}
    lines = [f"--extra-index-url {CPU_INDEX}", f"torch=={pins.pop('torch')}"]
    lines += [f"{k}=={v}" for k, v in sorted(pins.items())]
    text = (
        "# Binder (repo2docker) environment. Generated by `make lock` (scripts/lock.py): the package's\n"
        f"# requirements with the {' and '.join(BINDER_EXTRAS)} extras, at requirements.lock's versions, for\n"
        "# Linux and Python 3.11. repo2docker installs this file on its own, before it copies the\n"
        "# repository in (so it must not refer to the repository's files); postBuild then installs the\n"
        "# package itself without dependencies. PyTorch is the CPU build from PyTorch's index: pip\n"
        "# prefers 2.13.0+cpu there over PyPI's much larger CUDA build of the same release.\n")
    env = {"name": name, "channels": ["conda-forge"],
           "dependencies": [f"python={PYTHON}", "pip", {"pip": lines}]}
    ENV_FILE.write_text(text + yaml.safe_dump(env, sort_keys=False, width=200), encoding="utf-8")


def repository_url() -> str:
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    return config["repository"]["url"].rstrip("/")


def release_tag() -> str:
    """The git tag of this release, ``v<version>``: what the Colab cell installs and Colab opens."""
    return f"v{project()['version']}"


def colab_requirements() -> list[str]:
    """What the Colab cell installs: the package at its release tag, and the lock's versions of its
    direct requirements (with the Colab extras) that Colab does not keep."""
    proj = project()
    lock = read_lock()
    from packaging.requirements import Requirement

    reqs = [Requirement(r) for r in proj["dependencies"]]
    for extra in COLAB_EXTRAS:
        reqs += [Requirement(r) for r in proj["optional-dependencies"][extra]]
    names = sorted({canon(r.name) for r in reqs} - COLAB_KEEPS)
    package = (f"{proj['name']}[{','.join(COLAB_EXTRAS)}] @ "
               f"git+{repository_url()}@{release_tag()}")
    return [package] + [f"{n}=={lock[n]}" for n in names]


def colab_cell() -> str:
    args = " ".join(f'"{r}"' for r in colab_requirements())
    return ("import sys\n"
            "if \"google.colab\" in sys.modules:  # Colab only: the package at the book's release\n"
            f"    {COLAB_MARK} -q {args}")


def write_cells() -> list[Path]:
    """Put :func:`colab_cell` into every chapter's first code cell; returns the chapters changed."""
    cell = colab_cell()
    changed = []
    for md in sorted(BOOK.glob("*.md")):
        text = md.read_text(encoding="utf-8")
        m = re.search(r"(```\{code-cell\}[^\n]*\n:tags: \[remove-cell\]\n\n)(.*?)(\n```)", text, re.S)
        if not m or "google.colab" not in m.group(2):
            continue
        new = text[:m.start(2)] + cell + text[m.end(2):]
        if new != text:
            md.write_text(new, encoding="utf-8")
            changed.append(md)
    return changed


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--torch", help="PyTorch release to record (default: the lock's, else 2.13.0)")
    ap.add_argument("--cells", action="store_true", help="only rewrite the Colab cells from the lock")
    args = ap.parse_args(argv)
    if not args.cells:
        torch = args.torch or (torch_version() if LOCK.exists() else "2.13.0")
        compile_lock(torch)
        write_environment(binder_pins())
        print(f"wrote {LOCK.name} ({len(read_lock())} packages, torch {torch_version()}) and {ENV_FILE.name}")
    changed = write_cells()
    for md in changed:
        subprocess.run([sys.executable, "-m", "jupytext", "--sync", str(md)], cwd=ROOT, check=True,
                       capture_output=True)
    print(f"Colab cell: {colab_requirements()}; rewrote {len(changed)} chapters")
    return 0


if __name__ == "__main__":
    sys.exit(main())
