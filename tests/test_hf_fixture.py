"""The local Hugging Face Hub of tests/hf_server.py, driven by the real huggingface_hub client.

Every call names its endpoint (``endpoint=server.url``) and cache (``cache_dir=tmp_path``): huggingface_hub reads
HF_ENDPOINT / HF_HOME when it is imported, so environment variables set by a test would not reach it. ``token=False``
keeps a token stored on the machine out of the requests.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import time
from pathlib import Path

import httpx2
import pytest
from huggingface_hub import HfApi, constants, get_hf_file_metadata, hf_hub_download, hf_hub_url
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import tqdm as hf_tqdm

from .hf_server import COMMIT, HFServer, Repo

GGUF_META = {"total": 134515008, "architecture": "llama", "context_length": 8192}
SMALL = os.urandom(1_000_000)  # a stand-in .gguf (LFS: served through the CDN)
README = b"# Tiny\n\nA test repo.\n"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def catalogue() -> dict[str, Repo]:
    return {
        "bartowski/Tiny-GGUF": Repo(
            files={"Tiny-Q4_K_M.gguf": SMALL, "Tiny-Q8_0.gguf": SMALL[:1000], "README.md": README},
            downloads=500,
            likes=3,
            gguf=GGUF_META,
            last_modified="2026-03-01T00:00:00.000Z",
        ),
        "unsloth/tiny-GGUF": Repo(
            files={
                "Q4_K_M/tiny-Q4_K_M-00001-of-00002.gguf": b"a" * 700,
                "Q4_K_M/tiny-Q4_K_M-00002-of-00002.gguf": b"b" * 300,
            },
            downloads=900,
            likes=1,
        ),
        "meta/Gated-GGUF": Repo(files={"gated-Q4_K_M.gguf": b"g" * 2048}, downloads=100, likes=50, gated=True),
        "acme/tiny-pytorch": Repo(files={"model.bin": b"p" * 10}, tags=["pytorch"], downloads=10_000, likes=2),
    }


@pytest.fixture
def hub():
    with HFServer(repos=catalogue(), tokens={"hf_good"}) as server:
        yield server


@pytest.fixture
def api(hub):
    return HfApi(endpoint=hub.url, token=False)


@pytest.fixture(scope="module")
def smollm2() -> str:
    from lmnb.sources.library import bundled_model

    return bundled_model("smollm2")


def test_list_models_search_filter_sort_limit_expand(hub, api):
    ids = lambda models: [m.id for m in models]  # noqa: E731
    tiny = api.list_models(search="tiny", filter="gguf", sort="downloads")
    assert ids(tiny) == ["unsloth/tiny-GGUF", "bartowski/Tiny-GGUF"]
    assert ids(api.list_models(filter="gguf", sort="likes", limit=2)) == ["meta/Gated-GGUF", "bartowski/Tiny-GGUF"]
    assert ids(api.list_models(sort="downloads")) == [
        "acme/tiny-pytorch", "unsloth/tiny-GGUF", "bartowski/Tiny-GGUF", "meta/Gated-GGUF",
    ]  # fmt: skip
    assert ids(api.list_models(sort="last_modified", limit=1)) == ["bartowski/Tiny-GGUF"]
    assert ids(api.list_models(author="unsloth")) == ["unsloth/tiny-GGUF"]
    assert ids(api.list_models(filter=["gguf", "pytorch"])) == []

    (m,) = api.list_models(search="bartowski/tiny", expand=["gguf", "downloads", "gated", "siblings"])
    assert m.id == "bartowski/Tiny-GGUF" and m.gguf == GGUF_META and m.downloads == 500 and m.gated is False
    assert sorted(s.rfilename for s in m.siblings) == ["README.md", "Tiny-Q4_K_M.gguf", "Tiny-Q8_0.gguf"]
    assert m.likes is None  # not asked for: expand returns only what it names
    assert hub.log[-1]["query"] == "search=bartowski%2Ftiny&expand=gguf&expand=downloads&expand=gated&expand=siblings"

    light = {m.id: m for m in api.list_models()}  # the default light view: no gguf, no siblings
    assert light["bartowski/Tiny-GGUF"].downloads == 500 and light["bartowski/Tiny-GGUF"].gguf is None
    assert light["meta/Gated-GGUF"].siblings is None  # gated repos are listed too
    full = {m.id: m for m in api.list_models(full=True)}
    assert full["meta/Gated-GGUF"].gated == "auto" and full["bartowski/Tiny-GGUF"].sha == COMMIT


def test_model_info_with_files_metadata(hub, api):
    info = api.model_info("bartowski/Tiny-GGUF", files_metadata=True)
    assert info.id == "bartowski/Tiny-GGUF" and info.sha == COMMIT and info.gguf == GGUF_META
    assert info.downloads == 500 and info.private is False and info.gated is False and "gguf" in info.tags
    sib = {s.rfilename: s for s in info.siblings}
    assert sib["Tiny-Q4_K_M.gguf"].size == len(SMALL)
    assert sib["Tiny-Q4_K_M.gguf"].lfs.sha256 == sha256(SMALL) and sib["Tiny-Q4_K_M.gguf"].lfs.size == len(SMALL)
    assert sib["README.md"].lfs is None and sib["README.md"].size == len(README)
    assert sib["README.md"].blob_id == hashlib.sha1(b"blob %d\0" % len(README) + README).hexdigest()
    assert hub.log[-1]["path"] == "/api/models/bartowski/Tiny-GGUF" and hub.log[-1]["query"] == "blobs=true"

    plain = api.model_info("bartowski/Tiny-GGUF", revision="main")
    assert plain.siblings[0].size is None and hub.log[-1]["path"].endswith("/revision/main")
    # gated repos: the metadata is public, as on the Hub
    assert api.model_info("meta/Gated-GGUF").gated == "auto"
    with pytest.raises(RevisionNotFoundError):
        api.model_info("bartowski/Tiny-GGUF", revision="v2")


def test_list_repo_tree_with_a_subfolder(hub, api):
    entries = list(api.list_repo_tree("unsloth/tiny-GGUF", recursive=True, expand=True))
    assert [e.path for e in entries] == [
        "Q4_K_M", "Q4_K_M/tiny-Q4_K_M-00001-of-00002.gguf", "Q4_K_M/tiny-Q4_K_M-00002-of-00002.gguf",
    ]  # fmt: skip
    folder, first, second = entries
    assert type(folder).__name__ == "RepoFolder" and folder.tree_id
    assert (first.size, second.size) == (700, 300)
    assert first.lfs.sha256 == sha256(b"a" * 700) and first.last_commit.oid == COMMIT
    top = list(api.list_repo_tree("unsloth/tiny-GGUF"))  # one level
    assert [(type(e).__name__, e.path) for e in top] == [("RepoFolder", "Q4_K_M")]
    inside = list(api.list_repo_tree("unsloth/tiny-GGUF", path_in_repo="Q4_K_M"))
    assert len(inside) == 2 and hub.log[-1]["path"] == "/api/models/unsloth/tiny-GGUF/tree/main/Q4_K_M"
    assert api.list_repo_files("bartowski/Tiny-GGUF") == ["README.md", "Tiny-Q4_K_M.gguf", "Tiny-Q8_0.gguf"]
    with pytest.raises(EntryNotFoundError):
        list(api.list_repo_tree("unsloth/tiny-GGUF", path_in_repo="nope"))


def test_download_of_a_gguf_goes_302_then_cdn(smollm2, tmp_path):
    repo, name = "lmnb-test/SmolLM2-GGUF", "smollm2-135m-instruct-q4_1.gguf"
    with HFServer(repos={repo: Repo(files={name: smollm2, "README.md": README})}) as hub:
        meta = get_hf_file_metadata(hf_hub_url(repo, name, endpoint=hub.url), token=False)
        assert meta.size == os.path.getsize(smollm2) and meta.etag == file_sha256(smollm2)
        assert meta.commit_hash == COMMIT and meta.location.startswith(f"{hub.cdn_url}/cdn/{meta.etag}")
        path = hf_hub_download(repo, name, endpoint=hub.url, cache_dir=tmp_path, token=False)
        assert path == str(tmp_path / "models--lmnb-test--SmolLM2-GGUF" / "snapshots" / COMMIT / name)
        assert os.path.realpath(path).endswith(f"/blobs/{meta.etag}") and file_sha256(path) == meta.etag
        assert [(e["method"], e["path"].split("/")[1], e["status"]) for e in hub.log[-2:]] == [
            ("HEAD", "lmnb-test", 302), ("GET", "cdn", 200),
        ]  # fmt: skip
        assert hub.bytes_served[name] == os.path.getsize(smollm2)
        # a small file is served by resolve itself, and cached under its git blob id
        readme = hf_hub_download(repo, "README.md", endpoint=hub.url, cache_dir=tmp_path, token=False)
        assert Path(readme).read_bytes() == README and hub.log[-1]["status"] == 200
        git_blob_id = hashlib.sha1(b"blob %d\0" % len(README) + README).hexdigest()
        assert os.path.basename(os.path.realpath(readme)) == git_blob_id


def test_drop_after_is_resumed_with_range_inside_one_call(smollm2, tmp_path):
    """huggingface_hub retries a body cut short (after 1 s), from the last whole 10 MiB chunk, with a Range GET."""
    repo, name = "lmnb-test/SmolLM2-GGUF", "smollm2.gguf"
    size = os.path.getsize(smollm2)
    with HFServer(repos={repo: Repo(files={name: smollm2})}) as hub:
        hub.drop_after[name] = 50_000_000
        path = hf_hub_download(repo, name, endpoint=hub.url, cache_dir=tmp_path, token=False)
        assert file_sha256(path) == file_sha256(smollm2) and name not in hub.drop_after  # one-shot
        gets = [e for e in hub.log if e["method"] == "GET"]
        assert [(g["range"], g["status"]) for g in gets] == [(None, 200), ("bytes=41943040-", 206)]  # 4 × 10 MiB
        assert hub.bytes_served[name] == 50_000_000 + size - 41943040 < 2 * size


def test_reset_connection_is_not_retried(hub, tmp_path):
    """A reset (not a premature end) escapes hf_hub_download as httpx2.ReadError; nothing partial is kept."""
    hub.reset_after["Tiny-Q4_K_M.gguf"] = 100_000
    with pytest.raises(httpx2.ReadError):
        hf_hub_download("bartowski/Tiny-GGUF", "Tiny-Q4_K_M.gguf", endpoint=hub.url, cache_dir=tmp_path, token=False)
    blobs = tmp_path / "models--bartowski--Tiny-GGUF" / "blobs"
    assert not blobs.exists() or list(blobs.iterdir()) == []


def test_corrupt_bytes_are_stored_silently(hub, api, tmp_path):
    hub.corrupt.add("Tiny-Q4_K_M.gguf")
    path = hf_hub_download("bartowski/Tiny-GGUF", "Tiny-Q4_K_M.gguf", endpoint=hub.url, cache_dir=tmp_path, token=False)
    data = Path(path).read_bytes()
    assert len(data) == len(SMALL) and data != SMALL
    assert sum(a != b for a, b in zip(data, SMALL, strict=True)) == 1
    # only the size is checked: the blob is named by the advertised sha256, which the bytes do not have
    info = api.model_info("bartowski/Tiny-GGUF", files_metadata=True)
    (sib,) = [s for s in info.siblings if s.rfilename == "Tiny-Q4_K_M.gguf"]
    assert os.path.basename(os.path.realpath(path)) == sib.lfs.sha256 == sha256(SMALL) != sha256(data)


def test_gated_repo_needs_a_listed_token(hub, api, tmp_path):
    args = ("meta/Gated-GGUF", "gated-Q4_K_M.gguf")
    with pytest.raises(GatedRepoError) as no_token:
        hf_hub_download(*args, endpoint=hub.url, cache_dir=tmp_path, token=False)
    assert no_token.value.response.status_code == 401
    with pytest.raises(GatedRepoError) as bad_token:
        hf_hub_download(*args, endpoint=hub.url, cache_dir=tmp_path, token="hf_other")
    assert bad_token.value.response.status_code == 403 and hub.log[-1]["auth"] == "Bearer hf_other"
    with pytest.raises(GatedRepoError):
        api.auth_check("meta/Gated-GGUF")
    assert api.auth_check("meta/Gated-GGUF", token="hf_good") is None
    path = hf_hub_download(*args, endpoint=hub.url, cache_dir=tmp_path, token="hf_good")
    assert Path(path).read_bytes() == b"g" * 2048
    assert hub.log[-1]["path"].startswith("/cdn/") and hub.log[-1]["auth"] is None  # no token sent to the CDN
    assert api.auth_check("bartowski/Tiny-GGUF") is None  # open repos need nothing


def test_unknown_repo_file_and_revision(hub, api, tmp_path):
    readme = ("bartowski/Tiny-GGUF", "README.md")
    with pytest.raises(RepositoryNotFoundError) as e:
        api.model_info("nobody/missing-GGUF")
    assert not isinstance(e.value, GatedRepoError)
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("nobody/missing-GGUF", "x.gguf", endpoint=hub.url, cache_dir=tmp_path, token=False)
    with pytest.raises(EntryNotFoundError):
        hf_hub_download("bartowski/Tiny-GGUF", "Tiny-IQ2_XS.gguf", endpoint=hub.url, cache_dir=tmp_path, token=False)
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(*readme, revision="v9", endpoint=hub.url, cache_dir=tmp_path, token=False)
    # the commit id works as a revision
    path = hf_hub_download(*readme, revision=COMMIT, endpoint=hub.url, cache_dir=tmp_path, token=False)
    assert Path(path).read_bytes() == README


@pytest.mark.parametrize(
    "target",
    [
        "/bartowski/Tiny-GGUF/resolve/main/../../../etc/passwd",
        "/bartowski/Tiny-GGUF/resolve/main/%2e%2e/%2E%2E/secret",
        "/api/models/bartowski/Tiny-GGUF/tree/main/..%2F..",
        "/cdn/../etc/passwd",
    ],
)
def test_path_traversal_is_a_400(hub, target):
    host, port = hub.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        conn.request("GET", target)  # http.client sends the path as is (httpx would normalise the dots away)
        resp = conn.getresponse()
        assert resp.status == 400 and b"Invalid path" in resp.read()
    finally:
        conn.close()


class _Cancel(Exception):
    pass


def test_throttle_and_cancel_mid_download(hub, tmp_path, monkeypatch, capfd):
    """A progress callback that raises cancels hf_hub_download; the server sees the client go away quietly."""
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 64 * 1024)  # progress updates every 64 KiB, not 10 MiB

    class CancelAfter(hf_tqdm):  # (a disabled bar does not count: keep our own total)
        received = 0

        def update(self, n=1):
            super().update(n)
            CancelAfter.received += n
            if CancelAfter.received >= 200_000:
                raise _Cancel

    hub.throttle_bps = 2_000_000
    t0 = time.perf_counter()
    with pytest.raises(_Cancel):
        hf_hub_download(
            "bartowski/Tiny-GGUF", "Tiny-Q4_K_M.gguf", endpoint=hub.url, cache_dir=tmp_path, token=False,
            tqdm_class=CancelAfter,
        )  # fmt: skip
    assert 0.1 < time.perf_counter() - t0 < 3  # 4 × 64 KiB at 2 MB/s: ~0.13 s
    served = lambda: hub.bytes_served.get("Tiny-Q4_K_M.gguf", 0)  # noqa: E731
    before, deadline = -1, time.time() + 3  # the server stops at its next write into the closed socket
    while served() != before and time.time() < deadline:
        before = served()
        time.sleep(0.15)
    assert 4 * 64 * 1024 <= served() < len(SMALL) / 2
    assert not list(tmp_path.rglob("*.incomplete"))
    assert "Traceback" not in capfd.readouterr().err


def test_original_constructor_form(tmp_path):
    model = tmp_path / "m.gguf"
    model.write_bytes(SMALL)
    repo = "lmnb-test/Old-GGUF"
    with HFServer({(repo, "a-Q4_K_M.gguf"): str(model), (repo, "b-Q8_0.gguf"): str(model)}) as hub:
        for name in ("a-Q4_K_M.gguf", "b-Q8_0.gguf"):
            path = hf_hub_download(repo, name, endpoint=hub.url, cache_dir=tmp_path / "cache")
            assert Path(path).read_bytes() == SMALL
        assert hub.requests[0] == f"HEAD /{repo}/resolve/main/a-Q4_K_M.gguf"
        assert [m.id for m in HfApi(endpoint=hub.url, token=False).list_models(search="old")] == [repo]
