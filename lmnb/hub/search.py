"""Find GGUF repositories on Hugging Face and list their quantizations with a fit estimate."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Optional

from ..errors import HubError
from ..sources.fit import Fit, Hardware, estimate, probe
from ..sources.quant import choose, group_shards, is_projector, matches, quant_of
from ..tables import Table, TableList, human_bytes, human_count
from . import _hf

_SORTS = {
    "downloads": "downloads",
    "likes": "likes",
    "modified": "last_modified",
    "last_modified": "last_modified",
    "updated": "last_modified",
    "created": "created_at",
    "trending": "trending_score",
}
# Bytes fetched for a remote header: the keys the estimate needs sit in the first few MB.
_HEADER_RANGES = (256 << 10, 4 << 20, 32 << 20)


@dataclass
class HubModel:
    """A GGUF repository found by ``search``."""

    id: str
    downloads: int = 0
    likes: int = 0
    last_modified: Optional[datetime] = None
    architecture: Optional[str] = None
    parameters: Optional[int] = None
    context_length: Optional[int] = None
    gated: bool = False

    @property
    def size_label(self) -> str:
        if self.parameters:
            return human_count(self.parameters)
        m = re.search(r"(?<![\d.])(\d+(?:\.\d+)?)([BbMm])(?![a-zA-Z])", self.id.split("/")[-1])
        return f"{m.group(1)}{m.group(2).upper()}" if m else ""


class SearchResults(TableList):
    """``list[HubModel]`` that shows as a table."""

    query: str = ""

    def table(self) -> Table:
        rows = [
            (
                m.id,
                m.size_label,
                m.architecture or "",
                human_count(m.downloads),
                m.likes,
                m.last_modified.date().isoformat() if m.last_modified else "",
                "gated" if m.gated else "",
            )
            for m in self
        ]
        return Table(
            ["repository", "params", "arch", "downloads", "likes", "updated", ""],
            rows,
            footer="`%lm files REPO` lists its quantizations; `%lm download REPO[:QUANT]` fetches one.",
            empty=f"No GGUF repositories match {self.query!r}.",
        )



def search(query: str = "", *, limit: int = 20, sort: str = "downloads", author: Optional[str] = None) -> SearchResults:
    """Search Hugging Face for repositories holding GGUF files.

    Args:
        query: words matched against repository names (``""`` lists the most popular).
        limit: how many repositories to return.
        sort: ``"downloads"``, ``"likes"``, ``"modified"``, ``"created"`` or ``"trending"``.
        author: only repositories of this user or organisation.

    Returns:
        ``SearchResults`` (a list of ``HubModel``), shown as a table in notebooks.
    """
    if sort not in _SORTS:
        raise ValueError(f"sort must be one of {', '.join(sorted(set(_SORTS)))}, not {sort!r}")
    if limit < 1:
        raise ValueError("limit must be at least 1")
    _hf.require_online("search")
    out = SearchResults()
    out.query = query
    with _hf.errors("search"):
        found = _hf.api().list_models(
            search=query or None,
            author=author,
            filter="gguf",
            sort=_SORTS[sort],  # type: ignore[arg-type]
            limit=limit,
            expand=["downloads", "likes", "lastModified", "gguf", "gated", "tags"],  # type: ignore[list-item]
        )
        for m in found:
            g = getattr(m, "gguf", None) or {}
            out.append(
                HubModel(
                    id=m.id,
                    downloads=m.downloads or 0,
                    likes=m.likes or 0,
                    last_modified=m.last_modified,
                    architecture=g.get("architecture"),
                    parameters=g.get("total"),
                    context_length=g.get("context_length"),
                    gated=bool(getattr(m, "gated", False)),
                )
            )
    return out


@dataclass
class RemoteFile:
    path: str
    size: int
    sha256: Optional[str] = None


@dataclass
class QuantOption:
    """One downloadable model in a repository: a quantization, as one file or several shards."""

    repo_id: str
    quant: Optional[str]
    files: list[RemoteFile]
    fit: Optional[Fit] = None

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def filename(self) -> str:
        return self.files[0].path

    @property
    def ref(self) -> str:
        return f"{self.repo_id}:{self.quant}" if self.quant else f"{self.repo_id}/{self.filename}"


class RepoFiles(TableList):
    """``list[QuantOption]`` of one repository, smallest first, shown as a table."""

    repo_id: str = ""
    default: Optional[QuantOption] = None
    projectors: list[str] = []  # noqa: RUF012 - always replaced per instance by files()
    hardware: Optional[Hardware] = None

    def get(self, quant: str) -> QuantOption:
        for o in self:
            if matches(o.quant, quant):
                return o
        have = ", ".join(o.quant or o.filename for o in self)
        raise HubError(f"{self.repo_id} has no {quant} file. Available: {have}.")

    def table(self) -> Table:
        rows = []
        for o in self:
            shards = f" ({len(o.files)} parts)" if len(o.files) > 1 else ""
            fit = o.fit
            rows.append(
                (
                    ("* " if o is self.default else "  ") + (o.quant or "?"),
                    human_bytes(o.size),
                    human_bytes(fit.total) if fit else "",
                    fit.label if fit else "",
                    o.filename + shards,
                )
            )
        ctx = self[0].fit.n_ctx if self and self[0].fit else None
        foot = f"Memory at context {ctx}; * = default." if ctx else ""
        if self.hardware:
            foot += f" This machine: {self.hardware.describe()}."
        if self.projectors:
            foot += f" Vision projector: {', '.join(self.projectors)}."
        return Table(["quant", "size", "needs", "fit", "file"], rows, footer=foot.strip(),
                     empty=f"{self.repo_id} has no GGUF files.")  # fmt: skip



def files(
    repo_id: str, *, revision: Optional[str] = None, n_ctx: Optional[int] = None, fit: bool = True
) -> RepoFiles:
    """The GGUF files of a repository, grouped by quantization (split shards together).

    Each ``QuantOption`` carries a ``Fit``: memory needed at ``n_ctx`` (default ``LM.n_ctx``) and
    whether it fits this machine's free RAM / VRAM. The architecture numbers come from the GGUF
    header of one file, read with a few HTTP range requests.
    """
    import warnings

    _hf.check_repo_id(repo_id)
    _hf.require_online("list files")
    entries: list[RemoteFile] = []
    with _hf.errors(repo_id):
        for e in _hf.api().list_repo_tree(repo_id, recursive=True, revision=revision):
            path = getattr(e, "path", "")
            if not path.lower().endswith(".gguf") or getattr(e, "size", None) is None:
                continue
            try:
                _hf.check_filename(path)
            except HubError as err:  # a hostile listing: never offer it
                warnings.warn(str(err), stacklevel=2)
                continue
            lfs = getattr(e, "lfs", None)
            entries.append(RemoteFile(path, int(e.size), getattr(lfs, "sha256", None) if lfs else None))
    out = RepoFiles()
    out.repo_id, out.projectors = repo_id, [f.path for f in entries if is_projector(f.path)]
    by_path = {f.path: f for f in entries if not is_projector(f.path)}
    for group in group_shards(sorted(by_path)):
        out.append(QuantOption(repo_id, quant_of(group[0]), [by_path[p] for p in group]))
    out.sort(key=lambda o: o.size)
    label = choose(o.quant for o in out)
    out.default = next((o for o in out if o.quant == label), out[0] if out else None)
    if fit and out:
        meta = None
        try:
            meta = remote_header(repo_id, out[0].filename, revision=revision)
        except Exception:  # a gated file, a non-GGUF file: fall back to a size-only guess
            meta = None
        out.hardware = probe()
        for o in out:
            o.fit = estimate(o.size, meta, n_ctx=n_ctx, hardware=out.hardware)
    return out


def remote_header(repo_id: str, filename: str, *, revision: Optional[str] = None) -> dict[str, Any]:
    """The GGUF header of a remote file, read with HTTP range requests (a few hundred KB)."""
    from huggingface_hub import hf_hub_url
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

    from ..sources.gguf_header import read_metadata

    url = hf_hub_url(repo_id, _hf.check_filename(filename), revision=revision, endpoint=_hf.endpoint())
    headers = build_hf_headers(token=_hf.token())
    with _hf.errors(repo_id, filename):
        for n in _HEADER_RANGES:
            r = get_session().get(url, headers={**headers, "Range": f"bytes=0-{n - 1}"}, follow_redirects=True)
            hf_raise_for_status(r)
            try:
                # Stop after the token list (its length sizes the logits buffer), before merges/scores.
                return read_metadata(io.BytesIO(r.content), want=["tokenizer.ggml.tokens"])
            except EOFError:
                if len(r.content) < n:  # the whole file was shorter than the range: it is damaged
                    raise
    raise HubError(f"The GGUF header of {filename} is larger than {human_bytes(_HEADER_RANGES[-1])}")
