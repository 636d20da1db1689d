"""The studio's System, Server and Logs panes (and the ticker and monitor under them), driven like a user
would, on the real bundled SmolLM2 model: real generations, a real HTTP server, real llama.cpp log lines."""

from __future__ import annotations

import re
import socket
import statistics
import threading
import time

import pytest

pytest.importorskip("ipywidgets")

import httpx  # noqa: E402

import lmnb  # noqa: E402
import lmnb.server  # noqa: E402
from lmnb.engine.logs import LOGS  # noqa: E402
from lmnb.sysmon import GPUStat, Monitor, Snapshot  # noqa: E402
from lmnb.widgets import ticker as _ticker  # noqa: E402
from lmnb.widgets.logs import Logs  # noqa: E402
from lmnb.widgets.server import Server, is_loopback  # noqa: E402
from lmnb.widgets.system import System  # noqa: E402

from .waiting import wait_for  # noqa: E402


@pytest.fixture(autouse=True)
def _no_leaks():
    """Every test unsubscribes what it subscribed and stops the servers it started."""
    before = _ticker.subscribers()
    yield
    assert _ticker.subscribers() == before, "a test left a ticker subscription behind"
    if before == 0:
        assert _ticker.wait_stopped(5), "the ticker thread outlived its last subscriber"
    assert lmnb.server.current() is None, "a test left a server running"


@pytest.fixture
def fast_ticker(monkeypatch):
    monkeypatch.setattr(_ticker, "INTERVAL", 0.05)




def rate_shown(w: System) -> float:
    m = re.match(r"([\d.]+) tok/s", w.tokens_per_s.value)
    return float(m.group(1)) if m else 0.0


# ------------------------------------------------------------------------------------------------
# Monitor
# ------------------------------------------------------------------------------------------------
def test_monitor_sample_is_cheap_and_reads_the_engine(loaded):
    mon = Monitor()
    mon.sample()
    costs = []
    for _ in range(100):
        t = time.perf_counter()
        snap = mon.sample()
        costs.append(time.perf_counter() - t)
    median_ms = statistics.median(costs) * 1000
    print(f"Monitor.sample(): median {median_ms:.3f} ms, max {max(costs) * 1000:.3f} ms")
    assert median_ms < 10
    assert snap.model == loaded.info.name
    assert snap.model_bytes > 50e6  # SmolLM2-135M's weights: ~92 MiB
    assert snap.rss > snap.model_bytes / 4 and 0 < snap.ram_used <= snap.ram_total
    assert 0 <= snap.cpu_percent <= 100 and 0 <= snap.process_cpu_percent <= 100
    assert snap.queue_depth == 0 and snap.tokens_per_s == 0
    # CPU-only llama.cpp here: nothing offloaded, of 30 layers + the output layer
    from lmnb.sources.fit import llama_offload

    if not llama_offload():
        assert snap.layers_offloaded == (0, loaded.info.layers + 1)


def test_monitor_never_waits_behind_a_generation(loaded):
    mon = Monitor()
    req = lmnb.chat("Write a long story about a dragon.", stream=True, max_tokens=60, temperature=0)
    it = iter(req)
    next(it)  # the worker is busy decoding now
    t = time.perf_counter()
    snap = mon.sample()
    elapsed = time.perf_counter() - t
    assert not req.done  # the sample came back while the worker was still generating
    assert elapsed < 0.25, elapsed
    assert snap.queue_depth == 1 and snap.generating
    req.cancel()
    assert req.result().finish_reason == "cancelled"


