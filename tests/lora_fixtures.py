"""LoRA adapters for tests, built from a real base GGUF: PEFT folders and GGUF LoRA files.

Both builders draw the same random matrices for the same arguments, so a PEFT folder converted by
``lmnb.sources.peft`` can be compared with the GGUF written here directly. This module does not
use ``lmnb.sources.peft``: its GGUF route (names, layout, the rotary permutation) is a second,
independent implementation, written from llama.cpp's loader and RoPE definitions.

Random weights: A ~ N(0, 1/in) (so A·x keeps the scale of x), B ~ N(0, scale_b²); PEFT scales
B·A by alpha / rank. The default scale_b (0.05) visibly moves SmolLM2's logits (max |Δlogit| of
several units) while the model still writes text.
"""

from __future__ import annotations

import functools
import json
import os
import struct
from typing import Any, Optional, Sequence

# PEFT target (a module name under layers.{i}) -> (HF module path, GGUF tensor kind)
MODULES = {
    "q_proj": ("self_attn.q_proj", "attn_q"),
    "k_proj": ("self_attn.k_proj", "attn_k"),
    "v_proj": ("self_attn.v_proj", "attn_v"),
    "o_proj": ("self_attn.o_proj", "attn_output"),
    "gate_proj": ("mlp.gate_proj", "ffn_gate"),
    "up_proj": ("mlp.up_proj", "ffn_up"),
    "down_proj": ("mlp.down_proj", "ffn_down"),
}
PERMUTED_ARCHS = ("llama",)  # llama.cpp's converter reorders Q/K rows for these (rope "NORM")


