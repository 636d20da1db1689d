"""The comm target the JupyterLab extension talks to, driven the way the extension does: a real
ipykernel through jupyter_client, `comm_open` on target "lmnb", then its messages."""

from __future__ import annotations

import queue
import time
import uuid

import pytest

from .test_kernel import execute

jupyter_client = pytest.importorskip("jupyter_client")


@pytest.fixture(scope="module")
def kc(tmp_path_factory):
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3", startup_timeout=120)
    yield kc
    kc.stop_channels()
    km.shutdown_kernel(now=True)


class Comm:
    """The front end's side of one comm."""

    def __init__(self, kc, target: str = "lmnb") -> None:
        self.kc, self.id, self.closed = kc, uuid.uuid4().hex, False
        self.messages: list[dict] = []
        self._send("comm_open", {"comm_id": self.id, "target_name": target, "data": {"type": "hello"}})

    def _send(self, kind: str, content: dict) -> None:
        self.kc.shell_channel.send(self.kc.session.msg(kind, content))

    def send(self, data: dict) -> None:
        self._send("comm_msg", {"comm_id": self.id, "data": data})

    def close(self) -> None:
        self._send("comm_close", {"comm_id": self.id, "data": {}})

    def wait(self, pred, timeout: float = 60, after: int = 0) -> dict:
        """The first message (seen from now on, or already: from the ``after``-th one) for which
        ``pred(data)`` holds."""
        deadline = time.time() + timeout
        seen = after
        while True:
            for data in self.messages[seen:]:
                if pred(data):
                    return data
            seen = len(self.messages)
            if self.closed:
                raise AssertionError("the kernel closed the comm")
            try:
                msg = self.kc.get_iopub_msg(timeout=max(0.1, deadline - time.time()))
            except queue.Empty:
                raise TimeoutError(f"no matching message; last: {self.messages[-3:]}") from None
            content = msg["content"]
            if content.get("comm_id") != self.id:
                continue
            if msg["msg_type"] == "comm_close":
                self.closed = True
            elif msg["msg_type"] == "comm_msg":
                self.messages.append(content["data"])


def test_without_lmnb_loaded_the_kernel_closes_the_comm(kc):
    comm = Comm(kc)
    with pytest.raises(AssertionError, match="closed"):
        comm.wait(lambda d: True, timeout=20)


def shorten_ticker(kc) -> None:
    """Make the kernel's status ticker tick every 50 ms, and wait until it does: it may be inside a
    wait of the old second, which a whole short reply fits in on a fast minute. Two ticks seen
    after the change mean the short interval is the one it waits now."""
    reply, _ = execute(kc, "import threading, lmnb.widgets.ticker as _ticker; _ticker.INTERVAL = 0.05\n"
                           "_ticks = threading.Semaphore(0); _unsub = _ticker.subscribe(_ticks.release)\n"
                           "assert all(_ticks.acquire(timeout=10) for _ in range(2)); _unsub()")  # fmt: skip
    assert reply["status"] == "ok", reply


def test_status_models_load_generate_serve(kc, smollm2_path):
    reply, _ = execute(kc, "%load_ext lmnb\n%config LM.history = False")
    assert reply["status"] == "ok"
    comm = Comm(kc)
    st = comm.wait(lambda d: d["type"] == "status")
    assert st["state"] == "no model" and st["model"] is None and st["memory_bytes"] > 0
    assert st["parameters"]["temperature"] == 0.8
    models = comm.wait(lambda d: d["type"] == "models")["models"]
    bundled = next(m for m in models if m["path"] == smollm2_path)
    assert bundled["size_bytes"] > 50e6 and bundled["loaded"] is False

    comm.send({"type": "load", "model": bundled["name"]})
    comm.wait(lambda d: d["type"] == "status" and d["state"] == "loading")
    st = comm.wait(lambda d: d["type"] == "status" and d["state"] == "idle")
    assert st["model"] == "SmolLM2-135M-Instruct.Q4_1" and st["model_bytes"] > 50e6
    assert comm.wait(lambda d: d["type"] == "models" and any(m["loaded"] for m in d["models"]))

    # a chat cell: the status says generating, then gives the speed. The status is sampled on the
    # ticker's interval: shorten it, and generate for several ticks, so "generating" cannot be missed
    shorten_ticker(kc)
    kc.execute("%%lm -n 64 -t 0\nCount from 1 to 100.")
    comm.wait(lambda d: d["type"] == "status" and d["state"] == "generating")
    # generous: a 2-core machine shared with other test runs decodes at a few tokens a second
    st = comm.wait(lambda d: d["type"] == "status" and d["state"] == "idle" and d["tokens_per_s"], timeout=300)
    assert 0 < st["tokens_per_s"] < 1000

    # parameters changed in the kernel reach the panel
    kc.execute("%lm set temperature=0.3")
    comm.wait(lambda d: d["type"] == "status" and d["parameters"]["temperature"] == 0.3)

    comm.send({"type": "serve", "port": 0})
    st = comm.wait(lambda d: d["type"] == "status" and d["server_url"])
    assert st["server_url"].startswith("http://127.0.0.1:") and st["server_url"].endswith("/v1")
    comm.send({"type": "stop_server"})
    comm.wait(lambda d: d["type"] == "status" and d["server_url"] is None)

    # bad requests come back as errors; the kernel and the comm go on
    comm.send({"type": "load", "model": "/nope/missing.gguf"})
    err = comm.wait(lambda d: d["type"] == "error")
    assert "missing.gguf" in err["message"]
    comm.send({"type": "serve", "port": "eighty"})
    assert "port" in comm.wait(lambda d: d["type"] == "error" and "port" in d["message"])["message"]
    comm.send({"type": "dance"})
    comm.wait(lambda d: d["type"] == "error" and "dance" in d["message"])
    st = comm.wait(lambda d: d["type"] == "status" and d["state"] == "idle" and d["model"])
    reply, _ = execute(kc, "print(lmnb_ok := 1)")
    assert reply["status"] == "ok"

    comm.send({"type": "unload"})
    comm.wait(lambda d: d["type"] == "status" and d["state"] == "no model")
    comm.close()


