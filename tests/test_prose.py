"""scripts/prose.py (make prose) counts what it says it counts."""
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("prose", ROOT / "scripts" / "prose.py")
prose = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(prose)

SAMPLE = """---
kernelspec:
  name: python3
---
# Title

(sec-x)=
## A section

One short paragraph with $n = 20$ and {eval}`G.a` and 3.5 percent, see Figure 4 and chapter 7.

- an item with $x_3$ only
- another item, 12 words long, which is a little longer than before

```{code-cell} ipython3
:tags: [remove-input]
a = 1
b = 2
```

```{code-cell} ipython3
c = 3
```

```{prf:proposition} A claim
:label: prop-x

The body is prose with 1, 2, 3 and 4 numbers.
```

$$
x = 5
$$

| a | b |
| 1 | 2 |
"""


def test_prose_counts_paragraphs_numbers_and_code(tmp_path):
    paras, shown, hidden = prose.parse(SAMPLE)
    assert (shown, hidden) == (1, 2)
    assert len(paras) == 4, paras
    assert [prose.numbers_in(p) for p in paras] == [3, 0, 1, 4]
    assert prose.words(paras[0]) == 16
    f = tmp_path / "x.md"
    f.write_text(SAMPLE)
    fig = prose.chapter_figures(f)
    assert fig["over_3_numbers"] == 1 and fig["hidden_code"] == 2 and not fig["meets"]


def test_prose_reads_every_chapter():
    rows = [prose.chapter_figures(p) for p in prose.chapters()]
    assert len(rows) >= 10 and all(r["paragraphs"] > 10 for r in rows)


def test_every_chapter_meets_the_reading_targets():
    """Issue 19's reading targets hold on every chapter and appendix page (make prose shows the figures):
    median paragraph <= 45 words, none over 120, at most three numbers a paragraph, shown code >= hidden."""
    missed = {r["chapter"]: {k: r[k] for k in ("median_words", "max_words", "over_3_numbers", "shown_code",
                                               "hidden_code")}
              for r in map(prose.chapter_figures, prose.chapters()) if not r["meets"]}
    assert not missed, f"chapters missing the reading targets (run make prose): {missed}"
