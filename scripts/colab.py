"""Write ``colab/NN_name.ipynb``: each chapter as a notebook that Google Colab reads well.

Colab renders plain Markdown and ``$math$`` but no MyST, so the chapters' directives and roles
would show as code there. From the same source, ``book/NN_name.md`` (read with jupytext), this
writes a notebook in which

- code cells are unchanged (tags and metadata kept); ``remove-cell`` cells are dropped, except the
  Colab install cell, which stays first; a captioned figure is followed by its caption;
- ``prf`` directives become a bold lead-in with the number the book gives them (sphinx-proof counts
  each type across the whole book in the order of ``_toc.yml``), e.g. **Proposition 3 (Loss floor).**;
  proofs **Proof.** ... ∎; exercises **Exercise (title).**; a ``{solution}`` is folded in
  ``<details>``, and a ``solution-start``/``solution-end`` pair, which spans code cells, becomes a
  bold **Solution.** before them; an admonition a block quote with its title in bold; ``{math}``
  and ``literalinclude`` plain ``$$`` math and a fenced code block;
- roles become text: ``{ref}``/``{doc}`` the title of the target (a link when ``_config.yml`` gives
  the book's address as ``html.baseurl``), ``{prf:ref}`` e.g. "Proposition 3", ``{numref}`` "Fig. 4",
  ``{eq}`` "(5)", ``{cite}`` "(Author and Author, year)" from ``references.bib``, ``{py:*}`` the
  name in code font; ``(label)=`` targets and equation labels are removed;
- a markdown cell with inline expressions (``{eval}`f"{G.name:.2f}"```) becomes, from its first to
  its last paragraph with one, a hidden-code Colab form cell that shows that text with
  ``IPython.display.Markdown`` and an f-string, so after *Run all* it quotes the numbers this kernel
  computed; the rest of the cell stays Markdown.

The notebooks carry no outputs, timestamps or tool versions: the same chapters always give the
same bytes. ``make sync`` runs this; ``tests/test_colab.py`` fails when ``colab/`` is stale.

Usage::

    python scripts/colab.py          # write colab/*.ipynb
    python scripts/colab.py --check  # exit 1 if colab/ differs from what the chapters give
"""
from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import re
import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import jupytext
import yaml

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
OUT = ROOT / "colab"
CHAPTER = re.compile(r"^(\d\d[a-z]?|A\d)_\w+$")   # book/NN_name.md (07b_... too), appendices A1_...

_spec = importlib.util.spec_from_file_location("_lock", Path(__file__).with_name("lock.py"))
lock = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lock)


# --------------------------------------------------------------------------------------------
# Where the notebooks live: the release tag the chapters' install cell uses (scripts/lock.py)
# --------------------------------------------------------------------------------------------

def release_tag() -> str:
    return lock.release_tag()


def colab_url(name: str) -> str:
    """Colab's address of ``colab/<name>.ipynb`` at the book's release tag."""
    repo = lock.repository_url().removeprefix("https://github.com/")
    return f"https://colab.research.google.com/github/{repo}/blob/{release_tag()}/colab/{name}.ipynb"


# --------------------------------------------------------------------------------------------
# What the book numbers and titles: one pass over every page in the order of _toc.yml
# --------------------------------------------------------------------------------------------

