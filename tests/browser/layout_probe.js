// Evaluated in each built page by harness.load_page after page_probe.js (MathJax has typeset,
// images have loaded): reports what the reader sees. Returns plain JSON:
//   figures        every <figure> in the article: its id, caption, images, any "<Figure size" text
//   captions       number of figure captions (figcaption) in the article
//   images         every <img> in the article (static-twin frames included) with natural and
//                  rendered sizes (natural: of the source a <picture> chose at this width)
//   figureReprText where the text "<Figure size" (matplotlib's repr, i.e. a figure that was
//                  printed instead of shown) occurs anywhere in the page
//   math           display and inline math whose rendered content is cut off, spills out of its
//                  box or scrolls without a visible scrollbar; math that fits but shows a
//                  scrollbar; equation numbers that overlap their equation
//   rawTex         visible text outside rendered math that still holds TeX (sidebar, titles,
//                  link text, prose, cell outputs), the document title and the print heading
//   pageOverflow   how many px the page itself scrolls sideways
//   punctuation    punctuation marks right after inline math that start a new line
//   cues           boxes that scroll sideways without a cue, or fit with one, or paint a cover
() => {
  const article = document.querySelector("article.bd-article") || document.querySelector("main") || document.body;
  const short = (s, n = 80) => (s || "").replace(/\s+/g, " ").trim().slice(0, n);
  const visible = (el) =>
    !!el && (!el.checkVisibility || el.checkVisibility({ checkOpacity: true, checkVisibilityCSS: true }));
  const describe = (el) => {
    if (!el) return "?";
    let s = el.tagName.toLowerCase();
    if (el.id) s += "#" + el.id;
    const cls = Array.from(el.classList).slice(0, 3);
    if (cls.length) s += "." + cls.join(".");
    return s;
  };
  // Where an element sits: the nearest enclosing section/box with an id, for messages.
  const where = (el) => {
    const box = el.closest("[id]:not(mjx-container):not(pre)");  // copybutton gives each pre an id
    return box ? "#" + box.id : describe(el.parentElement);
  };

  // --- images and figures -----------------------------------------------------------------
  const imgInfo = (img) => {
    const src = img.getAttribute("src") || "";
    return {
      src: src.startsWith("data:") ? src.slice(0, 30) + "..." : src.split("/").pop().slice(0, 60),
      svg: /\.svg($|\?)/i.test(src) || src.startsWith("data:image/svg"),
      complete: img.complete,
      naturalWidth: img.naturalWidth,
      naturalHeight: img.naturalHeight,
      clientWidth: img.clientWidth,
      clientHeight: img.clientHeight,
      visible: visible(img),
      twin: !!img.closest("div.ba-twin"),
      // a figure a chapter cell drew (show(): a PNG or a <picture> in a cell output), not a widget's
      output: !!img.closest(".cell_output") && !img.closest(".jupyter-widgets, .widget-subarea"),
      picture: !!img.closest("picture"),
      where: where(img),
    };
  };
  const figures = Array.from(article.querySelectorAll("figure")).map((f) => ({
    id: f.id || null,
    caption: f.querySelector("figcaption") ? short(f.querySelector("figcaption").textContent) : null,
    images: Array.from(f.querySelectorAll("img")).map(imgInfo),
    reprText: f.textContent.includes("<Figure size"),
  }));
  const images = Array.from(article.querySelectorAll("img")).map(imgInfo);
  const figureReprText = [];
  {
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
      const i = n.textContent.indexOf("<Figure size");
      if (i >= 0) figureReprText.push(`${where(n.parentElement)}: ${short(n.textContent.slice(i), 60)}`);
    }
  }

  // --- math: clipped, spilling, or covered by its equation number ----------------------------
  const scrolls = (cs) => cs.overflowX === "auto" || cs.overflowX === "scroll";
  // A scrollbar the reader sees without touching: a classic one that takes layout space, or one
  // styled with ::-webkit-scrollbar (always drawn, even where the platform's are overlays, and
  // even under Playwright's --hide-scrollbars). scrollbar-width: none hides either.
  const scrollbarShows = (el, cs) => {
    if (cs.scrollbarWidth === "none") return false;
    const border = parseFloat(cs.borderTopWidth) + parseFloat(cs.borderBottomWidth);
    if (el.offsetHeight - el.clientHeight - border >= 2) return true;
    const styled = parseFloat(getComputedStyle(el, "::-webkit-scrollbar").height);
    return styled >= 2;
  };
  const clientBox = (el) => {
    const r = el.getBoundingClientRect();
    const left = r.left + el.clientLeft;
    return { left, right: left + el.clientWidth, top: r.top, bottom: r.bottom };
  };
  const math = [];
  const containers = Array.from(article.querySelectorAll("mjx-container")).filter(visible);
  for (const c of containers) {
    const display = c.getAttribute("display") === "true";
    const body = c.querySelector(":scope > mjx-math") || c;
    const label = `${display ? "display" : "inline"} math in ${where(c)} (${short(c.querySelector("mjx-assistive-mml") ? c.querySelector("mjx-assistive-mml").textContent : c.textContent, 50)})`;
    // The extent of what must be seen; once a scroller holds it, the scroller's box instead.
    let extent = body.getBoundingClientRect();
    extent = { left: extent.left, right: extent.right };
    let visibleBox = { left: extent.left, right: extent.right };
    for (let el = c; el && el !== article.parentElement; el = el.parentElement) {
      const cs = getComputedStyle(el);
      if (cs.display === "inline" || cs.display === "contents") continue;  // no box of its own
      const box = clientBox(el);
      const over = Math.max(extent.right - box.right, box.left - extent.left);
      if (over > 1) {
        if (scrolls(cs) && el.scrollWidth > el.clientWidth) {
          if (!scrollbarShows(el, cs)) math.push(`${label}: ${Math.round(over)} px scroll out of sight inside ${describe(el)}, whose scrollbar is not always visible (overlay scrollbars show only while scrolling; style ::-webkit-scrollbar)`);
          visibleBox = { left: Math.max(visibleBox.left, box.left), right: Math.min(visibleBox.right, box.right) };
          const r = el.getBoundingClientRect();
          extent = { left: r.left, right: r.right };
        } else {
          const how = cs.overflowX === "visible" ? "spills out of" : `is cut off by (overflow-x: ${cs.overflowX})`;
          math.push(`${label}: ${Math.round(over)} px ${how} ${describe(el)} ${Math.round(box.right - box.left)} px wide`);
          break;
        }
      } else if (cs.overflowX !== "visible") {
        visibleBox = { left: Math.max(visibleBox.left, box.left), right: Math.min(visibleBox.right, box.right) };
      }
    }
    // Inline math never scrolls (bookfixes.css section 2): a scroll box around a short formula
    // showed a stray scrollbar under it (\bar\epsilon, whose bar overhangs its box by a pixel).
    if (!display) {
      for (const el of [c, c.parentElement]) {
        if (!el || !(el === c || el.matches("span.math"))) continue;
        const cs = getComputedStyle(el);
        // ...except a formula wider than its line, which bookfixes.js makes a scroll box
        const wide = el.matches("span.math.ba-wide-inline") && el.scrollWidth > el.clientWidth + 1;
        if (!wide && (scrolls(cs) || el.scrollWidth > el.clientWidth + 1 && cs.overflowX !== "visible"))
          math.push(`${label}: inline math in a scroll box (${describe(el)}: overflow-x ${cs.overflowX}, scrollWidth ${el.scrollWidth}, clientWidth ${el.clientWidth}); inline math must never scroll`);
      }
    }
    // A scroller around math that fits shows a scrollbar for nothing (a glyph overhanging by a
    // pixel is enough): as bad for the reader as a clipped formula is confusing.
    for (const el of [c, c.parentElement]) {
      if (!el || !(el.matches("span.math") || el === c)) continue;
      const cs = getComputedStyle(el);
      if (!scrolls(cs) || el.scrollWidth <= el.clientWidth + 1) continue;
      const box = clientBox(el), r = body.getBoundingClientRect();
      if (r.left >= box.left - 1 && r.right <= box.right + 1 && scrollbarShows(el, cs))
        math.push(`${label}: fits its ${describe(el)} but shows a scrollbar (scrollWidth ${el.scrollWidth} > ${el.clientWidth})`);
    }
    // Equation numbers: Sphinx's span.eqno beside the math, or MathJax's own mjx-labels.
    const b = body.getBoundingClientRect();
    const shown = { left: Math.max(b.left, visibleBox.left), right: Math.min(b.right, visibleBox.right), top: b.top, bottom: b.bottom };
    const numbers = [];
    const div = c.closest("div.math");
    if (display && div) div.querySelectorAll(":scope > span.eqno").forEach((e) => numbers.push(e));
    c.querySelectorAll("mjx-labels").forEach((e) => numbers.push(e));
    for (const n of numbers) {
      if (!visible(n)) continue;
      const r = n.getBoundingClientRect();
      const table = n.tagName.toLowerCase() === "mjx-labels" ? n.parentElement.querySelector("mjx-table") : null;
      const t = table ? table.getBoundingClientRect() : shown;
      const dx = Math.min(r.right, t.right) - Math.max(r.left, t.left);
      const dy = Math.min(r.bottom, t.bottom) - Math.max(r.top, t.top);
      if (dx > 1 && dy > 1) math.push(`${label}: equation number ${short(n.textContent, 10)} overlaps the equation by ${Math.round(dx)} px`);
    }
  }

  // --- line breaks beside inline math and scroll cues ----------------------------------------
  // A punctuation mark right after inline maths must stay on the formula's line (a ")" or "."
  // alone at the start of a line: bookfixes.js binds them).
  const punctuation = [];
  const PUNCT = /^[.,;:!?)\]}\u2019\u201d]/;
  for (const m of Array.from(article.querySelectorAll("span.math")).filter(visible)) {
    if (m.closest("div.math")) continue;
    let next = m.nextSibling, parent = m.parentElement;
    while (!next && parent && parent.classList.contains("ba-nowrap")) { next = parent.nextSibling; parent = parent.parentElement; }
    if (!next || next.nodeType !== 3 || !PUNCT.test(next.data)) continue;
    const range = document.createRange();
    range.setStart(next, 0);
    range.setEnd(next, 1);
    const p = range.getBoundingClientRect(), rects = m.getClientRects();
    if (!rects.length || !p.height) continue;
    const last = rects[rects.length - 1];
    if (p.top >= last.bottom - 2 || p.left < last.left - 1)
      punctuation.push(`"${next.data[0]}" after the inline math in ${where(m)} (${short(m.textContent, 40)}) starts a new line`);
  }
  // Only a formula wider than its line may become a scroll box (bookfixes.js): a short one made
  // one (measured before MathJax typeset it) hid its last glyph under the fade.
  for (const m of Array.from(article.querySelectorAll("span.math.ba-wide-inline")).filter(visible)) {
    let line = m.parentElement;
    while (line && /^(inline|contents)/.test(getComputedStyle(line).display)) line = line.parentElement;
    const body = m.querySelector("mjx-math");
    if (!line || !body) continue;
    const lcs = getComputedStyle(line);
    const width = line.clientWidth - parseFloat(lcs.paddingLeft) - parseFloat(lcs.paddingRight);
    const w = body.getBoundingClientRect().width;
    if (w <= width + 1) punctuation.push(`inline math in ${where(m)} (${short(m.textContent, 40)}) is ${Math.round(w)} px wide and fits its ${Math.round(width)} px line, but was made a scroll box`);
  }
  // Scroll cues: a box that scrolls sideways fades the edge it has more content beyond
  // (bookfixes.js, class ba-more-left/-right); a box that fits carries no cue and no mask.
  const cues = [];
  const CUED = 'div.math > mjx-container[display="true"], .bd-article table.table, table.autosummary, ' +
    'div.cell_output .output.text_html table:not(.dataframe), .bd-article pre, span.math.ba-wide-inline';
  for (const box of Array.from(article.querySelectorAll(CUED)).filter(visible)) {
    const hidden = box.scrollWidth - box.clientWidth;
    const mask = getComputedStyle(box).maskImage || getComputedStyle(box).webkitMaskImage || "none";
    const bg = getComputedStyle(box).backgroundImage;
    if (bg && bg !== "none") cues.push(`${describe(box)} in ${where(box)} paints a background image (${short(bg, 40)}): a painted cue shows as a panel on a tinted box`);
    if (hidden > 1 && box.scrollLeft < hidden - 1 && !box.classList.contains("ba-more-right"))
      cues.push(`${describe(box)} in ${where(box)} hides ${hidden} px to the right without a cue`);
    if (hidden <= 1 && mask !== "none")
      cues.push(`${describe(box)} in ${where(box)} fits but has a mask (${short(mask, 40)})`);
  }

  // --- raw TeX outside rendered math -------------------------------------------------------
  // Skipped: rendered math, scripts, source code of input cells and inline code literals (code
  // that is *printed* by a cell, i.e. inside .cell_output, is checked).
  const SKIP = "script, style, noscript, textarea, template, mjx-container, .MathJax";
  const CODE = "pre, code, .highlight, .cell_input";
  const tex = /\$|\\[A-Za-z]+|\\[()[\]{}]|[_^]\{/;
  const rawTex = [];
  const region = (el) =>
    el.closest(".bd-sidebar-primary, .bd-sidebar") ? "sidebar" :
    el.closest(".bd-sidebar-secondary, .bd-toc") ? "page contents" :
    el.closest(".cell_output") ? "cell output" :
    el.closest(".prev-next-area, .prev-next-footer") ? "prev/next" :
    el.closest("h1, h2, h3, h4, h5, h6") ? "heading" :
    el.closest("header, .bd-header, .header-article") ? "header" :
    el.closest("a") ? "link" : "text";
  const seen = new Set();
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const el = n.parentElement;
    if (!el || el.closest(SKIP)) continue;
    if (el.closest(CODE) && !el.closest(".cell_output")) continue;
    if (!visible(el)) continue;
    const m = n.textContent.match(tex);
    if (!m) continue;
    const text = n.textContent;
    const i = Math.max(0, m.index - 40);
    const msg = `${region(el)}${el.closest("a") && region(el) !== "link" ? " link" : ""}: ${JSON.stringify(m[0])} in "${short(text.slice(i, m.index + 40), 90)}"`;
    if (!seen.has(msg)) {
      seen.add(msg);
      rawTex.push(msg);
    }
  }
  // Titles the reader sees elsewhere: the browser tab and the printed page's heading.
  if (tex.test(document.title)) rawTex.unshift(`document title: "${short(document.title, 120)}"`);
  document.querySelectorAll(".onlyprint h1, #jb-print-docs-body h1").forEach((h) => {
    if (tex.test(h.textContent)) rawTex.push(`print title: "${short(h.textContent, 120)}"`);
  });

  return {
    figures,
    captions: article.querySelectorAll("figcaption").length,
    images,
    figureReprText: figureReprText.slice(0, 10),
    math: math.slice(0, 30),
    mathCount: containers.length,
    // The page itself must not scroll sideways (a phone would zoom out or cut the column).
    pageOverflow: Math.max(0, document.documentElement.scrollWidth - document.documentElement.clientWidth),
    rawTex: rawTex.slice(0, 30),
    punctuation: punctuation.slice(0, 20),
    cues: cues.slice(0, 20),
  };
}