def is_status(d: dict) -> bool:
    return d["type"] == "status"


def test_status_lists_every_loaded_model_and_unloads_by_name(kc, smollm2_path):
    reply, _ = execute(kc, "%load_ext lmnb\n%config LM.history = False\nimport lmnb\n"
                           "from lmnb.sources.library import bundled_model")  # fmt: skip
    assert reply["status"] == "ok"
    shorten_ticker(kc)
    try:
        reply, _ = execute(kc, f"lmnb.load({smollm2_path!r}, n_ctx=1024)\n"
                               "lmnb.load(bundled_model('gemma3'), name='g', n_ctx=1024)", timeout=300)  # fmt: skip
        assert reply["status"] == "ok", reply
        comm = Comm(kc)
        st = comm.wait(lambda d: is_status(d) and len(d["models"]) == 2)
        # the top-level fields still describe the default model, for an older extension
        assert st["model"] == "SmolLM2-135M-Instruct.Q4_1" and st["state"] == "idle"
        default, g = st["models"]
        assert default == {"name": "default", "model": st["model"], "model_bytes": st["model_bytes"],
                           "on_demand": False, "state": "idle", "lora": []}  # fmt: skip
        assert g["name"] == "g" and g["model"].lower().startswith("gemma") and g["state"] == "idle"
        assert g["model_bytes"] > default["model_bytes"] > 50e6 and g["on_demand"] is False
        # the local model list marks both files loaded
        models = comm.wait(lambda d: d["type"] == "models")["models"]
        assert sum(m["loaded"] for m in models) == 2, models

        # a request to g: g generates, the default model stays idle
        mark = len(comm.messages)
        kc.execute("_ = lmnb.chat('Count from 1 to 50.', model='g', max_tokens=48, temperature=0)")
        st = comm.wait(lambda d: is_status(d) and len(d["models"]) == 2 and d["models"][1]["state"] == "generating",
                       after=mark)  # fmt: skip
        assert st["state"] == "idle" and st["models"][0]["state"] == "idle"
        mark = len(comm.messages)
        comm.wait(lambda d: is_status(d) and [m["state"] for m in d["models"]] == ["idle", "idle"], after=mark)

        # unload by name: only that model goes; a name nothing is loaded under is an error
        mark = len(comm.messages)
        comm.send({"type": "unload_model", "name": "nope"})
        assert "'nope'" in comm.wait(lambda d: d["type"] == "error", after=mark)["message"]
        comm.send({"type": "unload_model", "name": "g"})
        st = comm.wait(lambda d: is_status(d) and [m["name"] for m in d["models"]] == ["default"], after=mark)
        assert st["model"] == "SmolLM2-135M-Instruct.Q4_1" and st["state"] == "idle"
        models = comm.wait(lambda d: d["type"] == "models", after=mark)["models"]
        assert [m["path"] for m in models if m["loaded"]] == [smollm2_path]

        # the plain "unload" still means the default model
        mark = len(comm.messages)
        comm.send({"type": "unload"})
        st = comm.wait(lambda d: is_status(d) and d["state"] == "no model", after=mark)
        assert st["models"] == [] and st["model"] is None
        comm.close()
    finally:
        execute(kc, "lmnb.unload(all=True)")
