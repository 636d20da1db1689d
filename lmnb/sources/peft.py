"""PEFT LoRA adapter folders converted to the GGUF LoRA files llama.cpp loads.

A PEFT folder (``adapter_config.json`` + ``adapter_model.safetensors``, as ``save_pretrained``
writes it) holds, per adapted linear layer, ``lora_A`` with shape (r, in) and ``lora_B`` with shape
(out, r) in Hugging Face's naming and row order. llama.cpp (``src/llama-adapter.cpp``) wants
``<base tensor>.lora_a`` / ``.lora_b`` in the same numpy shapes, GGUF tensor names
(``blk.3.attn_q.weight``), ``general.type = "adapter"``, ``adapter.type = "lora"`` and
``adapter.lora.alpha``; it scales each pair by alpha / rank, rank being lora_b's column count.

The one subtle step is the rotary layout: llama.cpp's converter permutes the rows of llama-type
Q and K weights (HF's rotate-half pairs (i, i + d/2) become adjacent pairs (2i, 2i + 1)), so the
rows of lora_B, the output dimension, must be permuted the same way; lora_A (input side) is not.

Conversion reads only the base GGUF's header (architecture, head counts, tensor shapes), never its
weights, and is cached: the same folder for the same base converts once.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
from typing import Any, Optional, Union

from ..errors import LmnbError
from .peft_names import ARCHITECTURES, classify, rope_permute

PathLike = Union[str, "os.PathLike[str]"]
CONFIG = "adapter_config.json"
SAFETENSORS = "adapter_model.safetensors"
TORCH_BIN = "adapter_model.bin"
# Bump when the output for the same inputs changes (a fix), so old cached files are not reused.
_CONVERTER_VERSION = "1"


class AdapterError(LmnbError, ValueError):
    """A LoRA adapter cannot be converted or does not fit the base model (the message says why)."""


def is_peft_folder(path: PathLike) -> bool:
    """Whether ``path`` is a folder with an ``adapter_config.json`` (a PEFT adapter)."""
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, CONFIG))


def default_cache_dir() -> str:
    """Where converted adapters are kept: ``<lmnb data dir>/adapters``."""
    from platformdirs import user_data_dir

    # the same data dir as lmnb.config (history.sqlite lives there)
    return os.path.join(user_data_dir("lmnb", appauthor=False), "adapters")


# ------------------------------------------------------------------------------------------------
# GGUF headers
# ------------------------------------------------------------------------------------------------
def read_gguf_tensors(path: PathLike) -> tuple[dict[str, Any], dict[str, tuple[int, ...]]]:
    """The metadata and the tensor shapes (numpy order: (out, in)) of a GGUF file, from its header.

    Faster than ``gguf.GGUFReader``, which parses every tokenizer string (seconds for a base model).

    Raises:
        AdapterError: the file is missing, not GGUF or truncated.
    """
    import struct

    from .gguf_header import NotGGUF, read_metadata

    try:
        with open(path, "rb") as f:
            meta = read_metadata(f)  # reads every key: the tensor infos follow
            shapes: dict[str, tuple[int, ...]] = {}
            for _ in range(meta["GGUF.tensor_count"]):
                (n,) = struct.unpack("<Q", f.read(8))
                name = f.read(n).decode("utf-8", errors="replace")
                (n_dims,) = struct.unpack("<I", f.read(4))
                ne = struct.unpack(f"<{n_dims}Q", f.read(8 * n_dims))
                f.read(12)  # ggml type (u32) and data offset (u64)
                shapes[name] = tuple(reversed(ne))  # GGUF lists ne[0] (the row length) first
    except FileNotFoundError:
        raise AdapterError(f"{path}: no such GGUF file") from None
    except (NotGGUF, EOFError, struct.error, OSError) as e:
        raise AdapterError(f"{path}: cannot read its GGUF header ({e or 'truncated'})") from None
    return meta, shapes


def _base_model(base_gguf: PathLike) -> dict[str, Any]:
    meta, shapes = read_gguf_tensors(base_gguf)
    arch = meta.get("general.architecture")
    if arch not in ARCHITECTURES:
        raise AdapterError(
            f"LoRA conversion does not support the {arch!r} architecture of {os.path.basename(base_gguf)} "
            f"yet; supported: {', '.join(ARCHITECTURES)} (Mistral and SmolLM models are 'llama')"
        )
    n_head = int(meta.get(f"{arch}.attention.head_count", 0))
    n_head_kv = int(meta.get(f"{arch}.attention.head_count_kv", n_head))
    digest = hashlib.sha256("\n".join(f"{k}:{shapes[k]}" for k in sorted(shapes)).encode()).hexdigest()
    identity = f"{arch}|{n_head}|{n_head_kv}|{digest}"
    n_layer = meta.get(f"{arch}.block_count")
    return {"arch": arch, "n_head": n_head, "n_head_kv": n_head_kv, "n_layer": n_layer, "shapes": shapes,
            "identity": identity}  # fmt: skip


# ------------------------------------------------------------------------------------------------
# The PEFT folder
# ------------------------------------------------------------------------------------------------
def _read_config(folder: str) -> tuple[bytes, dict[str, Any]]:
    path = os.path.join(folder, CONFIG)
    if not os.path.isdir(folder):
        raise AdapterError(f"{folder}: no such adapter folder")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise AdapterError(f"{path} is missing: a PEFT adapter folder has adapter_config.json") from None
    try:
        config = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise AdapterError(f"{path} is not valid JSON ({e})") from None
    if not isinstance(config, dict):
        raise AdapterError(f"{path} is not a JSON object")
    return raw, config


def _check_config(config: dict[str, Any], path: str) -> tuple[int, float]:
    """``(r, alpha to write)`` from the config, or AdapterError for what llama.cpp cannot express."""
    kind = str(config.get("peft_type", "LORA")).upper()
    if kind != "LORA":
        raise AdapterError(f"{path}: peft_type {kind!r} is not LoRA; only LoRA adapters convert to GGUF")
    if config.get("use_dora"):
        raise AdapterError(f"{path}: use_dora is true; llama.cpp has no DoRA (weight-decomposed LoRA) adapters")
    for key in ("rank_pattern", "alpha_pattern"):
        if config.get(key):
            raise AdapterError(
                f"{path}: {key} is set (per-module ranks or alphas); converting such adapters is not supported"
            )
    if config.get("invocation_string") and not config.get("alora_invocation_tokens"):
        raise AdapterError(
            f"{path}: this activated LoRA gives invocation_string but not alora_invocation_tokens; "
            "converting it needs the tokenizer: add the token ids as alora_invocation_tokens"
        )
    if config.get("lora_bias"):
        raise AdapterError(f"{path}: lora_bias is true; llama.cpp LoRA adapters have no bias")
    try:
        r, alpha = int(config["r"]), float(config["lora_alpha"])
    except (KeyError, TypeError, ValueError):
        raise AdapterError(f"{path}: 'r' and 'lora_alpha' must be numbers") from None
    if r <= 0 or alpha == 0 or not math.isfinite(alpha):
        # llama.cpp reads alpha 0 as "no scaling" (scale 1), not as PEFT's zero scale
        raise AdapterError(f"{path}: r={r}, lora_alpha={alpha}: expected r > 0 and a finite nonzero lora_alpha")
    if config.get("use_rslora"):
        # rsLoRA scales by alpha / sqrt(r); llama.cpp by alpha / r: write alpha * sqrt(r)
        alpha *= math.sqrt(r)
    return r, alpha


def _weights_file(folder: str) -> str:
    for name in (SAFETENSORS, TORCH_BIN):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path
    raise AdapterError(f"{folder} has no {SAFETENSORS} (nor {TORCH_BIN}): the adapter's weights are missing")


def _load_safetensors(path: str, raw: bytes) -> dict[str, Any]:
    """The tensors of a .safetensors file as float32 arrays (bfloat16 included, which numpy lacks)."""
    import struct

    import numpy as np
    from safetensors import SafetensorError
    from safetensors.numpy import load

    try:
        (n,) = struct.unpack_from("<Q", raw)
        header = json.loads(raw[8 : 8 + n])
        # numpy has no bfloat16: read such tensors as uint16 and widen them below (bf16 is the
        # top half of a float32)
        bf16 = {k for k, v in header.items() if isinstance(v, dict) and v.get("dtype") == "BF16"}
        if bf16:
            for k in bf16:
                header[k]["dtype"] = "U16"
            head = json.dumps(header, separators=(",", ":")).encode()
            head += b" " * (-len(head) % 8)
            raw = struct.pack("<Q", len(head)) + head + raw[8 + n :]
        tensors = load(raw)
    except (struct.error, ValueError, UnicodeDecodeError, SafetensorError, TypeError) as e:
        raise AdapterError(f"{path} is not a readable safetensors file (truncated or corrupt?): {e}") from None
    out = {}
    for k, v in tensors.items():
        out[k] = (v.astype(np.uint32) << 16).view(np.float32) if k in bf16 else v.astype(np.float32)
    return out


def _load_torch(path: str) -> dict[str, Any]:
    try:
        import torch
    except ImportError:
        raise AdapterError(
            f"{path} is a PyTorch file and reading it needs torch: `pip install torch`, or save the adapter "
            "as safetensors (PEFT's save_pretrained(..., safe_serialization=True), the default)"
        ) from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        return {k: v.float().numpy() for k, v in state.items()}
    except Exception as e:  # torch raises many kinds (pickle, zip, RuntimeError) for a bad file
        raise AdapterError(f"{path} is not a readable PyTorch state dict: {e}") from None


# ------------------------------------------------------------------------------------------------
# Conversion
# ------------------------------------------------------------------------------------------------
def _pairs(tensors: dict[str, Any], arch: str, config: dict[str, Any], path: str) -> dict[str, list]:
    """``{"blk.{i}.<kind>.weight": [A, B]}`` from PEFT keys; AdapterError for anything not mapped."""
    modules = ARCHITECTURES[arch][0]
    pairs: dict[str, list] = {}
    found: dict[str, set] = {"unknown": set(), "other": set(), "embedding": set(), "dora": set()}
    adapters = set()
    for key, value in tensors.items():
        k = classify(key, modules)
        adapters.add(k.adapter)
        if k.kind == "pair":
            pairs.setdefault(k.name, [None, None])[k.part == "B"] = value
        else:
            found[k.kind].add(k.name)
    if found["dora"]:
        raise AdapterError(f"{path} holds DoRA magnitude vectors; llama.cpp has no DoRA adapters")
    if found["embedding"]:
        raise AdapterError(
            f"{path} adapts the token embeddings ({', '.join(sorted(found['embedding']))}: lora_embedding_A/B); "
            "converting embedding LoRA is not supported"
        )
    if found["unknown"]:
        raise AdapterError(
            f"{path} adapts modules the converter cannot map to {arch} GGUF tensors: "
            f"{', '.join(sorted(found['unknown']))}. Known: {', '.join(modules)}"
        )
    if other := sorted(found["other"]):
        # modules_to_save only matters when the file holds the saved layers: when it names
        # modules that were not saved (PEFT adds "score", "classifier" for classifiers), it is ignored
        why = (
            f"modules_to_save {config['modules_to_save']} saves whole layers, which a GGUF LoRA cannot carry"
            if config.get("modules_to_save")
            else "they are not LoRA A/B matrices (trained biases or norms?)"
        )
        shown = ", ".join(other[:5]) + (f" and {len(other) - 5} more" if len(other) > 5 else "")
        raise AdapterError(f"{path} holds tensors that cannot be converted ({shown}): {why}")
    if len(adapters) > 1:
        names = ", ".join(repr(a or "(unnamed)") for a in sorted(adapters))
        raise AdapterError(f"{path} holds several adapters ({names}); save them one by one")
    if not pairs:
        raise AdapterError(f"{path} holds no LoRA tensors")
    return pairs


def _to_gguf_tensors(pairs: dict[str, list], base: dict[str, Any], r: int, path: str) -> dict[str, Any]:
    """Check every pair against the base model's tensors and lay it out for llama.cpp."""
    permute = ARCHITECTURES[base["arch"]][1]
    out: dict[str, Any] = {}
    for name in sorted(pairs, key=lambda n: (int(n.split(".")[1]), n)):
        a, b = pairs[name]
        if a is None or b is None:
            raise AdapterError(f"{path}: {name} has lora_{'A' if a is None else 'B'} missing")
        if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[1]:
            raise AdapterError(f"{path}: {name} has lora_A {a.shape} and lora_B {b.shape}, not (r, in) and (out, r)")
        if a.shape[0] != r:
            raise AdapterError(f"{path}: {name} has rank {a.shape[0]}, adapter_config.json says r={r}")
        want = base["shapes"].get(name)
        if want is None:
            raise AdapterError(
                f"adapter for another model: the base ({base['arch']}, {base['n_layer']} layers) has no tensor {name}"
            )
        if tuple(want) != (b.shape[0], a.shape[1]):
            raise AdapterError(
                f"adapter for another model: {name.removesuffix('.weight')} expects ({want[1]} \u2192 {want[0]}), "
                f"the adapter has ({a.shape[1]} \u2192 {b.shape[0]})"
            )
        kind = name.split(".")[2]
        if permute and kind in ("attn_q", "attn_k"):
            n_head = base["n_head"] if kind == "attn_q" else base["n_head_kv"]
            if n_head <= 0 or b.shape[0] % (2 * n_head):
                raise AdapterError(f"{name}: {b.shape[0]} rows do not split into {n_head} rotary heads")
            b = rope_permute(b, n_head)
        out[name + ".lora_a"] = a
        out[name + ".lora_b"] = b
    return out


