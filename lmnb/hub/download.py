"""Download a GGUF model from Hugging Face into the standard HF cache: progress, resume, cancel, checksum.

The bytes move through huggingface_hub's own ``http_get`` (Range requests, retries on dropped
connections, tqdm progress) and the finished file is linked into the snapshot by
``hf_hub_download`` itself, so every HF tool sees it. lmnb adds what huggingface_hub 2.x does not
do for multi-gigabyte files:

- resume across calls: huggingface_hub deletes its temporary file when a download fails or is
  interrupted, so a kernel interrupt at 90% of 20 GB would start over. lmnb keeps its partial file
  (``blobs/<sha256>.lmnb-partial``, which nothing mistakes for a model) and continues from it;
- sha256 check: ``hf_hub_download`` only checks the size. lmnb hashes while writing and deletes
  bytes that do not match, so a corrupted file never becomes loadable;
- cancellation from another thread (the widget's button), besides the kernel interrupt.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union
from urllib.parse import urlparse

from ..errors import DownloadCancelled, HubError
from ..tables import human_bytes
from . import _hf
from .cache import hf_cache_ggufs
from .search import QuantOption, RemoteFile, RepoFiles, files

PARTIAL_SUFFIX = ".lmnb-partial"


@dataclass
class Progress:
    """Where a download stands; passed to ``progress=`` callbacks."""

    model: str
    file: str = ""
    done: int = 0
    total: int = 0
    speed: float = 0.0  # bytes/s, smoothed
    phase: str = "starting"  # starting | downloading | verifying | done | cancelled | failed
    started: float = field(default_factory=time.monotonic)

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0

    @property
    def eta(self) -> Optional[float]:
        return (self.total - self.done) / self.speed if self.speed > 0 and self.total else None

    def describe(self) -> str:
        s = f"{human_bytes(self.done)} / {human_bytes(self.total)}"
        if self.phase == "downloading" and self.speed:
            s += f" · {human_bytes(self.speed)}/s"
            if self.eta is not None:
                s += f" · {int(self.eta) // 60}:{int(self.eta) % 60:02d} left"
        elif self.phase != "downloading":
            s += f" · {self.phase}"
        return s


@dataclass
class Downloaded:
    """A model in the local HF cache: ``path`` is what ``lmnb.load`` opens (the first shard)."""

    repo_id: str
    quant: Optional[str]
    paths: list[str]
    size: int
    downloaded: int = 0  # bytes fetched by this call (0 when everything was cached already)

    @property
    def path(self) -> str:
        return self.paths[0]

    @property
    def ref(self) -> str:
        return f"{self.repo_id}:{self.quant}" if self.quant else f"{self.repo_id}/{os.path.basename(self.path)}"

    def __str__(self) -> str:
        how = f"downloaded {human_bytes(self.downloaded)}" if self.downloaded else "already in the cache"
        return f"{self.ref} ({human_bytes(self.size)}, {how}): {self.path}"


ProgressArg = Union[bool, Callable[[Progress], None]]


def download(
    model: str,
    *,
    quant: Optional[str] = None,
    revision: Optional[str] = None,
    progress: ProgressArg = True,
    cancel: Optional[threading.Event] = None,
    note: Optional[Callable[[str], None]] = print,
) -> Downloaded:
    """Download a GGUF model from Hugging Face (or find it in the cache) and return its path.

    Args:
        model: ``"owner/repo"`` (picks Q4_K_M when present, else the closest), ``"owner/repo:Q8_0"``,
            ``"owner/repo/path/file.gguf"`` or a huggingface.co URL.
        quant: a quantization label, instead of ``:QUANT`` in ``model``.
        revision: branch, tag or commit (default: the main branch).
        progress: ``True`` shows a progress bar (a widget in notebooks, a bar on a terminal),
            ``False`` nothing, a callable receives ``Progress`` updates instead.
        cancel: set this event to stop the download from another thread.
        note: where to say what was chosen (``None`` = silence).

    A download stopped by ``cancel``, a kernel interrupt or a lost connection raises
    ``DownloadCancelled``/``HubError``; its bytes are kept and the same call resumes from them.
    Bytes whose sha256 does not match the Hub's are deleted, never loaded.
    """
    say = note or (lambda _msg: None)
    ref = _hf.parse_ref(model)
    if quant:
        ref.quant = quant
    revision = revision or ref.revision
    if _hf.offline():
        hit = cached(ref)
        if hit:
            return hit
        _hf.require_online(f"download {ref}")
    option = _pick(ref, revision, say)
    state = Progress(str(ref), total=option.size)
    paths: list[str] = []
    fetched = 0
    for f in option.files:
        path, n = _fetch_file(ref.repo_id, f, revision, state, progress, cancel)
        paths.append(path)
        fetched += n
    state.phase = "done"
    _report(progress, state)
    return Downloaded(ref.repo_id, option.quant, paths, option.size, fetched)


def _pick(ref: _hf.Ref, revision: Optional[str], say: Callable[[str], None]) -> QuantOption:
    listing: RepoFiles = files(ref.repo_id, revision=revision, fit=False)
    if not listing:
        raise HubError(f"{ref.repo_id} has no GGUF files (lmnb runs GGUF models through llama.cpp).")
    if ref.filename:
        for o in listing:
            if any(f.path == ref.filename for f in o.files):
                return o
        raise HubError(f"{ref.repo_id} has no file {ref.filename!r}. Its GGUF files: "
                       + ", ".join(o.filename for o in listing))  # fmt: skip
    if ref.quant:
        return listing.get(ref.quant)
    choice = listing.default or listing[0]
    others = ", ".join(f"{o.quant or o.filename} ({human_bytes(o.size)})" for o in listing if o is not choice)
    why = "the default" if (choice.quant or "").upper() == "Q4_K_M" else "there is no Q4_K_M"
    say(f"Chose {choice.quant or choice.filename} ({human_bytes(choice.size)}) from {ref.repo_id}: {why}."
        + (f" Also available: {others}." if others else ""))  # fmt: skip
    return choice


def cached(ref: Union[str, _hf.Ref]) -> Optional[Downloaded]:
    """The model named by ``ref`` if it is complete in the local HF cache (no network)."""
    from ..sources.quant import choose, group_shards, matches, quant_of

    if isinstance(ref, str):
        ref = _hf.parse_ref(ref)
    entries = {f: p for r, f, p in hf_cache_ggufs() if r.lower() == ref.repo_id.lower()}
    groups = group_shards(sorted(entries))
    if ref.filename:
        groups = [g for g in groups if ref.filename in g]
    elif ref.quant:
        groups = [g for g in groups if matches(quant_of(g[0]), ref.quant)]
    elif groups:
        label = choose(quant_of(g[0]) for g in groups)
        groups = [g for g in groups if quant_of(g[0]) == label] or groups
    if not groups:
        return None
    group = groups[0]
    paths = [entries[f] for f in group]
    return Downloaded(ref.repo_id, quant_of(group[0]), paths, sum(os.path.getsize(p) for p in paths))


# ------------------------------------------------------------------------------------------------
# One file
# ------------------------------------------------------------------------------------------------
def _fetch_file(
    repo_id: str,
    rf: RemoteFile,
    revision: Optional[str],
    state: Progress,
    progress: ProgressArg,
    cancel: Optional[threading.Event],
) -> tuple[str, int]:
    """Make one file of the repo complete and verified in the cache; returns (path, bytes fetched)."""
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_download, hf_hub_url
    from huggingface_hub.file_download import repo_folder_name
    from huggingface_hub.utils import WeakFileLock, build_hf_headers

    filename = _hf.check_filename(rf.path)
    ep, tok = _hf.endpoint(), _hf.token()
    url = hf_hub_url(repo_id, filename, revision=revision, endpoint=ep)
    with _hf.errors(repo_id, filename):
        meta = get_hf_file_metadata(url, token=tok, endpoint=ep)
    etag = (meta.etag or "").lower()
    # The ETag names the blob on disk: anything but a hash could be a path.
    if not re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", etag):
        raise HubError(f"The server sent an unexpected ETag for {filename} ({meta.etag!r}); refusing to store it.")
    if rf.sha256 and len(etag) == 64 and etag != rf.sha256.lower():
        raise HubError(f"The listing and the download of {filename} disagree on its sha256; the repo changed? Try again.")
    size = meta.size if meta.size is not None else rf.size
    storage = os.path.join(constants.HF_HUB_CACHE, repo_folder_name(repo_id=repo_id, repo_type="model"))
    blob = os.path.join(storage, "blobs", etag)
    fetched = 0
    state.file = filename
    if not os.path.exists(blob):
        os.makedirs(os.path.dirname(blob), exist_ok=True)
        lock = os.path.join(constants.HF_HUB_CACHE, ".locks", repo_folder_name(repo_id=repo_id, repo_type="model"))
        os.makedirs(lock, exist_ok=True)
        with WeakFileLock(os.path.join(lock, f"{etag}.lmnb.lock")):  # two kernels, one partial file
            if not os.path.exists(blob):
                headers = build_hf_headers(token=tok)
                if urlparse(meta.location).netloc != urlparse(url).netloc:
                    headers.pop("authorization", None)  # never send the token to a CDN host
                fetched = _transfer(meta.location, blob, size, etag, headers, state, progress, cancel)
    else:
        state.done += size
    with _hf.errors(repo_id, filename):
        # The blob is in place, so this only creates the snapshot link and refs (no transfer).
        path = hf_hub_download(repo_id, filename, revision=revision, endpoint=ep, token=tok)
    if os.path.realpath(path) != os.path.realpath(blob) and os.path.exists(blob):
        os.remove(blob)  # a future huggingface_hub laid the cache out differently and fetched it itself
    return path, fetched


class _Hasher:
    """sha256 for LFS files, git's blob sha1 for small ones (the Hub's ETag is one of the two)."""

    def __init__(self, etag: str, size: int) -> None:
        if len(etag) == 64:
            self.h = hashlib.sha256()
        else:
            self.h = hashlib.sha1()
            self.h.update(b"blob %d\x00" % size)
        self.valid = True

    def update(self, data: bytes) -> None:
        if self.valid:
            self.h.update(data)

    def feed_file(self, path: str, n: int) -> None:
        with open(path, "rb") as f:
            left = n
            while left > 0:
                block = f.read(min(8 << 20, left))
                if not block:
                    break
                self.h.update(block)
                left -= len(block)


class _HashingFile(io.RawIOBase):
    """The file http_get writes to: hashes on the way. A seek means it restarted; hash from disk then."""

    def __init__(self, raw: Any, hasher: _Hasher) -> None:
        self.raw, self.hasher = raw, hasher

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        n = self.raw.write(data)
        self.hasher.update(bytes(data))
        return n

    def tell(self) -> int:
        return self.raw.tell()

    def seek(self, pos: int, whence: int = 0) -> int:
        self.hasher.valid = False
        return self.raw.seek(pos, whence)

    def truncate(self, size: Optional[int] = None) -> int:
        self.hasher.valid = False
        return self.raw.truncate(size)


def _transfer(
    location: str,
    blob: str,
    size: int,
    etag: str,
    headers: dict[str, str],
    state: Progress,
    progress: ProgressArg,
    cancel: Optional[threading.Event],
) -> int:
    from huggingface_hub.file_download import http_get

    part = blob + PARTIAL_SUFFIX
    resume = os.path.getsize(part) if os.path.exists(part) else 0
    if resume > size:
        os.remove(part)
        resume = 0
    free = shutil.disk_usage(os.path.dirname(blob)).free
    if size - resume > free:
        raise HubError(f"Not enough disk space for {os.path.basename(state.file)}: needs "
                       f"{human_bytes(size - resume)}, {human_bytes(free)} free in {os.path.dirname(blob)}.")  # fmt: skip
    hasher = _Hasher(etag, size)
    if resume:
        hasher.feed_file(part, resume)
    base_done = state.done
    state.done += resume
    state.phase = "downloading"
    bar_cls = _bar_class(progress, state, base_done, cancel)
    try:
        with open(part, "ab") as raw:
            http_get(location, _HashingFile(raw, hasher), resume_size=resume, headers=headers, expected_size=size,
                     displayed_filename=os.path.basename(state.file), tqdm_class=bar_cls)  # fmt: skip
    except (KeyboardInterrupt, DownloadCancelled):
        kept = _stopped(state, progress, "cancelled", part)
        raise DownloadCancelled(
            f"Download of {state.model} cancelled at {human_bytes(kept)} of {human_bytes(size)} "
            f"({os.path.basename(state.file)}). The bytes are kept: run the same download again to resume."
        ) from None
    except Exception as e:
        kept = _stopped(state, progress, "failed", part)
        raise HubError(
            f"Download of {os.path.basename(state.file)} stopped at {human_bytes(kept)} of {human_bytes(size)}: "
            f"{str(e).splitlines()[0] if str(e) else type(e).__name__}. Run it again to resume."
        ) from None
    state.phase = "verifying"
    _report(progress, state)
    if not hasher.valid:
        hasher = _Hasher(etag, size)
        hasher.feed_file(part, size)
    if os.path.getsize(part) != size or hasher.h.hexdigest() != etag:
        os.remove(part)
        state.phase = "failed"
        _report(progress, state)
        raise HubError(
            f"The downloaded bytes of {os.path.basename(state.file)} do not match the checksum published by "
            f"the Hub ({etag[:12]}…): the file was deleted. Run the download again."
        )
    os.replace(part, blob)
    state.done = base_done + size
    return size - resume


def _stopped(state: Progress, progress: ProgressArg, phase: str, part: str) -> int:
    """Report a stopped transfer; returns the bytes kept in the partial file for a resume."""
    state.phase = phase
    _report(progress, state)
    return os.path.getsize(part) if os.path.exists(part) else 0


def _report(progress: ProgressArg, state: Progress) -> None:
    if callable(progress):
        progress(state)


def _bar_class(progress: ProgressArg, state: Progress, base_done: int, cancel: Optional[threading.Event]) -> type:
    """A tqdm class for http_get: a visible bar (notebook widget or terminal) or a silent counter
    feeding ``progress``; either way it checks ``cancel`` on each chunk."""
    if progress is True:
        from tqdm.auto import tqdm as base
    else:
        from tqdm import tqdm as base

    class _Bar(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.pop("name", None)  # huggingface_hub's own bar takes it; tqdm rejects it
            if progress is not True:
                kwargs["file"], kwargs["disable"] = io.StringIO(), False
            kwargs.setdefault("unit_divisor", 1000)
            super().__init__(*args, **kwargs)
            self._t = time.monotonic()
            self._last = self.n

        def update(self, n: float = 1) -> Optional[bool]:
            if cancel is not None and cancel.is_set():
                raise DownloadCancelled("cancelled")
            out = super().update(n)
            now = time.monotonic()
            if now - self._t >= 0.2:
                rate = (self.n - self._last) / (now - self._t)
                state.speed = rate if not state.speed else 0.7 * state.speed + 0.3 * rate
                self._t, self._last = now, self.n
            state.done = base_done + int(self.n)
            _report(progress, state)
            return out

    return _Bar


# ------------------------------------------------------------------------------------------------
# In the background (widgets)
# ------------------------------------------------------------------------------------------------
class Download:
    """A download running in a background thread, so a widget stays responsive.

    ``progress`` holds the latest ``Progress``; ``cancel()`` stops it (bytes kept for a resume);
    ``wait()`` returns the ``Downloaded`` or raises its error.
    """

    def __init__(self, model: str, *, on_progress: Optional[Callable[[Progress], None]] = None, **kwargs: Any) -> None:
        self.model = model
        self.progress = Progress(model)
        self.messages: list[str] = []
        self.result: Optional[Downloaded] = None
        self.error: Optional[BaseException] = None
        self._cancel = threading.Event()
        self._on_progress = on_progress
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(kwargs,), name=f"lmnb-download-{model}", daemon=True)
        self._thread.start()

    def _update(self, p: Progress) -> None:
        self.progress = p
        if self._on_progress is not None:
            try:
                self._on_progress(p)
            except Exception:  # a widget callback must not kill the download
                pass

    def _run(self, kwargs: dict[str, Any]) -> None:
        try:
            self.result = download(self.model, progress=self._update, cancel=self._cancel,
                                   note=self.messages.append, **kwargs)  # fmt: skip
        except BaseException as e:  # noqa: BLE001 - reported to the waiting side
            self.error = e
        finally:
            self._done.set()
            self._update(self.progress)

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: Optional[float] = None) -> Downloaded:
        if not self._done.wait(timeout):
            raise TimeoutError(f"download of {self.model} still running")
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


def start_download(model: str, **kwargs: Any) -> Download:
    """Start ``download(model, ...)`` in a background thread and return its ``Download`` handle."""
    return Download(model, **kwargs)


def partial_downloads() -> list[tuple[str, int]]:
    """``(path, bytes)`` of interrupted lmnb downloads waiting in the HF cache to be resumed."""
    from huggingface_hub import constants

    out = []
    root = constants.HF_HUB_CACHE
    if not os.path.isdir(root):
        return out
    for repo in os.listdir(root):
        blobs = os.path.join(root, repo, "blobs")
        if os.path.isdir(blobs):
            for name in os.listdir(blobs):
                if name.endswith(PARTIAL_SUFFIX):
                    p = os.path.join(blobs, name)
                    out.append((p, os.path.getsize(p)))
    return out