# ------------------------------------------------------------------------------------------------
# System
# ------------------------------------------------------------------------------------------------
def test_system_shows_model_memory_live_speed_and_queue(loaded):
    w = System(live=False)
    try:
        assert w.snapshot is not None and w.snapshot.model_bytes > 0
        assert "MB" in w.model_memory.value and loaded.info.name in w.model_memory.value
        assert w.queue.value == "0 requests" and "idle" in w.tokens_per_s.value
        assert w.ram_bar.value > 0 and " of " in w.ram.value and "resident" in w.rss.value

        first = lmnb.chat("Write a long story about a dragon.", stream=True, max_tokens=60, temperature=0)
        pieces = iter(first)
        next(pieces)  # streaming: the first token is out
        second = lmnb.chat("Name three colours.", stream=True, max_tokens=8, temperature=0)
        w.refresh()  # the baseline of the rate
        assert w.queue.value == "2 requests"  # one generating, one waiting
        t0, got = time.monotonic(), []
        for piece in pieces:  # a few more tokens, over at least one rate window (a busy machine is slow)
            got.append(piece)
            if len(got) >= 3 and time.monotonic() - t0 >= 0.3:
                break
        w.refresh()
        assert w.snapshot.tokens_per_s > 0
        assert rate_shown(w) > 0, w.tokens_per_s.value
        text = "".join(got) + "".join(pieces)
        assert text and first.result().usage.completion_tokens > 1
        second.result()
        time.sleep(0.3)
        w.refresh()
        time.sleep(0.3)
        w.refresh()  # a whole window without tokens: idle
        assert w.snapshot.tokens_per_s == 0 and w.queue.value == "0 requests"
        assert "idle" in w.tokens_per_s.value and "last" in w.tokens_per_s.value
    finally:
        w.close()


def test_system_without_a_gpu_says_so(loaded):
    from lmnb.sources.fit import gpus

    if gpus():
        pytest.skip("this machine has an NVIDIA GPU")
    w = System(live=False)
    try:
        assert w.snapshot.gpus == []
        assert w.gpu_box.children == (w.no_gpu,)
        assert w.no_gpu.value == "No NVIDIA GPU detected"
    finally:
        w.close()


class _OneGPU(Monitor):
    """A real sample of this machine, plus one GPU as NVML would report it on a GPU machine."""

    def __init__(self) -> None:
        super().__init__()
        self.gpus = [GPUStat("NVIDIA H100 80GB HBM3", 30 * 10**9, 80 * 10**9, 57.0, 64.0)]

    def sample(self) -> Snapshot:
        snap = super().sample()
        snap.gpus = list(self.gpus)
        snap.layers_offloaded = (31, 31) if self.gpus else None
        return snap


def test_system_renders_gpu_rows(loaded):
    mon = _OneGPU()
    w = System(monitor=mon, live=False)
    try:
        assert w.no_gpu not in w.gpu_box.children
        (g,) = w.gpu_views
        assert g.name.value == "NVIDIA H100 80GB HBM3"
        assert g.vram.value == "30.0 GB of 80.0 GB" and g.vram_bar.value == pytest.approx(0.375)
        assert g.utilization.value == "57%" and g.temperature.value == "64 °C"
        assert w.layers.value == "31/31 layers on the GPU"
        mon.gpus = [GPUStat("A", 1, 2, None, None), GPUStat("B", 95, 100, 3.0, 40.0)]
        w.refresh()
        assert [v.name.value for v in w.gpu_views] == ["A", "B"]
        assert w.gpu_views[0].utilization.value == "n/a" and w.gpu_views[1].vram_bar.bar_style == "danger"
        mon.gpus = []  # the GPU went away (driver reset): back to the message
        w.refresh()
        assert w.gpu_box.children == (w.no_gpu,)
    finally:
        w.close()


def test_system_follows_the_ticker_and_close_stops_it(loaded, fast_ticker):
    w = System()
    try:
        assert _ticker.running()
        t0 = w.snapshot.time
        assert wait_for(lambda: w.snapshot.time > t0), "the ticker never refreshed the pane"
    finally:
        w.close()
    assert _ticker.wait_stopped(5)
    t1 = w.snapshot.time
    time.sleep(0.2)
    assert w.snapshot.time == t1  # no refresh after close()
    again = System()  # the next subscriber starts a new thread
    try:
        assert _ticker.running()
    finally:
        again.close()


# ------------------------------------------------------------------------------------------------
# Ticker
# ------------------------------------------------------------------------------------------------
def test_ticker_survives_a_failing_callback(fast_ticker):
    calls = {"bad": 0, "good": 0}

    def bad() -> None:
        calls["bad"] += 1
        raise RuntimeError("broken pane")

    def good() -> None:
        calls["good"] += 1

    off_bad = _ticker.subscribe(bad)
    off_good = _ticker.subscribe(good)
    try:
        assert wait_for(lambda: calls["good"] >= 3 and calls["bad"] >= 3)
        assert threading.current_thread().name != _ticker.NAME
    finally:
        off_bad()
        off_good()
        off_good()  # twice is harmless
    assert _ticker.wait_stopped(5)
    n = calls["good"]
    time.sleep(0.2)
    assert calls["good"] == n


