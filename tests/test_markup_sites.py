"""Untrusted text in lmnb's HTML shows as text, never as markup.

JupyterLab trusts the outputs of cells the user runs, so HTML that lmnb builds around a model's
reply, a model file's name, a request line or a Hugging Face id would run any script in them. These
tests put such a payload where a user would meet it (a real model file with a hostile name, a real
HTTP request to the real server, a real comparison) and check that it arrives escaped, while lmnb's
own markup around it stays markup.
"""

from __future__ import annotations

import html as stdlib_html
import json
import math
import os
import re

import pytest

pytest.importorskip("ipywidgets")

import httpx  # noqa: E402

import lmnb  # noqa: E402
import lmnb.server  # noqa: E402
from lmnb.markup import Markup, html, markdown  # noqa: E402
from lmnb.tables import Table  # noqa: E402
from lmnb.teaching.token_view import ProbabilityView  # noqa: E402
from lmnb.widgets._html import SafeHTML  # noqa: E402

from .waiting import wait_for  # noqa: E402

PAYLOAD = "<img src=x onerror=alert(1)>"
ESCAPED = "&lt;img src=x onerror=alert(1)&gt;"
SCRIPT = "<script>alert(1)</script>"
SCRIPT_ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


def inert(page: str) -> bool:
    """No tag of the payloads made it into the page as a tag."""
    return "<img" not in page and "<script" not in page and "onerror=alert(1)>" not in page


def forced(text: str) -> str:
    """A GBNF grammar whose only sentence is ``text``: the real model then writes exactly that."""
    return f"root ::= {json.dumps(text)}"




# ------------------------------------------------------------------------------------------------
# SafeHTML
# ------------------------------------------------------------------------------------------------
def test_safe_html_escapes_plain_text_and_keeps_built_markup():
    w = SafeHTML(PAYLOAD)
    assert w.value == ESCAPED  # a plain str is text, at construction ...
    w.value = "a <b>bold</b> claim & " + SCRIPT
    assert w.value == "a &lt;b&gt;bold&lt;/b&gt; claim &amp; " + SCRIPT_ESCAPED  # ... and when set later
    w.value = Markup("<b>Models</b> &middot; ours")
    assert w.value == "<b>Models</b> &middot; ours"  # markup lmnb wrote stays markup
    w.value = html("<b>{}</b>", PAYLOAD)
    assert w.value == f"<b>{ESCAPED}</b>"  # and what it filled in stays text
    w.value = ""
    assert w.value == ""


# ------------------------------------------------------------------------------------------------
# Tables (lmnb.models(), %lm search, ...)
# ------------------------------------------------------------------------------------------------
def test_table_escapes_cells_footer_and_empty_text():
    t = Table(["repo", "description"], [[PAYLOAD, SCRIPT], ["ok/model", None]], footer=f"2 repos {PAYLOAD}")
    page = t._repr_html_()
    assert type(page) is str
    assert inert(page)
    assert f"<td style='text-align:left'>{ESCAPED}</td>" in page
    assert f"<td style='text-align:left'>{SCRIPT_ESCAPED}</td>" in page
    assert f"<p><small>2 repos {ESCAPED}</small></p>" in page
    assert page.startswith("<table><thead><tr><th style='text-align:left'>repo</th>")  # the table is markup

    empty = Table(["repo"], [], empty=PAYLOAD)._repr_html_()
    assert type(empty) is str and empty == f"<p>{ESCAPED}</p>"


# ------------------------------------------------------------------------------------------------
# A model file with a hostile name: System pane, Models pane, lmnb.models(), lmnb.tokens()
# ------------------------------------------------------------------------------------------------
@pytest.fixture
def hostile_model(loaded, smollm2_path, tmp_path):
    """The real SmolLM2 under a file name that is a script payload, loaded as a user would load it."""
    path = tmp_path / f"{PAYLOAD}.gguf"
    os.symlink(smollm2_path, path)
    info = lmnb.load(str(path), n_ctx=2048)
    assert info.name == PAYLOAD
    yield str(path)
    lmnb.load(smollm2_path, n_ctx=2048)  # as the other test files expect it
    path.unlink()  # lmnb.models() lists the files loaded this session that still exist: not this one


