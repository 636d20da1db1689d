"""Finding models downloaded by LM Studio and Ollama, on fake app folders holding the real SmolLM2 GGUF."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from lmnb.sources import lmstudio_ollama as lo

HEX_A = "ab" * 32
HEX_B = "cd" * 32
HEX_PROJ = "ef" * 32


@pytest.fixture(scope="session")
def src() -> str:
    from lmnb.sources.library import bundled_model

    return bundled_model("smollm2")


def place(src: str, dst) -> str:
    """Put the 98 MB model at ``dst`` without copying it: a hard link, else a symlink."""
    dst = str(dst)
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        os.symlink(src, dst)
    return dst


def write(path, data: bytes | str) -> str:
    path = str(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
    return path


@pytest.fixture
def empty_home(tmp_path, monkeypatch):
    """HOME with no LM Studio or Ollama; env overrides and the system Ollama folder cleared."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv(lo.ENV_LMSTUDIO_DIRS, raising=False)
    monkeypatch.delenv("OLLAMA_MODELS", raising=False)
    monkeypatch.setattr(lo, "_OLLAMA_SYSTEM_DIR", str(tmp_path / "no-system-ollama"))
    return home


# --- LM Studio ---------------------------------------------------------------------------------


@pytest.fixture
def lms_tree(tmp_path, src):
    root = tmp_path / "lms-models"
    repo = root / "lmstudio-community" / "SmolLM2-135M-Instruct-GGUF"
    place(src, repo / "SmolLM2-135M-Instruct.Q4_1.gguf")
    place(src, repo / "mmproj-SmolLM2-F16.gguf")  # a real GGUF, but a vision projector
    write(repo / "notes.gguf", "not a gguf at all")  # .gguf name, wrong magic
    write(repo / "README.md", "# hi")
    write(
        repo / "truncated.Q8_0.gguf", b"GGUF\x03\x00\x00\x00"
    )  # header cut short: partial download
    place(src, repo / "downloading.Q4_1.gguf.part")
    place(src, repo / ".hidden.Q4_1.gguf")
    split = root / "bartowski" / "Split-GGUF"
    place(src, split / "Split-Q4_1-00002-of-00002.gguf")
    place(src, split / "Split-Q4_1-00001-of-00002.gguf")
    place(src, root / "pub" / "repo" / "sub" / "deep.Q4_1.gguf")  # one level deeper
    return root


def test_lmstudio_tree(lms_tree, src):
    models = lo.lmstudio_models([str(lms_tree)])
    by_name = {m.name: m for m in models}
    assert sorted(by_name) == [
        "bartowski/Split-GGUF/Split-Q4_1-00001-of-00002.gguf",
        "lmstudio-community/SmolLM2-135M-Instruct-GGUF/SmolLM2-135M-Instruct.Q4_1.gguf",
        "pub/repo/sub/deep.Q4_1.gguf",
    ]
    size = os.path.getsize(src)
    m = by_name[
        "lmstudio-community/SmolLM2-135M-Instruct-GGUF/SmolLM2-135M-Instruct.Q4_1.gguf"
    ]
    assert m.source == "lmstudio"
    assert m.path == str(
        lms_tree
        / "lmstudio-community"
        / "SmolLM2-135M-Instruct-GGUF"
        / "SmolLM2-135M-Instruct.Q4_1.gguf"
    )
    assert m.files == [m.path] and m.size == size
    assert m.quantization == "Q4_1" and m.architecture == "llama"

    split = by_name["bartowski/Split-GGUF/Split-Q4_1-00001-of-00002.gguf"]
    d = lms_tree / "bartowski" / "Split-GGUF"
    assert split.path == str(d / "Split-Q4_1-00001-of-00002.gguf")
    assert split.files == [
        str(d / "Split-Q4_1-00001-of-00002.gguf"),
        str(d / "Split-Q4_1-00002-of-00002.gguf"),
    ]
    assert split.size == 2 * size
    assert split.quantization == "Q4_1" and split.architecture == "llama"


def test_lmstudio_quant_from_header_when_name_has_none(tmp_path, src):
    place(src, tmp_path / "m" / "pub" / "repo" / "smollm.gguf")
    (m,) = lo.lmstudio_models([str(tmp_path / "m")])
    assert (
        m.name == "pub/repo/smollm.gguf"
        and m.quantization == "Q4_1"
        and m.architecture == "llama"
    )


