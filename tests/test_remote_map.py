"""``lmnb.map`` beyond one machine: several ``lmnb serve`` processes on the bundled model stand in
for a server farm. What the servers did is read from their own ``/metrics`` (requests served,
the most handled at once), never from the client's word; waits are on states, never on sleeps.

Retry-After and the errors that are not retried are checked against a tiny scripted HTTP server
(the real ``openai`` client path, nothing of lmnb faked).
"""

from __future__ import annotations

import _thread
import http.server
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Optional

import httpx
import pytest
from IPython.utils.capture import capture_output

import lmnb
from lmnb.batch import ItemError

from .waiting import wait_for

CHAT = "/v1/chat/completions"
GREEDY = dict(max_tokens=8, temperature=0, progress=False)


class Node:
    """One ``lmnb serve`` process (one machine of the farm)."""

    def __init__(self, model: str, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.out, self.err = folder / "stdout", folder / "stderr"
        env = dict(os.environ, XDG_DATA_HOME=str(folder / "data"))  # its history stays in the test's dirs
        with open(self.out, "w") as out, open(self.err, "w") as err:  # files: a full pipe never blocks it
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "lmnb", "serve", model, "--port", "0", "--ctx", "512", "--threads", "1"],
                stdout=out, stderr=err, env=env,
            )  # fmt: skip
        self.url = ""

    def ready(self) -> str:
        """Wait for the "Serving NAME at URL" line and return the URL."""

        def first_line() -> str:
            text = self.out.read_text()
            if "\n" in text or self.proc.poll() is not None:
                return text or f"exited with {self.proc.returncode}"
            return ""

        line = wait_for(first_line, timeout=180, step=0.1)
        assert line.startswith("Serving "), f"no server: {line!r} {self.err.read_text()[-2000:]}"
        self.url = line.splitlines()[0].split(" at ")[-1].strip()
        return self.url

    def metrics(self) -> str:
        return httpx.get(self.url.removesuffix("/v1") + "/metrics", timeout=30).text

    def metric(self, name: str, **labels: str) -> float:
        """The sum of ``name``'s samples whose labels include ``labels``."""
        total = 0.0
        for m in re.finditer(rf"^{name}(?:{{(.*?)}})? (\S+)$", self.metrics(), re.M):
            have = dict(re.findall(r'(\w+)="(.*?)"', m.group(1) or ""))
            if all(have.get(k) == v for k, v in labels.items()):
                total += float(m.group(2))
        return total

    def chat_requests(self) -> int:
        """Chat completion requests this server has finished, whatever their status."""
        return int(self.metric("lmnb_http_requests_total", path=CHAT))

    def replies(self) -> int:
        """Replies its engine finished (not cancelled)."""
        return int(self.metric("lmnb_generations_total", outcome="stop") + self.metric("lmnb_generations_total",
                                                                                       outcome="length"))

    def peak(self) -> int:
        return int(self.metric("lmnb_http_requests_in_flight_max"))

    def settled(self) -> bool:
        """No request in flight but the scrape asking."""
        return self.metric("lmnb_http_requests_in_flight") == 0

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)


def start(model: str, folder: Path, n: int) -> list[Node]:
    nodes = [Node(model, folder / f"node{i}") for i in range(n)]  # all started, then all awaited
    for node in nodes:
        node.ready()
    return nodes


@pytest.fixture(scope="module")
def nodes(smollm2_path, tmp_path_factory):
    """Three servers: the first two only for the concurrency test (their peaks then mean that
    test alone), the third for the others."""
    started = start(smollm2_path, tmp_path_factory.mktemp("farm"), 3)
    yield started
    for node in started:
        node.stop()


@pytest.fixture(autouse=True)
def _disconnected():
    yield
    lmnb.disconnect()


def fruits(n: int) -> list[str]:
    return [f"Name a fruit. This is request {i}." for i in range(n)]


