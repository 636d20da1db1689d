"""The JupyterLab extension as a user gets it: the wheel built by `python -m build`, installed with
Binder's requirements into a fresh virtual environment, JupyterLab started from that environment,
and its status bar item and side panel driven in Chromium."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile

import pytest

from ..hostile import NAME_PAYLOAD
from . import lab as _lab

pytestmark = pytest.mark.browser

SHARE = "share/jupyter/labextensions/lmnb-labextension/"


def _installer(python: str) -> list[str]:
    """The install command for the new environment: uv (a dev dependency) where it is installed,
    pip otherwise. Both resolve the same requirements; uv installs JupyterLab's hundred packages
    in seconds where pip takes a minute and a half. uv does not read pip's wheel cache, so it is
    pointed at the llama-cpp-python wheel pip built for this environment (not built twice)."""
    try:
        from uv import find_uv_bin

        uv = find_uv_bin()
    except (ImportError, FileNotFoundError):
        return [python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    cached = subprocess.run([sys.executable, "-m", "pip", "cache", "list", "--format=abspath", "llama_cpp_python"],
                            capture_output=True, text=True, timeout=60).stdout.split()  # fmt: skip
    links = [arg for path in cached for arg in ("--find-links", os.path.dirname(path))]
    return [uv, "pip", "install", "-q", "--python", python, *links]


@pytest.fixture(scope="module")
def venv_python(browser_available, tmp_path_factory) -> str:
    base = tmp_path_factory.mktemp("wheel")
    dist = base / "dist"
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(_lab.REPO_ROOT)],
                   check=True, capture_output=True, timeout=600)  # fmt: skip
    wheel = next(dist.glob("lmnb-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    shipped = [n for n in names if SHARE in n]
    assert any(n.endswith(SHARE + "package.json") for n in shipped), names
    assert any(re.search(r"static/remoteEntry\.[0-9a-f]+\.js$", n) for n in shipped), shipped
    assert not any(n.startswith("lmnb/labextension/") for n in names)  # shipped once, as shared data

    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    requirements = _lab.REPO_ROOT / "binder" / "requirements.txt"
    proc = subprocess.run(_installer(python) + ["-r", str(requirements), f"{wheel}[starter]"],
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    # `jupyter` finds its subcommands on PATH: the new environment's first
    env = {**os.environ, "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}", "NO_COLOR": "1"}
    listed = subprocess.run([python, "-m", "jupyter", "labextension", "list"], capture_output=True, text=True,
                            timeout=120, env=env)  # fmt: skip
    out = re.sub(r"\x1b\[[0-9;]*m", "", listed.stdout + listed.stderr)
    assert re.search(r"lmnb-labextension v\S+ enabled .*OK", out), out
    assert str(venv) in out  # found in the new environment, not in the one running the tests
    return python


@pytest.fixture(scope="module")
def venv_lab(venv_python, tmp_path_factory):
    server = _lab.LabServer(tmp_path_factory.mktemp("venvlab"), python=venv_python, checkout=False)
    try:
        server.start()
        yield server
    finally:
        server.stop()


def test_status_item_follows_the_kernel(venv_lab, chromium, artifacts, hostile_gguf):
    from playwright.sync_api import expect  # here: without playwright the module still imports, and skips

    from lmnb.sources.library import bundled_model

    page, log = chromium.new_page()
    # the second model: the Gemma 3 file of the environment running the tests, loaded by path
    gemma = bundled_model("gemma3")
    cells = ["%load_ext lmnb", "%lm load --ctx 2048", "%%lm -n 24 --temperature 0\nSay hello in five words.",
             f"import lmnb\nlmnb.load({gemma!r}, name='g', n_ctx=1024)",
             f"lmnb.load({str(hostile_gguf)!r}, n_ctx=1024)"]
    nb = _lab.Notebook.create(venv_lab, page, cells, name="extension.ipynb", log=log)
    try:
        item = page.locator("#lmnb-status")
        panel = page.locator("#lmnb-panel")
        # The item follows pushes from the kernel, which arrive when they arrive (a busy machine can
        # show `loading` well after the model's name appears): wait for each state with Playwright's
        # retrying assertions rather than reading it once. Generous timeouts; nothing sleeps.
        wait = 60_000  # ms

        # a kernel without lmnb: the item says so
        expect(item).to_have_attribute("data-state", "not-loaded", timeout=wait)
        expect(item).to_contain_text("not loaded", timeout=wait, use_inner_text=True)

        nb.run_cell(0, timeout=60)
        expect(item).to_have_attribute("data-state", "no-model", timeout=wait)

        nb.run_cell(1, timeout=120)
        expect(item).to_contain_text("SmolLM2", timeout=wait, use_inner_text=True)
        # the item names the model while it loads too: wait for the state, not the name
        expect(item).to_have_attribute("data-state", "idle", timeout=wait)
        expect(item).not_to_contain_text("tok/s", use_inner_text=True)  # nothing generated yet

        nb.run_cell(2, timeout=120)
        expect(item).to_contain_text(re.compile(r"\d+(\.\d+)? tok/s"), timeout=wait, use_inner_text=True)
        expect(item).to_contain_text(re.compile(r"\d+ MB"), timeout=wait, use_inner_text=True)
        expect(item).to_have_attribute("data-models", "1", timeout=wait)

        # a second model, loaded beside the default one under a name: the item counts it, and its
        # tooltip lists both with their memory
        nb.run_cell(3, timeout=180)
        expect(item).to_have_attribute("data-models", "2", timeout=wait)
        expect(item).to_contain_text(re.compile(r"SmolLM2\S* \+1 · "), timeout=wait, use_inner_text=True)
        expect(item).to_have_attribute("title", re.compile(r"Models \(2 loaded\)"), timeout=wait)
        expect(item).to_have_attribute("title", re.compile(r"SmolLM2\S* \(default\): \d+ MB"), timeout=wait)
        expect(item).to_have_attribute("title", re.compile(r"gemma\S* \(as g\): \d+ MB", re.I), timeout=wait)
        nb.screenshot("extension-status-bar", page.locator(".jp-StatusBar-Widget, #jp-main-statusbar").first)

        # clicking it opens the side panel: the loaded models, the local ones, the server, the parameters
        item.click()
        expect(panel).to_be_visible(timeout=wait)
        expect(panel).to_contain_text("smollm2", ignore_case=True, timeout=wait, use_inner_text=True)
        expect(panel).to_contain_text("temperature", ignore_case=True, timeout=wait, use_inner_text=True)
        loaded = panel.locator(".lmnb-LoadedList-item")
        expect(loaded).to_have_count(2, timeout=wait)
        expect(loaded.nth(1)).to_contain_text("as g", timeout=wait, use_inner_text=True)
        nb.screenshot("extension-panel")

        # Unload on g's row unloads g only
        loaded.nth(1).get_by_role("button", name="Unload").click()
        expect(item).to_have_attribute("data-models", "1", timeout=wait)
        expect(loaded).to_have_count(1, timeout=wait)
        expect(item).not_to_contain_text("+1", use_inner_text=True)

        # a model file named with a payload: the status item and the panel show it as text
        nb.run_cell(4, timeout=120)
        expect(item).to_contain_text(NAME_PAYLOAD, timeout=wait, use_inner_text=True)
        expect(panel).to_contain_text(NAME_PAYLOAD, timeout=wait, use_inner_text=True)
        assert page.locator("#lmnb-status img, #lmnb-panel img, #lmnb-status svg image").count() == 0
        assert page.evaluate("window.__pwned") is None
        assert not log.errors(), log.errors()
    finally:
        nb.close()