def test_lmstudio_overlapping_and_missing_dirs(lms_tree):
    inner = str(lms_tree / "pub")
    models = lo.lmstudio_models(
        [inner, str(lms_tree), str(lms_tree), str(lms_tree / "nope")]
    )
    names = [m.name for m in models]
    assert (
        names.count("repo/sub/deep.Q4_1.gguf") == 1
    )  # listed once, relative to the first folder
    assert "pub/repo/sub/deep.Q4_1.gguf" not in names
    assert len(models) == 3


def test_lmstudio_dirs_from_settings(empty_home, tmp_path):
    custom = tmp_path / "my-models"
    custom.mkdir()
    default = empty_home / ".lmstudio" / "models"
    default.mkdir(parents=True)
    write(
        empty_home / ".lmstudio" / "settings.json",
        json.dumps({"downloadsFolder": str(custom), "other": 1}),
    )
    assert lo.lmstudio_dirs() == [str(custom), str(default)]

    old = empty_home / ".cache" / "lm-studio" / "models"
    old.mkdir(parents=True)
    assert lo.lmstudio_dirs() == [str(custom), str(default), str(old)]

    # the downloadsFolder reached through a symlink is the same folder: listed once
    os.symlink(default, tmp_path / "alias")
    write(
        empty_home / ".lmstudio" / "settings.json",
        json.dumps({"downloadsFolder": str(tmp_path / "alias")}),
    )
    assert lo.lmstudio_dirs() == [str(tmp_path / "alias"), str(old)]

    write(empty_home / ".lmstudio" / "settings.json", "{broken")
    assert lo.lmstudio_dirs() == [str(default), str(old)]


def test_lmstudio_settings_folder_is_listed(empty_home, tmp_path, src):
    custom = tmp_path / "elsewhere"
    place(src, custom / "pub" / "repo" / "SmolLM2.Q4_1.gguf")
    write(
        empty_home / ".lmstudio" / "settings.json",
        json.dumps({"downloadsFolder": str(custom)}),
    )
    (m,) = lo.lmstudio_models()
    assert m.name == "pub/repo/SmolLM2.Q4_1.gguf" and m.source == "lmstudio"


def test_lmstudio_env_replaces_defaults(empty_home, tmp_path, monkeypatch):
    (empty_home / ".lmstudio" / "models").mkdir(parents=True)
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    monkeypatch.setenv(
        lo.ENV_LMSTUDIO_DIRS,
        os.pathsep.join([str(a), str(tmp_path / "missing"), str(b)]),
    )
    assert lo.lmstudio_dirs() == [str(a), str(b)]


# --- Ollama ------------------------------------------------------------------------------------


def manifest(digest: str, extra_layers: list | None = None) -> str:
    layers = list(extra_layers or []) + [
        {
            "mediaType": "application/vnd.ollama.image.model",
            "digest": digest,
            "size": 1,
        },
        {
            "mediaType": "application/vnd.ollama.image.template",
            "digest": "sha256:" + "11" * 32,
            "size": 1,
        },
    ]
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "digest": "sha256:" + "22" * 32,
            },
            "layers": layers,
        }
    )


