"""The Documents pane: a document library (``lmnb.docs``) in the studio.

>>> from lmnb.widgets.documents import Documents
>>> Documents("papers")

Pick a library (or type a new name), add a folder: it is indexed on a background thread, with a
progress bar (files, chunks, tokens/s) and a Stop button (the files finished stay indexed; adding
again goes on from there). The library's files are listed, with the skipped ones and why. A search
box shows the best passages, where they are, and the query's words marked. Under it, the sources
of the last answer from a library (``lmnb.chat(docs=...)``, ``%%lm chat --docs``, the chat pane).

File names, reasons and document text are untrusted: every piece of HTML here is built with
:func:`lmnb.markup.html`, which escapes what it fills in.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from typing import Any, Callable, Optional, Sequence

import ipywidgets as widgets

from .. import docs
from ..docs.library import check_name, names as library_names
from ..markup import Markup, escape, html, join
from ._html import SafeHTML
from ._jobs import Jobs, Quiet
from ._pane import UI_INTERVAL, StatusPane, describe

MAX_ROWS = 300  # files listed; a library of thousands says how many more there are
MODES = (("auto", "auto"), ("hybrid", "hybrid"), ("words (BM25)", "bm25"), ("meaning (vectors)", "vector"))
_MUTED = "color:var(--jp-content-font-color2,#616161)"
_BOX = "max-height:18em;overflow:auto;border:1px solid var(--jp-border-color2,#ddd);padding:4px 6px"
_TEXT = "white-space:pre-wrap;overflow-wrap:anywhere;margin:2px 0 8px 1em;font-size:92%"


# ------------------------------------------------------------------------------------------------
# HTML for the pane's parts (every value escaped)
# ------------------------------------------------------------------------------------------------
def highlight(text: str, query: str) -> Markup:
    """``text`` escaped, with the query's words (and words starting with them) in ``<mark>``."""
    words = sorted({w for w in re.findall(r"\w+", query) if len(w) > 1}, key=len, reverse=True)
    if not words:
        return escape(text)
    pattern = re.compile(r"\b(?:" + "|".join(map(re.escape, words)) + r")\w*", re.IGNORECASE)
    parts: list[Any] = []
    pos = 0
    for m in pattern.finditer(text):
        parts += [text[pos : m.start()], html("<mark>{}</mark>", m.group(0))]
        pos = m.end()
    parts.append(text[pos:])
    return join(parts)


def hits_html(hits: Sequence[docs.Hit], query: str) -> Markup:
    """Search hits: rank, where (the full path on hover), score, and the text with the query marked."""
    if not hits:
        return html("<i>Nothing matches {}.</i>", query)
    rows = (html('<div class="lmnb-doc-hit"><b>{}.</b> <span title="{}">{}</span> '
                 '<span style="{}">score {}</span><div style="{}">{}</div></div>',
                 h.rank, h.file, h.where, _MUTED, f"{h.score:.3g}", _TEXT, highlight(h.text, query))
            for h in hits)  # fmt: skip
    return join(rows)


def files_html(lib: docs.Library) -> Markup:
    """The library's files (relative to the folder added), then the skipped ones with the reason."""
    roots = lib.roots
    files = lib.files()
    skipped = lib.skipped()
    if not files and not skipped:
        return html("<i>No files yet: add a folder.</i>")
    rows = [html("<tr><td title='{}'>{}</td><td>{}</td><td style='text-align:right'>{}</td>"
                 "<td style='text-align:right'>{}</td></tr>", f.path, _short(f.path, roots), f.kind, f.chunks,
                 f"{f.tokens:,}") for f in files[:MAX_ROWS]]  # fmt: skip
    if len(files) > MAX_ROWS:
        rows.append(html("<tr><td colspan='4'><i>… and {} more</i></td></tr>", len(files) - MAX_ROWS))
    head = join(html("<th style='text-align:left;padding-right:1em'>{}</th>", c)
                for c in ("file", "kind", "chunks", "tokens"))  # fmt: skip
    table = html("<table style='font-size:90%'><thead><tr>{}</tr></thead><tbody>{}</tbody></table>", head,
                 join(rows))  # fmt: skip
    if not skipped:
        return html('<div class="lmnb-doc-files" style="{}">{}</div>', _BOX, table)
    items = join(html('<li><span title="{}">{}</span>: {}</li>', p, _short(p, roots), why)
                 for p, why in skipped[:MAX_ROWS])  # fmt: skip
    return html('<div class="lmnb-doc-files" style="{}">{}<div class="lmnb-doc-skipped"><b>Skipped ({})</b>'
                "<ul style='margin:2px 0'>{}</ul></div></div>", _BOX, table, len(skipped), items)  # fmt: skip


