// Citations in a reply from a document library (`lmnb.chat(docs=...)`): each [n] that names one of
// the reply's sources becomes a button that shows the source's location and text on hover (or
// focus), and on click opens it in the list of sources under the reply.
//
// File names, locations and document text are untrusted (a document can say anything, including
// markup meant to run): everything here is built with createElement and textContent, never markup.
// The reply itself was sanitized by render.js before its text nodes are split here.

// [1], [2, 3], [4; 5]: what lmnb.docs.grounding.cited() reads as citations
const CITE = /\[(\d{1,3}(?:\s*[,;]\s*\d{1,3})*)\]/g;
const SNIPPET = 400; // characters of a source shown in its tooltip (the list under the reply has it all)

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** The message's `sources` (from the kernel, checked field by field) as a Map n -> source. */
export function readSources(list) {
  const out = new Map();
  for (const s of Array.isArray(list) ? list : []) {
    if (!s || typeof s !== "object" || !Number.isInteger(s.n)) continue;
    out.set(s.n, {
      n: s.n,
      where: typeof s.where === "string" ? s.where : `source ${s.n}`,
      file: typeof s.file === "string" ? s.file : "",
      text: typeof s.text === "string" ? s.text : "",
      cited: s.cited === true,
    });
  }
  return out;
}

function snippet(text) {
  const flat = text.split(/\s+/).join(" ").trim();
  return flat.length > SNIPPET ? `${flat.slice(0, SNIPPET - 1)}…` : flat;
}

/** The sources under a reply: those it cites, then (folded) those it was given but did not cite. */
export function sourcesView(sources) {
  const all = [...sources.values()].sort((a, b) => a.n - b.n);
  const cited = all.filter((s) => s.cited);
  const rest = all.filter((s) => !s.cited);
  const item = (s) => {
    const summary = el("summary", "", `[${s.n}] ${s.where}`);
    if (s.file) summary.title = s.file;
    const details = el("details", "lmnb-source");
    details.dataset.n = String(s.n);
    details.append(summary, el("div", "lmnb-source-text", s.text));
    return details;
  };
  const box = el("div", "lmnb-sources");
  box.append(el("div", "lmnb-sources-title", cited.length ? "Sources" : "No source cited"), ...cited.map(item));
  if (rest.length) {
    const more = el("details", "lmnb-sources-more");
    more.append(el("summary", "", `${rest.length} more given, not cited`), ...rest.map(item));
    box.append(more);
  }
  return box;
}

function showTip(tip, button, s) {
  const where = el("div", "lmnb-cite-where", s.where);
  if (s.file) where.title = s.file;
  tip.replaceChildren(where, el("div", "lmnb-cite-text", snippet(s.text)));
  tip.hidden = false;
  // placed in the chat's root (which the message list's scrolling does not clip), above the
  // citation when there is room, else below it
  const root = tip.offsetParent || tip.parentElement;
  const r = root.getBoundingClientRect();
  const b = button.getBoundingClientRect();
  const left = Math.max(0, Math.min(b.left - r.left, r.width - tip.offsetWidth));
  const above = b.top - r.top - tip.offsetHeight - 4;
  tip.style.left = `${left}px`;
  tip.style.top = `${above >= 0 ? above : b.bottom - r.top + 4}px`;
}

function openSource(listing, n) {
  const item = listing.querySelector(`details.lmnb-source[data-n="${n}"]`);
  if (!item) return;
  const opening = !item.open;
  item.open = opening;
  const more = item.closest(".lmnb-sources-more");
  if (more && opening) more.open = true;
  if (!opening) return;
  item.scrollIntoView({ block: "nearest" });
  item.classList.remove("lmnb-source-flash");
  void item.offsetWidth; // restart the highlight's animation
  item.classList.add("lmnb-source-flash");
}

function citeButton(s, tip, listing) {
  const button = el("button", "lmnb-cite", `[${s.n}]`);
  button.type = "button";
  button.dataset.n = String(s.n);
  button.setAttribute("aria-label", `source ${s.n}: ${s.where}`);
  const show = () => showTip(tip, button, s);
  const hide = () => (tip.hidden = true);
  button.addEventListener("mouseenter", show);
  button.addEventListener("focus", show);
  // shown while the pointer is over it or it has the focus (the keyboard's way to read it)
  button.addEventListener("mouseleave", () => document.activeElement !== button && hide());
  button.addEventListener("blur", () => !button.matches(":hover") && hide());
  button.addEventListener("keydown", (e) => e.key === "Escape" && hide());
  button.addEventListener("click", () => openSource(listing, s.n));
  return button;
}

/** Turn the [n] citations in a rendered reply into buttons (not inside code or links). */
export function linkCitations(body, sources, tip, listing) {
  const walker = document.createTreeWalker(body, NodeFilter.SHOW_TEXT, {
    acceptNode: (node) =>
      node.parentElement && node.parentElement.closest("pre, code, a") ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT,
  });
  const nodes = [];
  while (walker.nextNode()) nodes.push(walker.currentNode);
  for (const node of nodes) {
    const text = node.nodeValue;
    const parts = [];
    let last = 0;
    for (const m of text.matchAll(CITE)) {
      const numbers = m[1].split(/\s*[,;]\s*/).map(Number);
      if (!numbers.some((n) => sources.has(n))) continue; // "[2015]" or a list index: left as it is
      parts.push(text.slice(last, m.index));
      // [1, 3] becomes [1][3]: one button per source
      for (const n of numbers) parts.push(sources.has(n) ? citeButton(sources.get(n), tip, listing) : `[${n}]`);
      last = m.index + m[0].length;
    }
    if (!parts.length) continue;
    parts.push(text.slice(last));
    node.replaceWith(...parts);
  }
}
