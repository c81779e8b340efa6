// How a message's text is split for display: links (safe ones only), mentions, plain text.
// Run: node --test services/web/tests/js/

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { parts } from "../../js/rich.js";

const kinds = (text, me = "alice") => parts(text, me).map((p) => [p.type, p.text, p.href ?? p.me]);

describe("message text parts", () => {
  it("turns web addresses into links and keeps the rest as text", () => {
    assert.deepEqual(kinds("see https://example.org/a?b=1#c, or www.example.com."), [
      ["text", "see ", undefined],
      ["link", "https://example.org/a?b=1#c", "https://example.org/a?b=1#c"],
      ["text", ", or ", undefined],
      ["link", "www.example.com", "https://www.example.com/"],
      ["text", ".", undefined],
    ]);
  });

  it("never links javascript: or data: and keeps them as the text they are", () => {
    for (const text of ["javascript:alert(1)", "JaVaScRiPt:alert(document.cookie)",
      "javascript://example.com/%0Aalert(1)", "file:///etc/passwd", "vbscript://x.com/",
      "data:text/html,<script>alert(1)</script>", "<a href=\"javascript:x\">x</a>"]) {
      const ps = parts(text, "alice");
      assert.ok(ps.every((p) => p.type !== "link" || /^https?:|^mailto:/.test(p.href)), text);
      assert.equal(ps.map((p) => p.text).join(""), text);
    }
  });

  it("highlights @mentions, and marks mine", () => {
    assert.deepEqual(kinds("@bob meet @Alice at x@y.org"), [
      ["mention", "@bob", false],
      ["text", " meet ", undefined],
      ["mention", "@Alice", true],
      ["text", " at ", undefined],
      ["link", "x@y.org", "mailto:x@y.org"],
    ]);
  });

  it("keeps every character, line breaks and right-to-left text included", () => {
    const text = "שלום @bob\nمرحبا https://example.org/ar\n  indented";
    assert.equal(parts(text, "alice").map((p) => p.text).join(""), text);
  });
});