# ---- parallel is honoured, counted by the servers ------------------------------------------------
def test_remote_map_never_has_more_requests_in_flight_than_parallel(nodes):
    a, b = nodes[0], nodes[1]
    lmnb.connect(a.url)
    out = lmnb.map("{item}", fruits(8), parallel=2, **GREEDY)
    assert all(isinstance(r, str) and r for r in out), out.errors
    assert out.stats["parallel"] == 2
    assert a.peak() == 2  # rows did run side by side, and never more than two of them

    # two endpoints, parallel 4: each gets its share (2), so together never more than 4
    a_before, b_before = a.chat_requests(), b.chat_requests()
    farm = lmnb.connect([a.url, b.url])
    assert len(farm.endpoints) == 2
    out = lmnb.map("{item}", fruits(12), parallel=4, **GREEDY)
    assert all(isinstance(r, str) and r for r in out), out.errors
    assert a.peak() <= 2 and b.peak() == 2
    assert a.chat_requests() - a_before + b.chat_requests() - b_before == 12
    assert b.chat_requests() - b_before >= 3  # the rows were spread, not all sent to the first


def test_connect_magic_takes_several_urls_and_chats_use_the_first(nodes, shell):
    a, b = nodes[0], nodes[1]
    before = a.chat_requests(), b.chat_requests()
    with capture_output() as cap:
        shell.run_line_magic("lm", f"connect {a.url} {b.url}")
    assert f"Connected to {a.url}, {b.url}" in cap.stdout
    with capture_output() as cap:
        r = shell.run_cell("%%lm chat -t 0 -n 4\nSay hi.")
    assert r.success, cap.stdout
    assert (a.chat_requests() - before[0], b.chat_requests() - before[1]) == (1, 0)
    with capture_output() as cap:
        shell.run_line_magic("lm", "status")
    assert "2 of 2 up" in cap.stdout


# ---- an endpoint dies mid-job ---------------------------------------------------------------------
def test_rows_of_a_killed_endpoint_finish_on_the_other(nodes, smollm2_path, tmp_path):
    survivor = nodes[2]
    victim = start(smollm2_path, tmp_path, 1)[0]
    try:
        lmnb.connect([victim.url, survivor.url])  # the victim first: chats, and ties, go to it
        served_before = survivor.replies()
        result: dict = {}

        def run() -> None:
            result["out"] = lmnb.map("{item}", fruits(16), parallel=4, max_tokens=12, temperature=0, progress=False)

        job = threading.Thread(target=run)
        job.start()
        assert wait_for(lambda: victim.replies() >= 2, timeout=120, step=0.1), "the victim served no rows"
        served_by_victim = victim.replies()
        victim.proc.kill()  # as a machine that dies: no goodbye on its connections
        job.join(180)
        out = result["out"]
        assert len(out) == 16 and all(isinstance(r, str) and r for r in out), out.errors
        assert out.stats["endpoints_set_aside"] == 1 and out.stats["retried"] >= 1
        # every other row was served there (the victim may have finished the two it had in
        # flight between the count and the kill)
        assert survivor.replies() - served_before + served_by_victim + 2 >= 16
        # a chat now goes to the endpoint that is up, without trying the dead one first
        before = survivor.chat_requests()
        t0 = time.perf_counter()
        assert lmnb.chat("Say hi.", max_tokens=3).text
        assert survivor.chat_requests() == before + 1 and time.perf_counter() - t0 < 30
    finally:
        victim.stop()


