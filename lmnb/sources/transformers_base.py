"""A GGUF model as a folder transformers loads in seconds, for training LoRA adapters on it.

transformers reads a GGUF file itself (``from_pretrained(folder, gguf_file=...)``), dequantizing
the weights to float32, but slowly: for SmolLM2-135M it parses the 49k-token vocabulary twice and
rebuilds its tensor-name map once per tensor, about 50 s on two cores for the model and its
tokenizer, every time a notebook runs. ``transformers_checkpoint`` does that once and keeps the
result (config, tokenizer, float32 safetensors) in the data dir, next to the converted adapters.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from typing import Optional

from ..config import get_config
from ..history_db import file_sha256
from .peft import default_cache_dir

READY = ".lmnb-complete"  # written last: a folder without it is an interrupted conversion


def transformers_checkpoint(gguf_path: str, *, cache_dir: Optional[str] = None) -> str:
    """The model in ``gguf_path`` as a transformers folder, converted on the first call and cached.

    ``AutoModelForCausalLM.from_pretrained(folder)`` and ``AutoTokenizer.from_pretrained(folder)``
    then give the same float32 weights and tokenizer as loading the GGUF file with ``gguf_file=``.

    Args:
        gguf_path: a GGUF model file (any quantization transformers can dequantize).
        cache_dir: where converted folders go; default ``<lmnb data dir>/transformers``.

    Returns:
        The folder's path. It is named after the file and a hash of its bytes and of the
        transformers version, so a changed file or a new transformers converts again.

    Raises:
        ImportError: transformers or torch is not installed (``pip install "lmnb[finetune]"``).
        OSError: the file cannot be read, or the folder cannot be written.
    """
    import torch
    import transformers

    # the file's hash as lmnb keeps it for loaded models (remembered in the history DB: not
    # recomputed for a multi-GB file on every call)
    digest = file_sha256(gguf_path, get_config().resolved_history_path())
    h = hashlib.sha256(f"lmnb-transformers-1\n{transformers.__version__}\n{digest}".encode())
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", os.path.basename(gguf_path).removesuffix(".gguf"))[:60] or "model"
    root = cache_dir or os.path.join(os.path.dirname(default_cache_dir()), "transformers")
    out = os.path.join(root, f"{stem}-{h.hexdigest()[:16]}")
    if os.path.isfile(os.path.join(out, READY)):
        return out

    folder, name = os.path.dirname(os.path.abspath(gguf_path)), os.path.basename(gguf_path)
    os.makedirs(root, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=root, prefix=".partial-")
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=name)
        model = transformers.AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
        # loaded "with the gguf quantizer", which save_pretrained refuses; the weights are plain
        # float32 by now, so they are saved as a model of the same config without one
        config = model.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        plain = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        plain.load_state_dict(model.state_dict())
        plain.save_pretrained(tmp)
        del plain
        tokenizer.save_pretrained(tmp)
        del model
        open(os.path.join(tmp, READY), "w").close()
        shutil.rmtree(out, ignore_errors=True)  # an interrupted earlier conversion
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