def sources_html(sources: Sequence[dict]) -> Markup:
    """The sources of an answer: those it cites, then (folded) those it was given and did not cite."""
    if not sources:
        return html("<i>No answer from a library yet: pick one in the chat, or use "
                    "<code>%%lm chat --docs NAME</code>.</i>")  # fmt: skip

    def item(s: dict) -> Markup:
        return html('<li value="{}"><span title="{}">{}</span><div style="{}">{}</div></li>', s.get("n", 0),
                    s.get("file", ""), s.get("where", ""), _TEXT, s.get("text", ""))  # fmt: skip

    cited = [s for s in sources if s.get("cited")]
    rest = [s for s in sources if not s.get("cited")]
    out = html("<b>{}</b><ol>{}</ol>", "Cited" if cited else "No source cited", join(item(s) for s in cited))
    if rest:
        out += html("<details><summary>{} more given, not cited</summary><ol>{}</ol></details>", len(rest),
                    join(item(s) for s in rest))  # fmt: skip
    return html('<div class="lmnb-doc-sources" style="{}">{}</div>', _BOX, out)


def last_sources() -> list[dict]:
    """The sources of the newest answer from a library in the history (``[]`` when none)."""
    from ..history_db import WRITER, read
    from ..replies import history_path

    WRITER.flush()
    for row in reversed(read(history_path(), last=50)):
        if row.get("sources"):
            try:
                found = json.loads(row["sources"])
            except ValueError:
                continue
            if isinstance(found, list):
                return [s for s in found if isinstance(s, dict)]
    return []


def _short(path: str, roots: Sequence[str]) -> str:
    """A file as the user knows it: from the folder added (``papers/2024/a.pdf``)."""
    for root in roots:
        if path == root:
            return os.path.basename(path)
        if os.path.isdir(root) and path.startswith(root.rstrip(os.sep) + os.sep):
            return os.path.relpath(path, os.path.dirname(root.rstrip(os.sep)))
    return path


# ------------------------------------------------------------------------------------------------
# Progress: the tqdm-like object the indexer drives
# ------------------------------------------------------------------------------------------------
class Progress:
    """What ``lmnb.docs.add(progress=...)`` drives (``reset``, ``update``, ``set_postfix_str``,
    ``set_description_str``, ``unit``, ``close``), drawn in the pane.

    ``stopping`` is the event the indexer is given as ``stop``: set, it ends the run within one
    embedding call, keeping the files finished (as Ctrl-C does).
    """

    def __init__(self, draw: Callable[["Progress"], None]) -> None:
        self.draw = draw
        self.total = 0
        self.n = 0
        self.unit = "B"
        self.desc = ""
        self.postfix = ""
        self.stopping = threading.Event()
        self._drawn = 0.0

    def stop(self) -> None:
        self.stopping.set()

    def reset(self, total: Optional[int] = None) -> None:
        self.total, self.n = int(total or 0), 0
        self._draw(force=True)

    def update(self, n: int = 1) -> None:
        self.n += n
        self._draw(force=self.n >= self.total)

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.postfix = s

    def set_description_str(self, desc: Optional[str] = None, refresh: bool = True) -> None:
        self.desc = desc or ""
        self._draw(force=True)

    def close(self) -> None:
        self._draw(force=True)

    def line(self) -> str:
        """``papers: 45% · 12/40 files · report.pdf: chunk 8/30 · 85 chunks, 1,234 tok/s``."""
        head = f"{self.desc}: " if self.desc else ""
        tail = f" · {self.postfix}" if self.postfix else ""
        done = f"{self.n / max(self.total, 1):.0%}" if self.unit == "B" else f"{self.n}/{self.total} {self.unit}s"
        return f"{head}{done}{tail}"

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._drawn >= UI_INTERVAL:
            self._drawn = now
            self.draw(self)


