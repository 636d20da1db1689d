"""Starting and stopping the server from the Server pane writes nothing to the cell's stderr, even
with clients in the middle of a generation (the red block a notebook showed at Stop: uvicorn's
"Cancel N running task(s), timeout graceful shutdown exceeded", "Exception in ASGI application",
asyncio's "Task was destroyed but it is pending!"). Real server, real model."""

from __future__ import annotations

import gc
import json
import threading
import warnings

import httpx
import pytest

from lmnb.server import current
from lmnb.widgets.server import Server as ServerPane

from .waiting import wait_for

NOISE = ("Task was destroyed", "never awaited", "Exception in ASGI", "running task(s)", "Traceback",
         "CancelledError", "Error")
LONG = [{"role": "user", "content": "Write a very long story about a lighthouse."}]


@pytest.fixture
def pane(loaded):
    if current() is not None:
        current().stop()
    w = ServerPane(host="127.0.0.1", port=0, api_key="", live=False)
    yield w
    w.stop()
    w.close()


def _quiet(capfd, caught: list) -> None:
    gc.collect()  # a task left pending anywhere is reported when it is collected
    err = capfd.readouterr().err
    assert not [n for n in NOISE if n in err], err
    assert not [str(w.message) for w in caught if "never awaited" in str(w.message)]


def test_start_and_stop_write_nothing_to_stderr(pane, capfd):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            srv = pane.start()
            assert srv is not None and srv.running, pane.status.value
            assert httpx.get(pane.url.value + "/models").status_code == 200
            assert pane.stop() and not srv.running
        _quiet(capfd, caught)


def test_stop_with_generations_in_flight_ends_them_cleanly(pane, loaded, capfd):
    """Stop ends the server's generations first, so every client hears why and the server shuts
    down within its grace period instead of having its tasks cancelled under it."""
    got: dict[str, object] = {}

    def stream() -> None:
        events = []
        with httpx.stream("POST", srv.url + "/chat/completions", timeout=120,
                          json={"messages": LONG, "max_tokens": 1500, "stream": True}) as r:
            got["stream_status"] = r.status_code
            for line in r.iter_lines():
                if line.startswith("data: "):
                    events.append(line[6:])
        got["stream"] = events

    def plain() -> None:
        r = httpx.post(srv.url + "/chat/completions", json={"messages": LONG, "max_tokens": 1500}, timeout=120)
        got["plain"] = (r.status_code, r.json())

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        srv = pane.start()
        assert srv is not None, pane.status.value
        before = loaded.stats["requests_cancelled"]
        clients = [threading.Thread(target=stream), threading.Thread(target=plain)]
        for t in clients:
            t.start()
        assert wait_for(lambda: loaded.queue_depth >= 2 and loaded.active()), "the clients' requests never started"
        assert pane.stop() and not srv.running
        for t in clients:
            t.join(120)
        _quiet(capfd, caught)
    assert wait_for(lambda: loaded.stats["requests_cancelled"] >= before + 2)
    status, body = got["plain"]  # type: ignore[misc]
    assert status == 503 and body["error"]["code"] == "cancelled" and "stopping" in body["error"]["message"]
    if got["stream_status"] == 200:  # the generation had started: the stream ends with the reason
        assert json.loads(got["stream"][-1])["error"]["code"] == "cancelled"  # type: ignore[index]
    else:
        assert got["stream_status"] == 503


def test_server_errors_go_to_the_log_not_to_stderr(loaded, capfd):
    """What uvicorn and the server log (a client's request that crashed, shutdown notices) is kept
    for `%lm log`, never printed into whatever cell runs next."""
    import logging

    from lmnb.engine.logs import LOGS

    pane = ServerPane(host="127.0.0.1", port=0, live=False)
    try:
        assert pane.start() is not None
        logging.getLogger("uvicorn.error").error("a test line from uvicorn")
        logging.getLogger("lmnb.server").error("a test line from the server")
    finally:
        pane.stop()
        pane.close()
    assert "a test line" not in capfd.readouterr().err
    texts = [r.text for r in LOGS.records()]
    assert any("a test line from uvicorn" in t for t in texts) and any("a test line from the server" in t for t in texts)
