"""The notebook studio (`lmnb.studio()`), used the way a person would in JupyterLab.

DRAFT written against the studio's contract (root `.lmnb-studio`; tabs Chat, Documents, Models, Parameters,
System, Server, Logs; chat `.lmnb-chat[data-busy]` with `.lmnb-msg-user` / `.lmnb-msg-assistant` messages, a
`.lmnb-msg-body` each, `.lmnb-streaming` while a reply streams, `.lmnb-msg-stats`, `textarea.lmnb-chat-input`,
`button.lmnb-stop` / `.lmnb-regenerate` / `.lmnb-clear`; Python side `studio.chat.messages`,
`.last_result`, `.grammar`; parameters `.lmnb-parameters` with a FloatSlider `.lmnb-param-temperature`).
"""

from __future__ import annotations

import json
import re
import time

import pytest

pytestmark = pytest.mark.browser

TABS = ["Chat", "Documents", "Models", "Parameters", "System", "Server", "Logs"]

# (d) What the model is forced to answer (by a GBNF grammar): every classic way to run script from
# rendered Markdown/HTML. A sanitizer must show all of it as text and run none of it.
PAYLOAD = ("<img src=x onerror=window.__pwned=1> <script>window.__pwned=2</script> "
           "[click](javascript:window.__pwned=3) <svg onload=window.__pwned=4>")  # fmt: skip
USER_PAYLOAD = "Repeat exactly: <img src=y onerror=window.__pwned=5>"
assert '"' not in PAYLOAD and "\\" not in PAYLOAD  # a plain GBNF string literal
GRAMMAR = f'root ::= "{PAYLOAD}"'

# The studio cell comes last so that its output has the room below it; the check cells above it
# are run (and re-run) out of order, when each step needs them.
CELLS = [
    "%load_ext lmnb",  # 0
    "%lm load --ctx 2048",  # 1
    "lmnb.configure(max_tokens=-1)",  # 2: (b) a reply that only Stop ends
    "r = studio.chat.last_result\nprint(r.finish_reason, r.usage.completion_tokens)",  # 3: (b)
    "print(repr(lmnb.get_config().temperature))",  # 4: (c)
    f"lmnb.configure(max_tokens=256)\nstudio.chat.grammar = {GRAMMAR!r}",  # 5: (d)
    "import json\nprint(json.dumps(studio.chat.messages[-2:]))",  # 6: (d)
    # 7: (f) a document library whose one line the (forced) reply cites as [1]
    "import pathlib, tempfile\nmemo = pathlib.Path(tempfile.mkdtemp(), 'memo.txt')\n"
    "memo.write_text('The ferry <b>leaves</b> at nine.\\n')\nlmnb.docs.add('memos', str(memo), progress=False)\n"
    "studio.chat.docs = 'memos'\nstudio.chat.grammar = 'root ::= \"It leaves at nine [1].\"'",
    "import lmnb\nstudio = lmnb.studio()\nstudio",  # 8
]
DOCS, STUDIO = 7, 8

# Records every change of the last assistant message while a reply is generated (a MutationObserver,
# so no change is missed however fast the model is): [text length, data-busy, streaming class].
JS_RECORD = """(chat) => {
  window.__lmnbSamples = [];
  if (window.__lmnbObserver) window.__lmnbObserver.disconnect();
  const sample = () => {
    const msgs = chat.querySelectorAll('.lmnb-msg-assistant');
    const last = msgs[msgs.length - 1];
    const body = last && last.querySelector('.lmnb-msg-body');
    window.__lmnbSamples.push([msgs.length, body ? body.textContent.length : -1, chat.getAttribute('data-busy'),
                               !!(last && last.classList.contains('lmnb-streaming'))]);
  };
  window.__lmnbObserver = new MutationObserver(sample);
  window.__lmnbObserver.observe(chat, {subtree: true, childList: true, characterData: true, attributes: true});
}"""

# Everything in the chat that could run script: <script>, on* attributes, javascript: URLs.
JS_DANGER = """(chat) => {
  const bad = [];
  for (const el of [chat, ...chat.querySelectorAll('*')]) {
    const tag = el.tagName.toLowerCase();
    if (tag === 'script') bad.push('<script>');
    if (tag === 'iframe' || tag === 'object' || tag === 'embed') bad.push('<' + tag + '>');
    for (const a of el.attributes) {
      if (/^on/i.test(a.name)) bad.push(tag + '[' + a.name + ']');
      if (/^\\s*(javascript|vbscript|data:text\\/html)/i.test(a.value)) bad.push(tag + '[' + a.name + '=' + a.value + ']');
    }
  }
  return bad;
}"""


def assistant_bodies(chat):
    return chat.locator(".lmnb-msg.lmnb-msg-assistant .lmnb-msg-body")


