"""Find the GGUF models a user already downloaded with LM Studio or Ollama, so lmnb can load them.

LM Studio keeps plain files: ``<models dir>/<publisher>/<repo>/<file>.gguf``. Ollama keeps
content-addressed blobs named by JSON manifests: ``<root>/manifests/<registry>/<namespace>/<model>/<tag>``
points at ``<root>/blobs/sha256-<hex>``. Both are read-only here: nothing is moved or copied, and
llama.cpp opens the files where they lie.

Listing must stay cheap (it runs when a notebook shows the library), so only the first few keys of
each GGUF header are read, and heavy modules are imported inside the functions.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from typing import Any

from ..tables import human_bytes

log = logging.getLogger(__name__)

ENV_LMSTUDIO_DIRS = "LMNB_LMSTUDIO_DIRS"
_OLLAMA_SYSTEM_DIR = "/usr/share/ollama/.ollama/models"  # Linux install script runs Ollama as user `ollama`
_OLLAMA_MODEL_LAYER = "application/vnd.ollama.image.model"
_DIGEST = re.compile(
    r"sha256:([0-9a-f]{64})"
)  # used with fullmatch: anything else could escape blobs/
_WANT = (
    "general.architecture",
    "general.file_type",
)  # lets the header reader stop early
_MAX_DEPTH = 4  # publisher/repo/(one more) is the deepest LM Studio goes; bounds a mis-set downloadsFolder
_MAX_MANIFEST = (
    1 << 20
)  # manifests are a few hundred bytes; refuse to slurp anything huge


@dataclass
class ExternalModel:
    """A GGUF model that LM Studio or Ollama downloaded."""

    name: str  # LM Studio: "publisher/repo/file.gguf"; Ollama: "ollama:model:tag"
    path: str  # the file llama.cpp should open (first shard / the blob)
    source: str  # "lmstudio" | "ollama"
    size: int  # bytes, all shards together
    files: list[str] = field(default_factory=list)  # every file of the model
    quantization: str | None = None
    architecture: str | None = None

    def __repr__(self) -> str:
        return f"ExternalModel({self.name!r}, {human_bytes(self.size)}, {self.source}, {self.quantization})"


# --- where the apps keep their models ----------------------------------------------------------


def _settings_downloads_folder(settings_path: str) -> str | None:
    # LM Studio lets users move the models folder; it records the choice in settings.json.
    try:
        with open(settings_path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        if not isinstance(e, FileNotFoundError):
            log.debug("ignoring unreadable LM Studio settings %s: %s", settings_path, e)
        return None
    folder = data.get("downloadsFolder") if isinstance(data, dict) else None
    return folder if isinstance(folder, str) and folder else None


def lmstudio_dirs() -> list[str]:
    """Existing LM Studio model folders, deduplicated by realpath.

    Defaults: the ``downloadsFolder`` in ``~/.lmstudio/settings.json``, ``~/.lmstudio/models``,
    ``~/.cache/lm-studio/models`` (older versions). ``LMNB_LMSTUDIO_DIRS`` (``os.pathsep``-separated)
    replaces the defaults when set.
    """
    env = os.environ.get(ENV_LMSTUDIO_DIRS)
    if env is not None:
        candidates = [p for p in env.split(os.pathsep) if p]
    else:
        home = os.path.expanduser("~")
        candidates = []
        folder = _settings_downloads_folder(
            os.path.join(home, ".lmstudio", "settings.json")
        )
        if folder:
            candidates.append(folder)
        candidates += [
            os.path.join(home, ".lmstudio", "models"),
            os.path.join(home, ".cache", "lm-studio", "models"),
        ]
    out: list[str] = []
    seen: set[str] = set()
    for c in candidates:
        path = os.path.expanduser(c)
        real = os.path.realpath(path)
        if real in seen or not os.path.isdir(path):
            continue
        seen.add(real)
        out.append(path)
    return out


def ollama_dir() -> str | None:
    """``OLLAMA_MODELS`` if set, else ``~/.ollama/models``, else the Linux service's folder; None when absent."""
    env = os.environ.get("OLLAMA_MODELS")
    if env:
        # Ollama itself uses only this folder when it is set, so do not fall back to the defaults.
        path = os.path.expanduser(env)
        return path if os.path.isdir(path) else None
    for path in (
        os.path.join(os.path.expanduser("~"), ".ollama", "models"),
        _OLLAMA_SYSTEM_DIR,
    ):
        if os.path.isdir(path):
            return path
    return None


