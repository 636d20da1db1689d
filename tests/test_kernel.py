"""What a notebook user sees: a real ipykernel, driven through jupyter_client like JupyterLab does."""

from __future__ import annotations

import queue
import time

import pytest

jupyter_client = pytest.importorskip("jupyter_client")


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3", startup_timeout=120)
    hist = tmp_path_factory.mktemp("kernel") / "history.sqlite"
    execute(kc, f"%load_ext lmnb\n%config LM.history_path = {str(hist)!r}")
    yield km, kc
    kc.stop_channels()
    km.shutdown_kernel(now=True)


def execute(kc, code: str, timeout: float = 120, on_msg=None) -> tuple[dict, list[dict]]:
    """Run code; return the execute_reply content and the iopub messages of this execution."""
    msg_id = kc.execute(code)
    msgs = []
    deadline = time.time() + timeout
    while True:
        try:
            msg = kc.get_iopub_msg(timeout=max(0.1, deadline - time.time()))
        except queue.Empty:
            raise TimeoutError(f"no idle after {timeout}s running {code!r}") from None
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        msgs.append(msg)
        if on_msg:
            on_msg(msg)
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
    while True:  # skip replies to other requests (start_new_kernel can leave its kernel_info_reply queued)
        reply = kc.get_shell_msg(timeout=timeout)
        if reply["parent_header"].get("msg_id") == msg_id:
            return reply["content"], msgs


def test_quickstart_flow_streams_into_the_cell(kernel):
    _, kc = kernel
    reply, msgs = execute(kc, "%lm load")
    assert reply["status"] == "ok", reply
    shown = [m for m in msgs if m["msg_type"] in ("display_data", "update_display_data")]
    assert "Loaded" in shown[-1]["content"]["data"]["text/plain"]

    reply, msgs = execute(kc, "%%lm chat -n 60 -t 0\nExplain attention in two sentences.")
    assert reply["status"] == "ok", reply
    updates = [m for m in msgs if m["msg_type"] == "update_display_data"]
    assert len(updates) >= 3, "the reply should be updated in place as tokens arrive"
    texts = [u["content"]["data"]["text/plain"] for u in updates]
    assert len(set(len(t) for t in texts)) >= 3, "each update should show more text"
    final = updates[-1]["content"]
    assert final["metadata"]["lmnb"]["model_path"].endswith(".gguf")
    # the reply reaches the front end as sanitized HTML rendered from its Markdown, never as raw
    # Markdown (which JupyterLab would render with the reply's own HTML live)
    assert all("text/markdown" not in u["content"]["data"] for u in updates)
    assert "<p>" in final["data"]["text/html"]
    stats = [m for m in msgs if m["msg_type"] == "display_data"][-1]["content"]["data"]["text/plain"]
    assert "tok/s" in stats


def test_interrupt_kernel_mid_generation(kernel):
    km, kc = kernel
    sent = {"n": 0}

    def on_msg(msg):
        # interrupt as soon as some text has streamed, as a user pressing the stop button would
        if msg["msg_type"] == "update_display_data" and sent["n"] == 0:
            if len(msg["content"]["data"].get("text/plain", "")) > 40:
                sent["n"] = 1
                sent["t"] = time.time()
                km.interrupt_kernel()

    reply, msgs = execute(
        kc, "%%lm -t 0 -n 4000 -o partial\nWrite a very long essay on the history of Rome.", on_msg=on_msg
    )
    assert sent["n"] == 1
    assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt"
    assert time.time() - sent["t"] < 5
    final = [m for m in msgs if m["msg_type"] == "update_display_data"][-1]["content"]["data"]["text/plain"]
    assert "[interrupted]" in final

    reply, msgs = execute(kc, "print(len(partial))")
    n = int([m for m in msgs if m["msg_type"] == "stream"][0]["content"]["text"])
    assert n > 40

    reply, _ = execute(kc, "%%lm -t 0 -n 5\nStill working?")
    assert reply["status"] == "ok"