def send(chat, text: str) -> int:
    """Type a message in the chat input and press Enter; return the number of assistant messages before."""
    n = assistant_bodies(chat).count()
    box = chat.locator("textarea.lmnb-chat-input")
    box.click()
    box.press_sequentially(text)
    box.press("Enter")
    return n


def wait_idle(chat, n_before: int, timeout: float = 60) -> None:
    """Wait for the reply after `n_before` assistant messages to be finished (data-busy false)."""
    chat.page.wait_for_function(
        """([chat, n]) => chat.querySelectorAll('.lmnb-msg-assistant').length > n
                          && chat.getAttribute('data-busy') === 'false'""",
        arg=[chat.element_handle(), n_before], timeout=timeout * 1000,
    )  # fmt: skip


def open_tab(studio, title: str) -> None:
    tab = studio.locator(".lm-TabBar-tab").filter(
        has=studio.page.locator(".lm-TabBar-tabLabel", has_text=re.compile(rf"^\s*{title}\s*$")))
    tab.first.click()
    studio.page.wait_for_function(
        "(tab) => tab.classList.contains('lm-mod-current')", arg=tab.first.element_handle(), timeout=5000)


def kernel_print(nb, i: int) -> str:
    nb.run_cell(i, timeout=60)
    return nb.stream_text(i).strip()


@pytest.fixture
def studio_nb(open_notebook):
    nb = open_notebook(CELLS)
    nb.run_cell(0, timeout=60)
    nb.run_cell(1, timeout=120)
    nb.run_cell(STUDIO, timeout=60)
    studio = nb.output(STUDIO).locator(".lmnb-studio")
    nb.wait_for(studio, timeout=30)
    titles = [t.strip() for t in studio.locator(".lm-TabBar-tabLabel").all_inner_texts()]
    assert titles == TABS, titles
    chat = studio.locator(".lmnb-chat")
    nb.wait_for(chat, timeout=30)
    return nb, studio, chat


def step_streaming_reply(nb, chat) -> None:
    """(a) A reply grows in the page while it streams, then shows its stats line."""
    chat.evaluate(JS_RECORD)
    n = send(chat, "Say hello in five words.")
    wait_idle(chat, n)
    samples = nb.page.evaluate("window.__lmnbSamples")
    streaming = [length for count, length, busy, streaming_cls in samples
                 if count == n + 1 and length > 0 and (busy == "true" or streaming_cls)]  # fmt: skip
    assert len(set(streaming)) > 1, f"the reply did not grow while streaming: {samples[:50]}"
    assert any(s[3] for s in samples), "no .lmnb-streaming class while the reply streamed"
    last = chat.locator(".lmnb-msg.lmnb-msg-assistant").last
    assert "lmnb-streaming" not in (last.get_attribute("class") or "")
    assert last.locator(".lmnb-msg-body").inner_text().strip()
    stats = last.locator(".lmnb-msg-stats")
    nb.wait_for(stats, timeout=10)
    assert "tok/s" in stats.inner_text() and re.search(r"prompt \d+ tokens", stats.inner_text())
    user = chat.locator(".lmnb-msg.lmnb-msg-user .lmnb-msg-body").last
    assert "Say hello in five words." in user.inner_text()


def step_stop(nb, chat) -> None:
    """(b) Stop ends an unbounded reply at once; the kernel records it as cancelled."""
    nb.run_cell(2, timeout=60)  # max_tokens=-1
    n = send(chat, "Write a very long story about a dragon.")
    nb.page.wait_for_function(
        """([chat, n]) => { const b = chat.querySelectorAll('.lmnb-msg-assistant .lmnb-msg-body');
                            return b.length > n && b[b.length - 1].textContent.trim().length > 0; }""",
        arg=[chat.element_handle(), n], timeout=60_000, polling="raf",
    )  # fmt: skip
    chat.locator("button.lmnb-stop").click()
    clicked = time.monotonic()
    nb.page.wait_for_function("(chat) => chat.getAttribute('data-busy') === 'false'",
                              arg=chat.element_handle(), timeout=3000)
    assert time.monotonic() - clicked < 3.5
    body = assistant_bodies(chat).nth(n)
    length = len(body.inner_text())
    time.sleep(1.0)
    assert len(body.inner_text()) == length, "the reply kept growing after Stop"
    reason, tokens = kernel_print(nb, 3).split()
    assert reason == "cancelled"
    assert 0 < int(tokens) < 2000


