"""Shared fixtures. Every test runs on the real bundled SmolLM2-135M-Instruct GGUF (no fake engine)."""

from __future__ import annotations

import os
import signal
import tempfile

import pytest

# Interrupting a cell raises KeyboardInterrupt in the kernel (ipykernel installs Python's handler).
# A test run started in the background by a non-interactive shell inherits SIGINT ignored, and
# the interrupt tests would then test nothing: give the session the handler a kernel has.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# huggingface_hub reads HF_HOME once, at import: point it at a scratch dir before any test module
# (or lmnb) can import it, so no test ever touches the user's real HF cache.
_SCRATCH = tempfile.mkdtemp(prefix="lmnb-tests-")
os.environ["HF_HOME"] = os.path.join(_SCRATCH, "hf")
os.environ["XDG_CONFIG_HOME"] = os.path.join(_SCRATCH, "config")
os.environ["XDG_DATA_HOME"] = os.path.join(_SCRATCH, "data")  # converted LoRA adapters, among others
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
# Discovery of LM Studio / Ollama models must not pick up whatever this machine has installed.
os.environ.setdefault("LMNB_LMSTUDIO_DIRS", os.path.join(_SCRATCH, "no-lmstudio"))
os.environ.setdefault("OLLAMA_MODELS", os.path.join(_SCRATCH, "no-ollama"))


@pytest.fixture(scope="session", autouse=True)
def _isolated_user_dirs(tmp_path_factory):
    """Keep history and the HF cache of the test run away from the user's own."""
    root = tmp_path_factory.mktemp("lmnb-home")
    from lmnb.config import get_config

    cfg = get_config()
    cfg.history_path = str(root / "history.sqlite")
    yield root


@pytest.fixture(scope="session")
def smollm2_path() -> str:
    from lmnb.sources.library import bundled_model

    return bundled_model("smollm2")


@pytest.fixture(scope="session")
def engine(smollm2_path):
    """The session's shared engine, with SmolLM2 loaded (as `%lm load` would)."""
    import lmnb

    lmnb.load(smollm2_path, n_ctx=2048)
    eng = lmnb.get_engine()
    yield eng


@pytest.fixture
def loaded(engine, smollm2_path):
    """Make sure SmolLM2 is loaded in the shared engine as the session loaded it (a test may have
    unloaded it, or loaded it with another context) with an empty KV cache, so no test depends
    on the one before."""
    import lmnb

    opts = engine.status().options
    if (not engine.loaded or engine.info.path != os.path.abspath(smollm2_path)
            or (opts.n_ctx, opts.n_parallel, opts.batch_invariant) != (2048, 4, False)):  # fmt: skip
        lmnb.load(smollm2_path, n_ctx=2048)  # the defaults' batching: 4 sequences in one shared cache
    engine.clear_cache()  # nor on the cells it left: where they lie can change a seeded reply
    return engine


@pytest.fixture
def shell(loaded):
    """A real IPython InteractiveShell with the extension loaded."""
    from IPython.testing.globalipapp import get_ipython

    ip = get_ipython()
    ip.run_line_magic("load_ext", "lmnb")
    return ip


# ---- the OpenAI-compatible server ------------------------------------------------------------
@pytest.fixture(scope="module")
def server(engine):
    """A server for this module's tests on a free port (not lmnb.serve(): that one is the magic's)."""
    from lmnb.server import Server

    srv = Server("127.0.0.1", 0)
    yield srv
    srv.stop()


@pytest.fixture
def client(server, loaded):
    """The official ``openai`` client on ``server`` (no retries: a failure shows at once)."""
    import openai

    return openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0, timeout=300)


def server_root(server) -> str:
    """The server's address without ``/v1`` (llama-server's routes, /health, /metrics)."""
    return server.url.removesuffix("/v1")


def copy_truncated(src: str, dst: str, fraction: float = 0.5) -> str:
    size = os.path.getsize(src)
    with open(src, "rb") as f, open(dst, "wb") as g:
        g.write(f.read(int(size * fraction)))
    return dst


def run_cell(shell, line: str, cell: str):
    """Run ``%%lm {line}`` over ``cell`` in the test shell; returns the cell's result and its captured output."""
    from IPython.utils.capture import capture_output

    with capture_output() as cap:
        result = shell.run_cell(f"%%lm {line}\n{cell}")
    return result, cap


def final_reply(cap):
    """The reply as finally shown: the last output carrying lmnb's metadata (earlier ones are updates)."""
    return [o for o in cap.outputs if "lmnb" in (o.metadata or {})][-1]