FENCE = re.compile(r"^(?P<ind>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
DIRECTIVE = re.compile(r"^\{(?P<name>[\w:-]+)\}\s*(?P<arg>.*)$")
TARGET = re.compile(r"^\s*\((?P<label>[\w.:-]+)\)=\s*$")
EQ_LABEL = re.compile(r"^(?P<head>\s*\$\$)\s*\((?P<label>[\w.:-]+)\)\s*$")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*$")
PRF_TYPES = {"axiom", "theorem", "lemma", "algorithm", "definition", "remark", "conjecture",
             "corollary", "criterion", "example", "property", "observation", "proposition",
             "assumption", "notation"}


@dataclass
class Target:
    kind: str            # section, doc, prf, equation, figure, exercise
    doc: str             # book/NN_name
    title: str = ""
    number: int | None = None
    prf_type: str = ""


def toc_docs() -> list[str]:
    """Pages in the order Sphinx numbers them (root first, then the toctree)."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    docs = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                docs.append(entry["file"])
            walk(entry.get("sections"))

    walk(toc.get("chapters"))
    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    return [str(Path(d).with_suffix("")) for d in docs]


def _options(body: list[str]) -> tuple[dict, list[str]]:
    """A directive's options (``:key: value`` lines or a ``---`` YAML block) and its content."""
    if body and body[0].strip() == "---":
        end = body.index("---", 1) if "---" in body[1:] else 0
        return yaml.safe_load("\n".join(body[1:end])) or {}, body[end + 1:]
    opts, i = {}, 0
    while i < len(body) and (m := re.match(r"^:([\w-]+):\s*(.*)$", body[i].strip())):
        opts[m.group(1)] = m.group(2)
        i += 1
    return opts, body[i:]


def _blocks(text: str):
    """Split Markdown into ("text", lines) runs and ("fence", ind, info, body lines) blocks."""
    lines, i, run = text.split("\n"), 0, []
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            run.append(lines[i])
            i += 1
            continue
        fence, ind = m.group("fence"), m.group("ind")
        close = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        j = i + 1
        while j < len(lines) and not close.match(lines[j]):
            j += 1
        if run:
            yield ("text", run)
            run = []
        body = [ln[len(ind):] if ln.startswith(ind) else ln.lstrip() for ln in lines[i + 1:j]]
        yield ("fence", ind, m.group("info").strip(), body)
        i = j + 1
    if run:
        yield ("text", run)


class Book:
    """Labels, titles and numbers of the whole book, as Sphinx would give them."""

    def __init__(self, root: Path = ROOT):
        self.root = root
        self.config = yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8"))
        self.targets: dict[str, Target] = {}
        self.counters: dict[str, int] = {}
        self.notebooks = {}                                 # doc -> the page read by jupytext
        for doc in toc_docs():
            path = root / f"{doc}.md"
            if path.exists():
                self.notebooks[doc] = jupytext.read(path, fmt="md:myst")
                self._scan(doc, self.notebooks[doc])

    def _count(self, kind: str) -> int:
        self.counters[kind] = self.counters.get(kind, 0) + 1
        return self.counters[kind]

    def _scan(self, doc: str, nb) -> None:
        pending = None                                      # a (label)= waiting for its heading
        for cell in nb.cells:
            if cell.cell_type == "code":
                fig = (cell.metadata.get("mystnb") or {}).get("figure") or {}
                shown = "remove-cell" not in cell.metadata.get("tags", [])
                if fig.get("name") and fig.get("caption") and shown:
                    self.targets[fig["name"]] = Target("figure", doc, fig["caption"], self._count("figure"))
                continue
            if cell.cell_type != "markdown":
                continue
            pending = self._scan_text(doc, cell.source, pending)

    def _scan_text(self, doc: str, text: str, pending: str | None) -> str | None:
        for block in _blocks(text):
            if block[0] == "fence":
                _, _, info, body = block
                d = DIRECTIVE.match(info)
                if not d:
                    continue
                name, arg = d.group("name"), d.group("arg").strip()
                opts, content = _options(body)
                label = opts.get("label")
                if name.startswith("prf:") and name[4:] in PRF_TYPES:
                    numbered = "nonumber" not in opts     # titled or not
                    typ = name[4:]
                    number = self._count(f"prf:{typ}") if numbered else None
                    if label:
                        self.targets[label] = Target("prf", doc, arg, number, typ)
                elif name == "math" and label:
                    self.targets[label] = Target("equation", doc, "", self._count("equation"))
                elif name == "exercise" and label:
                    self.targets[label] = Target("exercise", doc, arg)
                elif name == "figure" and opts.get("name"):
                    raise ValueError(f"{doc}: {{figure}} directives are not numbered here yet")
                pending = self._scan_text(doc, "\n".join(content), pending) if content else pending
                continue
            for line in block[1]:
                if m := TARGET.match(line):
                    pending = m.group("label")
                elif m := EQ_LABEL.match(line):
                    self.targets[m.group("label")] = Target("equation", doc, "", self._count("equation"))
                elif m := HEADING.match(line):
                    if len(m.group(1)) == 1 and doc not in self.targets:
                        self.targets[doc] = Target("doc", doc, m.group(2))
                    if pending:
                        self.targets[pending] = Target("section", doc, m.group(2))
                        pending = None
        return pending

    @cached_property
    def bib(self) -> dict[str, dict]:
        """``{key: {"authors": [...], "year": ..., "url": ...}}`` from references.bib."""
        entries = {}
        text = (self.root / "references.bib").read_text(encoding="utf-8")
        for m in re.finditer(r"@\w+\{([^,\s]+),(.*?)\n\}", text, re.S):
            fields = dict((k.lower(), re.sub(r"[{}]", "", v).strip()) for k, v in
                          re.findall(r"(\w+)\s*=\s*\{((?:[^{}]|\{[^{}]*\})*)\}", m.group(2)))
            authors = [a.strip() for a in re.split(r"\s+and\s+", fields.get("author", "")) if a.strip()]
            entries[m.group(1)] = {"authors": authors, "year": fields.get("year", ""),
                                   "url": fields.get("url")}
        return entries

    def page_url(self, doc: str, anchor: str = "") -> str | None:
        base = (self.config.get("html") or {}).get("baseurl")
        if not base:
            return None
        return f"{base.rstrip('/')}/{doc}.html" + (f"#{anchor}" if anchor else "")


def _surname(author: str) -> str:
    return author.split(",")[0].strip() if "," in author else author.split()[-1]


def _authors(names: list[str]) -> str:
    s = [_surname(a) for a in names]
    return s[0] if len(s) == 1 else f"{s[0]} and {s[1]}" if len(s) == 2 else f"{s[0]} et al."


# --------------------------------------------------------------------------------------------
# MyST -> plain Markdown
# --------------------------------------------------------------------------------------------

INLINE = re.compile(r"\{(?P<role>[a-z][\w:.-]*)\}`(?P<body>[^`]+)`|(?P<code>`+)[\s\S]*?(?P=code)")
EXPLICIT = re.compile(r"^(?P<text>[\s\S]*?)\s*<(?P<target>[^<>]+)>$")
PARAGRAPH_START = re.compile(r"^(?![ \t]*(\$\$|[-*+] |\d+[.)] |>|\||#|<|`{3}|~{3}))\S")


@dataclass
class Converter:
    book: Book
    doc: str

    def _link(self, text: str, doc: str, anchor: str = "") -> str:
        url = self.book.page_url(doc, anchor)
        return f"[{text}]({url})" if url else text

    def _title(self, title: str, doc: str, anchor: str = "") -> str:
        """A page's or section's title where the book shows it as a link: in italics."""
        shown = title if "*" in title or "_" in title else f"*{title}*"
        return self._link(shown, doc, anchor)

    def _target(self, label: str, role: str) -> Target:
        if label not in self.book.targets:
            raise KeyError(f"{self.doc}: {{{role}}}`{label}` names no target the book defines")
        return self.book.targets[label]

    def role(self, m: re.Match) -> str:
        if m.group("code"):
            return m.group(0)
        role, body = m.group("role"), m.group("body")
        explicit = EXPLICIT.match(body)
        text, label = None, body.strip()
        if explicit:                                         # {role}`text <target>`
            text, label = explicit.group("text"), explicit.group("target").strip()
        if role == "eval":
            return m.group(0)                                # the form cell evaluates it
        if role in ("py:func", "py:meth", "py:class", "py:data", "py:mod", "py:attr", "py:obj", "py:exc"):
            if text is None:
                text = label.split(".")[-1] if label.startswith("~") else label.lstrip("~")
                if role in ("py:func", "py:meth"):
                    text += "()"
            return f"`{text}`"
        if role == "doc":
            doc = str((Path(self.doc).parent / label).as_posix()) if not label.startswith("/") else label[1:]
            return self._title(text or self._target(doc, role).title, doc)
        if role == "ref":
            t = self._target(label, role)
            return self._title(text or t.title, t.doc, label)
        if role == "prf:ref":
            t = self._target(label, role)
            name = t.prf_type.title() + (f" {t.number}" if t.number else "")
            return self._link(text or name, t.doc, label)
        if role == "numref":
            t = self._target(label, role)
            if t.kind != "figure" or t.number is None:
                raise ValueError(f"{self.doc}: {{numref}}`{body}`: only numbered figures are supported")
            shown = (text.replace("%s", str(t.number)).replace("{number}", str(t.number))
                     if text else f"Fig. {t.number}")
            return self._link(shown, t.doc, label)
        if role == "eq":
            t = self._target(label, role)
            return self._link(text or f"({t.number})", t.doc, f"equation-{label}")
        if role in ("cite", "cite:p", "cite:t", "cite:ps", "cite:ts"):
            parts = []
            for key in (k.strip() for k in label.split(",")):
                entry = self.book.bib.get(key)
                if entry is None:
                    raise KeyError(f"{self.doc}: {{cite}}`{key}` is not in references.bib")
                who, year = _authors(entry["authors"]), entry["year"]
                cite = f"{who} ({year})" if role.startswith("cite:t") else f"{who}, {year}"
                parts.append(f"[{cite}]({entry['url']})" if entry["url"] else cite)
            return "; ".join(parts) if role.startswith("cite:t") else f"({'; '.join(parts)})"
        raise ValueError(f"{self.doc}: the role {{{role}}} has no plain-Markdown form here")

    def inline(self, text: str) -> str:
        return INLINE.sub(self.role, text)

    def markdown(self, text: str) -> str:
        """A markdown cell's MyST as plain Markdown (``{eval}`` roles left for the form cell)."""
        out: list[str] = []
        for block in _blocks(text):
            if block[0] == "text":
                kept = []
                for line in block[1]:
                    if TARGET.match(line):
                        continue
                    kept.append(EQ_LABEL.sub(r"\g<head>", line))
                out.append(self.inline("\n".join(kept)))
                continue
            _, ind, info, body = block
            d = DIRECTIVE.match(info)
            if d:
                rendered = self.directive(d.group("name"), d.group("arg").strip(), *_options(body))
            else:
                rendered = "\n".join([f"```{info}", *body, "```"])
            out.append("\n".join(ind + ln if ln.strip() else ln for ln in rendered.split("\n")))
        text = "\n".join(out)
        return re.sub(r"\n{3,}", "\n\n", text).strip("\n")

    def directive(self, name: str, arg: str, opts: dict, body: list[str]) -> str:
        content = self.markdown("\n".join(body)) if body else ""
        title = self.inline(arg)
        if name.startswith("prf:") and name[4:] in PRF_TYPES:
            t = self.book.targets.get(opts.get("label", ""))
            number = f" {t.number}" if t and t.number else ""
            return _lead(f"**{name[4:].title()}{number}" + (f" ({title}).**" if title else ".**"), content)
        if name == "prf:proof":
            return _lead("**Proof.**", content) + _qed(content)
        if name == "exercise":
            return _lead("**Exercise" + (f" ({title}).**" if title else ".**"), content)
        if name == "solution":
            return f"<details>\n<summary>Solution</summary>\n\n{content}\n\n</details>"
        if name == "solution-start":
            return "**Solution.**"
        if name == "solution-end":
            return ""
        if name in ("admonition", "note", "tip", "warning", "important", "caution", "attention",
                    "hint", "seealso", "danger", "error"):
            head = title if name == "admonition" else (title or name.title())
            quoted = "\n".join(f"> {ln}" if ln else ">" for ln in content.split("\n"))
            return f"> **{head}**\n>\n{quoted}"
        if name == "math":
            return "$$\n" + "\n".join(body).strip("\n") + "\n$$"
        if name == "literalinclude":
            return "```" + opts.get("language", "python") + "\n" + self.include(arg, opts) + "\n```"
        raise ValueError(f"{self.doc}: the directive {{{name}}} has no plain-Markdown form here")

    def include(self, arg: str, opts: dict) -> str:
        path = (self.book.root / Path(self.doc).parent / arg).resolve()
        source = path.read_text(encoding="utf-8")
        lines = source.split("\n")
        if "pyobject" in opts:
            obj = None
            for node in ast.walk(ast.parse(source)):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and \
                        node.name == opts["pyobject"].split(".")[-1]:
                    obj = node
                    break
            if obj is None:
                raise ValueError(f"{self.doc}: {arg} has no {opts['pyobject']}")
            start = min([obj.lineno, *(d.lineno for d in obj.decorator_list)])
            lines = lines[start - 1:obj.end_lineno]
        if "lines" in opts:
            picked = []
            for part in opts["lines"].split(","):
                a, _, b = part.strip().partition("-")
                picked += lines[int(a) - 1:int(b or a)] if b or a else []
            lines = picked
        return "\n".join(lines).rstrip("\n")


def _lead(lead: str, content: str) -> str:
    """Put a bold lead-in before a block's first paragraph (on its own line before math or lists)."""
    if content and PARAGRAPH_START.match(content):
        return f"{lead} {content}"
    return f"{lead}\n\n{content}" if content else lead


def _qed(content: str) -> str:
    last = content.rstrip().split("\n")[-1] if content.strip() else ""
    return " ∎" if last and PARAGRAPH_START.match(last) else "\n\n∎"


# --------------------------------------------------------------------------------------------
# Cells with numbers in the prose -> Colab form cells
# --------------------------------------------------------------------------------------------

EVAL = re.compile(r'\{eval\}`(?P<expr>[^`]+)`')
EVAL_FORMS = re.compile(r'^(?:f"\{(?P<fexpr>G\.[A-Za-z_]\w*(?::[^{}"]+)?)\}"|(?P<bare>G\.[A-Za-z_]\w*))$')


def _paragraphs(text: str) -> list[str]:
    """Top-level Markdown blocks: paragraphs, whole lists, whole ``$$`` or fenced blocks."""
    chunks: list[str] = []
    open_math = open_fence = False
    for piece in text.split("\n\n"):
        continues = chunks and (open_math or open_fence or piece[:1] in (" ", "\t"))
        if continues:
            chunks[-1] += "\n\n" + piece
        else:
            chunks.append(piece)
        open_math ^= piece.count("$$") % 2 == 1
        open_fence ^= len(re.findall(r"^\s*```", piece, re.M)) % 2 == 1
    return chunks


def _fstring(markdown: str) -> str:
    """The paragraph as the body of an ``rf\"\"\"...\"\"\"`` string with the expressions in it."""
    out, pos = [], 0
    for m in EVAL.finditer(markdown):
        out.append(markdown[pos:m.start()].replace("{", "{{").replace("}", "}}"))
        form = EVAL_FORMS.match(m.group("expr").strip())
        if not form:
            raise ValueError(f"{{eval}}`{m.group('expr')}`: only f\"{{G.name:format}}\" or G.name")
        out.append("{" + (form.group("fexpr") or form.group("bare")) + "}")
        pos = m.end()
    out.append(markdown[pos:].replace("{", "{{").replace("}", "}}"))
    body = "".join(out)
    if '"""' in body or body.endswith("\\"):
        raise ValueError("a paragraph with numbers cannot be written as a raw f-string")
    return body


def _form_title(markdown: str) -> str:
    """The first words of the text, up to its first formula or number (Colab shows the title)."""
    def words(text):
        text = re.sub(r"\]\([^)]*\)|\*+|`|[\[\]]|<[^>]*>|(?<!\w)_|_(?!\w)|^\s*[-+>] ", "", text)
        return text.split()[:8]

    title = words(re.split(r"\$|\{eval\}", markdown)[0])
    if len(title) < 3:
        title = words(re.sub(r"\$[^$]*\$|\{eval\}`[^`]*`", "…", markdown))
    return " ".join(title).rstrip(",.;:( ") + " …"


def form_cell(markdown: str, later: bool = False) -> dict:
    """A hidden-code cell that shows ``markdown`` with the numbers glued in this kernel.

    ``later``: some of them are glued only by a cell further down (the book glues every number
    before it renders a page; a notebook runs in order). The cell then shows a placeholder and
    fills the paragraph in, in place, after the first cell that makes every number available, so
    *Run all* neither stops nor moves the text away from where the book has it."""
    head = (f"#@title {_form_title(markdown)} (text with this run's numbers)\n"
            "from IPython.display import Markdown, display\n"
            "from benign_attention.display import G\n")
    text = f'rf"""{_fstring(markdown)}"""'
    if not later:
        return _code(head + f"display(Markdown({text}))", metadata={"cellView": "form"})
    source = head + (
        "\n"
        "def text():\n"
        f"    return {text}\n"
        "\n"
        "\n"
        "def show_when_glued(text):\n"
        "    \"\"\"Some numbers are computed further down: fill the paragraph in once they are.\"\"\"\n"
        "    shown = display(Markdown(\"*(This paragraph shows when the cells below have run.)*\"),\n"
        "                    display_id=True)\n"
        "\n"
        "    def fill_in(result=None):\n"
        "        try:\n"
        "            shown.update(Markdown(text()))\n"
        "        except AttributeError:  # not glued yet\n"
        "            return\n"
        "        get_ipython().events.unregister(\"post_run_cell\", fill_in)\n"
        "\n"
        "    get_ipython().events.register(\"post_run_cell\", fill_in)\n"
        "\n"
        "\n"
        "show_when_glued(text)")
    return _code(source, metadata={"cellView": "form"})


def split_eval(markdown: str, later: set[str] = frozenset()) -> list[dict]:
    """A converted markdown cell as cells: Markdown, then one form cell from the first paragraph
    with an expression to the last one (a heading in between starts a new cell), then Markdown."""
    chunks = _paragraphs(markdown)
    cells, run, run_is_eval = [], [], False
    has = [bool(EVAL.search(c)) for c in chunks]
    last = max((i for i, h in enumerate(has) if h), default=-1)
    for i, chunk in enumerate(chunks):
        is_eval = has[i] or (run_is_eval and i < last and not HEADING.match(chunk))
        if run and is_eval != run_is_eval:
            cells.append(_cell("\n\n".join(run), run_is_eval, later))
            run = []
        run.append(chunk)
        run_is_eval = is_eval
    if run:
        cells.append(_cell("\n\n".join(run), run_is_eval, later))
    return cells


def _cell(text: str, is_eval: bool, later: set[str]) -> dict:
    if not is_eval:
        return _markdown(text)
    names = {m.group("fexpr") or m.group("bare") for m in
             (EVAL_FORMS.match(e.strip()) for e in re.findall(r"\{eval\}`([^`]+)`", text)) if m}
    return form_cell(text, later=any(n.split(":")[0][2:] in later for n in names))


# --------------------------------------------------------------------------------------------
# One chapter -> one notebook
# --------------------------------------------------------------------------------------------

def _markdown(source: str) -> dict:
    return {"cell_type": "markdown", "metadata": {}, "source": source}


def _raw(source: str) -> dict:
    return {"cell_type": "raw", "metadata": {}, "source": source}


def _code(source: str, metadata: dict | None = None) -> dict:
    return {"cell_type": "code", "execution_count": None, "metadata": metadata or {},
            "outputs": [], "source": source}


def _is_install_cell(cell) -> bool:
    return cell.cell_type == "code" and "google.colab" in cell.source


def _kept(cell, first_install: bool) -> bool:
    """Code cells Colab runs: all but ``remove-cell`` ones; of those, the first install cell and
    the ones that glue numbers the prose shows are kept."""
    if "remove-cell" not in cell.metadata.get("tags", []):
        return True
    return first_install or "glue(" in cell.source


def _names(code: str) -> set[str]:
    """Names a code cell may glue: its string literals and keyword arguments (a superset)."""
    found = re.findall(r"[\"'](\w+)[\"']|\b(\w+)\s*=(?!=)", code)
    return {literal or keyword for literal, keyword in found}


def convert(name: str, book: Book | None = None) -> str:
    """``colab/<name>.ipynb``'s text for ``book/<name>.md``.

    A paragraph whose numbers are glued only by a *later* code cell gets a form cell that fills
    it in once they are (:func:`form_cell`)."""
    book = book or Book()
    doc = f"book/{name}"
    nb = book.notebooks.get(doc) or jupytext.read(ROOT / f"{doc}.md", fmt="md:myst")
    conv = Converter(book, doc)
    header = (f"*This notebook is generated from [`book/{name}.md`]({lock.repository_url()}/blob/"
              f"{release_tag()}/book/{name}.md) by `scripts/colab.py` (`make sync`); edit that file, "
              f"not this one. The book, with every chapter as a notebook, lives at "
              f"<{lock.repository_url()}>. Run the cells in order (Runtime → Run all): the first one "
              "installs the book's package.*")
    install = next((c for c in nb.cells if _is_install_cell(c)), None)
    if install is None:
        raise ValueError(f"{doc} has no Colab install cell")
    code = [c for c in nb.cells if c.cell_type == "code" and c is not install and _kept(c, False)]
    later = [set().union(*(_names(c.source) for c in code[k:])) for k in range(len(code) + 1)]
    cells = [_markdown(header), _code(install.source, metadata=dict(install.metadata))]
    earlier: set[str] = set()               # names the code cells so far may glue
    n_code = 0
    for cell in nb.cells:
        if cell.cell_type == "code":
            if cell is install or not _kept(cell, False):
                continue
            n_code += 1
            earlier |= _names(cell.source)
            cells.append(_code(cell.source, metadata=dict(cell.metadata)))
            fig = (cell.metadata.get("mystnb") or {}).get("figure") or {}
            if fig.get("caption"):                           # the caption follows its figure
                t = book.targets.get(fig.get("name", ""))
                lead = f"**Fig. {t.number}.**" if t and t.number else "**Figure.**"
                cells.append(_markdown(_lead(lead, conv.markdown(" ".join(fig["caption"].split("\n"))))))
        elif cell.cell_type == "markdown":
            text = conv.markdown(cell.source)
            if EVAL.search(text):
                cells.extend(split_eval(text, later[n_code] - earlier))
            elif text.strip():
                cells.append(_markdown(text))
        else:
            cells.append(_raw(cell.source))
    for i, cell in enumerate(cells):
        cell["id"] = f"c{i:03d}"
        # one string per line, as Jupyter writes notebooks
        cell["source"] = cell["source"].splitlines(keepends=True)
    notebook = {"cells": cells, "nbformat": 4, "nbformat_minor": 5, "metadata": {
        "colab": {"provenance": [], "toc_visible": True},
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }}
    return json.dumps(notebook, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def chapters(root: Path = ROOT) -> list[str]:
    return sorted(p.stem for p in (root / "book").glob("*.md") if CHAPTER.match(p.stem))


def build(book: Book | None = None) -> dict[str, str]:
    """``{file name: text}`` of every Colab notebook."""
    book = book or Book()
    return {f"{name}.ipynb": convert(name, book) for name in chapters()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="only check that colab/ is up to date")
    args = ap.parse_args(argv)
    notebooks = build()
    stale = [n for n, text in notebooks.items()
             if not (OUT / n).exists() or (OUT / n).read_text(encoding="utf-8") != text]
    extra = sorted(p.name for p in OUT.glob("*.ipynb") if p.name not in notebooks) if OUT.exists() else []
    if args.check:
        for n in stale + extra:
            print(f"colab/{n} is stale: run make sync")
        return 1 if stale or extra else 0
    OUT.mkdir(exist_ok=True)
    for n in stale:
        (OUT / n).write_text(notebooks[n], encoding="utf-8")
    for n in extra:
        (OUT / n).unlink()
    print(f"colab/: {len(notebooks)} notebooks, {len(stale)} rewritten, {len(extra)} removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
