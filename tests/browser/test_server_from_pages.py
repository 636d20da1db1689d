"""Web pages and the local server, in a real Chromium: an allowed --cors page works; any other page,
and a DNS-rebinding page (its domain re-pointed at 127.0.0.1), gets nothing from it.

Chromium resolves friend.example and evil.example to 127.0.0.1 (``--host-resolver-rules`` in the
harness), so a page at ``http://evil.example:PORT`` is what a rebinding attack produces.
"""

from __future__ import annotations

import http.server
import threading

import pytest

from ..waiting import wait_for

pytestmark = pytest.mark.browser

PAGE = b"<!doctype html><title>page</title><p>a web page</p>"


@pytest.fixture
def page_server():
    """Serves a plain page on 127.0.0.1 (reached as friend.example or evil.example)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(PAGE)

        def log_message(self, *args: object) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    try:
        yield srv.server_address[1]
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.fixture
def lmnb_server(loaded, page_server):
    from lmnb.server import Server

    srv = Server("127.0.0.1", 0, cors=[f"http://friend.example:{page_server}"])
    try:
        yield srv
    finally:
        srv.stop()


CHAT = """async (url) => {
  const r = await fetch(url + '/v1/chat/completions', {method: 'POST', headers: {'Content-Type': 'application/json'},
    body: JSON.stringify({messages: [{role: 'user', content: 'Say hi.'}], max_tokens: 4, temperature: 0})});
  return {status: r.status, body: await r.json()};
}"""
# A "simple" request: no preflight, sent whatever the server says; the page cannot read the answer.
SIMPLE = """async (url) => {
  await fetch(url + '/v1/chat/completions', {method: 'POST', mode: 'no-cors', headers: {'Content-Type': 'text/plain'},
    body: JSON.stringify({messages: [{role: 'user', content: 'Leak.'}], max_tokens: 4})});
  return true;
}"""
CORS_FAILS = """async (url) => {
  try { await fetch(url + '/v1/models'); return 'read'; } catch (e) { return 'blocked'; }
}"""


def test_pages_reach_the_server_only_from_allowed_origins(chromium, page_server, lmnb_server):
    base = f"http://127.0.0.1:{lmnb_server.port}"
    stats = lmnb_server.stats

    def requests(method: str, status: int) -> int:
        return sum(1 for r in list(stats.recent) if r.method == method and r.status == status)

    friend, _ = chromium.new_page()
    friend.goto(f"http://friend.example:{page_server}/")
    answer = friend.evaluate(CHAT, base)
    assert answer["status"] == 200 and answer["body"]["choices"][0]["message"]["content"]

    evil, _ = chromium.new_page()
    evil.goto(f"http://evil.example:{page_server}/")
    assert evil.evaluate(CORS_FAILS, base) == "blocked"
    assert requests("OPTIONS", 403) == 0  # a GET with a foreign Origin is refused as such, no preflight
    evil.evaluate(SIMPLE, base)
    assert wait_for(lambda: requests("POST", 403) == 1), list(stats.recent)  # the POST arrived, refused
    assert requests("POST", 200) == 1  # only the friend's request generated

    # DNS rebinding: the attacker's domain now points at 127.0.0.1, so the page is same-origin with
    # the server: only the Host header gives it away
    rebound = evil.context.new_page()
    response = rebound.goto(f"http://evil.example:{lmnb_server.port}/v1/models")
    assert response.status == 403
    assert "forbidden_host" in rebound.content() and ".gguf" not in rebound.content()
    for p in (friend, evil, rebound):
        p.close()