def test_serving_from_a_real_kernel_keeps_it_responsive(kernel):
    """`%lm serve` in a kernel: a client streams from it while the notebook runs other cells,
    and a kernel interrupt during that cell leaves the server running."""
    import re
    import threading

    import openai

    km, kc = kernel
    execute(kc, "%lm load")
    reply, msgs = execute(kc, "%lm serve --port 0")
    assert reply["status"] == "ok", reply
    out = "".join(m["content"].get("text", "") for m in msgs if m["msg_type"] == "stream")
    url = re.search(r"http://127\.0\.0\.1:\d+/v1", out).group(0)
    client = openai.OpenAI(base_url=url, api_key="x", max_retries=0)
    streamed: list[str] = []

    def consume() -> None:
        for chunk in client.chat.completions.create(model="", messages=[{"role": "user", "content": "Write a story."}],
                                                    max_tokens=150, stream=True):
            if chunk.choices and chunk.choices[0].delta.content:
                streamed.append(chunk.choices[0].delta.content)

    t = threading.Thread(target=consume)
    t.start()
    while not streamed and t.is_alive():
        time.sleep(0.01)
    t0 = time.time()
    reply, _ = execute(kc, "x = sum(range(1000)); x")
    assert reply["status"] == "ok" and time.time() - t0 < 2, "the kernel must answer while serving"
    km.interrupt_kernel()  # a stray interrupt (no cell running a generation) must not stop the server
    t.join(120)
    assert len(streamed) > 20
    assert client.chat.completions.create(model="", messages=[{"role": "user", "content": "Hi"}], max_tokens=4).choices
    reply, msgs = execute(kc, "%lm serve --stop")
    assert "Stopped" in "".join(m["content"].get("text", "") for m in msgs if m["msg_type"] == "stream")


def test_download_in_a_notebook_shows_a_progress_widget_then_loads(tmp_path, smollm2_path):
    """`%lm download` in a real kernel: an ipywidgets progress bar (bytes, speed, ETA), then load and chat."""
    import os

    from jupyter_client.manager import start_new_kernel

    from .hf_server import HFServer, Repo

    repo = "nb-test/SmolLM2-GGUF"
    with HFServer(repos={repo: Repo(files={"SmolLM2-Q4_1.gguf": smollm2_path})}) as hub:
        hub.throttle_bps = 60 << 20  # a couple of seconds, so the bar moves
        env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf")}
        km, kc = start_new_kernel(kernel_name="python3", startup_timeout=120, env=env)
        try:
            execute(kc, f"%load_ext lmnb\n%config LM.history_path = {str(tmp_path / 'h.sqlite')!r}")
            reply, msgs = execute(kc, f"%lm download {repo}")
            assert reply["status"] == "ok", reply
            opened = {m["content"]["data"]["state"].get("_model_name") for m in msgs if m["msg_type"] == "comm_open"}
            assert "FloatProgressModel" in opened, opened
            values = [m["content"]["data"]["state"]["value"] for m in msgs
                      if m["msg_type"] == "comm_msg" and "value" in m["content"]["data"].get("state", {})]  # fmt: skip
            bar_values = [v for v in values if isinstance(v, (int, float))]
            assert bar_values and max(bar_values) == os.path.getsize(smollm2_path)
            labels = [v for v in values if isinstance(v, str)]
            assert any("B/s" in v for v in labels), labels[-3:]  # tqdm's label: bytes, speed, time left
            text = "".join(m["content"].get("text", "") for m in msgs if m["msg_type"] == "stream")
            assert f"Load it with: %lm load {repo}:Q4_1" in text
            reply, msgs = execute(kc, f"%lm load {repo} --ctx 512")
            assert reply["status"] == "ok", reply
            reply, msgs = execute(kc, "%%lm -n 4 -t 0\nSay hi.")
            assert reply["status"] == "ok", reply
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=True)
