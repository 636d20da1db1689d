"""The notebooks' test run (nbval). model_hub.ipynb talks to Hugging Face; there is no internet
here, so its kernel is pointed (HF_ENDPOINT) at the local Hub mirror the hub tests use, serving
the bundled SmolLM2 file, with an empty Hugging Face cache of its own."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

HUB_NOTEBOOK = "model_hub.ipynb"
REPO = "bartowski/SmolLM2-135M-Instruct-GGUF"

_mirror = None

# lora_finetune.ipynb trains a LoRA on CPU: a couple of steps and a few held-out reports are enough
# to run every cell (its defaults, for a useful adapter, take minutes)
FINETUNE_NOTEBOOK = "lora_finetune.ipynb"


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    # before nbval starts the notebook's kernel (at its first cell), which inherits this environment
    global _mirror
    if Path(str(item.fspath)).name == FINETUNE_NOTEBOOK:
        os.environ.setdefault("LMNB_FINETUNE_STEPS", "2")
        os.environ.setdefault("LMNB_FINETUNE_EVAL", "2")  # cell 23 compares on test[1]
        # its adapter's GGUF conversion is cached in the data dir: a test run's, not the user's
        os.environ.setdefault("XDG_DATA_HOME", tempfile.mkdtemp(prefix="lmnb-nb-data-"))
    if _mirror is not None or Path(str(item.fspath)).name != HUB_NOTEBOOK:
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from lmnb.sources.library import bundled_model
    from tests.hf_server import HFServer, Repo

    smollm2 = bundled_model("smollm2")
    _mirror = HFServer(repos={REPO: Repo(files={"SmolLM2-135M-Instruct-Q4_1.gguf": smollm2,
                                                "README.md": b"# SmolLM2 135M Instruct, GGUF\n"},
                                         downloads=1200, likes=40,
                                         gguf={"total": 134515008, "architecture": "llama", "context_length": 8192})})  # fmt: skip
    _mirror.start()
    os.environ["HF_ENDPOINT"] = _mirror.url
    os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="lmnb-nb-hf-")
    for name in ("HF_HUB_OFFLINE", "HF_TOKEN", "HF_HUB_CACHE"):
        os.environ.pop(name, None)


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _mirror is not None:
        _mirror.stop()
