"""Keep the book's chapter notebooks output-free when JupyterLab saves them.

Each chapter is a MyST file ``book/NN_name.md`` paired by jupytext with an output-free
``book/NN_name.ipynb`` that the repository tracks (Binder and Colab open it). JupyterLab saves a
notebook it runs, autosave included, with its outputs, execution counts and kernel metadata; in
the checkout that would leave a modified ``.ipynb`` that the pairing tests reject.

:func:`pre_save_hook` is a Jupyter server pre-save hook: for a notebook paired with MyST
(``jupytext.formats`` names ``md:myst``), it drops what running leaves behind (outputs,
execution counts, :data:`RUN_NOTEBOOK_METADATA`, :data:`RUN_CELL_METADATA`) before the file is
written, so a chapter run locally leaves the checkout as it was. The open notebook keeps showing its
outputs until it is closed. Other notebooks are saved untouched.

This module is also a small Jupyter server extension that registers the hook. ``make venv``
enables it in the project's environment by writing
``<venv>/etc/jupyter/jupyter_server_config.d/benign-attention.json``::

    python -m benign_attention._jupyter_hooks --install-config

(``jupyter server extension list`` then shows ``benign_attention._jupyter_hooks``.)

``make sync`` also runs ``python -m benign_attention._jupyter_hooks book/*.ipynb``, which clears
the same things from notebook files saved by another editor.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

#: Notebook metadata that a kernel or JupyterLab adds when a notebook runs.
RUN_NOTEBOOK_METADATA = ("language_info", "widgets", "toc-autonumbering")
#: Cell metadata that JupyterLab or Jupyter adds when a cell runs or is scrolled (jupyterlab-myst
#: keeps the values of a markdown cell's inline {eval} expressions in "user_expressions").
RUN_CELL_METADATA = ("execution", "ExecuteTime", "collapsed", "scrolled", "trusted", "autoscroll",
                     "user_expressions")
#: Where ``--install-config`` writes the server configuration, under the environment's prefix.
CONFIG_NAME = "etc/jupyter/jupyter_server_config.d/benign-attention.json"
HOOK_MODULE = "benign_attention._jupyter_hooks"  # (not __name__: that is __main__ under -m)
#: The configuration itself: enable this module as a server extension.
CONFIG = {"ServerApp": {"jpserver_extensions": {HOOK_MODULE: True}}}


def is_paired_chapter(nb) -> bool:
    """Whether ``nb`` (a notebook dict) is paired by jupytext with a MyST Markdown file."""
    formats = (nb.get("metadata") or {}).get("jupytext", {}).get("formats", "")
    if isinstance(formats, (list, tuple)):
        formats = ",".join(map(str, formats))
    return isinstance(formats, str) and "md:myst" in formats.split(",")


def clear_run_state(nb) -> bool:
    """Remove outputs, execution counts and run metadata from ``nb`` in place; True if it changed."""
    changed = False
    meta = nb.get("metadata")
    if isinstance(meta, dict):
        for key in RUN_NOTEBOOK_METADATA:
            if key in meta:
                del meta[key]
                changed = True
    for cell in nb.get("cells", []):
        cell_meta = cell.get("metadata")
        if isinstance(cell_meta, dict):
            for key in RUN_CELL_METADATA:
                if key in cell_meta:
                    del cell_meta[key]
                    changed = True
            jupyter = cell_meta.get("jupyter")
            if isinstance(jupyter, dict) and jupyter.pop("outputs_hidden", None) is not None:
                changed = True
                if not jupyter:
                    del cell_meta["jupyter"]
        if cell.get("cell_type") == "code":
            if cell.get("outputs"):
                cell["outputs"] = []
                changed = True
            if cell.get("execution_count") is not None:
                cell["execution_count"] = None
                changed = True
    return changed


def pre_save_hook(model, path=None, contents_manager=None, **kwargs):
    """Jupyter server pre-save hook: clear the run state of paired chapter notebooks."""
    if model.get("type") != "notebook" or not isinstance(model.get("content"), dict):
        return
    if is_paired_chapter(model["content"]):
        clear_run_state(model["content"])


def _jupyter_server_extension_points():
    """Jupyter server extension entry point (this module)."""
    return [{"module": HOOK_MODULE}]


def _load_jupyter_server_extension(serverapp):
    """Register :func:`pre_save_hook` with the server's contents manager (jupytext's included)."""
    serverapp.contents_manager.register_pre_save_hook(pre_save_hook)
    # Server extensions load in name order, so jupytext's, loaded after this one, replaces the
    # contents manager with one built from the server's configuration: hand the hook to that one
    # through the configuration (each manager then runs it exactly once).
    section = serverapp.config.ContentsManager
    if "pre_save_hook" not in section:
        section.pre_save_hook = f"{HOOK_MODULE}.pre_save_hook"
    serverapp.log.info("benign_attention: paired chapter notebooks are saved without outputs")


def install_config(prefix: str | Path | None = None) -> Path:
    """Write the server configuration that enables this extension in the environment at
    ``prefix`` (default: the running Python's ``sys.prefix``); returns the file written."""
    target = Path(prefix or sys.prefix) / CONFIG_NAME
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(CONFIG, indent=2) + "\n", encoding="utf-8")
    return target


def clear_files(paths) -> list[str]:
    """Clear the run state of each paired chapter notebook in ``paths`` on disk (written back
    with nbformat only when something changed); returns the paths changed."""
    import nbformat

    changed = []
    for path in paths:
        nb = nbformat.read(path, as_version=nbformat.NO_CONVERT)
        if is_paired_chapter(nb) and clear_run_state(nb):
            nbformat.write(nb, path)
            changed.append(str(path))
    return changed


def main(argv=None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["--install-config"]:
        print(f"pre-save hook enabled: {install_config()}")
        return 0
    if not args or any(a.startswith("-") for a in args):
        print("usage: python -m benign_attention._jupyter_hooks --install-config | NOTEBOOK.ipynb ...",
              file=sys.stderr)
        return 2
    for path in clear_files(args):
        print(f"cleared outputs: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
