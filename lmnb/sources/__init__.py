"""Where models come from, and whether they fit: read-only, with no notebook or server in it.

- ``library``: one name -> one GGUF file (bundled starter models, the HF cache, folders, paths);
  ``%lm models`` and ``%lm rm``.
- ``lmstudio_ollama``: the models LM Studio and Ollama already downloaded on this machine.
- ``gguf_header``: a GGUF file's metadata, read without loading the model.
- ``quant``: quantization names (Q4_K_M...), shards and choosing a file in a repository.
- ``fit``: will this model fit in this machine's RAM / VRAM, and how many layers to offload.

The Hugging Face Hub is the public ``lmnb.hub`` package. The layering (an import-linter contract):
``library`` over ``lmstudio_ollama`` over ``lmnb.hub`` over ``fit``, ``quant`` and ``gguf_header``.
"""
