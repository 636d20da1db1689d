"""Safe HTML for notebook outputs and widgets: the one place lmnb turns text into markup.

Outputs of cells the user runs are *trusted* by JupyterLab: their HTML and Markdown are not
sanitized, so script in them runs with the user's rights (and can drive the kernel), and any image
in them is fetched. Much of what lmnb shows is not ours: model replies (which a prompt injection in
a document or web page can steer), model file names and GGUF metadata, Hugging Face data, HTTP
request lines, log lines and error messages quoting any of these. So:

- :func:`markdown` renders untrusted Markdown (a reply) to HTML with the formatting kept and every
  active part removed: raw HTML shows as text, images become links the user may open, only
  ``http(s):``/``mailto:`` links are clickable, and an allow-list sanitizer (nh3, i.e. ammonia) runs
  over the result whatever the parser did.
- :func:`html` builds lmnb's own HTML from a template whose values are escaped as they are filled
  in (``markupsafe``), so a call site cannot forget to escape: a plain ``str`` is never markup.
  :class:`lmnb.widgets.SafeHTML` and every ``_repr_html_`` here take only such values.

Heavy modules (markdown-it, nh3, pygments) load on first use, not on ``import lmnb``.
"""

from __future__ import annotations

import functools
import re
from typing import Any, Iterable, Sequence

from markupsafe import Markup, escape

__all__ = ["Markup", "escape", "html", "join", "markdown"]

# Tags a rendered reply may contain, with their attributes. Everything else is dropped (tags whose
# content is never text, like <script> and <style>, are dropped with their content).
_TAGS = {
    "a", "p", "br", "hr", "em", "strong", "s", "del", "code", "pre", "blockquote", "ul", "ol", "li",
    "h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td", "span", "sub",
}
_ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}, "th": {"style"}, "td": {"style"}, "span": {"style"}}
# Only properties that cannot name a URL (no background, list-style, cursor, content…): nothing loads.
_STYLE_PROPERTIES = {"color", "text-align", "font-weight", "font-style"}
_URL_SCHEMES = {"http", "https", "mailto"}
_LINK = re.compile(r"^(?:https?://|mailto:)", re.IGNORECASE)

# Code in replies is coloured with JupyterLab's own editor colours (so dark themes work), with a
# fallback for front ends without them. Pygments token type -> CodeMirror variable.
_CODE_COLORS = {
    "Comment": ("comment", "#408080"),
    "Keyword": ("keyword", "#008000"),
    "Keyword.Constant": ("atom", "#aa22ff"),
    "Operator.Word": ("keyword", "#aa22ff"),
    "Operator": ("operator", "#aa22ff"),
    "Name.Builtin": ("builtin", "#008000"),
    "Name.Function": ("def", "#0000ff"),
    "Name.Class": ("def", "#0000ff"),
    "Name.Decorator": ("meta", "#aa22ff"),
    "Name.Tag": ("tag", "#008000"),
    "Name.Attribute": ("attribute", "#7d9029"),
    "Name.Variable": ("variable-2", "#19177c"),
    "Literal.String": ("string", "#ba2121"),
    "Literal.Number": ("number", "#080"),
    "Generic.Heading": ("header", "#000080"),
    "Error": ("error", "#ff0000"),
}


def html(template: str, *args: Any, **kwargs: Any) -> Markup:
    """lmnb's own HTML with untrusted values escaped as they are filled in.

    Args:
        template: HTML written in lmnb's code, with ``str.format`` fields (``"<b>{}</b>"``).
        *args, **kwargs: the values; each is escaped unless it is already :class:`Markup`.

    Returns:
        Markup: safe to put in a notebook output or an HTML widget.
    """
    return Markup(template).format(*args, **kwargs)


def join(parts: Iterable[Any], sep: str = "") -> Markup:
    """Join pieces of markup (plain strings among them are escaped)."""
    return Markup(sep).join(parts)


def markdown(text: str) -> Markup:
    """Render untrusted Markdown (a model's reply) to HTML that cannot run or load anything.

    Headings, emphasis, lists, tables, code blocks (highlighted) and links stay; raw HTML is shown
    as text; ``![alt](url)`` becomes a link to ``url``; links other than ``http(s):``/``mailto:``
    stay plain text.

    Args:
        text: Markdown of unknown origin.

    Returns:
        Markup: sanitized HTML.
    """
    return Markup(_cleaner().clean(_parser().render(text or "")))


_CITATION = re.compile(r"\[(\d{1,3})\]")