def test_system_pane_escapes_the_model_name(hostile_model):
    from lmnb.widgets.system import System

    w = System(live=False)
    try:
        assert w.snapshot.model == PAYLOAD
        assert ESCAPED in w.model_memory.value and inert(w.model_memory.value)
        assert "MB · " in w.model_memory.value
    finally:
        w.close()


def test_models_pane_escapes_the_model_name_in_its_status_lines(hostile_model):
    from lmnb.widgets import Models

    w = Models()
    try:
        local = PAYLOAD + ".gguf"  # My Models lists a file loaded by path under its file name
        assert local in [v for _, v in w.local.options]  # a Select shows its labels as text
        w.local.value = local
        w.ask_delete()  # refused (it is loaded), and the pane says why
        status = w.local_status.value
        assert f"{ESCAPED}.gguf is loaded: unload it first" in status and inert(status)
        assert status.startswith('<span style="overflow-wrap:anywhere;color:#b26a00">')  # the status is markup

        w.load_local()  # the pane's Load button: the name comes back in "Loading…" and "Loaded…"
        assert w.wait(120), w.local_status.value
        status = w.local_status.value
        assert f"Loaded {ESCAPED}: llama" in status and inert(status), status
        assert inert(w.summary.value) and inert(w.status.value)
    finally:
        w.close()


def test_models_table_and_token_view_escape_the_model_name(hostile_model):
    page = lmnb.models()._repr_html_()
    assert type(page) is str
    assert f"<td style='text-align:left'>* {ESCAPED}.gguf</td>" in page and inert(page)

    view = lmnb.tokens(f"Say {PAYLOAD}")
    page = view._repr_html_()
    assert type(page) is str and inert(page)
    assert page.count('class="lmnb-token"') == len(view)
    assert f"for {len(view.source)} characters · {ESCAPED} · hover a token" in page  # the model, in the summary


# ------------------------------------------------------------------------------------------------
# Server pane
# ------------------------------------------------------------------------------------------------
def test_server_pane_escapes_a_hostile_request_path(loaded):
    from lmnb.widgets.server import Server

    w = Server(port=0, api_key="", live=False)
    try:
        w.start_button.click()
        srv = lmnb.server.current()
        assert srv is not None, w.status.value
        r = httpx.get(srv.url + "/" + PAYLOAD, timeout=10)  # sent percent-encoded; the server decodes it
        assert r.status_code == 404
        assert wait_for(lambda: (w.refresh(), ESCAPED in w.requests.value)[1]), w.requests.value
        table = w.requests.value
        assert inert(table)
        row = re.search(r"<tr style='color:#b26a00'><td[^>]*>[\d:]+</td><td[^>]*>GET</td>"
                        r"<td[^>]*>/v1/" + re.escape(ESCAPED) + r"</td><td[^>]*>404</td>", table)  # fmt: skip
        assert row, table
    finally:
        w.stop()
        w.close()
    assert lmnb.server.current() is None


def test_server_pane_escapes_a_hostile_host_in_its_warning(loaded):
    from lmnb.widgets.server import Server

    w = Server(host=PAYLOAD, port=0, api_key="", live=False)
    try:
        assert f"Binding {ESCAPED}: other machines" in w.warning.value and inert(w.warning.value)
        assert w.warning.value.startswith('<span style="color:#b26a00">⚠ ')
    finally:
        w.close()


# ------------------------------------------------------------------------------------------------
# Parameters pane
# ------------------------------------------------------------------------------------------------
def test_parameters_pane_escapes_a_hostile_preset_name(loaded, tmp_path):
    from lmnb.config import get_config
    from lmnb.widgets.parameters import Parameters

    cfg = get_config()
    before = cfg.presets_path
    cfg.presets_path = str(tmp_path / "presets.json")
    w = Parameters()
    try:
        w.preset_name.value = PAYLOAD
        w.save_button.click()
        status = w.preset_status.value
        assert f"Saved {ESCAPED} to " in status and inert(status)
        w.delete_preset(PAYLOAD)
        assert f"Deleted {ESCAPED}." in w.preset_status.value and inert(w.preset_status.value)
    finally:
        w.close()
        cfg.presets_path = before


