// A message's text as a person reads it: links that open safely, @mentions highlighted, line
// breaks kept (CSS pre-wrap). The text is split into parts first (no DOM: unit-tested), then
// each part becomes a DOM node built with textContent: markup in the text stays text.

import { tokenize } from "../vendor/linkify.esm.js";
import { MENTION } from "./sync.js";

// Only these open from a message; anything else (javascript:, data:, file:) stays text.
const SAFE_PROTOCOLS = new Set(["http:", "https:", "mailto:"]);

function safeHref(href) {
  try {
    const url = new URL(href);
    return SAFE_PROTOCOLS.has(url.protocol) ? url.href : null;
  } catch {
    return null;
  }
}

function splitMentions(text, me, parts) {
  let last = 0;
  for (const m of text.matchAll(MENTION)) {
    const start = m.index + m[1].length;
    if (start > last) parts.push({ type: "text", text: text.slice(last, start) });
    const name = m[2];
    parts.push({ type: "mention", text: `@${name}`, me: name.toLowerCase() === me.toLowerCase() });
    last = start + name.length + 1;
  }
  if (last < text.length) parts.push({ type: "text", text: text.slice(last) });
}

/**
 * A text's parts, in order: {type: "text", text}, {type: "link", text, href},
 * {type: "mention", text, me}. Joined, the parts' texts are the original text exactly.
 */
export function parts(text, me = "") {
  const out = [];
  for (const token of tokenize(text)) {
    const raw = token.toString();
    const href = token.isLink ? safeHref(token.toHref("https")) : null;
    if (href) out.push({ type: "link", text: raw, href });
    else splitMentions(raw, me, out);
  }
  // Neighbouring text parts merged: fewer nodes, and easier to read in tests.
  return out.reduce((acc, part) => {
    const prev = acc.at(-1);
    if (part.type === "text" && prev?.type === "text") prev.text += part.text;
    else acc.push({ ...part });
    return acc;
  }, []);
}

/** The DOM nodes for a text, for `element.replaceChildren(...nodes)`. */
export function render(text, me, doc = document) {
  return parts(text, me).map((part) => {
    if (part.type === "text") return doc.createTextNode(part.text);
    if (part.type === "link") {
      const a = doc.createElement("a");
      a.href = part.href;
      a.textContent = part.text;
      a.target = "_blank";
      a.rel = "noopener noreferrer";
      return a;
    }
    const span = doc.createElement("span");
    span.className = part.me ? "mention mention-me" : "mention";
    span.textContent = part.text;
    return span;
  });
}
