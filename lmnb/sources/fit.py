"""Will this model fit? Memory needed for a GGUF file, and a verdict for this machine.

The estimate adds what llama.cpp reserves at load time:

- weights: the file size (all shards);
- KV cache: ``n_ctx x layers x (K + V width) x 2 bytes`` (f16), with the per-layer widths from the
  GGUF header (grouped-query attention makes them much smaller than the embedding width);
- compute buffer: the larger of the logits buffer (``n_vocab x n_ubatch x 4``) and the attention
  scores (``n_ubatch x n_ctx x heads x 4``; flash attention avoids them), plus 10% and 16 MiB.

Checked against the buffer sizes llama.cpp logs for the bundled models (see tests/test_hub.py).
The verdict compares that with free RAM and, when an NVIDIA GPU is visible through NVML and
llama.cpp was built with GPU offload, free VRAM.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any, Optional

from ..tables import human_bytes

_MIB = 1 << 20
_N_UBATCH = 512
# The most a verdict lets a model take: a machine also runs the notebook, the browser, the OS.
_RAM_SHARE = 0.9
_VRAM_SHARE = 0.95


@dataclass
class GPU:
    name: str
    total: int
    free: int


@dataclass
class Hardware:
    """What the machine has free right now."""

    ram_total: int
    ram_available: int
    gpus: list[GPU] = field(default_factory=list)
    gpu_offload: bool = False  # llama.cpp in this environment was built with GPU support

    @property
    def vram_free(self) -> int:
        return sum(g.free for g in self.gpus) if self.gpu_offload else 0

    def describe(self) -> str:
        s = f"RAM {human_bytes(self.ram_available)} of {human_bytes(self.ram_total)} free"
        for g in self.gpus:
            s += f"; {g.name} {human_bytes(g.free)} of {human_bytes(g.total)} free"
        if self.gpus and not self.gpu_offload:
            s += " (this llama.cpp build cannot offload to it)"
        return s


@functools.lru_cache(maxsize=1)
def nvml_ok() -> bool:
    """Whether NVML works here (``nvmlInit`` runs once per process; a failure is remembered too)."""
    try:
        import pynvml

        pynvml.nvmlInit()
        return True
    except Exception:  # no library, no driver, no GPU
        return False


@functools.lru_cache(maxsize=1)
def llama_offload() -> bool:
    """Whether this llama.cpp build can offload layers to a GPU (asked once per process)."""
    try:
        import llama_cpp

        return bool(llama_cpp.llama_supports_gpu_offload())
    except Exception:
        return False


def gpus() -> list[GPU]:
    """NVIDIA GPUs with their total and free memory (empty without NVML or a GPU)."""
    if not nvml_ok():
        return []
    import pynvml

    out = []
    try:
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            mem = pynvml.nvmlDeviceGetMemoryInfo(h)
            name = pynvml.nvmlDeviceGetName(h)
            out.append(GPU(name.decode() if isinstance(name, bytes) else name, int(mem.total), int(mem.free)))
    except Exception:
        return out
    return out


def probe() -> Hardware:
    """Free RAM now (psutil) and free VRAM now (NVML)."""
    import psutil

    vm = psutil.virtual_memory()
    found = gpus()
    # Importing llama_cpp costs a few hundred ms: only ask when there is a GPU to offload to.
    return Hardware(int(vm.total), int(vm.available), found, llama_offload() if found else False)


@dataclass
class Fit:
    """Memory a model needs at a context length, and where it can run on this machine."""

    weights: int
    kv_cache: int
    compute: int
    n_ctx: int
    n_layers: Optional[int]
    verdict: str  # "gpu" | "partial" | "cpu" | "too-large"
    gpu_layers: int
    hardware: Hardware
    exact: bool = True  # False when the GGUF header could not be read (size-only guess)

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.compute

    @property
    def label(self) -> str:
        if self.verdict == "gpu":
            return "fits on GPU"
        if self.verdict == "partial":
            return f"partial offload ({self.gpu_layers}/{self.n_layers} layers)"
        if self.verdict == "cpu":
            return "CPU only" if self.hardware.vram_free else "fits (CPU)"
        return "too large"

    def describe(self) -> str:
        approx = "" if self.exact else "~"
        return (
            f"{self.label}: needs {approx}{human_bytes(self.total)} at context {self.n_ctx} "
            f"(weights {human_bytes(self.weights)} + KV cache {human_bytes(self.kv_cache)} "
            f"+ compute {human_bytes(self.compute)}); {self.hardware.describe()}"
        )


def _arch_int(meta: dict[str, Any], key: str) -> Optional[int]:
    arch = meta.get("general.architecture")
    v = meta.get(f"{arch}.{key}")
    if isinstance(v, list):  # per-layer values (some models vary heads by layer)
        return int(sum(v) / len(v)) if v else None
    try:
        return int(v) if v is not None else None
    except (TypeError, ValueError):
        return None


def _n_vocab(meta: dict[str, Any]) -> int:
    n = _arch_int(meta, "vocab_size")
    if n:
        return n
    tokens = meta.get("tokenizer.ggml.tokens")
    return int(getattr(tokens, "length", None) or (len(tokens) if isinstance(tokens, list) else 0) or 32000)


def memory(weights: int, meta: Optional[dict[str, Any]], n_ctx: int, *, flash_attn: bool = False) -> tuple[int, int]:
    """``(kv_cache, compute)`` bytes llama.cpp reserves for a model at ``n_ctx``."""
    if not meta:
        # No header: assume a dense model of this size (KV about 1/8 of weights at 4k tokens).
        return int(weights * n_ctx / 32768), 64 * _MIB
    n_layer = _arch_int(meta, "block_count") or 0
    n_embd = _arch_int(meta, "embedding_length") or 0
    n_head = _arch_int(meta, "attention.head_count") or 0
    n_head_kv = _arch_int(meta, "attention.head_count_kv") or n_head
    head_k = _arch_int(meta, "attention.key_length") or (n_embd // n_head if n_head else 0)
    head_v = _arch_int(meta, "attention.value_length") or head_k
    kv = n_ctx * n_layer * n_head_kv * (head_k + head_v) * 2  # f16 K and V
    logits = _n_vocab(meta) * _N_UBATCH * 4
    scores = 0 if flash_attn else _N_UBATCH * n_ctx * max(n_head, 1) * 4
    compute = int(max(logits, scores) * 1.1) + 16 * _MIB
    return kv, compute


def estimate(
    weights: int,
    meta: Optional[dict[str, Any]] = None,
    *,
    n_ctx: Optional[int] = None,
    flash_attn: Optional[bool] = None,
    hardware: Optional[Hardware] = None,
) -> Fit:
    """Memory needed by a model of ``weights`` bytes (its GGUF header in ``meta``) and the verdict.

    ``n_ctx`` defaults to ``LM.n_ctx``; ``0`` means the model's trained length, as at load.
    """
    from ..config import get_config

    cfg = get_config()
    hw = hardware or probe()
    trained = _arch_int(meta or {}, "context_length")
    ctx = cfg.n_ctx if n_ctx is None else n_ctx
    if ctx <= 0:
        ctx = trained or 4096
    fa = cfg.flash_attn if flash_attn is None else flash_attn
    kv, compute = memory(weights, meta, ctx, flash_attn=fa)
    n_layers = _arch_int(meta or {}, "block_count")
    fit = Fit(weights, kv, compute, ctx, n_layers, "too-large", 0, hw, exact=bool(meta))
    total = fit.total
    ram = hw.ram_available * _RAM_SHARE
    vram = hw.vram_free * _VRAM_SHARE
    if vram and total <= vram:
        fit.verdict, fit.gpu_layers = "gpu", n_layers or 0
        return fit
    if vram and n_layers:
        per_layer = (weights + kv) / n_layers
        k = int(math.floor((vram - compute) / per_layer)) if vram > compute else 0
        k = min(k, n_layers - 1)
        if k >= 1 and total - k * per_layer <= ram:
            fit.verdict, fit.gpu_layers = "partial", k
            return fit
    if total <= ram:
        fit.verdict = "cpu"
    return fit
