"""The chapters as the book build executed them (``_build/jupyter_execute``): every figure was
published as an image, and none drew a warning from the package's figure checks
(:func:`benign_attention.display.figure_problems`: text too small, legend over data).

Runs in the browser stage of ``make test``, after the book build."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from .harness import HTML

pytestmark = pytest.mark.browser

EXECUTED = HTML.parent / "jupyter_execute"


def _notebooks():
    return sorted(EXECUTED.rglob("[0-9]*.ipynb")) if EXECUTED.exists() else []


def test_chapters_were_executed():
    assert len(_notebooks()) >= 9, f"no executed chapters under {EXECUTED}: run the book build"


@pytest.mark.parametrize("path", _notebooks(), ids=lambda p: p.stem)
def test_figures_published_and_clean(path):
    nb = json.loads(path.read_text())
    problems, images, captions = [], 0, 0
    for k, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        outputs = cell.get("outputs", [])
        if "figure" in cell.get("metadata", {}).get("mystnb", {}):
            captions += 1
            shown = sum("image/png" in o.get("data", {}) or "ba-twin" in "".join(o.get("data", {}).get(
                "text/html", "")) for o in outputs)
            if shown != 1:
                problems.append(f"cell {k}: a captioned figure cell with {shown} images (want exactly 1)")
        for out in outputs:
            data = out.get("data", {})
            text = "".join(out.get("text", "")) + "".join(data.get("text/plain", ""))
            if "<Figure size" in text:
                problems.append(f"cell {k}: a figure printed as text: {text.strip()[:80]}")
            if "FigureWarning" in text:
                problems.append(f"cell {k}: {text.strip()[:400]}")
            images += "image/png" in data or "ba-twin" in "".join(data.get("text/html", ""))
    assert not problems, "\n".join(problems)
    assert images >= captions, f"{captions} captioned figure cells but only {images} image outputs"
