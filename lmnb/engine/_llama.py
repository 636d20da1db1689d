"""Low-level llama.cpp helpers shared by the chat model (``model.py``) and the embedding models
(``embedding.py``): backend start-up, the GGUF file check, model loading and metadata, batches
and tokens, on llama-cpp-python's C bindings.

Both modules import from here and never from each other. Only the engine's worker thread calls
what needs a model or a context.
"""

from __future__ import annotations

import ctypes
import os
import time
from typing import TYPE_CHECKING, Any, Optional

import llama_cpp as C

from ..errors import LoadError
from ..types import LoadOptions, ModelInfo
from . import logs

if TYPE_CHECKING:
    import numpy as np

_backend_ready = False


def ensure_backend() -> None:
    """Start llama.cpp's backend (once) with its log lines going to ``lmnb.engine.logs``."""
    global _backend_ready
    if not _backend_ready:
        logs.install()
        C.llama_backend_init()
        _backend_ready = True


def check_gguf_file(path: str) -> None:
    """Raise ``LoadError`` unless ``path`` is an existing file that starts like a GGUF file."""
    if not os.path.exists(path):
        raise LoadError(f"No such model file: {path}")
    if os.path.isdir(path):
        raise LoadError(f"{path} is a directory, not a .gguf file")
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise LoadError(f"Cannot read {path}: {e.strerror}") from None
    if magic != b"GGUF":
        size = os.path.getsize(path)
        raise LoadError(
            f"{path} is not a GGUF model file (it starts with {magic!r}, not b'GGUF'; size {size} bytes). "
            "lmnb loads llama.cpp GGUF files; convert other formats with llama.cpp's convert_hf_to_gguf.py."
        )


def gpu_layers(value: int | str | None) -> int:
    """llama.cpp's ``n_gpu_layers`` for an ``LM.n_gpu_layers`` value (an int, ``"auto"``, ``"max"``)."""
    if value in (None, "auto"):
        # All layers when this build can offload (CUDA/Metal/Vulkan), none on a CPU-only build.
        return 0x7FFFFFFF if C.llama_supports_gpu_offload() else 0
    if value in ("max", -1):
        return 0x7FFFFFFF
    return int(value)


def model_params(opts: LoadOptions) -> "C.llama_model_params":
    """llama.cpp's weight-loading parameters for ``opts`` (GPU layers, mmap)."""
    mparams = C.llama_model_default_params()
    mparams.n_gpu_layers = gpu_layers(opts.n_gpu_layers)
    mparams.load_mode = C.LLAMA_LOAD_MODE_MMAP if opts.use_mmap else C.LLAMA_LOAD_MODE_NONE
    return mparams


def load_model(path: str, params: "C.llama_model_params", what: str) -> "C.llama_model_p":
    """Load ``path``'s weights; ``LoadError`` with llama.cpp's own reasons when it refuses.

    ``what`` is the verb for the message ("load", "read").
    """
    check_gguf_file(path)
    ensure_backend()
    t0 = time.time()
    model = C.llama_model_load_from_file(path.encode("utf-8"), params)
    if not model:
        reasons = logs.LOGS.errors_since(t0)
        detail = "; ".join(reasons[-3:]) if reasons else "llama.cpp gave no reason"
        if any("within the file bounds" in r or "truncated" in r or "EOF" in r for r in reasons):
            hint = " The file looks truncated (an interrupted download?)."
        else:
            hint = ""
        raise LoadError(f"llama.cpp could not {what} {path}: {detail}.{hint}")
    return model


def meta(model: C.llama_model_p, key: str) -> Optional[str]:
    """One GGUF metadata value of a loaded model, as text (``None`` when the key is absent)."""
    buf = ctypes.create_string_buffer(256)
    n = C.llama_model_meta_val_str(model, key.encode(), buf, len(buf))
    if n < 0:
        return None
    if n >= len(buf):
        buf = ctypes.create_string_buffer(n + 1)
        C.llama_model_meta_val_str(model, key.encode(), buf, len(buf))
    return buf.value.decode("utf-8", errors="replace")


def all_meta(model: C.llama_model_p) -> dict[str, str]:
    """A loaded model's GGUF metadata, without the token lists."""
    out = {}
    buf = ctypes.create_string_buffer(512)
    for i in range(C.llama_model_meta_count(model)):
        n = C.llama_model_meta_key_by_index(model, i, buf, len(buf))
        if n < 0:
            continue
        key = buf.value.decode("utf-8", errors="replace")
        if key.startswith("tokenizer.ggml.") and key not in (
            "tokenizer.ggml.model",
            "tokenizer.ggml.bos_token_id",
            "tokenizer.ggml.eos_token_id",
        ):
            continue  # token lists: huge and useless to a reader
        val = meta(model, key)
        if val is not None:
            out[key] = val
    return out


