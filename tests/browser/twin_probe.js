// Evaluated in each built page by conftest.py: exercises every static twin (div.ba-twin).
// A twin is a self-contained HTML/JS slider: input[type=range].ba-twin-slider, img.ba-twin-image
// and .ba-twin-label. Moving the slider to two other positions must change both the image and
// the label. Returns one record per twin with the problems found (empty when it works).
async () => {
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const loaded = (img) =>
    img.complete ? Promise.resolve() : new Promise((r) => { img.addEventListener("load", r, { once: true }); img.addEventListener("error", r, { once: true }); setTimeout(r, 5000); });
  const out = [];
  const twins = Array.from(document.querySelectorAll("div.ba-twin"));
  for (const [index, twin] of twins.entries()) {
    const rec = { index, id: twin.id || null, problems: [], positions: [] };
    out.push(rec);
    const slider = twin.querySelector('input[type="range"].ba-twin-slider');
    const img = twin.querySelector("img.ba-twin-image");
    const label = twin.querySelector(".ba-twin-label");
    if (!slider) rec.problems.push("missing input[type=range].ba-twin-slider");
    if (!img) rec.problems.push("missing img.ba-twin-image");
    if (!label) rec.problems.push("missing .ba-twin-label");
    if (rec.problems.length) continue;

    const min = parseFloat(slider.min || "0");
    const max = parseFloat(slider.max || "100");
    const step = slider.step === "any" || !slider.step ? (slider.step === "any" ? (max - min) / 10 : 1) : parseFloat(slider.step);
    const count = Math.floor((max - min) / step + 1e-9) + 1;
    const start = parseFloat(slider.value);
    const middle = min + step * Math.floor((count - 1) / 2);
    const targets = Array.from(new Set([max, min, middle])).filter((v) => Math.abs(v - start) > step / 2).slice(0, 2);
    if (targets.length < 2) {
      rec.problems.push(`slider has ${count} positions (min ${min}, max ${max}, step ${step}): need at least 3`);
      continue;
    }
    await loaded(img);
    let prev = { value: slider.value, src: img.getAttribute("src") || "", label: label.textContent.trim() };
    if (img.naturalWidth === 0) rec.problems.push(`image did not load at value ${prev.value}`);
    rec.positions.push({ value: prev.value, label: prev.label, src: prev.src.slice(0, 40) });
    for (const v of targets) {
      slider.value = String(v);
      slider.dispatchEvent(new Event("input", { bubbles: true }));
      slider.dispatchEvent(new Event("change", { bubbles: true }));
      await sleep(50);
      await loaded(img);
      const now = { value: slider.value, src: img.getAttribute("src") || "", label: label.textContent.trim() };
      rec.positions.push({ value: now.value, label: now.label, src: now.src.slice(0, 40) });
      if (now.src === prev.src) rec.problems.push(`image src did not change when the slider moved ${prev.value} -> ${now.value}`);
      if (now.label === prev.label) rec.problems.push(`label did not change when the slider moved ${prev.value} -> ${now.value} (still ${JSON.stringify(now.label)})`);
      if (img.naturalWidth === 0) rec.problems.push(`image did not load at value ${now.value}`);
      prev = now;
    }
  }
  return out;
}