# ---- a checkpoint: an interrupted job resumes without redoing finished rows -----------------------
def test_an_interrupted_job_resumes_from_its_checkpoint_and_redoes_no_finished_row(nodes, tmp_path):
    node = nodes[2]
    lmnb.connect(node.url)
    path = tmp_path / "results.jsonl"
    items = fruits(10)
    kw = dict(GREEDY, parallel=2, checkpoint=str(path))

    def lines() -> int:
        return len(path.read_text().splitlines()) if path.exists() else 0

    def interrupt_after(k: int) -> None:  # what Ctrl-C / a kernel interrupt does, once k rows are done
        if wait_for(lambda: lines() >= k, timeout=120):
            _thread.interrupt_main()

    watcher = threading.Thread(target=interrupt_after, args=(3,))
    watcher.start()
    with capture_output() as cap:
        first = lmnb.map("{item}", items, **kw)
    watcher.join()
    done = [i for i, r in enumerate(first) if isinstance(r, str)]
    assert "Interrupted" in cap.stdout and 3 <= len(done) < len(items), first
    assert all(first[i] == ItemError("cancelled") for i in range(len(items)) if i not in done)
    assert lines() == len(done)  # exactly the finished rows were written
    assert {json.loads(line)["row"] for line in path.read_text().splitlines()} == set(done)

    assert wait_for(node.settled)  # the cancelled requests have ended on the server too
    before = node.chat_requests()
    second = lmnb.map("{item}", items, **kw)
    assert wait_for(node.settled)
    assert node.chat_requests() - before == len(items) - len(done)  # no finished row sent again
    assert all(isinstance(r, str) and r for r in second), second.errors
    assert [second[i] for i in done] == [first[i] for i in done] and second.stats["resumed"] == len(done)

    before = node.chat_requests()
    third = lmnb.map("{item}", items, **kw)  # all of it in the file: nothing is sent
    assert list(third) == list(second) and node.chat_requests() == before
    changed = [*items[:4], "Name a vegetable.", *items[5:]]
    lmnb.map("{item}", changed, **kw)  # a changed row is not mistaken for done
    assert wait_for(lambda: node.chat_requests() == before + 1)


def test_a_schema_reaches_the_server_as_response_format(nodes):
    """``map(schema=...)`` and ``chat(schema=...)`` on a server: the reply is constrained there
    (OpenAI's response_format), so every row parses, as with the local engine."""
    node = nodes[2]
    lmnb.connect(node.url)
    schema = {"type": "object", "properties": {"answer": {"enum": ["yes", "no"]}}, "required": ["answer"]}
    kw = dict(GREEDY, max_tokens=24, schema=schema)
    out = lmnb.map("Answer yes or no: {item}", ["Is the sky blue?", "Is fire cold?", "Is water wet?"], **kw)
    assert all(isinstance(r, dict) and r["answer"] in ("yes", "no") for r in out), out.errors
    kw.pop("progress")
    assert lmnb.chat("Is snow white?", **kw).parsed["answer"] in ("yes", "no")


def test_checkpoint_with_the_local_engine(loaded, tmp_path):
    path = tmp_path / "local.jsonl"
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    items = ["Is the sky blue?", "Is fire cold?", "Is water wet?"]
    kw = dict(GREEDY, max_tokens=16, schema=schema, checkpoint=path)
    replies = lambda: loaded.stats["requests_stop"] + loaded.stats["requests_length"]  # noqa: E731
    first = lmnb.map("{item}", items, **kw)
    assert all(isinstance(r, dict) for r in first), first.errors
    n = replies()
    again = lmnb.map("{item}", items, **kw)
    assert replies() == n and list(again) == list(first) and again.stats["resumed"] == 3  # parsed again
    # a line cut short by a crash: that row is done again (alone: its greedy reply may differ
    # from the one decoded in a batch), and the line written after it is whole
    text = path.read_text().splitlines()
    path.write_text("\n".join(text[:2]) + "\n" + text[2][: len(text[2]) // 2])
    redone = json.loads(text[2])["row"]
    again = lmnb.map("{item}", items, **kw)
    assert replies() == n + 1 and again.stats["resumed"] == 2 and isinstance(again[redone], dict)
    assert [r for i, r in enumerate(again) if i != redone] == [r for i, r in enumerate(first) if i != redone]
    assert lmnb.map("{item}", items, **kw).stats["resumed"] == 3


# ---- retries: Retry-After, backoff, what is not retried ---------------------------------------------
class Scripted(http.server.ThreadingHTTPServer):
    """An OpenAI-style server that answers chat requests from a script: (status, headers) for
    errors, ``None`` for a streamed reply ("hello"); the last entry repeats."""

    def __init__(self, script: list[Optional[tuple[int, dict]]]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.script, self.posts = list(script), []
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes, headers: dict, kind: str = "application/json") -> None:
        self.send_response(status)
        for k, v in {**headers, "Content-Type": kind, "Content-Length": str(len(body))}.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._send(200, json.dumps({"object": "list", "data": [{"id": "m", "object": "model", "created": 0,
                                                                 "owned_by": "t"}]}).encode(), {})  # fmt: skip

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        srv: Scripted = self.server  # type: ignore[assignment]
        srv.posts.append(time.monotonic())
        step = srv.script.pop(0) if len(srv.script) > 1 else srv.script[0]
        if step is not None:
            status, headers = step
            self._send(status, json.dumps({"error": {"message": f"scripted {status}"}}).encode(), headers)
            return
        chunk = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
                 "choices": [{"index": 0, "delta": {"content": "hello"}, "finish_reason": None}]}  # fmt: skip
        end = dict(chunk, choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}])
        body = "".join(f"data: {json.dumps(c)}\n\n" for c in (chunk, end)) + "data: [DONE]\n\n"
        self._send(200, body.encode(), {}, "text/event-stream")


