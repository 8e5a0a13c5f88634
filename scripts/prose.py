"""Reading figures of every chapter (``make prose``): paragraph lengths, numbers per paragraph, shown
against hidden code.

The house targets (README, "Writing"): median paragraph <= 45 words, none over 120, at most three
numbers in a paragraph, and at least as many shown code lines as hidden ones.

What counts:

* A *paragraph* is a run of prose lines in a MyST chapter, outside code cells, display maths, tables
  and headings. The body of a directive (a proposition, a proof, an admonition) is prose; its option
  lines (``:label: ...``) are not. Each list item is a paragraph of its own.
* A *number* is a computed value (an ``{eval}`` role), a numeral in the text (not in a cross-reference
  role, and not the number of a chapter, figure, equation, proposition or similar), or a numeral
  right after a relation sign in inline maths (``$n = 20$`` counts, ``$x_3$`` does not).
* A code line is a non-blank line of a code cell (cell options excluded). It is *hidden* when the cell
  is tagged ``remove-input``, ``remove-cell``, ``hide-input`` or ``hide-cell``.

Usage: ``python scripts/prose.py [book/NN_chapter.md ...]`` (default: every chapter).
"""
from __future__ import annotations

import re
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HIDDEN_TAGS = ("remove-input", "remove-cell", "hide-input", "hide-cell")
TARGETS = {"median_words": 45, "max_words": 120, "max_numbers": 3}

_ROLE = re.compile(r"\{([a-z:]+)\}`[^`]*`")
_MATH = re.compile(r"\$[^$]+\$")
_REF_WORDS = (r"(?:Chapters?|chapters?|Fig(?:ure)?s?\.?|figures?|Eqs?\.?|eqs?\.?|equations?|Propositions?|"
              r"propositions?|Sections?|sections?|Theorems?|Lemmas?|Remarks?|Exercises?|Definitions?|"
              r"Corollar(?:y|ies)|Tables?|Appendix|Step|issue)")
_NUMERAL = re.compile(r"(?<![\w.])(\d[\d,]*(?:\.\d+)?(?:e[-+]?\d+)?)(?![\w])")
_MATH_VALUE = re.compile(r"(?:=|\\approx|<|>|\\le|\\ge|\\leq|\\geq|\\sim)\s*-?\s*\d")


def numbers_in(text: str) -> int:
    """How many numbers a reader meets in ``text`` (see the module docstring)."""
    count = 0
    for m in _ROLE.finditer(text):
        count += m.group(1) == "eval"
    text = _ROLE.sub(" ", text)
    for m in _MATH.finditer(text):
        count += len(_MATH_VALUE.findall(m.group(0)))
    text = _MATH.sub(" ", text)
    text = re.sub(_REF_WORDS + r"\s*\(?\d[\d.]*[a-z]?\)?(?:\s*(?:and|to|-|–)\s*\(?\d[\d.]*\)?)?", " ", text)
    return count + len(_NUMERAL.findall(text))


def parse(md: str):
    """(paragraphs, shown code lines, hidden code lines) of one MyST chapter."""
    lines = md.splitlines()
    if lines and lines[0].strip() == "---":  # front matter
        end = next(i for i in range(1, len(lines)) if lines[i].strip() == "---")
        lines = lines[end + 1:]
    paras, shown, hidden = [], 0, 0
    current: list[str] = []

    def flush():
        if current:
            paras.append(" ".join(current))
            current.clear()

    i = 0
    while i < len(lines):
        line = lines[i]
        s = line.strip()
        fence = re.match(r"^(`{3,}|:{3,})\s*(\{[^}]*\})?", s)
        if fence and s.startswith(("```", ":::")) and len(s) >= 3:
            flush()
            mark, kind = fence.group(1), (fence.group(2) or "")
            j = i + 1
            body = []
            while j < len(lines) and lines[j].strip() != mark:
                body.append(lines[j])
                j += 1
            if kind == "{code-cell}":
                opts = "\n".join(b for b in body if b.startswith(":") or b.strip().startswith("tags"))
                code = [b for b in body if b.strip() and not b.startswith(":")]
                if body and body[0].strip() == "---":  # YAML options block
                    k = next((k for k in range(1, len(body)) if body[k].strip() == "---"), 0)
                    opts += "\n".join(body[:k + 1])
                    code = [b for b in body[k + 1:] if b.strip()]
                n = len(code)
                if any(t in opts for t in HIDDEN_TAGS):
                    hidden += n
                else:
                    shown += n
            elif kind not in ("{math}", "") and not kind.startswith("{code"):
                sub_paras, _, _ = parse("\n".join(b for b in body if not b.startswith(":")))
                paras.extend(sub_paras)
            i = j + 1
            continue
        if s.startswith("$$"):
            flush()
            j = i if s.count("$$") >= 2 and len(s) > 2 else i + 1
            while j < len(lines) and "$$" not in lines[j].strip()[(2 if j == i else 0):]:
                j += 1
            i = j + 1
            continue
        if not s or s.startswith(("#", "|", "(")) and (s.startswith(("#", "|")) or s.endswith(")=")) \
                or s.startswith(("<", "+++", "%")):
            flush()
        elif re.match(r"^([-*+]|\d+\.)\s", s):
            flush()
            current.append(re.sub(r"^([-*+]|\d+\.)\s+", "", s))
        else:
            current.append(s)
        i += 1
    flush()
    return paras, shown, hidden


def words(p: str) -> int:
    """Words of a paragraph, with each role and each inline formula counted as one word."""
    return len(_MATH.sub(" x ", _ROLE.sub(" x ", p)).split())


def chapter_figures(path: Path) -> dict:
    """The reading figures of one chapter (a dict; ``meets`` says whether every target is met)."""
    paras, shown, hidden = parse(path.read_text())
    w = [words(p) for p in paras] or [0]
    nums = [numbers_in(p) for p in paras] or [0]
    fig = {"chapter": path.stem, "paragraphs": len(paras), "median_words": statistics.median(w),
           "max_words": max(w), "over_120": sum(x > TARGETS["max_words"] for x in w),
           "numbers": sum(nums), "over_3_numbers": sum(x > TARGETS["max_numbers"] for x in nums),
           "shown_code": shown, "hidden_code": hidden}
    fig["meets"] = (fig["median_words"] <= TARGETS["median_words"] and fig["over_120"] == 0
                    and fig["over_3_numbers"] == 0 and shown >= hidden)
    return fig


def chapters() -> list[Path]:
    """The book's chapters: the MyST files that are notebooks."""
    return sorted(p for p in (ROOT / "book").glob("*.md") if "\nkernelspec:" in p.read_text()[:2000])


def main(argv: list[str]) -> int:
    paths = [Path(a) for a in argv] or chapters()
    cols = ["chapter", "paragraphs", "median_words", "max_words", "over_120", "numbers", "over_3_numbers",
            "shown_code", "hidden_code", "meets"]
    rows = [chapter_figures(p) for p in paths]
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in cols]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    for r in rows:
        print("  ".join(str(r[c]).ljust(w) for c, w in zip(cols, widths)))
    print(f"\ntargets: median paragraph <= {TARGETS['median_words']} words, none over {TARGETS['max_words']}, "
          f"at most {TARGETS['max_numbers']} numbers in a paragraph, shown code >= hidden code")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