def _file_type_name(model: C.llama_model_p, metadata: dict[str, str]) -> str:
    try:
        from gguf import LlamaFileType

        name = LlamaFileType(int(metadata["general.file_type"])).name
        return name.removeprefix("MOSTLY_")
    except Exception:
        desc = ctypes.create_string_buffer(256)
        C.llama_model_desc(model, desc, len(desc))
        return desc.value.decode(errors="replace").split()[-1] if desc.value else "unknown"


def model_info(model: C.llama_model_p, path: str, template_override: Optional[str]) -> ModelInfo:
    """The ``ModelInfo`` of a loaded model (``template_override`` replaces the GGUF's chat template)."""
    metadata = all_meta(model)
    arch = metadata.get("general.architecture", "unknown")

    def meta_int(key: str, value: int) -> int:
        # vocab-only loads leave hparams at 0; the GGUF keys have them
        try:
            return value or int(metadata.get(f"{arch}.{key}", 0))
        except ValueError:
            return value

    template = template_override or meta(model, "tokenizer.chat_template")
    return ModelInfo(
        path=os.path.abspath(path),
        # the file the user picked is more recognisable than general.name ("Smollm2 135M 8k Lc100K...")
        name=os.path.splitext(os.path.basename(path))[0],
        architecture=arch,
        parameters=int(C.llama_model_n_params(model)),
        quantization=_file_type_name(model, metadata),
        file_size=os.path.getsize(path),
        context_length=meta_int("context_length", int(C.llama_model_n_ctx_train(model))),
        layers=meta_int("block_count", int(C.llama_model_n_layer(model))),
        has_chat_template=bool(meta(model, "tokenizer.chat_template")),
        chat_template=template,
        metadata=metadata,
    )


def free_context(ctx: Any, batch: Any) -> None:
    """Free a llama.cpp context and its batch (either may be ``None``)."""
    if batch is not None:
        C.llama_batch_free(batch)
    if ctx:
        C.llama_free(ctx)


def tokenize(vocab: Any, text: str, add_special: bool = True, parse_special: bool = True) -> list[int]:
    """``text`` as token ids of ``vocab``."""
    data = text.encode("utf-8")
    cap = len(data) + 8
    buf = (C.llama_token * cap)()
    n = C.llama_tokenize(vocab, data, len(data), buf, cap, add_special, parse_special)
    if n < 0:
        cap = -n
        buf = (C.llama_token * cap)()
        n = C.llama_tokenize(vocab, data, len(data), buf, cap, add_special, parse_special)
    return list(buf[:n])


def fill_batch(b: Any, tokens: list[int], seq_ids: list[int], positions: list[int], logits: list[bool]) -> None:
    """Write one token per sequence entry into a ``llama_batch`` (each token in one sequence)."""
    for i, t in enumerate(tokens):
        b.token[i] = t
        b.pos[i] = positions[i]
        b.n_seq_id[i] = 1
        b.seq_id[i][0] = seq_ids[i]
        b.logits[i] = logits[i]
    b.n_tokens = len(tokens)


# llama_get_logits_ith (the same C function as llama_cpp's) returning the row's address as a plain
# int: a view on it is then made once per buffer (llama.cpp keeps its logits buffer between
# decodes), not once per token (~20 µs a token)
_logits_ith = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int32)(
    ctypes.cast(C.llama_get_logits_ith, ctypes.c_void_p).value
)
_row_views: dict[tuple[int, int], "np.ndarray"] = {}  # (address, n_vocab) -> view; a few engines' buffers


def logits_row(ctx: Any, idx: int, n_vocab: int) -> "np.ndarray":
    """The logits of batch position ``idx`` of the last decode, as a float32 view (valid until the
    next decode; copy what must outlive it). Raises ``RuntimeError`` where llama.cpp has none."""
    addr = _logits_ith(ctx, idx)
    if not addr:
        raise RuntimeError(f"llama.cpp has no logits for batch position {idx} (see `%lm log`)")
    view = _row_views.get((addr, n_vocab))
    if view is None:
        import numpy as np  # llama_cpp imports it anyway

        if len(_row_views) >= 16:  # buffers reallocated or freed over time: start again
            _row_views.clear()
        # memory llama.cpp owns: the view is only read right after the call that returned its address
        view = _row_views[(addr, n_vocab)] = np.frombuffer((ctypes.c_float * n_vocab).from_address(addr), np.float32)
    return view


def trim_heap() -> None:
    """Hand freed heap pages back to the OS so that unloading shows up in RSS (glibc only)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except Exception:
        pass
