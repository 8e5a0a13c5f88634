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
    assert meta == {"width": 400}
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


def _panels(ncols=2, width=6.0):
    import matplotlib.pyplot as plt

    return plt.subplots(1, ncols, figsize=(width, 2.5), constrained_layout=True)


def test_figure_problems_passes_a_clean_figure():
    import numpy as np

    fig, axes = _panels()
    for ax in axes:
        ax.plot(np.arange(10), np.arange(10), label="rising")
        ax.set(title="short", xlabel="x")
        ax.legend(loc="lower right")
    assert display.figure_problems(fig) == []


@pytest.mark.parametrize("defect, expected", [
    ("legend over a line", "covers data"),
    ("legend over a band", "covers data"),
    ("legend over an image", "covers data"),
    ("tiny text", "smaller than"),
    ("wide figure", "smaller than"),
    ("cut title", "cut off"),
    ("overlapping titles", "overlap"),
])
def test_figure_problems_finds_each_defect(defect, expected):
    import numpy as np

    fig, axes = _panels(ncols=3 if defect == "overlapping titles" else 2,
                        width=12.0 if defect == "wide figure" else 6.0)
    ax = axes[0]
    x = np.linspace(0, 1, 50)
    if defect == "legend over a line":
        ax.plot(x, np.full_like(x, 0.9), label="flat")
        ax.set_ylim(0, 1)
        ax.legend(loc="upper center")
    elif defect == "legend over a band":
        ax.fill_between(x, 0, 1, label="band")
        ax.legend(loc="center")
    elif defect == "legend over an image":
        ax.pcolormesh(np.random.default_rng(0).random((5, 5)))
        ax.plot([0, 1], [0, 1], label="curve")
        ax.legend(loc="upper left")
    elif defect == "tiny text":
        ax.set_title("tiny", fontsize=5)
    elif defect == "wide figure":
        ax.legend(handles=ax.plot(x, x, label="a"), fontsize=7, loc="lower right")
    elif defect == "cut title":
        axes[1].set_title("a title far too long to fit inside its half of a small figure ever")
    elif defect == "overlapping titles":
        for a in axes:
            a.set_title("a long title that runs into the next one")
    problems = display.figure_problems(fig)
    assert any(expected in p for p in problems), problems


def test_glue_fills_G_for_the_prose():
    """The prose reads glued values as G.name (inline expressions); a missing name says why."""
    from benign_attention.display import G, glue

    glue("test_g_value", __import__("numpy").float64(0.25))
    assert G.test_g_value == 0.25 and type(G.test_g_value) is float
    assert f"{G.test_g_value:.1f}" == "0.2"
    with pytest.raises(AttributeError, match="nothing is glued under 'test_g_missing'"):
        G.test_g_missing
    with pytest.raises(AttributeError, match="glue"):
        G.x = 1
    with pytest.raises(ValueError, match="identifier"):
        glue("not-an-identifier", 1)
    assert "test_g_value" in dir(G)