# --- LM Studio ---------------------------------------------------------------------------------


def _read_header(path: str) -> dict[str, Any] | None:
    """The wanted header keys, or None when the file is damaged or truncated (a partial download)."""
    from .gguf_header import NotGGUF, read_file_metadata

    try:
        return read_file_metadata(path, want=_WANT)
    except (NotGGUF, OSError) as e:
        log.debug("skipping %s: %s", path, e)
        return None


def _architecture(meta: dict[str, Any]) -> str | None:
    arch = meta.get("general.architecture")
    return arch if isinstance(arch, str) and arch else None


def _scan_lmstudio(
    root: str, visited: set[str]
) -> dict[tuple[str, str, str], list[tuple[int, str]]]:
    """GGUF files under ``root`` grouped by model: key (dir, stem, shard count) -> [(shard index, path)]."""
    from .gguf_header import is_gguf
    from .quant import split_info

    groups: dict[tuple[str, str, str], list[tuple[int, str]]] = {}
    real_root = os.path.realpath(root)
    if real_root in visited:  # a folder named twice, or nested in one already walked
        return groups
    visited.add(real_root)

    def onerror(e: OSError) -> None:
        log.debug("cannot list %s: %s", getattr(e, "filename", root), e)

    # followlinks: users often symlink model folders into LM Studio's; `visited` stops loops.
    for dirpath, dirnames, filenames in os.walk(
        root, onerror=onerror, followlinks=True
    ):
        rel = os.path.relpath(dirpath, root)
        depth = 0 if rel == os.curdir else rel.count(os.sep) + 1
        keep = []
        if depth < _MAX_DEPTH:
            for d in sorted(dirnames):
                real = os.path.realpath(os.path.join(dirpath, d))
                if d.startswith(".") or real in visited:
                    continue
                visited.add(real)
                keep.append(d)
        dirnames[:] = keep
        for f in sorted(filenames):
            low = f.lower()
            # Partial downloads carry another suffix (.part, .download...) or are hidden temp files;
            # mmproj files are vision projectors, not loadable as an LLM.
            if f.startswith(".") or not low.endswith(".gguf") or "mmproj" in low:
                continue
            path = os.path.join(dirpath, f)
            if not os.path.isfile(path) or not is_gguf(path):
                continue
            shard = split_info(f)  # (prefix, number, count) of name-00001-of-00003.gguf
            key = (dirpath, shard[0], str(shard[2])) if shard else (dirpath, f, "")
            groups.setdefault(key, []).append((shard[1] if shard else 0, path))
    return groups


def _lmstudio_model(root: str, shards: list[tuple[int, str]]) -> ExternalModel | None:
    from .gguf_header import file_type_name
    from .quant import quant_of as _quant_of

    files = [p for _, p in sorted(shards)]
    path = files[0]  # shard 1 holds the metadata and is what llama.cpp opens
    meta = _read_header(path)
    if meta is None:
        return None
    base = os.path.basename(path)
    return ExternalModel(
        name=os.path.relpath(path, root).replace(os.sep, "/"),
        path=path,
        source="lmstudio",
        size=sum(os.path.getsize(p) for p in files),
        files=files,
        quantization=_quant_of(base) or file_type_name(meta),
        architecture=_architecture(meta),
    )


def lmstudio_models(dirs: list[str] | None = None) -> list[ExternalModel]:
    """GGUF models in LM Studio's folders (``lmstudio_dirs()`` by default); split shards grouped."""
    roots = lmstudio_dirs() if dirs is None else [os.path.expanduser(d) for d in dirs]
    visited: set[str] = set()
    out: list[ExternalModel] = []
    for root in roots:
        if not os.path.isdir(root):
            continue
        found = []
        for shards in _scan_lmstudio(root, visited).values():
            try:
                model = _lmstudio_model(root, shards)
            except OSError as e:  # a shard vanished or is unreadable mid-listing
                log.debug("skipping %s: %s", shards, e)
                continue
            if model is not None:
                found.append(model)
        out += sorted(found, key=lambda m: m.name.lower())
    return out


