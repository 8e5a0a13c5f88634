"""The display convention (benign_attention.display): every figure is one high-DPI PNG output,
whatever matplotlib backend the kernel runs."""
import ast
import base64
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from benign_attention import display

BOOK = Path(__file__).resolve().parents[1] / "book"

CELL = """
import matplotlib.pyplot as plt
from benign_attention.display import show
fig, ax = plt.subplots(figsize=(4, 3))
ax.plot([0, 1], [0, 1]); ax.set_title("a line")
plt.close(fig)
show(fig)
"""


@pytest.mark.parametrize("backend", ["Agg", "module://matplotlib_inline.backend_inline", None])
def test_show_emits_one_hidpi_png_under_any_backend(backend, monkeypatch):
    if backend is None:
        monkeypatch.delenv("MPLBACKEND", raising=False)
    else:
        monkeypatch.setenv("MPLBACKEND", backend)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(CELL)])
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    outputs = nb.cells[0].outputs
    pngs = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(pngs) == 1, outputs
    assert not any("Figure size" in o.get("data", {}).get("text/plain", "") for o in outputs)
    data = base64.b64decode(pngs[0]["data"]["image/png"])
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    meta = pngs[0]["metadata"]["image/png"]
    assert (meta["width"], meta["height"]) == (400, 300)
    assert (width, height) == (400 * display.PIXEL_RATIO, 300 * display.PIXEL_RATIO)
    assert display.PIXEL_RATIO >= 2


def test_png_size_and_bad_input():
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(2, 1))
    data, css = display.png(fig)
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and css == (200, 100)
    assert not plt.fignum_exists(fig.number)
    with pytest.raises(ValueError, match="pixel_ratio"):
        display.png(plt.figure(), pixel_ratio=10)
    with pytest.raises(TypeError, match="matplotlib Figure"):
        display.show("not a figure")
    with pytest.raises(ValueError, match="glue name"):
        display.glue("", 1)


def test_every_chapter_figure_cell_uses_show():
    """A captioned figure cell (mystnb.figure metadata) must end in show(...), the convention."""
    found = 0
    for md in sorted(BOOK.glob("[0-9]*.md")):
        for cell in re.findall(r"```\{code-cell\} ipython3\n(.*?)```", md.read_text(), re.S):
            if not cell.startswith("---\n") or "figure:" not in cell.split("\n---\n", 1)[0]:
                continue
            code = cell.split("\n---\n", 1)[1].strip()
            if "static=True" in code or code.endswith("twin"):
                continue  # static twins are HTML, not figures
            found += 1
            last = ast.parse(code).body[-1]
            assert (isinstance(last, ast.Expr) and isinstance(last.value, ast.Call)
                    and getattr(last.value.func, "id", None) == "show"), (md.name, code[-200:])
    assert found >= 18