# ------------------------------------------------------------------------------------------------
# Server
# ------------------------------------------------------------------------------------------------
def test_server_pane_start_request_table_stop(loaded):
    w = Server(port=0, api_key="")
    try:
        assert "lmnb-server" in w._dom_classes and "lmnb-server-url" in w.url._dom_classes
        assert "lmnb-server-start" in w.start_button._dom_classes
        assert w.stop_button.disabled and not w.start_button.disabled
        w.start_button.click()
        srv = lmnb.server.current()
        assert srv is not None, w.status.value
        assert w.url.value == srv.url and re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", w.url.value)
        assert w.port.value == srv.port and w.start_button.disabled and not w.stop_button.disabled
        assert "Serving" in w.status.value and w.warning.value == ""
        assert "OpenAI(base_url=&quot;" + srv.url in w.example.value
        w.url.value = "edited"  # read-only: the field keeps the URL
        assert w.url.value == srv.url

        r = httpx.get(srv.url + "/models", timeout=10)
        assert r.status_code == 200
        # the ticker (about once a second) draws the row
        assert wait_for(lambda: "/v1/models" in w.requests.value, timeout=5)
        row = re.search(r"<tr><td[^>]*>[\d:]+</td><td[^>]*>GET</td><td[^>]*>/v1/models</td><td[^>]*>200</td>",
                        w.requests.value)  # fmt: skip
        assert row, w.requests.value

        port = srv.port
        w.stop_button.click()
        assert lmnb.server.current() is None and not srv.running
        assert "is free" in w.status.value and not w.start_button.disabled and w.stop_button.disabled
        with socket.socket() as s:  # the port really is free
            s.bind(("127.0.0.1", port))
    finally:
        if lmnb.server.current() is not None:
            lmnb.server.current().stop()
        w.close()


def test_server_pane_api_key(loaded):
    w = Server(port=0, live=False)
    try:
        key = w.generate_key()
        assert w.api_key.value == key and len(key) >= 24
        w.start_button.click()
        srv = lmnb.server.current()
        assert srv is not None and srv.api_key == key and "API key: required" in w.status.value
        assert httpx.get(srv.url + "/models", timeout=10).status_code == 401
        ok = httpx.get(srv.url + "/models", headers={"Authorization": f"Bearer {key}"}, timeout=10)
        assert ok.status_code == 200
        # the server records a request just after its response is sent
        assert wait_for(lambda: (w.refresh(), ">401<" in w.requests.value and ">200<" in w.requests.value)[1], 5)
        assert key not in w.example.value and "&lt;your API key&gt;" in w.example.value
        w.show_key.value = True
        assert key in w.example.value
    finally:
        w.stop()
        w.close()


def test_server_pane_busy_port_is_an_error_not_an_exception(loaded):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        w = Server(port=port, live=False)
        try:
            w.start_button.click()  # must not raise
            assert lmnb.server.current() is None
            assert f"Port {port} on 127.0.0.1 is in use" in w.status.value and "#c62828" in w.status.value
            assert not w.start_button.disabled
            w.refresh()  # the error stays until something changes
            assert "is in use" in w.status.value
            w.port.value = 70000
            assert w.start() is None and "out of range" in w.status.value
        finally:
            w.close()


def test_server_pane_reflects_a_server_started_elsewhere(loaded):
    w = Server(live=False)
    srv = lmnb.serve(port=0)  # as %lm serve --port 0 would
    try:
        assert w.url.value == ""
        w.refresh()
        assert w.url.value == srv.url and w.port.value == srv.port and w.host.value == "127.0.0.1"
        assert w.start_button.disabled
        assert w.stop() is True and not srv.running
    finally:
        srv.stop()
        w.close()


