"""Small Sphinx fix-ups for the book's HTML (loaded from _config.yml: sphinx.local_extensions).

sphinx-thebe adds its inline configuration script (``const THEBE_JS_URL = ...``) both to Sphinx's
registry and to the running HTML builder (once with filename None, once with ""), so every
page carried it twice and the browser raised
"Identifier 'THEBE_JS_URL' has already been declared". Drop exact duplicate scripts per page.
"""
from __future__ import annotations


def _dedupe_scripts(app, pagename, templatename, context, doctree):
    seen, unique = set(), []
    for js in context.get("script_files", []):
        key = (
            str(getattr(js, "filename", js) or ""),  # inline scripts: None or ""
            tuple(sorted((k, str(v)) for k, v in getattr(js, "attributes", {}).items())),
        )
        if key not in seen:
            seen.add(key)
            unique.append(js)
    context["script_files"] = unique


def setup(app):
    app.connect("html-page-context", _dedupe_scripts, priority=10_000)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
