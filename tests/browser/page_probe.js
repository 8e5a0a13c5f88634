// Evaluated in each built page by conftest.py: waits for MathJax and images, then reports
// math rendering, images, links and widget rendering. Returns plain JSON.
async () => {
  const withTimeout = (promise, ms, what) =>
    Promise.race([promise, new Promise((_, rej) => setTimeout(() => rej(new Error(`${what} timed out after ${ms} ms`)), ms))]);

  // --- math -----------------------------------------------------------------------------
  const math = {
    mathElements: document.querySelectorAll(".math").length,
    mathjaxScript: !!document.querySelector('script[src*="mathjax"]'),
    mathjaxStarted: false,
    startupError: null,
  };
  if (math.mathjaxScript) {
    try {
      await withTimeout(
        new Promise((resolve) => {
          const poll = () =>
            window.MathJax && window.MathJax.startup && window.MathJax.startup.promise ? resolve() : setTimeout(poll, 50);
          poll();
        }),
        30000,
        "MathJax startup",
      );
      await withTimeout(window.MathJax.startup.promise, 30000, "MathJax typesetting");
      math.mathjaxStarted = true;
    } catch (e) {
      math.startupError = String(e);
    }
  }
  math.mjxContainers = document.querySelectorAll("mjx-container").length;
  math.mjxErrors = Array.from(document.querySelectorAll("mjx-merror")).map((e) => e.getAttribute("data-mjx-error") || e.textContent).slice(0, 5);
  // Visible text outside code, scripts and rendered math must hold no TeX delimiters.
  const SKIP = "pre, code, script, style, textarea, mjx-container, .highlight, .MathJax";
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const raw = [];
  const texPattern = /\\\(|\\\)|\\\[|\\\]|\$\$|\$[^$\s][^$\n]*\$|\\begin\{/;
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const el = node.parentElement;
    if (!el || el.closest(SKIP)) continue;
    if (el.checkVisibility && !el.checkVisibility({ checkOpacity: true, checkVisibilityCSS: true })) continue;
    const m = node.textContent.match(texPattern);
    if (m) raw.push(node.textContent.trim().slice(0, 120));
  }
  math.rawTex = raw.slice(0, 10);

  // --- images ---------------------------------------------------------------------------
  const imgs = Array.from(document.images);
  imgs.forEach((img) => { img.loading = "eager"; });
  await withTimeout(
    Promise.all(imgs.map((img) => (img.complete ? null : new Promise((r) => { img.addEventListener("load", r); img.addEventListener("error", r); })))),
    30000,
    "image loading",
  ).catch(() => null);
  const images = imgs.map((img) => ({
    src: (img.getAttribute("src") || "").slice(0, 100),
    complete: img.complete,
    naturalWidth: img.naturalWidth,
  }));

  // --- links ----------------------------------------------------------------------------
  const hrefs = Array.from(document.querySelectorAll("a[href]"))
    .map((a) => ({ raw: a.getAttribute("href"), abs: a.href }))
    .filter((h) => h.raw && h.raw !== "#" && !/^(javascript|mailto|tel|data):/i.test(h.raw))
    .map((h) => h.abs);

  // Web fonts load lazily, once some text uses them: wait so a missing font file is seen.
  await withTimeout(document.fonts.ready, 15000, "web fonts").catch(() => null);

  // --- Jupyter widgets (static HTML manager) ----------------------------------------------
  const widgets = {
    views: document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]').length,
    rendered: document.querySelectorAll(".widget-subarea, .jupyter-widgets.widget-subarea").length,
  };

  return { math, images, hrefs: Array.from(new Set(hrefs)), widgets };
}
