"""Replies a poisoned document or model could produce: each tries to run script or load a URL.

``{leak}`` stands for a URL on a local listener the browser tests watch (no request may reach it).
Shared by the unit tests of lmnb.markup and the browser tests of every display path.
"""

from __future__ import annotations

PAYLOADS = [
    "<script>window.__pwned = 1</script>",
    '<img src=x onerror="window.__pwned = 2">',
    '<svg onload="window.__pwned = 3"><image href="{leak}/svg"/></svg>',
    '<details open ontoggle="window.__pwned = 4"><summary>x</summary></details>',
    '<iframe src="{leak}/iframe"></iframe>',
    "<style>@import url({leak}/css); body {{ background: url({leak}/bg) }}</style>",
    '<form action="{leak}/form"><button>send</button></form>',
    "![chart]({leak}/image?q=the-users-secret)",
    "![ref-chart][r]\n\n[r]: {leak}/ref-image",
    "<javascript:window.__pwned=5> [click](javascript:window.__pwned=6) [data](data:text/html,<script>x</script>)",
    "&lt;img src=x onerror=&quot;window.__pwned = 7&quot;&gt; &#60;script&#62;window.__pwned = 8&#60;/script&#62;",
    '<a href="javascript:window.__pwned=9">a</a> <a href="{leak}/a" style="background:url({leak}/astyle)">b</a>',
    "<link rel=stylesheet href={leak}/link> <object data={leak}/object></object> <video poster={leak}/poster>",
    # TeX reaches the front end's MathJax, whose \\href and \\style must not link or load either
    "$\\href{{javascript:window.__pwned=11}}{{tex-link}}$ and $\\style{{background-image:url({leak}/tex)}}{{y}}$",
    "<img src=x one",  # the rest of this tag arrives in the next streamed chunk (the next payload)
]

# A model file whose name and general.name hold payloads (the browser tests load and show it).
NAME_PAYLOAD = '<img src=x onerror="window.__pwned=20">'
META_PAYLOAD = '<svg onload="window.__pwned=21"></svg><b>bold-meta</b>'

# One reply holding every payload, each in its own paragraph, ending in text a test can wait for.
REPLY_END = "END-OF-HOSTILE-REPLY"


def hostile_reply(leak: str) -> str:
    return "\n\n".join(p.format(leak=leak) for p in PAYLOADS) + 'rror="window.__pwned = 10">\n\n' + REPLY_END


# Ordinary Markdown that must still render as formatting.
ORDINARY = """\
# A heading

Some *emphasis* and **strong** text, with `inline code` and a [link](https://example.com/docs).

- first item
- second item

| name | value |
|------|------:|
| a    | 1     |
| b    | 2     |

```python
def add(a, b):
    return a + b  # a comment
```
"""