def step_temperature(nb, studio) -> None:
    """(c) Three ArrowRight presses on the temperature slider move it by 3 x 0.05 in the kernel."""
    before = float(kernel_print(nb, 4))
    open_tab(studio, "Parameters")
    params = studio.locator(".lmnb-parameters")
    nb.wait_for(params, timeout=10)
    slider = params.locator(".lmnb-param-temperature")
    handle = slider.locator(".noUi-handle").first
    handle.scroll_into_view_if_needed()
    handle.focus()
    for _ in range(3):
        handle.press("ArrowRight")
    maximum = float(handle.get_attribute("aria-valuemax") or "inf")
    expected = round(min(before + 3 * 0.05, maximum), 4)
    assert expected != before, f"temperature {before} is already at the slider's maximum"
    seen: list[float] = []

    def reached() -> bool:  # widget changes reach the kernel asynchronously: ask again until they do
        seen.append(float(kernel_print(nb, 4)))
        return abs(seen[-1] - expected) < 1e-6

    nb.wait_for(reached, timeout=20, interval=0.3, message=lambda: f"kernel temperature {seen}, want {expected}")
    readout = slider.locator(".widget-readout")
    if readout.count():
        assert float(readout.first.inner_text()) == pytest.approx(expected)


def step_sanitizer(nb, studio, chat) -> None:
    """(d) HTML/JS in a reply and in a user message is shown as text, never run."""
    nb.run_cell(5, timeout=60)  # the grammar that forces PAYLOAD
    open_tab(studio, "Chat")
    n = send(chat, USER_PAYLOAD)
    wait_idle(chat, n, timeout=120)
    time.sleep(1.0)  # let any injected onerror/onload handler fire (img src=x fails asynchronously)
    messages = json.loads(kernel_print(nb, 6))
    assert [m["role"] for m in messages] == ["user", "assistant"], messages
    assert messages[0]["content"] == USER_PAYLOAD, messages
    assert messages[1]["content"] == PAYLOAD, "the grammar did not force the reply"

    assert nb.page.evaluate("typeof window.__pwned") == "undefined"
    assert not nb.log.dialogs, nb.log.dialogs
    assert chat.evaluate(JS_DANGER) == []
    reply = assistant_bodies(chat).nth(n).inner_text()
    for part in ("<img src=x onerror=window.__pwned=1>", "<script>window.__pwned=2</script>",
                 "<svg onload=window.__pwned=4>"):
        assert part in reply, reply
    # the Markdown link may be shown as typed or as its text, never as a javascript: link
    assert "[click](javascript:window.__pwned=3)" in reply or "click" in reply, reply
    user = chat.locator(".lmnb-msg.lmnb-msg-user .lmnb-msg-body").last.inner_text()
    assert "<img src=y onerror=window.__pwned=5>" in user, user
    nb.screenshot("studio-sanitizer", chat)


def step_citation(nb, studio, chat) -> None:
    """(f) In a reply from a document library, [1] shows its source on hover and opens it on click."""
    nb.run_cell(DOCS, timeout=120)
    open_tab(studio, "Chat")
    n = send(chat, "When does the ferry leave?")
    wait_idle(chat, n, timeout=120)
    reply = chat.locator(".lmnb-msg-assistant").last
    cite = reply.locator("button.lmnb-cite")
    nb.wait_for(cite, timeout=10)
    assert cite.count() == 1 and cite.inner_text() == "[1]"
    cite.hover()
    tip = chat.locator(".lmnb-cite-tip")
    nb.wait_for(tip, timeout=5)
    assert "memo.txt line 1" in tip.inner_text() and "The ferry <b>leaves</b> at nine." in tip.inner_text()
    cite.focus()  # the tooltip shows for the keyboard too (and stays for the screenshot, which moves the page)
    nb.screenshot("studio-citation-tooltip", chat)
    assert tip.is_visible()
    source = reply.locator("details.lmnb-source[data-n='1']")
    assert source.evaluate("d => !d.open")
    cite.click()
    assert source.evaluate("d => d.open") and "The ferry <b>leaves</b> at nine." in source.inner_text()
    assert chat.evaluate(JS_DANGER) == []


def step_tab_screenshots(nb, studio) -> None:
    """(e) Every tab renders; a screenshot of each."""
    for title in TABS:
        open_tab(studio, title)
        nb.page.wait_for_timeout(300)  # panes fill in (tickers, tables) after they are shown
        nb.screenshot(f"studio-{title.lower()}", studio)


def test_studio_in_jupyterlab(studio_nb):
    nb, studio, chat = studio_nb
    nb.screenshot("studio-open")
    step_streaming_reply(nb, chat)
    step_stop(nb, chat)
    step_temperature(nb, studio)
    step_sanitizer(nb, studio, chat)
    step_citation(nb, studio, chat)
    step_tab_screenshots(nb, studio)
    nb.screenshot("studio-final")
    assert not nb.log.errors(), nb.log.errors()
    assert not nb.log.dialogs, nb.log.dialogs