def test_server_pane_warns_about_non_loopback_addresses():
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("::")
    w = Server(live=False)
    try:
        assert w.warning.value == ""
        w.host.value = "0.0.0.0"
        assert "other machines" in w.warning.value and "no API key" in w.warning.value
        w.api_key.value = "k"
        w.host.value = "0.0.0.0 "
        assert "other machines" in w.warning.value and "no API key" not in w.warning.value
    finally:
        w.close()


# ------------------------------------------------------------------------------------------------
# Logs
# ------------------------------------------------------------------------------------------------
def test_logs_pane_shows_filters_escapes_and_clears(loaded, smollm2_path, fast_ticker):
    lmnb.load(smollm2_path, n_ctx=2048)  # fresh llama.cpp lines in the buffer
    w = Logs()
    try:
        assert "lmnb-logs" in w._dom_classes
        assert "llama_model_loader" in w.output.value and "print_info" in w.output.value
        assert w.refresh() is False  # nothing changed: nothing redrawn

        LOGS.write(2, "model at /tmp/<script>alert('x')</script> & more\n")
        # the ticker redraws the pane when the buffer changes
        assert wait_for(lambda: "alert" in w.output.value)
        assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; more" in w.output.value
        assert "<script>" not in w.output.value

        LOGS.write(3, "a warning from llama.cpp\n")
        w.level.value = "warn"
        assert "a warning from llama.cpp" in w.output.value
        assert "print_info" not in w.output.value and "alert" not in w.output.value
        assert w.note.value == ""

        w.level.value = "debug"  # LM.log_level is info: debug lines are not kept
        assert "debug lines are not being kept" in w.note.value

        w.level.value = "info"
        w.last.value = 1
        assert "a warning from llama.cpp" in w.output.value and "print_info" not in w.output.value

        w.clear_button.click()
        assert LOGS.records() == [] and "The log is empty" in w.output.value
        assert w.count.value.startswith("0 of 0")
    finally:
        w.close()


def test_panes_share_one_status_line_and_one_error_rule():
    """Every pane reports through lmnb.widgets._pane: one colour per kind, escaped text, one rule for
    which errors are shown by their message alone, and close() ends a live pane's ticker subscription."""
    import ipywidgets as widgets
    from traitlets import TraitError

    from lmnb.errors import LmnbError
    from lmnb.widgets._html import SafeHTML
    from lmnb.widgets._pane import COLORS, StatusPane, describe, status_html
    from lmnb.widgets.explorer import NextTokenExplorer
    from lmnb.widgets.models import Models
    from lmnb.widgets.parameters import Parameters

    # written for users: the message alone (without its final period); anything else: its type first
    assert describe(LmnbError("No model is loaded.")) == "No model is loaded"
    assert describe(ValueError("temperature must be >= 0")) == "temperature must be >= 0"
    assert describe(TraitError("n_ctx must be > 0")) == "n_ctx must be > 0"
    assert describe(KeyError("x")) == "KeyError: 'x'"
    assert describe(RuntimeError()) == "RuntimeError"

    line = status_html("<b>Q4</b> & more", "warn")
    assert line == f'<span style="overflow-wrap:anywhere;color:{COLORS["warn"]}">&lt;b&gt;Q4&lt;/b&gt; &amp; more</span>'
    assert status_html("") == "" and "color" not in status_html("plain")

    class Pane(StatusPane, widgets.VBox):
        _status_attr = "line"

        def __init__(self) -> None:
            super().__init__()
            self.line, self.other = SafeHTML(), SafeHTML()

    p = Pane()
    try:
        p._guard(lambda *_: {}["<missing>"])("ignored argument")  # never raises into the frontend
        assert p.line.value == f'<span style="overflow-wrap:anywhere;color:{COLORS["error"]}">KeyError: &#39;&lt;missing&gt;&#39;</span>'
        p._guard(lambda: (_ for _ in ()).throw(ValueError("bad value.")), p.other)()
        assert "bad value<" in p.other.value and "ValueError" not in p.other.value
        p._say("done", "ok")
        assert COLORS["ok"] in p.line.value
        before = _ticker.subscribers()
        p._go_live(lambda: None)
        assert _ticker.subscribers() == before + 1
    finally:
        p.close()
    assert _ticker.subscribers() == before
    p.close()  # twice is fine

    for pane in (Models, Parameters, NextTokenExplorer, Logs, System):
        assert issubclass(pane, StatusPane), pane
