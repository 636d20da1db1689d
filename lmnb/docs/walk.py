"""Paths and folders to the files a library indexes, each with its size and time, or why it is not.

Folders are walked recursively in name order (the same order every time), following symbolic
links to folders but never round a loop. Inside folders, hidden entries (``.git``,
``.ipynb_checkpoints``, dotfiles), Office's ``~$`` lock files and files of unsupported types are
left out silently: a folder of papers is expected to hold other things too. What the user names
explicitly is never dropped silently: it comes back with a ``skip`` reason when it cannot be indexed.
Nothing is read here; only ``stat`` and folder listings.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from typing import Iterable, Iterator, Optional

from .readers import SUPPORTED, kind_of, os_reason


@dataclass(frozen=True)
class Candidate:
    """A file found by :func:`walk`; ``skip`` is the reason it is not indexed, or None."""

    path: str
    size: int
    mtime: float
    skip: Optional[str] = None


def walk(paths: Iterable[str], *, max_bytes: int) -> Iterator[Candidate]:
    """The files under ``paths`` to index, and those to skip with the reason.

    Args:
        paths: files and folders (``~`` expanded; relative ones from the working directory).
        max_bytes: files larger than this are skipped, unread.

    Returns:
        An iterator of :class:`Candidate`, folders in name order; each file once, however many
        links or named paths lead to it.
    """
    seen_dirs: set[tuple[int, int]] = set()
    seen_files: set[tuple[int, int]] = set()
    for given in paths:
        path = os.path.abspath(os.path.expanduser(os.fspath(given)))
        try:
            st = os.stat(path)
        except OSError as e:
            yield Candidate(path, 0, 0.0, os_reason(path, e))
            continue
        if stat.S_ISDIR(st.st_mode):
            yield from _walk_dir(path, st, max_bytes, seen_dirs, seen_files)
        elif kind_of(path) is None:
            suffix = os.path.splitext(path)[1] or "no suffix"
            yield Candidate(path, st.st_size, st.st_mtime,
                            f"unsupported file type ({suffix}); supported: {', '.join(sorted(SUPPORTED))}")  # fmt: skip
        else:
            found = _file(path, st, max_bytes, seen_files)
            if found:
                yield found


def _walk_dir(top: str, st: os.stat_result, max_bytes: int,
              seen_dirs: set[tuple[int, int]], seen_files: set[tuple[int, int]]) -> Iterator[Candidate]:  # fmt: skip
    """Depth-first in name order, with an explicit stack (a deep tree must not hit the recursion
    limit). A folder already walked is not walked again: a link back to an ancestor is reported
    as a loop, any other second way into a folder is left out silently."""
    if (st.st_dev, st.st_ino) in seen_dirs:  # named twice, or inside a folder named before
        return
    seen_dirs.add((st.st_dev, st.st_ino))
    # each frame: the folder's path, its (dev, inode) with its ancestors', and the entries left
    stack = [(top, frozenset({(st.st_dev, st.st_ino)}), iter(_listing(top)))]
    while stack:
        folder, ancestors, entries = stack[-1]
        entry = next(entries, None)
        if entry is None:
            stack.pop()
            continue
        if isinstance(entry, Candidate):  # the folder could not be listed
            yield entry
            continue
        name = entry.name
        if name.startswith((".", "~$")):
            continue
        path = os.path.join(folder, name)
        supported = kind_of(name) is not None
        try:
            est = entry.stat()  # follows symbolic links
        except OSError as e:
            # a broken link or a loop of links: say so only where it would have been indexed,
            # or where it may have been a folder (no suffix); a stray link is no one's concern
            if supported or e.errno == errno.ELOOP:
                yield Candidate(path, 0, 0.0, os_reason(path, e))
            continue
        if stat.S_ISDIR(est.st_mode):
            key = (est.st_dev, est.st_ino)
            if key in ancestors:
                yield Candidate(path, 0, est.st_mtime, f"symbolic link loop (leads back to {os.path.realpath(path)})")
            elif key not in seen_dirs:
                seen_dirs.add(key)
                stack.append((path, ancestors | {key}, iter(_listing(path))))
            continue
        if not supported:
            continue
        found = _file(path, est, max_bytes, seen_files)
        if found:
            yield found


def _listing(folder: str) -> list[os.DirEntry | Candidate]:
    try:
        with os.scandir(folder) as it:
            return sorted(it, key=lambda e: e.name)
    except OSError as e:
        return [Candidate(folder, 0, 0.0, os_reason(folder, e))]


def _file(path: str, st: os.stat_result, max_bytes: int, seen: set[tuple[int, int]]) -> Optional[Candidate]:
    """The candidate for a supported file, None when the same file was already found."""
    key = (st.st_dev, st.st_ino)
    if key in seen:
        return None
    seen.add(key)
    if not stat.S_ISREG(st.st_mode):
        return Candidate(path, 0, st.st_mtime, "not a regular file (a device, pipe or socket)")
    if st.st_size > max_bytes:
        return Candidate(path, st.st_size, st.st_mtime,
                         f"too large ({_mb(st.st_size)} MB; the limit is LM.docs_max_file_mb = {_mb(max_bytes)} MB)")  # fmt: skip
    if not os.access(path, os.R_OK):
        return Candidate(path, st.st_size, st.st_mtime, "permission denied")
    return Candidate(path, st.st_size, st.st_mtime)


def _mb(n: int) -> str:
    mb = n / 2**20
    return f"{mb:.0f}" if mb >= 10 or mb == int(mb) else f"{mb:.1f}"
