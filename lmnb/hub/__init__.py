"""Hugging Face, from the notebook: search GGUF repositories, compare quantizations with a
hardware-fit estimate, download into the shared HF cache with progress, resume and checksums.

>>> from lmnb import hub
>>> hub.search("smollm2")                        # repositories holding GGUF files
>>> hub.files("bartowski/SmolLM2-135M-Instruct-GGUF")   # quantizations, sizes, will it fit
>>> hub.download("bartowski/SmolLM2-135M-Instruct-GGUF:Q4_K_M")
>>> hub.parse_ref("bartowski/SmolLM2-135M-Instruct-GGUF:Q4_K_M")   # what such a name means

``lmnb.hub.cache`` reads (and prunes) the local HF cache without the network.

Network access honours ``HF_ENDPOINT``, ``HF_TOKEN`` and ``HF_HUB_OFFLINE`` (read at each call).
"""

from ._hf import Ref, parse_ref
from .adapters import download_adapter
from .download import Download, Downloaded, Progress, cached, download, partial_downloads, start_download
from .search import HubModel, QuantOption, RemoteFile, RepoFiles, SearchResults, files, remote_header, search

__all__ = [
    "Download", "Downloaded", "HubModel", "Progress", "QuantOption", "Ref", "RemoteFile", "RepoFiles",
    "SearchResults", "cached", "download", "download_adapter", "files", "parse_ref", "partial_downloads", "remote_header", "search",
    "start_download",
]  # fmt: skip