@functools.lru_cache(maxsize=8)
def read_header(base_gguf: str) -> tuple[dict[str, Any], dict[str, tuple[tuple[int, ...], int, int]], int]:
    """``(metadata, {name: (numpy shape, ggml type, offset)}, data start)`` of a GGUF file."""
    from lmnb.sources.gguf_header import read_metadata

    with open(base_gguf, "rb") as f:
        meta = read_metadata(f)
        infos = {}
        for _ in range(meta["GGUF.tensor_count"]):
            (n,) = struct.unpack("<Q", f.read(8))
            name = f.read(n).decode()
            (n_dims,) = struct.unpack("<I", f.read(4))
            ne = struct.unpack(f"<{n_dims}Q", f.read(8 * n_dims))
            qtype, offset = struct.unpack("<IQ", f.read(12))
            infos[name] = (tuple(reversed(ne)), qtype, offset)
        align = int(meta.get("general.alignment", 32))
        data_start = -(-f.tell() // align) * align
    return meta, infos, data_start


def base_shapes(base_gguf) -> dict[str, tuple[int, int]]:
    """The base model's 2-D tensors: ``{"blk.0.attn_q.weight": (out, in)}``."""
    _, infos, _ = read_header(os.fspath(base_gguf))
    return {name: shape for name, (shape, _, _) in infos.items() if len(shape) == 2}


def base_weight(base_gguf, name: str):
    """One base tensor dequantized to float32, numpy shape (out, in)."""
    import numpy as np
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
    from gguf.quants import dequantize

    _, infos, data_start = read_header(os.fspath(base_gguf))
    shape, qtype, offset = infos[name]
    block, size = GGML_QUANT_SIZES[GGMLQuantizationType(qtype)]
    nbytes = int(np.prod(shape)) // block * size
    raw = np.fromfile(base_gguf, dtype=np.uint8, count=nbytes, offset=data_start + offset)
    return dequantize(raw, GGMLQuantizationType(qtype)).reshape(shape).astype(np.float32)


def rope_rows(n_rows: int, n_head: int):
    """Index map of llama.cpp's Q/K row reorder, from the RoPE definitions: ``gguf[j] = hf[idx[j]]``.

    HF (rotate_half) rotates, per head of d rows, the pairs (i, i + d/2) by angle pos·θ_i;
    llama.cpp's llama rope ("NORM") rotates the adjacent pairs (2i, 2i + 1) by the same angle.
    """
    import numpy as np

    d = n_rows // n_head
    idx = np.empty(n_rows, dtype=np.int64)
    for h in range(n_head):
        for i in range(d // 2):
            idx[h * d + 2 * i] = h * d + i
            idx[h * d + 2 * i + 1] = h * d + d // 2 + i
    return idx


def _arch_heads(base_gguf) -> tuple[str, int, int]:
    meta, _, _ = read_header(os.fspath(base_gguf))
    arch = meta["general.architecture"]
    n_head = int(meta[f"{arch}.attention.head_count"])
    return arch, n_head, int(meta.get(f"{arch}.attention.head_count_kv", n_head))


def _random_lora(base_gguf, targets, rank, zero_b, seed, scale_b, layers) -> list[tuple[int, str, Any, Any]]:
    """``[(layer, target, A (r, in), B (out, r))]`` in HF layout, the same for the same arguments."""
    import numpy as np

    shapes = base_shapes(base_gguf)
    meta, _, _ = read_header(os.fspath(base_gguf))
    arch = meta["general.architecture"]
    n_layer = int(meta[f"{arch}.block_count"])
    hidden = int(meta[f"{arch}.embedding_length"])
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n_layer) if layers is None else layers:
        for t in targets:
            # a target lmnb does not know (foo_proj, lm_head) still gets tensors, hidden -> hidden
            n_out, n_in = (
                shapes.get(f"blk.{i}.{MODULES[t][1]}.weight", (hidden, hidden)) if t in MODULES else (hidden, hidden)
            )
            a = (rng.standard_normal((rank, n_in)) / np.sqrt(n_in)).astype(np.float32)
            b = (rng.standard_normal((n_out, rank)) * scale_b).astype(np.float32)
            out.append((i, t, a, np.zeros_like(b) if zero_b else b))
    return out


def peft_key(layer: int, target: str, part: str) -> str:
    """PEFT's saved key for ``target`` (``q_proj``, or any module name) of a layer; part A or B."""
    if target == "lm_head":
        return f"base_model.model.lm_head.lora_{part}.weight"
    module = MODULES[target][0] if target in MODULES else f"mlp.{target}"
    return f"base_model.model.model.layers.{layer}.{module}.lora_{part}.weight"


def write_peft_folder(folder, tensors: dict[str, Any], config: dict[str, Any], *, fmt: str = "safetensors") -> str:
    """Write ``adapter_config.json`` (defaults completed with ``config``) and the weights file."""
    os.makedirs(folder, exist_ok=True)
    full = {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": "HuggingFaceTB/SmolLM2-135M-Instruct",
        "r": 4, "lora_alpha": 8.0, "lora_dropout": 0.0, "bias": "none", "fan_in_fan_out": False,
        "use_rslora": False, "use_dora": False, "modules_to_save": None, "rank_pattern": {}, "alpha_pattern": {},
        "inference_mode": True,
    }  # fmt: skip
    full.update(config)
    with open(os.path.join(folder, "adapter_config.json"), "w") as f:
        json.dump(full, f, indent=2)
    if fmt == "safetensors":
        from safetensors.numpy import save_file

        save_file(tensors, os.path.join(folder, "adapter_model.safetensors"))
    elif fmt == "bin":
        import torch  # only this format needs torch

        torch.save({k: torch.from_numpy(v) for k, v in tensors.items()}, os.path.join(folder, "adapter_model.bin"))
    else:
        raise ValueError(f"fmt {fmt!r}: expected 'safetensors' or 'bin'")
    return os.fspath(folder)


def make_peft_folder(
    folder,
    base_gguf,
    *,
    targets: Sequence[str] = ("q_proj", "v_proj"),
    rank: int = 4,
    alpha: float = 8.0,
    zero_b: bool = False,
    seed: int = 0,
    scale_b: float = 0.05,
    layers: Optional[Sequence[int]] = None,
    fmt: str = "safetensors",
) -> str:
    """A PEFT LoRA folder for ``base_gguf`` with random weights; returns its path.

    ``targets`` are PEFT module names (``q_proj``...; unknown ones such as ``foo_proj`` or
    ``lm_head`` get hidden -> hidden tensors, for error tests). ``layers`` defaults to all.
    ``fmt="bin"`` writes ``adapter_model.bin`` and needs torch.
    """
    tensors = {}
    for i, t, a, b in _random_lora(base_gguf, targets, rank, zero_b, seed, scale_b, layers):
        tensors[peft_key(i, t, "A")] = a
        tensors[peft_key(i, t, "B")] = b
    return write_peft_folder(
        folder, tensors, {"r": rank, "lora_alpha": alpha, "target_modules": list(targets)}, fmt=fmt
    )


def write_gguf_lora(path, arch: str, alpha: float, tensors: dict[str, Any]) -> str:
    """A GGUF LoRA file as llama.cpp's loader reads it: ``{"blk.0.attn_q.weight.lora_a": array}``."""
    import gguf
    import numpy as np

    w = gguf.GGUFWriter(os.fspath(path), arch)
    w.add_string("general.type", "adapter")
    w.add_string("adapter.type", "lora")
    w.add_float32("adapter.lora.alpha", float(alpha))
    for name, t in tensors.items():
        w.add_tensor(name, np.ascontiguousarray(t, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return os.fspath(path)


def make_gguf_lora(
    path,
    base_gguf,
    *,
    targets: Sequence[str] = ("q_proj", "v_proj"),
    rank: int = 4,
    alpha: float = 8.0,
    zero_b: bool = False,
    seed: int = 0,
    scale_b: float = 0.05,
    layers: Optional[Sequence[int]] = None,
) -> str:
    """The adapter ``make_peft_folder`` makes with the same arguments, written directly as GGUF."""
    arch, n_head, n_head_kv = _arch_heads(base_gguf)
    tensors = {}
    for i, t, a, b in _random_lora(base_gguf, targets, rank, zero_b, seed, scale_b, layers):
        kind = MODULES[t][1]
        if arch in PERMUTED_ARCHS and kind in ("attn_q", "attn_k"):
            b = b[rope_rows(b.shape[0], n_head if kind == "attn_q" else n_head_kv)]
        tensors[f"blk.{i}.{kind}.weight.lora_a"] = a
        tensors[f"blk.{i}.{kind}.weight.lora_b"] = b
    return write_gguf_lora(path, arch, alpha, tensors)
