"""Files to passages: each reader turns one file into its text, every passage with where it came from.

A location is what a citation shows the user: the line of the file (text, Markdown, CSV, HTML
source), the line within a page (PDF) or the paragraph (DOCX). The readers are well-kept
libraries (pypdf, python-docx, BeautifulSoup on the stdlib ``html.parser``), imported on first
use so that ``import lmnb`` stays fast. A file that cannot be indexed raises :class:`Unreadable`
with a reason worded for the user, never anything else: indexing skips it and goes on.
"""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import os
import re
import stat
import threading
from dataclasses import dataclass
from typing import Any, Iterator, Optional

log = logging.getLogger(__name__)

SUPPORTED: dict[str, str] = {
    ".txt": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".pdf": "pdf",
    ".docx": "docx",
    ".html": "html",
    ".htm": "html",
    ".csv": "csv",
}

# A DOCX is a zip: python-docx inflates its parts in memory, so a few-kB zip bomb would take the
# kernel's memory. Real documents, pictures included, stay far below this.
MAX_DOCX_INFLATED = 1 << 30
# Share of control characters past which decoded "text" is taken for binary data.
MAX_CONTROL_SHARE = 0.01

_NEWLINE = re.compile(r"\r\n|\r|\n")  # what editors count as a line break (not \f, \v, U+2028)
# C0 and C1 control characters but tab, line breaks and ESC (ANSI colours in a log are still text)
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1a\x1c-\x1f\x7f-\x9f]")


class Unreadable(Exception):
    """A file that cannot be indexed; ``str(e)`` / ``e.reason`` is the reason shown to the user."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Passage:
    """A piece of a document's text with its location (units are 1-based, ``end`` inclusive)."""

    text: str
    start: int
    end: int
    page: Optional[int] = None


@dataclass(frozen=True)
class Document:
    """A file's passages, in reading order; ``unit`` names what ``start``/``end`` count."""

    path: str
    kind: str
    unit: str
    passages: list[Passage]


def kind_of(path: str) -> Optional[str]:
    """The kind of document ``path`` names by its suffix, or None when it is not supported."""
    return SUPPORTED.get(os.path.splitext(path)[1].lower())


def read(path: str, data: Optional[bytes] = None) -> Document:
    """Read one file into passages with their locations.

    Args:
        path: a file whose suffix is in :data:`SUPPORTED`.
        data: its content, when the caller has read it already (with :func:`read_bytes`).

    Returns:
        The :class:`Document`; its passages may be empty (an empty file, a CSV with a header only).

    Raises:
        Unreadable: the file cannot be indexed (unsupported type, gone, permission denied,
            binary content, encrypted or corrupt PDF/DOCX, ...); ``reason`` says which.
    """
    kind = kind_of(path)
    if kind is None:
        suffix = os.path.splitext(path)[1] or "no suffix"
        raise Unreadable(f"unsupported file type ({suffix}); supported: {', '.join(sorted(SUPPORTED))}")
    if data is None:
        data = read_bytes(path)  # the whole file once: a later rename/delete cannot tear a parse in two
    if kind == "pdf":
        return Document(path, kind, "line", _pdf_passages(data))
    if kind == "docx":
        return Document(path, kind, "paragraph", _docx_passages(data))
    text = decode(data, html=kind == "html")
    if kind == "html":
        return Document(path, kind, "line", _html_passages(text))
    if kind == "csv":
        return Document(path, kind, "line", _csv_passages(text))
    return Document(path, kind, "line", _line_passages(text))


def read_bytes(path: str) -> bytes:
    """A file's content. Raises ``Unreadable`` (gone, permission denied, not a regular file...)."""
    try:
        # O_NONBLOCK: a FIFO named like a document must not hang the kernel waiting for a writer
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with open(fd, "rb") as f:
            mode = os.fstat(fd).st_mode
            if stat.S_ISDIR(mode):
                raise Unreadable("a folder, not a file")
            if not stat.S_ISREG(mode):
                raise Unreadable("not a regular file (a device, pipe or socket)")
            return f.read()
    except OSError as e:
        raise Unreadable(os_reason(path, e, gone="the file disappeared while being read")) from None