@pytest.fixture
def scripted():
    servers: list[Scripted] = []

    def make(*script: Optional[tuple[int, dict]]) -> Scripted:
        servers.append(Scripted(list(script)))
        return servers[-1]

    yield make
    for s in servers:
        s.shutdown()
        s.server_close()


def test_retry_after_is_honoured_then_the_row_succeeds(scripted):
    srv = scripted((429, {"Retry-After": "1"}), (503, {}), None)
    lmnb.connect(srv.url)
    out = lmnb.map("{item}", ["a"], parallel=1, progress=False)
    assert list(out) == ["hello"] and len(srv.posts) == 3
    assert srv.posts[1] - srv.posts[0] >= 0.95  # waited as asked
    assert srv.posts[2] - srv.posts[1] >= 0.45  # the 503 without Retry-After: a backoff (0.5-1 s)
    srv.script[:] = [(503, {"Retry-After": "0"}), None]
    assert lmnb.chat("hi").text == "hello"  # chats retry too


def test_a_server_that_stays_busy_gives_up_with_a_clear_message(scripted):
    srv = scripted((503, {"Retry-After": "0"}))
    backend = lmnb.connect(srv.url)
    out = lmnb.map("{item}", ["a"], parallel=1, progress=False)
    assert len(srv.posts) == backend.max_attempts == 4
    assert isinstance(out[0], ItemError) and "answered 503: scripted 503" in out[0].message
    assert "gave up after 4 attempts" in out[0].message


def test_errors_that_would_repeat_are_not_retried(scripted):
    srv = scripted((400, {"Retry-After": "0"}))
    lmnb.connect(srv.url)
    out = lmnb.map("{item}", ["a", "b"], parallel=1, progress=False)
    assert len(srv.posts) == 2  # one each
    assert all(isinstance(r, ItemError) and "answered 400: scripted 400" in r.message for r in out)
    assert "gave up" not in out[0].message


def test_retry_after_forms():
    from email.utils import formatdate

    from lmnb.remote import MAX_RETRY_AFTER, retry_after

    assert retry_after({"retry-after": "2"}) == 2.0 and retry_after({"retry-after-ms": "250"}) == 0.25
    assert 5 <= retry_after({"retry-after": formatdate(time.time() + 8, usegmt=True)}) <= 8  # an HTTP date
    assert retry_after({"retry-after": "3600"}) == MAX_RETRY_AFTER  # waits stay bounded
    assert retry_after({}) is None and retry_after({"retry-after": "soon"}) is None