# ------------------------------------------------------------------------------------------------
# The next-token explorer
# ------------------------------------------------------------------------------------------------
def test_explorer_escapes_the_prompt_and_keeps_its_chart(loaded):
    from lmnb.widgets import NextTokenExplorer

    a = NextTokenExplorer(f"Repeat this: {PAYLOAD}", top=5)
    assert ESCAPED in a.text_view.value and inert(a.text_view.value)
    assert 'class="lmnb-explorer-added"' in a.text_view.value
    assert a.chart.value.count('class="lmnb-bar"') == 5 and inert(a.chart.value)
    assert len(re.findall(r'data-p="\d\.\d{6}"', a.chart.value)) == 5
    a.greedy()
    assert "took " in a.message.value and inert(a.message.value)


# ------------------------------------------------------------------------------------------------
# Probabilities of a reply
# ------------------------------------------------------------------------------------------------
def test_probability_view_escapes_tokens_and_alternatives():
    view = ProbabilityView([
        {"token": SCRIPT, "logprob": math.log(0.9),
         "top_logprobs": [{"token": SCRIPT, "logprob": math.log(0.9)},
                          {"token": '"><img src=x onerror=alert(1)>', "logprob": math.log(0.05)}]},
        {"token": "\n" + PAYLOAD, "logprob": math.log(0.3), "top_logprobs": []},
    ])  # fmt: skip
    page = view._repr_html_()
    assert type(page) is str and inert(page)
    assert page.count('class="lmnb-prob"') == 2
    assert f">{SCRIPT_ESCAPED}</span>" in page and f"\u21b5<br>{ESCAPED}</span>" in page
    # the alternatives sit in a title attribute: a quote in one cannot end it
    title = re.search(r'title="([^"]*)"', page).group(1)
    assert title.startswith("90.0%\n") and "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in title


def test_probability_view_of_a_real_reply(loaded):
    # a grammar makes the real model write the payload (as a prompt injection could make it)
    text = f"{SCRIPT} {PAYLOAD}"
    reply = lmnb.chat("Write some HTML.", grammar=forced(text), max_tokens=60, temperature=0, logprobs=3)
    assert reply.text == text
    page = lmnb.token_probs(reply)._repr_html_()
    assert type(page) is str and inert(page)
    shown = re.findall(r'<span class="lmnb-prob"[^>]*>(.*?)</span>', page)
    assert len(shown) == len(reply.logprobs)
    assert not any("<" in piece or ">" in piece for piece in shown)  # "<", "script", ">": each one escaped
    assert stdlib_html.unescape("".join(shown)) == text


# ------------------------------------------------------------------------------------------------
# Comparisons
# ------------------------------------------------------------------------------------------------
def test_comparison_renders_markdown_and_escapes_everything_else(hostile_model):
    # the reply a prompt injection could steer the model to: Markdown with active parts in it. A grammar
    # makes the real model write it.
    reply = "# Rivers\n\n**Nile** " + SCRIPT + " ![x](https://example.com/p.png)"
    cmp = lmnb.compare(f"Name a river. {PAYLOAD}", max_tokens=80,
                       settings=[{"temperature": 0, "max_tokens": 8}, {"temperature": 0, "grammar": forced(reply)}])
    assert cmp.runs[1].text == reply and cmp.runs[1].model == PAYLOAD
    page = cmp._repr_html_()
    assert type(page) is str and inert(page)
    assert page.count('class="lmnb-compare-run"') == 2 and 'class="lmnb-compare"' in page
    # Markdown is kept as formatting ...
    assert "<h1>Rivers</h1>" in page and "<strong>Nile</strong>" in page
    assert str(markdown(cmp.runs[0].text)) in page  # the other run's reply, rendered the same way
    # ... and what would act is not: raw HTML is text, the image (a tracker) a link that nothing fetches
    assert SCRIPT_ESCAPED in page
    assert re.search(r'<a href="https://example.com/p.png"[^>]*>', page) and "<img" not in page
    # the prompt, the model name (a file name) and the settings are text
    assert f"Name a river. {ESCAPED}</div>" in page
    assert f">{ESCAPED} · temperature=0, max_tokens=8</div>" in page
    assert "white-space:pre-wrap" not in page
