"""Small Sphinx fix-ups for the book's HTML (loaded from _config.yml: sphinx.local_extensions).

1. sphinx-thebe adds its inline configuration script (``const THEBE_JS_URL = ...``) both to
   Sphinx's registry and to the running HTML builder (once with filename None, once with ""), so
   every page carried it twice and the browser raised "Identifier 'THEBE_JS_URL' has already been
   declared". Exact duplicate scripts are dropped per page.
2. The Jupyter widgets HTML manager (embed-amd.js) defines named AMD modules (@jupyter-widgets/base,
   .../controls, .../html-manager, .../html-manager/dist/libembed-amd) that resolve their bundled
   icon fonts against their RequireJS module URL, by default a folder relative to the page where
   nothing exists (404s on every page with a widget). On those pages, map those module ids to the
   directory embed-amd.js is loaded from (``nb_ipywidgets_js`` in _config.yml) with a global
   ``require`` config object, which require.js reads when it loads.
3. Sphinx adds MathJax only to pages whose own body has math, but a chapter title with math shows in
   the sidebar of every page (and sphinx-proof's generated index lists theorem titles with math), so
   pages without math of their own showed raw ``\\(...\\)``. Load the page assets (MathJax) on
   every page.
4. The widgets HTML manager typesets widget labels with the MathJax 2 API
   (``MathJax.Hub.Queue``); the book uses MathJax 3, so every widget page with math raised
   "Cannot read properties of undefined (reading 'Queue')". A small shim maps that call onto
   MathJax 3's ``typesetPromise``; it is installed at DOMContentLoaded (after the deferred MathJax
   script ran, before the widget manager renders at window load).
5. Layout fixes in CSS, book/_static/bookfixes.css (loaded after every theme stylesheet): figures
   keep their aspect ratio in a narrow column, and long math scrolls with a visible scrollbar
   instead of being cut off. The file explains each rule; tests/browser checks them.
"""
from __future__ import annotations

import json
from pathlib import Path

STATIC = Path(__file__).resolve().parent.parent / "_static"   # book/_static
CSS_FILES = ("bookfixes.css",)

WIDGETS_MODULE_IDS = ("@jupyter-widgets", "@jupyter-widgets/html-manager/dist")

MATHJAX2_HUB_SHIM = """document.addEventListener("DOMContentLoaded", function () {
  var mj = window.MathJax;
  if (!mj || mj.Hub || !mj.startup) return;
  mj.Hub = {Queue: function (cmd) {
    var el = Array.isArray(cmd) ? cmd[2] : undefined;
    mj.startup.promise.then(function () { return mj.typesetPromise(el ? [el] : undefined); })
      .catch(function (err) { console.warn("MathJax typeset failed", err); });
  }};
});"""


def _fix_page_scripts(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files", [])
    embed = [str(js.filename) for js in scripts if str(getattr(js, "filename", "") or "").endswith("/embed-amd.js")]
    if embed:
        dist = embed[0].rsplit("/", 1)[0]
        config = {"paths": {module_id: dist for module_id in WIDGETS_MODULE_IDS}}
        # priority 499: after the theme's scripts, before require.js (myst-nb adds it at 500)
        app.add_js_file(None, body=f"var require = {json.dumps(config)};", priority=499)
        app.add_js_file(None, body=MATHJAX2_HUB_SHIM, priority=499)
        scripts = context.get("script_files", [])
    seen, unique = set(), []
    for js in scripts:
        key = (
            str(getattr(js, "filename", js) or ""),  # inline scripts: None or ""
            tuple(sorted((k, str(v)) for k, v in getattr(js, "attributes", {}).items())),
        )
        if key not in seen:
            seen.add(key)
            unique.append(js)
    context["script_files"] = unique


def _add_static_path(app, config):
    if str(STATIC) not in config.html_static_path:
        config.html_static_path = [*config.html_static_path, str(STATIC)]


def setup(app):
    app.set_html_assets_policy("always")
    app.connect("config-inited", _add_static_path)
    for css in CSS_FILES:
        app.add_css_file(css, priority=900)  # after the theme's and extensions' stylesheets
    app.connect("html-page-context", _fix_page_scripts, priority=10_000)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
