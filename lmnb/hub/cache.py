"""The local Hugging Face cache, read and pruned without the network: which GGUF files it holds,
and deleting one model's files from it.

The library (``lmnb.sources.library``: ``%lm models``, ``%lm rm``) and the hub (``hub.cached``) both read
the cache through here, so the library depends on the hub and never the other way round.
"""

from __future__ import annotations

import os


def hf_cache_ggufs() -> list[tuple[str, str, str]]:
    """(repo_id, filename, path) for every .gguf file in the local Hugging Face cache."""
    try:
        from huggingface_hub import constants, scan_cache_dir
        from huggingface_hub.errors import CacheNotFound
    except ImportError:  # pragma: no cover - huggingface_hub is a dependency
        return []
    try:
        # scan_cache_dir's default is bound when huggingface_hub is imported; pass the live value
        info = scan_cache_dir(constants.HF_HUB_CACHE)
    except (CacheNotFound, OSError):
        return []
    out, seen = [], set()
    for repo in info.repos:
        if repo.repo_type != "model":
            continue
        # Newest revision first, so a file kept by several snapshots is listed once, at its latest.
        for rev in sorted(repo.revisions, key=lambda r: r.last_modified, reverse=True):
            for f in rev.files:
                name = str(f.file_path.relative_to(rev.snapshot_path))
                if f.file_name.lower().endswith(".gguf") and (repo.repo_id, name) not in seen:
                    seen.add((repo.repo_id, name))
                    out.append((repo.repo_id, name, str(f.file_path)))
    return out


def delete_files(repo_id: str, files: list[str]) -> int:
    """Delete ``files`` (snapshot paths of one model of ``repo_id``) and the blobs only they used;
    returns the bytes freed.

    huggingface_hub's cache API deletes whole revisions: it is used when a revision holds nothing
    else; a single quantization out of several in one snapshot is unlinked file by file.
    """
    from huggingface_hub import constants, scan_cache_dir

    # What will be freed: the model's blobs (shards), each once. Measured, not predicted.
    blobs = {os.path.realpath(f) for f in files if os.path.exists(f)}
    sizes = {b: os.path.getsize(b) for b in blobs}
    info = scan_cache_dir(constants.HF_HUB_CACHE)
    targets = {os.path.abspath(f) for f in files}
    for repo in info.repos:
        if repo.repo_id != repo_id or repo.repo_type != "model":
            continue
        whole, partial = [], []
        for rev in repo.revisions:
            names = {os.path.abspath(str(f.file_path)) for f in rev.files}
            if not names & targets:
                continue
            others = [f for f in rev.files if os.path.abspath(str(f.file_path)) not in targets
                      and f.file_name.lower().endswith(".gguf")]  # fmt: skip
            (partial if others else whole).append(rev)
        if whole:
            info.delete_revisions(*(r.commit_hash for r in whole)).execute()
        for rev in partial:
            # Other quantizations stay in this snapshot: unlink only these files (the cache API
            # deletes whole revisions); their blobs go below when nothing links them any more.
            for f in rev.files:
                if os.path.abspath(str(f.file_path)) in targets:
                    os.remove(str(f.file_path))
    # Whatever the cache scan saw, the model's own files must be gone when this returns.
    for f in files:
        if os.path.lexists(f):
            os.remove(f)
    for b in blobs:
        if os.path.exists(b) and not _blob_linked(b):
            os.remove(b)
    return sum(n for b, n in sizes.items() if not os.path.exists(b))


def _blob_linked(blob: str) -> bool:
    """Whether any snapshot of the repo (``.../snapshots/<rev>/...``) still points at ``blob``."""
    root = os.path.dirname(os.path.dirname(blob))  # models--owner--name
    for dirpath, _, names in os.walk(os.path.join(root, "snapshots")):
        if any(os.path.realpath(os.path.join(dirpath, n)) == blob for n in names):
            return True
    return False
