/* Reading fixes that need the laid-out page (bookfixes.css, sections 1 and 7).

   Scroll cues for boxes that scroll sideways.
   A display equation, a table or a code block wider than the column scrolls inside its own box; a
   phone draws its scrollbar only while it is being scrolled, so readers took such boxes for cut off.
   This marks each box that has more content to one side (class ba-more-left / ba-more-right); the
   stylesheet fades that edge. Boxes that fit get no class and look exactly as before. The marks are
   refreshed when the page lays out again (load, MathJax typesetting, resize) and when a box scrolls. */
(function () {
  "use strict";
  var SELECTOR = [
    'div.math > mjx-container[display="true"]',
    ".bd-article table.table",
    "table.autosummary",
    "div.cell_output .output.text_html table:not(.dataframe)",
    ".bd-article pre",
    "span.math.ba-wide-inline",
  ].join(", ");

  function mark(box) {
    var hidden = box.scrollWidth - box.clientWidth;
    var more = hidden > 1;
    box.classList.toggle("ba-more-left", more && box.scrollLeft > 1);
    box.classList.toggle("ba-more-right", more && box.scrollLeft < hidden - 1);
  }

  function markAll() {
    document.querySelectorAll(SELECTOR).forEach(function (box) {
      if (!box.dataset.baScrollCue) {
        box.dataset.baScrollCue = "1";
        box.addEventListener("scroll", function () { mark(box); }, { passive: true });
      }
      mark(box);
    });
  }

  /* Inline maths is drawn whole (bookfixes.css, section 1), so a formula wider than its line would
     run past the column: such a formula (and only such: a short one must never get a scrollbar)
     becomes a scroll box of the line's width, with the same cue. */
  function fitInlineMath() {
    document.querySelectorAll("span.math").forEach(function (math) {
      // Before MathJax has typeset it the span holds the TeX source, wider than the formula.
      if (math.closest("div.math") || !math.querySelector("mjx-container")) return;
      if (math.classList.contains("ba-wide-inline")) {
        if (math.scrollWidth <= math.clientWidth + 1) math.classList.remove("ba-wide-inline");
        return;
      }
      var line = math.parentElement;  // the block the formula's lines are laid out in
      while (line && /^(inline|contents)/.test(getComputedStyle(line).display)) line = line.parentElement;
      if (!line) return;
      var cs = getComputedStyle(line);
      var width = line.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight);
      if (math.getBoundingClientRect().width > width + 1) math.classList.add("ba-wide-inline");
    });
  }

  /* A punctuation mark right after inline maths (or an opening bracket right before it) could wrap
     onto a line of its own ("W" at the end of a line, ")." alone on the next): the browser may break
     beside a formula, which MathJax draws as an inline block. The mark and the formula are bound in
     a no-wrap span. */
  var AFTER = /^[.,;:!?)\]}\u2019\u201d'"]+/;
  var BEFORE = /[(\[{\u2018\u201c]+$/;
  function bindPunctuation() {
    document.querySelectorAll("span.math:not([data-ba-bound])").forEach(function (math) {
      math.dataset.baBound = "1";
      var next = math.nextSibling, prev = math.previousSibling;
      var after = next && next.nodeType === 3 && AFTER.exec(next.data);
      var before = prev && prev.nodeType === 3 && BEFORE.exec(prev.data);
      if (!after && !before) return;
      var bound = document.createElement("span");
      bound.className = "ba-nowrap";
      math.parentNode.insertBefore(bound, math);
      if (before) {
        prev.data = prev.data.slice(0, prev.data.length - before[0].length);
        bound.appendChild(document.createTextNode(before[0]));
      }
      bound.appendChild(math);
      if (after) {
        next.data = next.data.slice(after[0].length);
        bound.appendChild(document.createTextNode(after[0]));
      }
    });
  }

  var pending = false;
  function soon() {
    if (pending) return;
    pending = true;
    window.requestAnimationFrame(function () { pending = false; fitInlineMath(); markAll(); });
  }

  window.addEventListener("load", soon);
  window.addEventListener("resize", soon);
  document.addEventListener("DOMContentLoaded", function () {
    bindPunctuation();
    soon();
    if (window.ResizeObserver) {
      new ResizeObserver(soon).observe(document.body);  // MathJax's typesetting changes the layout
    }
  });
})();