def with_sources(answer: Markup, sources: Sequence[dict], anchor: str) -> Markup:
    """A rendered answer (from :func:`markdown`) with its citations of ``sources`` linked.

    Each ``[n]`` that names a source becomes a link to it, with the source's location and text on
    hover; the sources the answer cites are listed below it, each unfolding to its text (those it
    does not cite are counted, and listed folded).

    Args:
        answer: sanitized HTML of the answer.
        sources: ``Completion.sources`` (dicts with ``n``, ``where``, ``text``, ``cited``).
        anchor: a prefix for element ids, unique in the page (e.g. the request id).
    """
    by_n = {s["n"]: s for s in sources}

    def link(m: "re.Match[str]") -> str:
        s = by_n.get(int(m.group(1)))
        if s is None:
            return m.group(0)
        tip = f"{s['where']}\n{_snippet(s['text'])}"
        return str(html('<a class="lmnb-cite" href="#{}-{}" title="{}">[{}]</a>', anchor, s["n"], tip, s["n"]))

    body = Markup(_CITATION.sub(link, str(answer)))
    item = '<li id="{}-{}" value="{}"><details><summary>{}</summary><blockquote>{}</blockquote></details></li>'
    cited = [s for s in sources if s.get("cited")]
    rest = [s for s in sources if not s.get("cited")]
    listing = join(html(item, anchor, s["n"], s["n"], s["where"], s["text"]) for s in cited)
    others = (html('<details><summary>{} more given, not cited</summary><ol>{}</ol></details>', len(rest),
                   join(html(item, anchor, s["n"], s["n"], s["where"], s["text"]) for s in rest)) if rest else "")  # fmt: skip
    title = "Sources" if cited else "No source cited"
    return html('{}<div class="lmnb-sources"><b>{}</b><ol>{}</ol>{}</div>', body, title, listing, others)


def sources_text(sources: Sequence[dict]) -> str:
    """The cited sources as plain text, for ``text/plain`` outputs."""
    cited = [s for s in sources if s.get("cited")]
    return "\n".join(f"[{s['n']}] {s['where']}: {_snippet(s['text'])}" for s in cited) or "(no source cited)"


def _snippet(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ------------------------------------------------------------------------------------- internals


@functools.lru_cache(maxsize=None)
def _parser() -> Any:
    from markdown_it import MarkdownIt

    # gfm-like: CommonMark + tables, strikethrough and bare-URL links; html False: tags stay text
    md = MarkdownIt("gfm-like", {"html": False, "linkify": True, "typographer": False, "highlight": _highlight})
    md.validateLink = lambda url: bool(_LINK.match(url.strip()))  # javascript:, data:, relative: text
    md.add_render_rule("image", _image_as_link)
    md.add_render_rule("link_open", _link_open)
    # TeX ($…$, $$…$$, \(…\), \[…\]) is kept verbatim for the front end's MathJax: without this,
    # Markdown would read its _ and * as emphasis. Pandoc's rules: "$5 and $10" is not math.
    from mdit_py_plugins.dollarmath import dollarmath_plugin
    from mdit_py_plugins.texmath import texmath_plugin

    md.use(dollarmath_plugin, allow_space=False, allow_digits=False, allow_labels=False)
    md.use(texmath_plugin, delimiters="brackets")
    for name in ("math_inline", "math_inline_double"):
        md.add_render_rule(name, lambda self, tokens, idx, options, env: str(html("${}$", tokens[idx].content)))
    for name in ("math_block", "math_block_eqno"):
        md.add_render_rule(name, lambda self, tokens, idx, options, env: str(html("<p>$${}$$</p>\n", tokens[idx].content)))
    return md


def _link_open(self: Any, tokens: list, idx: int, options: Any, env: Any) -> str:
    tokens[idx].attrSet("target", "_blank")
    tokens[idx].attrSet("rel", "noopener noreferrer nofollow")
    return self.renderToken(tokens, idx, options, env)


def _image_as_link(self: Any, tokens: list, idx: int, options: Any, env: Any) -> str:
    """An image is never fetched: it is shown as a link the user may choose to open."""
    token = tokens[idx]
    src = token.attrGet("src") or ""
    alt = self.renderInlineAsText(token.children or [], options, env) or src
    return str(html('<a href="{}" title="image: {}">\U0001f5bc {}</a>', src, src, alt))


def _highlight(code: str, lang: str, _attrs: Any) -> str:
    """A fenced block with a known language, coloured; '' lets markdown-it escape it plainly."""
    name = (lang or "").strip().split()[0].lower() if (lang or "").strip() else ""
    if not name:
        return ""
    try:
        from pygments.lexers import get_lexer_by_name
        from pygments.util import ClassNotFound

        try:
            lexer = get_lexer_by_name(name)
        except ClassNotFound:
            return ""
        runs: list[list[str]] = []  # [color, text]: neighbours of one colour share a span
        for kind, value in lexer.get_tokens(code):
            color = _color(kind) if value.strip() else (runs[-1][0] if runs else "")
            if runs and runs[-1][0] == color:
                runs[-1][1] += value
            else:
                runs.append([color, value])
        spans = (html('<span style="color:{}">{}</span>', c, v) if c else escape(v) for c, v in runs)
        return str(html("<pre><code>{}</code></pre>", join(spans)))
    except Exception:  # a lexer bug must not lose the reply: show the code plain
        return ""


@functools.lru_cache(maxsize=256)
def _color(kind: Any) -> str:
    while kind is not None and len(kind) > 0:
        found = _CODE_COLORS.get(".".join(kind))
        if found:
            return f"var(--jp-mirror-editor-{found[0]}-color, {found[1]})"
        kind = kind.parent
    return ""


@functools.lru_cache(maxsize=None)
def _cleaner() -> Any:
    import nh3

    return nh3.Cleaner(
        tags=_TAGS,
        clean_content_tags={"script", "style"},
        attributes=_ATTRIBUTES,
        url_schemes=_URL_SCHEMES,
        url_relative="deny",
        link_rel="noopener noreferrer nofollow",
        set_tag_attribute_values={"a": {"target": "_blank"}},
        filter_style_properties=_STYLE_PROPERTIES,
    )