def _write_gguf(path: str, arch: str, alpha: float, tensors: dict[str, Any], config: dict[str, Any]) -> None:
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(path, arch)  # writes general.architecture
    writer.add_type("adapter")
    # key names spelled out: gguf.Keys.Adapter lacks the aLoRA key in older gguf releases
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", alpha)
    tokens = config.get("alora_invocation_tokens")
    if tokens:  # activated LoRA: llama.cpp applies it only from these tokens on (an unsigned array)
        T = gguf.GGUFValueType
        writer.add_key_value("adapter.alora.invocation_tokens", [int(t) for t in tokens], T.ARRAY, sub_type=T.UINT32)
    for name, t in tensors.items():
        writer.add_tensor(name, np.ascontiguousarray(t, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def convert_peft(folder: PathLike, base_gguf: str, *, cache_dir: Optional[str] = None) -> str:
    """Convert a PEFT LoRA folder, trained on the model in ``base_gguf``, to a GGUF LoRA file.

    The result is cached in ``cache_dir``, named from a hash of the adapter config, the weights and
    the base model's architecture and tensor shapes: a second call with the same inputs returns the
    same file without converting. The file is written under a temporary name and renamed, so the
    cache never holds a half-written adapter.

    Args:
        folder: the adapter folder (``adapter_config.json`` and ``adapter_model.safetensors``, or
            ``adapter_model.bin``, which needs torch).
        base_gguf: the GGUF model the adapter will be applied to (only its header is read).
        cache_dir: where converted files go; default ``<lmnb data dir>/adapters``.

    Returns:
        The path of the GGUF LoRA file.

    Raises:
        AdapterError: a file is missing or unreadable, the adapter uses a feature llama.cpp cannot
            express (DoRA, per-module ranks, embedding LoRA, whole saved layers), targets a module
            the converter does not know, or was trained for a model with other shapes.
    """
    folder = os.fspath(folder)
    raw_config, config = _read_config(folder)
    config_path = os.path.join(folder, CONFIG)
    r, alpha = _check_config(config, config_path)
    weights_path = _weights_file(folder)
    with open(weights_path, "rb") as f:
        raw = f.read()
    base = _base_model(base_gguf)

    h = hashlib.sha256(f"lmnb-peft-{_CONVERTER_VERSION}\n".encode())
    for part in (raw_config, hashlib.sha256(raw).digest(), base["identity"].encode()):
        h.update(hashlib.sha256(part).digest())
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", os.path.basename(os.path.abspath(folder)))[:40] or "adapter"
    cache_dir = cache_dir or default_cache_dir()
    out = os.path.join(cache_dir, f"{stem}-{h.hexdigest()[:20]}.gguf")
    if os.path.isfile(out):
        return out

    tensors = (
        _load_safetensors(weights_path, raw) if weights_path.endswith(".safetensors") else _load_torch(weights_path)
    )
    del raw
    pairs = _pairs(tensors, base["arch"], config, weights_path)
    gguf_tensors = _to_gguf_tensors(pairs, base, r, weights_path)
    os.makedirs(cache_dir, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=".partial-", suffix=".gguf")
    os.close(fd)
    try:
        _write_gguf(tmp, base["arch"], alpha, gguf_tensors, config)
        os.replace(tmp, out)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return out


def gguf_lora_info(path: PathLike) -> dict[str, Any]:
    """What a GGUF LoRA file holds, from its header.

    Args:
        path: a GGUF LoRA file (``convert_peft``'s output or llama.cpp's convert_lora_to_gguf.py's).

    Returns:
        ``{"architecture", "alpha", "rank", "n_tensors", "targets"}``: rank is the largest
        lora_b column count, targets the sorted GGUF tensor kinds adapted (``["attn_q", "attn_v"]``).

    Raises:
        AdapterError: the file is not a GGUF LoRA adapter.
    """
    meta, shapes = read_gguf_tensors(path)
    if meta.get("general.type") != "adapter" or meta.get("adapter.type") != "lora":
        raise AdapterError(f"{path} is not a GGUF LoRA adapter (general.type={meta.get('general.type')!r})")
    ranks = [s[1] for n, s in shapes.items() if n.endswith(".lora_b") and len(s) == 2]
    return {
        "architecture": meta.get("general.architecture"),
        "alpha": meta.get("adapter.lora.alpha"),
        "rank": max(ranks, default=0),
        "n_tensors": len(shapes),
        "targets": sorted({n.split(".")[2] for n in shapes if n.startswith("blk.")} | {
            n.split(".")[0] for n in shapes if not n.startswith("blk.")}),
    }  # fmt: skip