# --- Ollama ------------------------------------------------------------------------------------


def _subentries(path: str, want_dirs: bool) -> list[str]:
    try:
        with os.scandir(path) as it:
            names = [
                e.name
                for e in it
                if not e.name.startswith(".")
                and (e.is_dir() if want_dirs else e.is_file())
            ]
    except OSError as e:
        log.debug("cannot list %s: %s", path, e)
        return []
    return sorted(names)


def _ollama_name(registry: str, namespace: str, model: str, tag: str) -> str:
    # Mirror how Ollama shortens names in `ollama list`, so users recognise them.
    if registry == "registry.ollama.ai":
        return (
            f"ollama:{model}:{tag}"
            if namespace == "library"
            else f"ollama:{namespace}/{model}:{tag}"
        )
    return f"ollama:{registry}/{namespace}/{model}:{tag}"


def _ollama_model(root: str, name: str, manifest: str) -> ExternalModel | None:
    from .gguf_header import file_type_name, is_gguf
    from .quant import quant_of as _quant_of

    with open(manifest, "rb") as f:
        raw = f.read(_MAX_MANIFEST + 1)
    if len(raw) > _MAX_MANIFEST:
        raise ValueError("manifest too large")
    data = json.loads(raw)
    layers = data.get("layers") if isinstance(data, dict) else None
    if not isinstance(layers, list):
        raise TypeError("manifest has no layers list")
    layer = next(
        (
            layer
            for layer in layers
            if isinstance(layer, dict) and layer.get("mediaType") == _OLLAMA_MODEL_LAYER
        ),
        None,
    )
    if layer is None:
        raise ValueError("manifest has no model layer")
    digest = layer.get("digest")
    m = _DIGEST.fullmatch(digest) if isinstance(digest, str) else None
    if m is None:
        raise ValueError(f"invalid model digest {digest!r}")
    blob = os.path.join(root, "blobs", "sha256-" + m.group(1))
    if not os.path.isfile(blob):
        raise ValueError(f"model blob {blob} is missing")
    if not is_gguf(
        blob
    ):  # newer Ollama can store safetensors-based models llama.cpp cannot open
        raise ValueError(f"model blob {blob} is not GGUF")
    meta = _read_header(blob)
    if meta is None:
        return None
    tag = name.rsplit(":", 1)[1]
    return ExternalModel(
        name=name,
        path=blob,
        source="ollama",
        size=os.path.getsize(blob),
        files=[blob],
        # Blob names carry no quantization; the header does (the tag, e.g. "3b-q4_K_M", as a fallback).
        quantization=file_type_name(meta) or _quant_of(tag),
        architecture=_architecture(meta),
    )


def ollama_models(root: str | None = None) -> list[ExternalModel]:
    """GGUF models named by Ollama's manifests under ``root`` (``ollama_dir()`` by default), one per tag."""
    root = ollama_dir() if root is None else os.path.expanduser(root)
    if not root:
        return []
    manifests = os.path.join(root, "manifests")
    out: list[ExternalModel] = []
    for registry in _subentries(manifests, True):
        for namespace in _subentries(os.path.join(manifests, registry), True):
            for model in _subentries(
                os.path.join(manifests, registry, namespace), True
            ):
                mdir = os.path.join(manifests, registry, namespace, model)
                for tag in _subentries(mdir, False):
                    path = os.path.join(mdir, tag)
                    try:
                        found = _ollama_model(
                            root, _ollama_name(registry, namespace, model, tag), path
                        )
                    except (
                        OSError,
                        ValueError,
                        TypeError,
                        AttributeError,
                        RecursionError,
                    ) as e:
                        log.debug("skipping Ollama manifest %s: %s", path, e)
                        continue
                    if found is not None:
                        out.append(found)
    return sorted(out, key=lambda m: m.name.lower())


def external_models() -> list[ExternalModel]:
    """Models from LM Studio, then Ollama. Never raises: whatever cannot be read is skipped."""
    out: list[ExternalModel] = []
    for finder in (lmstudio_models, ollama_models):
        try:
            out += finder()
        except Exception as e:  # listing must never break the caller's UI
            log.debug("%s failed: %s", finder.__name__, e, exc_info=True)
    return out
