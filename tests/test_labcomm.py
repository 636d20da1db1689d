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

    def wait(self, pred, timeout: float = 60) -> dict:
        """The first message (seen from now on, or already) for which ``pred(data)`` holds."""
        deadline = time.time() + timeout
        seen = 0
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
    execute(kc, "import lmnb.widgets._ticker as _ticker; _ticker.INTERVAL = 0.05")
    kc.execute("%%lm -n 200 -t 0\nCount from 1 to 100.")
    comm.wait(lambda d: d["type"] == "status" and d["state"] == "generating")
    st = comm.wait(lambda d: d["type"] == "status" and d["state"] == "idle" and d["tokens_per_s"])
    assert 5 < st["tokens_per_s"] < 1000

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
