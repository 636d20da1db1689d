"""LoRA adapter repositories: a PEFT folder (``adapter_config.json`` + weights) or GGUF LoRA files,
fetched into the shared HF cache like models (same endpoint, token, offline mode and errors)."""

from __future__ import annotations

from typing import Optional

from . import _hf

# what an adapter needs; a repo's README, optimizer state or training args are left on the Hub
ADAPTER_FILES = ["adapter_config.json", "adapter_model.safetensors", "adapter_model.bin", "*.gguf"]


def download_adapter(repo_id: str, revision: Optional[str] = None) -> str:
    """Download an adapter repository's adapter files; returns the local folder (in the HF cache).

    Args:
        repo_id: ``owner/name`` on Hugging Face (or the ``HF_ENDPOINT`` mirror).
        revision: a branch, tag or commit (default: the main branch).

    Returns:
        The snapshot folder holding the adapter's files.

    Raises:
        HubError: an unsafe or unknown repository, a gated one without access, no network, or
            ``HF_HUB_OFFLINE`` set and the files not cached.
    """
    from huggingface_hub import snapshot_download

    _hf.check_repo_id(repo_id)
    with _hf.errors(repo_id):
        return snapshot_download(repo_id, revision=revision, allow_patterns=ADAPTER_FILES, endpoint=_hf.endpoint(),
                                 token=_hf.token(), local_files_only=_hf.offline())  # fmt: skip
