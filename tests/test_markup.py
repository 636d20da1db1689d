"""lmnb.markup: a reply's Markdown keeps its formatting and loses everything that could run or load."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from lmnb.markup import Markup, html, join, markdown

from .hostile import ORDINARY, PAYLOADS, REPLY_END, hostile_reply

LEAK = "http://127.0.0.1:9/leak"
ALLOWED = {"a", "p", "br", "hr", "em", "strong", "s", "del", "code", "pre", "blockquote", "ul", "ol", "li",
           "h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td", "span", "sub"}


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict]] = []
        self.text = ""

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.elements.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text += data


def elements(fragment: str) -> _Elements:
    p = _Elements()
    p.feed(str(fragment))
    return p


def assert_inert(fragment: str) -> None:
    for tag, attrs in elements(fragment).elements:
        assert tag in ALLOWED, (tag, fragment)
        assert not any(a.startswith("on") for a in attrs), (tag, attrs)
        assert not {"src", "srcset", "poster", "data", "action", "formaction", "background"} & set(attrs)
        if "href" in attrs:
            assert attrs["href"].startswith(("http://", "https://", "mailto:")), attrs
        assert "url(" not in attrs.get("style", ""), attrs


@pytest.mark.parametrize("payload", PAYLOADS)
def test_each_hostile_payload_renders_inert(payload):
    assert_inert(markdown(payload.format(leak=LEAK)))


def test_hostile_reply_shows_its_tags_as_text():
    out = markdown(hostile_reply(LEAK))
    assert_inert(out)
    seen = elements(out)
    # what the model wrote is still there for the reader, as text
    assert '<img src=x onerror="window.__pwned = 2">' in seen.text
    assert "<script>window.__pwned = 1</script>" in seen.text
    assert REPLY_END in seen.text


def test_every_prefix_of_a_streamed_reply_is_inert():
    """A tag split across streamed chunks: every partial reply the stream shows is safe too."""
    reply = hostile_reply(LEAK)
    for end in range(0, len(reply), 7):
        assert_inert(markdown(reply[:end]))


def test_images_become_links_that_are_not_fetched():
    out = markdown(f"![chart]({LEAK}/image?q=secret)\n\n![ref][r]\n\n[r]: {LEAK}/ref.png")
    links = [(t, a) for t, a in elements(out).elements if t == "a"]
    assert [a["href"] for _, a in links] == [f"{LEAK}/image?q=secret", f"{LEAK}/ref.png"]
    assert all(a["target"] == "_blank" and "noopener" in a["rel"] for _, a in links)
    assert "<img" not in out


def test_unsafe_link_schemes_are_not_clickable():
    out = markdown("[a](javascript:alert(1)) <javascript:alert(1)> [b](data:text/html,x) [c](vbscript:x) [d](/api/kernels)")
    assert not [t for t, _ in elements(out).elements if t == "a"]
    assert "javascript:alert(1)" in elements(out).text  # shown, not clickable


def test_ordinary_markdown_keeps_its_formatting():
    out = markdown(ORDINARY)
    tags = [t for t, _ in elements(out).elements]
    for tag in ("h1", "em", "strong", "code", "ul", "li", "table", "th", "td", "pre", "a"):
        assert tag in tags, tag
    link = next(a for t, a in elements(out).elements if t == "a")
    assert link["href"] == "https://example.com/docs"
    # the code block is highlighted with JupyterLab's editor colours
    assert 'style="color:var(--jp-mirror-editor-keyword-color' in out
    assert 'style="text-align:right"' in out  # the table's alignment row


def test_math_is_kept_for_mathjax_and_dollar_amounts_are_not_math():
    out = markdown("Area $a_1 * b_2 * c$ and \\(x_i\\), costs $5 and $10.\n\n$$\n\\sum_i x_i\n$$")
    assert "$a_1 * b_2 * c$" in out and "$x_i$" in out and "$$\n\\sum_i x_i\n$$" in out
    assert "<em>" not in out
    assert "costs $5 and $10" in out


def test_html_template_escapes_what_it_fills_in():
    name = '<img src=x onerror="alert(1)">.gguf'
    out = html("<b>{}</b> · {n}", name, n="<i>")
    assert isinstance(out, Markup)
    assert out == "<b>&lt;img src=x onerror=&#34;alert(1)&#34;&gt;.gguf</b> · &lt;i&gt;"
    assert join([html("<i>{}</i>", "<"), "<b>"], sep="<br>") == "<i>&lt;</i><br>&lt;b&gt;"