@pytest.fixture
def ollama_tree(tmp_path, src):
    root = tmp_path / "ollama-models"
    blob = place(src, root / "blobs" / f"sha256-{HEX_A}")
    place(src, root / "blobs" / f"sha256-{HEX_PROJ}")
    write(root / "blobs" / f"sha256-{HEX_B}", b"PK\x03\x04 safetensors zip, not GGUF")
    man = root / "manifests"
    ok = manifest(f"sha256:{HEX_A}")
    write(man / "registry.ollama.ai" / "library" / "smollm2" / "135m", ok)
    write(man / "registry.ollama.ai" / "library" / "smollm2" / "latest", ok)
    # a projector layer listed first must not be taken for the model
    proj = {
        "mediaType": "application/vnd.ollama.image.projector",
        "digest": f"sha256:{HEX_PROJ}",
        "size": 1,
    }
    write(
        man / "registry.ollama.ai" / "someuser" / "tiny" / "q4",
        manifest(f"sha256:{HEX_A}", [proj]),
    )
    write(man / "hf.co" / "bartowski" / "SmolLM2-GGUF" / "Q4_1", ok)
    # hostile and broken manifests
    os.makedirs(
        root / "blobs" / "sha256-.."
    )  # so that an unchecked "../" path would really resolve
    place(src, root / "evil.gguf")
    write(
        man / "registry.ollama.ai" / "library" / "evil" / "latest",
        manifest("sha256:../../../evil.gguf"),
    )
    assert os.path.isfile(
        root / "blobs" / "sha256-../../../evil.gguf"
    )  # what an unchecked digest would open
    write(
        man / "registry.ollama.ai" / "library" / "passwd" / "latest",
        manifest("sha256:../../etc/passwd"),
    )
    write(
        man / "registry.ollama.ai" / "library" / "short" / "latest",
        manifest("sha256:abc"),
    )
    write(
        man / "registry.ollama.ai" / "library" / "newline" / "latest",
        manifest(f"sha256:{HEX_A}\n"),
    )
    write(man / "registry.ollama.ai" / "library" / "broken" / "latest", "{not json")
    write(man / "registry.ollama.ai" / "library" / "listy" / "latest", "[1, 2]")
    write(
        man / "registry.ollama.ai" / "library" / "safet" / "latest",
        manifest(f"sha256:{HEX_B}"),
    )
    write(
        man / "registry.ollama.ai" / "library" / "gone" / "latest",
        manifest("sha256:" + "99" * 32),
    )
    write(
        man / "registry.ollama.ai" / "library" / "nolayer" / "latest",
        json.dumps({"layers": []}),
    )
    return root, blob


def test_ollama_manifests(ollama_tree, src):
    root, blob = ollama_tree
    models = lo.ollama_models(str(root))
    assert [m.name for m in models] == [
        "ollama:hf.co/bartowski/SmolLM2-GGUF:Q4_1",
        "ollama:smollm2:135m",
        "ollama:smollm2:latest",
        "ollama:someuser/tiny:q4",
    ]
    for m in models:
        assert m.source == "ollama"
        assert m.path == blob and m.files == [blob]
        assert m.size == os.path.getsize(src)
        assert m.quantization == "Q4_1" and m.architecture == "llama"


def test_ollama_dir_env_and_defaults(empty_home, tmp_path, monkeypatch, ollama_tree):
    root, _ = ollama_tree
    assert lo.ollama_dir() is None
    assert lo.ollama_models() == []

    system = tmp_path / "system-ollama"
    system.mkdir()
    monkeypatch.setattr(lo, "_OLLAMA_SYSTEM_DIR", str(system))
    assert lo.ollama_dir() == str(system)

    user = empty_home / ".ollama" / "models"
    user.mkdir(parents=True)
    assert lo.ollama_dir() == str(user)

    monkeypatch.setenv("OLLAMA_MODELS", str(root))
    assert lo.ollama_dir() == str(root)
    assert len(lo.ollama_models()) == 4

    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path / "not-there"))
    assert (
        lo.ollama_dir() is None
    )  # set but missing: Ollama would not use the defaults either


# --- both --------------------------------------------------------------------------------------


def test_nothing_found(empty_home, tmp_path):
    assert lo.lmstudio_dirs() == []
    assert lo.ollama_dir() is None
    assert lo.external_models() == []
    assert lo.lmstudio_models([str(tmp_path / "missing")]) == []
    assert lo.ollama_models(str(tmp_path / "missing")) == []


def test_external_models(empty_home, monkeypatch, lms_tree, ollama_tree):
    monkeypatch.setenv(lo.ENV_LMSTUDIO_DIRS, str(lms_tree))
    monkeypatch.setenv("OLLAMA_MODELS", str(ollama_tree[0]))
    models = lo.external_models()
    assert [m.source for m in models] == ["lmstudio"] * 3 + ["ollama"] * 4

    def boom(*a, **k):
        raise RuntimeError("unexpected")

    monkeypatch.setattr(lo, "lmstudio_models", boom)
    assert [m.source for m in lo.external_models()] == ["ollama"] * 4


def test_import_is_light():
    code = "import sys, lmnb.sources.lmstudio_ollama; print(sorted(m for m in ('gguf', 'llama_cpp', 'numpy') if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