def os_reason(path: str, e: OSError, gone: str = "not found") -> str:
    """Why ``path`` cannot be read, in words, from the ``OSError`` that said so (``gone``: for a
    file that is not there)."""
    if e.errno == errno.ELOOP:
        return "symbolic link loop"
    if isinstance(e, PermissionError):
        return "permission denied"
    if isinstance(e, IsADirectoryError):
        return "a folder, not a file"
    if isinstance(e, FileNotFoundError):
        return "broken symbolic link" if os.path.islink(path) else gone
    return f"cannot be read: {e.strerror or e}"


# ---- text ---------------------------------------------------------------------------------------
def decode(data: bytes, *, html: bool = False) -> str:
    """``data`` as text: UTF-8 (or UTF-16/32 with a BOM), else the encoding an HTML page declares,
    else Windows-1252 (what most non-UTF-8 text files in the wild are).

    Raises:
        Unreadable: the bytes are binary data (NUL bytes, or mostly control characters).
    """
    for bom, codec in ((b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe\x00\x00", "utf-32"),
                       (b"\x00\x00\xfe\xff", "utf-32"), (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16")):  # fmt: skip
        if data.startswith(bom):
            try:
                return _text_or_binary(data.decode(codec))
            except UnicodeDecodeError:
                raise Unreadable("binary content, not text") from None
    if b"\x00" in data:  # no text encoding without a BOM puts NUL bytes in a text
        raise Unreadable("binary content, not text")
    codecs = ["utf-8"]
    if html:
        from bs4.dammit import EncodingDetector

        declared = EncodingDetector.find_declared_encoding(data[:65536], is_html=True)
        if declared:
            codecs.append(declared)
    codecs.append("cp1252")
    for codec in codecs:
        try:
            return _text_or_binary(data.decode(codec))
        except (UnicodeDecodeError, LookupError):
            continue
    raise Unreadable("binary content, not text")


def _text_or_binary(text: str) -> str:
    control = sum(1 for _ in _CONTROL.finditer(text))
    if control > MAX_CONTROL_SHARE * max(len(text), 1):
        raise Unreadable("binary content, not text")
    return text


def _line_passages(text: str, page: Optional[int] = None) -> list[Passage]:
    """One passage per non-blank line, numbered as an editor numbers them (blank lines count)."""
    out = []
    for n, line in enumerate(_NEWLINE.split(text), 1):
        line = line.rstrip()
        if line:
            out.append(Passage(line, n, n, page))
    return out


# ---- CSV ----------------------------------------------------------------------------------------
def _csv_passages(text: str) -> list[Passage]:
    """One passage per row, "header: value; ..." over the file lines the row spans (a quoted
    field may hold line breaks)."""
    import csv

    try:
        try:
            dialect: Any = csv.Sniffer().sniff(text[:8192], delimiters=",;\t|")
        except csv.Error:
            dialect = csv.excel
        lines = io.StringIO(text, newline="")  # keeps "\r\n" inside quoted fields as written
        reader = csv.reader(lines, dialect)
        out: list[Passage] = []
        header: Optional[list[str]] = None
        done = 0  # file lines consumed by the rows before
        for row in reader:
            start, done = done + 1, reader.line_num
            cells = [" ".join(c.split()) for c in row]
            if not any(cells):
                continue
            if header is None:
                header = cells
                continue
            names = header + [""] * (len(cells) - len(header))
            shown = [f"{names[i] or f'column {i + 1}'}: {c}" for i, c in enumerate(cells) if c]
            out.append(Passage("; ".join(shown), start, done))
        return out
    except csv.Error as e:
        raise Unreadable(f"not a valid CSV: {e}") from None


# ---- HTML ---------------------------------------------------------------------------------------
# Not shown by a browser: scripts, styles, templates, fallbacks for disabled scripting, frames,
# and the head (but its <title>).
_HIDDEN = {"script", "style", "template", "noscript", "iframe", "object", "head"}
_BLOCKS = {
    "address", "article", "aside", "blockquote", "caption", "dd", "details", "dialog", "div", "dl",
    "dt", "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6",
    "header", "hr", "li", "main", "nav", "ol", "p", "pre", "section", "summary", "table", "td",
    "th", "title", "tr", "ul", "body", "html", "br",
}  # fmt: skip


def _html_passages(text: str) -> list[Passage]:
    """The visible text of each block element, with the lines of the source it spans."""
    try:
        return _html_walk(text)
    except RecursionError:
        raise Unreadable("not valid HTML: its elements nest without end") from None
    except Exception as e:  # html.parser is lenient; whatever still breaks it means the same here
        raise Unreadable(f"not valid HTML: {_said(e)}") from None


def _html_walk(text: str) -> list[Passage]:
    from bs4 import BeautifulSoup, CData, NavigableString, Tag

    soup = BeautifulSoup(text, "html.parser")  # parses only: nothing is run or fetched
    out: list[Passage] = []
    parts: list[str] = []
    span: list[int] = []  # first and last source line of the text in ``parts``
    owner: Any = None  # the block element ``parts`` belong to

    def flush() -> None:
        joined = " ".join("".join(parts).split())
        if joined:
            out.append(Passage(joined, span[0], span[1]))
        parts.clear()
        span.clear()

    line = 1
    # Depth-first in document order with an explicit stack (deeply nested markup must not
    # recurse); each entry carries what its ancestors decide: hidden, preformatted, block.
    stack: list[tuple[Any, bool, bool, Any]] = [(soup, False, False, soup)]
    while stack:
        node, hidden, pre, block = stack.pop()
        if isinstance(node, Tag):
            if node.sourceline is not None:
                line = node.sourceline  # exact for each start tag: the estimates below never drift far
            name = node.name
            if name in _BLOCKS:
                flush()
                block = node
            hidden = (hidden or name in _HIDDEN) and name != "title"
            pre = pre or name == "pre"
            stack.extend((c, hidden, pre, block) for c in reversed(node.contents))
            continue
        if not isinstance(node, NavigableString):
            continue
        s = str(node)
        first = line
        line += s.count("\n")  # a string's line breaks move the line even when it is not shown
        if hidden or type(node) not in (NavigableString, CData) or not s.strip():
            continue
        if block is not owner:
            flush()
            owner = block
        if pre:  # preformatted text keeps its lines: one passage each
            flush()
            out.extend(Passage(" ".join(p.text.split()), p.start + first - 1, p.end + first - 1)
                       for p in _line_passages(s))  # fmt: skip
            continue
        if not span:
            span[:] = [first + s[: len(s) - len(s.lstrip())].count("\n"), 0]
        span[1] = first + s.rstrip().count("\n")
        parts.append(s)
    flush()
    return out


# ---- PDF ----------------------------------------------------------------------------------------
# pypdf tells of a malformed file through its logger (warnings.warn only for deprecated calls).
# While any read is under way the logger keeps to itself; the count lets reads overlap in threads.
_quiet_lock = threading.Lock()
_quiet_readers = 0


@contextlib.contextmanager
def _quiet_pypdf() -> Iterator[list[str]]:
    """Collect what pypdf says about a malformed file instead of printing it under the cell
    (a damaged PDF can log one warning per object)."""
    global _quiet_readers
    said: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if len(said) < 20:
                said.append(record.getMessage())

    logger = logging.getLogger("pypdf")
    handler = Collect(logging.WARNING)
    with _quiet_lock:
        if _quiet_readers == 0:
            logger.propagate = False
        _quiet_readers += 1
        logger.addHandler(handler)
    try:
        yield said
    finally:
        with _quiet_lock:
            logger.removeHandler(handler)
            _quiet_readers -= 1
            if _quiet_readers == 0:
                logger.propagate = True
        if said:
            log.debug("pypdf: %s", "; ".join(said))


def _pdf_passages(data: bytes) -> list[Passage]:
    """One passage per non-blank line of each page's text (pages and lines 1-based)."""
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, FileNotDecryptedError

    out: list[Passage] = []
    with _quiet_pypdf():
        try:
            reader = PdfReader(io.BytesIO(data))
            if reader.is_encrypted:
                try:
                    opened = reader.decrypt("")  # many PDFs are encrypted only against editing
                except DependencyError:
                    raise Unreadable("encrypted PDF (its cipher needs the 'cryptography' package)") from None
                if not opened:
                    raise Unreadable("encrypted PDF (password-protected)")
            n_pages = len(reader.pages)
            failed: list[Exception] = []
            for number, page in enumerate(reader.pages, 1):
                try:
                    out.extend(_line_passages(page.extract_text() or "", number))
                except (RecursionError, MemoryError):
                    raise
                except Exception as e:  # one damaged page: keep the others' text
                    failed.append(e)
                    log.debug("pypdf: page %d has no readable text: %s", number, e)
            if failed and len(failed) == n_pages:
                raise failed[0]
        except Unreadable:
            raise
        except FileNotDecryptedError:
            raise Unreadable("encrypted PDF (password-protected)") from None
        except RecursionError:
            raise Unreadable("not a valid PDF: its objects nest without end") from None
        except MemoryError:
            raise Unreadable("not a valid PDF: it needs more memory than there is") from None
        except Exception as e:  # pypdf raises many types for damaged files; all mean the same here
            raise Unreadable(f"not a valid PDF: {_said(e)}") from None
    if n_pages and not out:
        raise Unreadable("no text in the PDF (scanned pages need OCR first)")
    return out


def _said(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return (text[:200] or type(e).__name__).rstrip(".")


# ---- DOCX ---------------------------------------------------------------------------------------
def _docx_passages(data: bytes) -> list[Passage]:
    """One passage per non-empty paragraph, and one per table row (its cells joined by " | ");
    paragraphs are numbered in reading order, counting only those that hold text."""
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            inflated = sum(i.file_size for i in z.infolist())
        if inflated > MAX_DOCX_INFLATED:
            raise Unreadable(f"not a valid DOCX: it unpacks to {inflated >> 20} MB (a zip bomb?)")
        import docx

        document = docx.Document(io.BytesIO(data))
        out: list[Passage] = []
        _docx_blocks(document, out)
        return out
    except Unreadable:
        raise
    except Exception as e:  # a bad zip, missing parts, broken XML: python-docx and lxml raise many types
        raise Unreadable(f"not a valid DOCX: {_said(e)}") from None


def _docx_blocks(container: Any, out: list[Passage]) -> None:
    from docx.table import Table

    for item in container.iter_inner_content():
        if isinstance(item, Table):
            for row in item.rows:
                cells, units, seen = [], 0, []
                for cell in row.cells:
                    if any(cell._tc is tc for tc in seen):  # a merged cell is listed once per column it spans
                        continue
                    seen.append(cell._tc)
                    inner: list[Passage] = []
                    _docx_blocks(cell, inner)
                    if inner:
                        cells.append(" ".join(p.text for p in inner))
                        units += inner[-1].end  # the cell's paragraphs that hold text
                if cells:
                    first = out[-1].end + 1 if out else 1
                    out.append(Passage(" | ".join(cells), first, first + units - 1))
        else:
            text = " ".join(item.text.split())
            if text:
                n = out[-1].end + 1 if out else 1
                out.append(Passage(text, n, n))