# ------------------------------------------------------------------------------------------------
# The pane
# ------------------------------------------------------------------------------------------------
class Documents(StatusPane, widgets.VBox):
    """Add folders to a document library, watch them index, search it, see an answer's sources.

    Parts: ``library`` (Combobox: a library's name, or a new one), ``refresh_button``, ``summary``
    (HTML); ``folder`` (Text), ``add_button``, ``stop_button`` (shown while indexing), ``progress``
    (IntProgress over files), ``progress_text`` (HTML), ``status`` (HTML); ``files`` (HTML: the
    indexed and the skipped files); ``query`` (Text; Enter searches), ``mode`` (Dropdown),
    ``search_button``, ``hits`` (HTML); ``sources`` (HTML: the sources of the last answer).
    ``listeners``: called with no argument after libraries change (the studio's chat lists them again).

    Args:
        library: the library shown first (default: the first there is).
        k: how many hits a search shows.
    """

    def __init__(self, library: Optional[str] = None, *, k: int = 5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_class("lmnb-documents")
        self.k = k
        self.listeners: list[Callable[[], None]] = []
        self.last_report: Optional[docs.IndexReport] = None
        self.last_hits: list[docs.Hit] = []
        self.last_sources: list[dict] = []
        self._jobs = Jobs("lmnb-documents-widget")
        self._quiet = Quiet()
        self._lock = threading.Lock()
        self._bar: Optional[Progress] = None  # the indexing under way

        def button(description: str, icon: str, style: str = "", tip: str = "") -> widgets.Button:
            return widgets.Button(description=description, icon=icon, button_style=style, tooltip=tip,
                                  layout=widgets.Layout(width="auto"))  # fmt: skip

        known = library_names()
        self.library = widgets.Combobox(
            value=library if library is not None else (known[0] if known else ""), options=tuple(known),
            placeholder="Library: pick one, or type a new name", ensure_option=False, continuous_update=False,
            description="Library", layout=widgets.Layout(width="28em"),
        )  # fmt: skip
        self.refresh_button = button("Refresh", "refresh", tip="Read the libraries and the last answer again")
        self.summary = SafeHTML()
        self.folder = widgets.Text(placeholder="A folder (or file) to add, e.g. ~/papers", description="Folder",
                                   layout=widgets.Layout(flex="1 1 auto", width="auto"))  # fmt: skip
        self.add_button = button("Add folder", "plus", "primary", "Index the folder's documents into the library")
        self.stop_button = button("Stop", "stop", "danger", "Stop indexing (the files finished stay indexed)")
        self.stop_button.layout.display = "none"
        self.progress = widgets.IntProgress(value=0, min=0, max=1, layout=widgets.Layout(width="100%"))
        self.progress.layout.visibility = "hidden"
        self.progress_text = SafeHTML()
        self.status = SafeHTML()
        self.files = SafeHTML()
        self.query = widgets.Text(placeholder="Search the library, then Enter", continuous_update=False,
                                  layout=widgets.Layout(flex="1 1 auto", width="auto"))  # fmt: skip
        self.mode = widgets.Dropdown(options=MODES, value="auto", layout=widgets.Layout(width="12em"))
        self.search_button = button("Search", "search", tip="The passages that best match")
        self.search_status = SafeHTML()
        self.hits = SafeHTML()
        self.sources = SafeHTML()

        self.children = [
            widgets.HBox([self.library, self.refresh_button]),
            self.summary,
            widgets.HBox([self.folder, self.add_button, self.stop_button]),
            self.progress,
            self.progress_text,
            self.status,
            self.files,
            SafeHTML(Markup("<b>Search</b>")),
            widgets.HBox([self.query, self.mode, self.search_button]),
            self.search_status,
            self.hits,
            SafeHTML(Markup("<b>Sources of the last answer</b>")),
            self.sources,
        ]

        self.library.observe(self._guard(lambda _c: None if self._quiet else self.show_library()), "value")
        self.refresh_button.on_click(self._guard(lambda _b: self.refresh()))
        self.add_button.on_click(self._guard(lambda _b: self.add_folder()))
        self.stop_button.on_click(self._guard(lambda _b: self.stop()))
        self.query.observe(self._guard(lambda _c: self.search(), self.search_status), "value")
        self.search_button.on_click(self._guard(lambda _b: self.search(), self.search_status))
        self.refresh()

    # --------------------------------------------------------------------------------------------
    @property
    def indexing(self) -> bool:
        """A folder is being indexed."""
        return self._bar is not None

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block until the indexing started here is over; ``False`` on timeout."""
        return self._jobs.wait(timeout)

    def refresh(self) -> None:
        """List the libraries again, and show the chosen one and the last answer's sources."""
        known = library_names()
        with self._quiet():
            self.library.options = tuple(known)
            if not self.library.value.strip() and known:
                self.library.value = known[0]  # a library made since (a cell's lmnb.docs.add)
        self.show_library()
        self.show_sources(last_sources())

    def shown(self) -> None:
        """The pane came into view (the studio's tab): ``refresh``, with errors in the status line."""
        self._guard(lambda: self.refresh())()

    def show_library(self) -> None:
        """Show the chosen library's summary and files."""
        name = self.library.value.strip()
        if not name:
            self.summary.value = html("<i>Type a name for a new library, or pick one.</i>")
            self.files.value = Markup("")
            return
        try:
            lib = docs.library(name)
        except (KeyError, ValueError) as e:  # a new name: made by its first folder
            msg = describe(e) if isinstance(e, ValueError) else f"{name}: a new library, made by its first folder."
            self.summary.value = html("<i>{}</i>", msg)
            self.files.value = Markup("")
            return
        info = lib.info()
        self.summary.value = html("{}", str(info))
        self.files.value = files_html(lib)

    # --------------------------------------------------------------------------------------------
    def add_folder(self, folder: Optional[str] = None) -> Optional[threading.Thread]:
        """Index ``folder`` (default: the Folder field) into the chosen library, on a background
        thread; returns it (``None`` when it could not start, the status line says why)."""
        name = check_name(self.library.value.strip())
        path = (self.folder.value if folder is None else folder).strip()
        if not path:
            raise ValueError("enter a folder (or a file) to add")
        full = os.path.abspath(os.path.expanduser(path))
        if not os.path.exists(full):
            raise ValueError(f"there is no folder or file {full}")
        bar = Progress(self._draw_progress)
        with self._lock:
            if self._bar is not None:
                self._say("A folder is being indexed already: wait for it, or Stop it.", "warn")
                return None
            self._bar = bar
        self._say(f"Indexing {full} into {name}…")
        self.progress.value, self.progress.max = 0, 1
        self.progress.layout.visibility = "visible"
        self.stop_button.layout.display = ""
        self.add_button.disabled = True
        return self._jobs.start(self._index, name, full, bar)

    def stop(self) -> bool:
        """Stop the indexing under way after the file being read; returns whether one was running."""
        bar = self._bar
        if bar is None:
            return False
        bar.stop()
        self._say("Stopping…", "warn")
        return True

    def _index(self, name: str, full: str, bar: Progress) -> None:
        try:
            report = docs.add(name, full, progress=bar, stop=bar.stopping)
        except Exception as e:  # noqa: BLE001 - shown in the pane; a thread's traceback reaches no one
            self._say(f"Could not index {full}: {describe(e)}", "error")
        else:
            self.last_report = report
            if report.interrupted:
                n = docs.library(name).info().files
                self._say(f"Stopped: {name} keeps the {n} file{'' if n == 1 else 's'} indexed so far. Add "
                          "the folder again to go on.", "warn")  # fmt: skip
            else:
                self._say(report.summary(), "warn" if report.skipped else "ok")
        finally:
            with self._lock:
                self._bar = None
            self.stop_button.layout.display = "none"
            self.progress.layout.visibility = "hidden"
            self.add_button.disabled = False
            self._draw_progress(bar)
            with self._quiet():
                self.library.options = tuple(library_names())
            self.show_library()
            for fn in list(self.listeners):
                self._guard(fn)()

    def _draw_progress(self, bar: Progress) -> None:
        self.progress.max = max(1, bar.total)
        self.progress.value = min(bar.n, self.progress.max)
        self.progress_text.value = html('<span style="{}">{}</span>', _MUTED, bar.line())

    # --------------------------------------------------------------------------------------------
    def search(self, query: Optional[str] = None) -> list[docs.Hit]:
        """Search the chosen library for ``query`` (default: the search box); returns the hits shown."""
        text = (self.query.value if query is None else query).strip()
        if not text:
            return []
        name = self.library.value.strip()
        if not name:
            raise ValueError("pick a library to search")
        t0 = time.perf_counter()
        found = docs.search(name, text, self.k, mode=self.mode.value)
        self.last_hits = found
        self.hits.value = hits_html(found, text)
        self._say(f"{len(found)} passages in {time.perf_counter() - t0:.2f} s ({self.mode.value}).", "info",
                  self.search_status)  # fmt: skip
        return found

    def show_sources(self, sources: Sequence[dict]) -> None:
        """Show ``sources`` (``Completion.sources``) as the sources of the last answer."""
        self.last_sources = [dict(s) for s in sources]
        self.sources.value = sources_html(self.last_sources)

    def show_completion(self, result: Any) -> None:
        """A chat reply finished: show its sources when it answered from a library."""
        if getattr(result, "sources", None):
            self.show_sources(result.sources)

    def close(self) -> None:
        self.stop()
        super().close()
