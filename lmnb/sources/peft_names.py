"""PEFT names and layouts -> llama.cpp's GGUF LoRA names and layouts (used by ``lmnb.sources.peft``).

The tables follow the llama.cpp project's converters: gguf-py's tensor_mapping.py for the names,
and convert_hf_to_gguf's ``LlamaModel.permute`` for the rotary row order of llama-type Q and K.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

# HF module (below ``layers.{i}.``) -> GGUF tensor kind (``blk.{i}.<kind>.weight``)
LLAMA_LIKE = {
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}  # fmt: skip
# Phi-3 fuses Q, K, V and gate, up; its converter copies the fused weights as they are.
PHI3 = {
    "self_attn.qkv_proj": "attn_qkv", "self_attn.o_proj": "attn_output", "mlp.gate_up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}  # fmt: skip
# GGUF architecture -> (module map, whether the converter permutes Q/K rows for llama.cpp's rope).
# Only "llama" does (its rope rotates adjacent pairs); the others use NEOX rope, HF's own layout.
# HF Mistral (MistralForCausalLM) and SmolLM models convert to "llama".
ARCHITECTURES: dict[str, tuple[dict[str, str], bool]] = {
    "llama": (LLAMA_LIKE, True),
    "qwen2": (LLAMA_LIKE, False),
    "qwen3": (LLAMA_LIKE, False),
    "gemma": (LLAMA_LIKE, False),
    "gemma2": (LLAMA_LIKE, False),
    "gemma3": (LLAMA_LIKE, False),
    "phi3": (PHI3, False),
}
# What may come before ``layers.{i}.`` in a key (after PEFT's ``base_model.model.``): causal LMs,
# and the text model inside multimodal checkpoints (Gemma 3, SmolVLM). A vision tower's layers
# are not listed, so its modules are reported as unknown rather than mapped onto the text model.
_PREFIXES = ("", "model.", "model.language_model.", "language_model.model.", "language_model.", "model.text_model.")
_LAYER = re.compile(r"^(?P<prefix>.*?)layers\.(?P<i>\d+)\.(?P<sub>.+)$")


class Key(NamedTuple):
    """What one PEFT state-dict key is.

    ``kind``: "pair" (``name`` is the GGUF base tensor, ``part`` "A" or "B"), "embedding" or
    "dora" (``name``: the module), "unknown" (a LoRA on a module with no GGUF tensor; ``name``
    with ``layers.N``), "other" (not a LoRA tensor at all; ``name``: the key).
    """

    kind: str
    name: str
    part: str = ""
    adapter: str = ""  # PEFT's adapter name when the key carries one (``lora_A.default.weight``)


def classify(key: str, modules: dict[str, str]) -> Key:
    """Map a PEFT key (``base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight``)."""
    parts = key.split(".")
    at = next((j for j, p in enumerate(parts) if p.startswith("lora_")), None)
    if at is None:
        return Key("other", key)
    part, rest = parts[at], parts[at + 1 :]
    module = ".".join(parts[:at]).removeprefix("base_model.model.")
    if part in ("lora_embedding_A", "lora_embedding_B"):
        return Key("embedding", module)
    if part == "lora_magnitude_vector":
        return Key("dora", module)
    if part not in ("lora_A", "lora_B") or not rest or rest[-1] != "weight" or len(rest) > 2:
        return Key("other", key)  # lora_B.bias (lora_bias), or something unheard of
    adapter = rest[0] if len(rest) == 2 else ""
    m = _LAYER.match(module)
    if not m or m["prefix"] not in _PREFIXES or m["sub"] not in modules:
        return Key("unknown", re.sub(r"layers\.\d+\.", "layers.N.", module), adapter=adapter)
    return Key("pair", f"blk.{int(m['i'])}.{modules[m['sub']]}.weight", part[-1], adapter)


def rope_permute(rows: Any, n_head: int) -> Any:
    """Reorder the rows (output dim) of a Q or K projection from HF's rotate-half rotary layout to
    the adjacent-pairs layout of llama.cpp's llama-type GGUFs: per head of d rows, row i -> 2i and
    row d/2 + i -> 2i + 1 (what ``permute`` in llama.cpp's convert_hf_to_gguf does)."""
    shape = rows.shape
    return rows.reshape(n_head, 2, shape[0] // n_head // 2, *shape[1:]).swapaxes(1, 2).reshape(shape)
