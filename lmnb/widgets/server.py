"""The Server pane: LM Studio's Developer tab for the OpenAI-compatible server of this kernel.

>>> from lmnb.widgets.server import Server
>>> Server()

Host, port and an optional API key; Start / Stop over ``lmnb.server.serve`` and
``lmnb.server.current().stop()``. Shows the base URL (selectable, to copy), a one-line client
example, a warning when the server is reachable from other machines, and the latest requests.
A server started elsewhere (``%lm serve``, ``lmnb.serve()``) shows up here too: the shared ticker
thread looks about once a second and redraws only what changed. No callback ever raises: errors
(a busy port, a bad address) show in the status line.
"""

from __future__ import annotations

import secrets
import threading
import time
from typing import Any, Callable, Optional

import ipywidgets as widgets

from ..markup import Markup, html, join
from ..server.guard import is_loopback
from . import ticker as _ticker
from ._html import SafeHTML

_COLORS = {"info": "", "ok": "#2e7d32", "warn": "#b26a00", "error": "#c62828"}
MAX_ROWS = 50  # ServerStats keeps the last 50 requests


def requests_table(records: Any) -> Markup:
    """The latest requests, newest first, as an HTML table (every cell escaped)."""
    recs = list(records)[-MAX_ROWS:][::-1]
    if not recs:
        return Markup('<div class="lmnb-server-requests"><i>No requests yet.</i></div>')
    head = join(html("<th style='text-align:left;padding-right:1em'>{}</th>", c)
                for c in ("time", "method", "path", "status", "ms"))  # fmt: skip
    rows = []
    for r in recs:
        color = "#c62828" if r.status >= 500 else ("#b26a00" if r.status >= 400 else "")
        style = html(" style='color:{}'", color) if color else ""
        cells = (
            time.strftime("%H:%M:%S", time.localtime(r.time)),
            r.method,
            r.path,  # the client's request line: anything at all
            str(r.status),
            f"{r.duration_s * 1000:.0f}",
        )
        tds = join(html("<td style='padding-right:1em'>{}</td>", c) for c in cells)
        rows.append(html("<tr{}>{}</tr>", style, tds))
    return html(
        '<div class="lmnb-server-requests" style="max-height:16em;overflow:auto">'
        "<table style='font-family:monospace;font-size:90%'><thead><tr>{}</tr></thead>"
        "<tbody>{}</tbody></table></div>",
        head, join(rows),
    )


class Server(widgets.VBox):
    """Start, stop and watch the kernel's OpenAI-compatible server.

    Parts: ``host`` (Text), ``port`` (IntText, 0 = any free port), ``api_key`` (Password),
    ``generate_button``, ``show_key`` (Checkbox: the key in the client example),
    ``start_button``, ``stop_button``, ``url`` (read-only Text: the base URL), ``example`` (HTML:
    a client one-liner), ``warning`` (HTML), ``status`` (HTML), ``requests`` (HTML table of the
    latest requests). ``server`` is the running ``lmnb.server.Server`` (or ``None``).

    Args:
        host, port, api_key: initial values (default ``LM.server_host``, ``LM.server_port``,
            ``LM.server_api_key``).
        live: follow the server (requests, a server started elsewhere) from the ticker thread.
    """

    def __init__(
        self,
        *,
        host: Optional[str] = None,
        port: Optional[int] = None,
        api_key: Optional[str] = None,
        live: bool = True,
        **kwargs: Any,
    ) -> None:
        from ..config import get_config

        super().__init__(**kwargs)
        self.add_class("lmnb-server")
        cfg = get_config()
        self._lock = threading.RLock()
        self._unsubscribe: Optional[Callable[[], None]] = None
        self._shown: Any = None  # the lmnb.server.Server the fields describe
        self._table_key: Any = None
        self._url_value = ""
        self._message: Optional[tuple[str, str]] = None  # (text, kind) shown until the server changes

        def button(description: str, icon: str, style: str = "", tip: str = "") -> widgets.Button:
            return widgets.Button(description=description, icon=icon, button_style=style, tooltip=tip,
                                  layout=widgets.Layout(width="auto"))  # fmt: skip

        self.host = widgets.Text(value=cfg.server_host if host is None else host, description="Host",
                                 layout=widgets.Layout(width="16em"))  # fmt: skip
        self.port = widgets.IntText(value=cfg.server_port if port is None else port, description="Port",
                                    tooltip="0 = any free port", layout=widgets.Layout(width="11em"))  # fmt: skip
        self.api_key = widgets.Password(
            value=cfg.server_api_key if api_key is None else api_key,
            description="API key",
            placeholder="none: anyone who can reach the port may call it",
            layout=widgets.Layout(width="28em"),
        )
        self.generate_button = button("Generate", "key", tip="Fill in a new random API key")
        self.show_key = widgets.Checkbox(value=False, description="show key in example", indent=False,
                                         layout=widgets.Layout(width="auto"))  # fmt: skip
        self.start_button = button("Start", "play", "success", "Start serving the loaded model")
        self.start_button.add_class("lmnb-server-start")
        self.stop_button = button("Stop", "stop", "danger", "Stop the server and free the port")
        self.stop_button.add_class("lmnb-server-stop")
        # A Text, not disabled (a disabled input cannot be selected in every browser): edits are undone.
        self.url = widgets.Text(value="", placeholder="not running", description="Base URL",
                                layout=widgets.Layout(width="34em"))  # fmt: skip
        self.url.add_class("lmnb-server-url")
        self.example = SafeHTML()
        self.warning = SafeHTML()
        self.status = SafeHTML()
        self.requests = SafeHTML()

        self.children = [
            SafeHTML(Markup("<b>OpenAI-compatible server</b> &middot; serves the model this notebook has loaded")),
            widgets.HBox([self.host, self.port]),
            widgets.HBox([self.api_key, self.generate_button, self.show_key]),
            widgets.HBox([self.start_button, self.stop_button]),
            self.url,
            self.example,
            self.warning,
            self.status,
            SafeHTML(Markup("<b>Latest requests</b>")),
            self.requests,
        ]

        self.start_button.on_click(self._guard(lambda _b: self.start()))
        self.stop_button.on_click(self._guard(lambda _b: self.stop()))
        self.generate_button.on_click(self._guard(lambda _b: self.generate_key()))
        self.url.observe(self._guard(self._keep_url), "value")
        self.host.observe(self._guard(lambda _c: self._show_warning()), "value")
        self.show_key.observe(self._guard(lambda _c: self._show_example()), "value")
        self.api_key.observe(self._guard(lambda _c: self._show_example()), "value")

        self.refresh()
        if live:
            self._unsubscribe = _ticker.subscribe(self.refresh)

    # --------------------------------------------------------------------------------------------
    @property
    def server(self) -> Any:
        """The running ``lmnb.server.Server``, wherever it was started (``None`` when stopped)."""
        from ..server import current

        return current()

    def _say(self, text: str, kind: str = "info") -> None:
        color = _COLORS.get(kind, "")
        style = "overflow-wrap:anywhere" + (f";color:{color}" if color else "")
        self.status.value = html('<span style="{}">{}</span>', style, text)

    def _guard(self, fn: Callable[..., Any]) -> Callable[..., None]:
        def run(*args: Any) -> None:
            try:
                fn(*args)
            except Exception as e:  # noqa: BLE001 - a widget callback must never raise
                self._fail(e)

        return run

    def _fail(self, e: BaseException) -> None:
        from ..errors import LmnbError

        msg = str(e) if isinstance(e, LmnbError) and str(e) else f"{type(e).__name__}: {e}"
        self._note(msg.replace("with --port", "in the Port field"), "error")

    def _note(self, text: str, kind: str = "info") -> None:
        with self._lock:
            self._message = (text, kind)
            self._say(text, kind)

    # --------------------------------------------------------------------------------------------
    def start(self) -> Any:
        """Start serving with the host, port and key in the fields; returns the ``lmnb.server.Server``.

        Failures (port in use, bad address) show in ``status`` and return ``None``.
        """
        from ..server import serve

        host, port, key = self.host.value.strip(), int(self.port.value), self.api_key.value.strip()
        if not host:
            self._fail(ValueError("enter an address to bind (127.0.0.1 keeps the server on this machine)"))
            return None
        if not 0 <= port <= 65535:
            self._fail(ValueError(f"port {port} is out of range: 1-65535, or 0 for any free port"))
            return None
        with self._lock:
            self._message = None
            self._say(f"Starting on {host}:{port}…")
            try:
                srv = serve(host=host, port=port, api_key=key)
            except Exception as e:  # noqa: BLE001 - LmnbError (busy port, bad address) and the rest
                self._fail(e)
                return None
            self._update()
            return srv

    def stop(self) -> bool:
        """Stop the running server (wherever it was started); returns whether one was running."""
        with self._lock:
            srv = self.server
            if srv is None:
                self._update()
                self._note("No server is running.")
                return False
            self._say(f"Stopping {srv.url}…")
            srv.stop()
            self._update()
            self._note(f"Stopped {srv.url}; port {srv.port} is free.")
            return True

    def generate_key(self) -> str:
        """Fill ``api_key`` with a new random key (used at the next Start)."""
        key = secrets.token_urlsafe(24)
        self.api_key.value = key
        if self.server is not None:
            self._note("New key generated: Stop and Start to require it.", "warn")
        return key

    def refresh(self) -> None:
        """Follow the server now (the ticker calls this about once a second). Never raises."""
        try:
            with self._lock:
                self._update()
        except Exception:  # noqa: BLE001 - runs on the ticker thread: nothing may escape
            pass

    # --------------------------------------------------------------------------------------------
    def _update(self) -> None:
        srv = self.server
        if srv is not self._shown:
            self._shown, self._message = srv, None
            if srv is not None:  # started elsewhere (or just now): show its settings
                self.host.value = srv.host
                self.port.value = srv.port
                if srv.api_key:
                    self.api_key.value = srv.api_key
            self._url_value = srv.url if srv is not None else ""
            self.url.value = self._url_value
            self._show_example()
        self.start_button.disabled = srv is not None
        self.stop_button.disabled = srv is None
        self._show_warning()
        if self._message is not None:
            self._say(*self._message)
        elif srv is None:
            self._say("Not running. Start serves the loaded model to any OpenAI client.")
        else:
            # the first lines of srv.status(); its "reachable from other machines" is `warning`
            self._say(" · ".join(srv.status().split("\n")[:3]), "ok")
        key = (id(srv), srv.stats.total) if srv is not None else None
        if key != self._table_key:
            self._table_key = key
            self.requests.value = requests_table(srv.stats.recent) if srv is not None else ""

    def _keep_url(self, change: dict) -> None:
        if change["new"] != self._url_value:
            self.url.value = self._url_value  # read-only: select and copy, not edit

    def _show_example(self) -> None:
        srv = self._shown
        if srv is None:
            self.example.value = ""
            return
        key = srv.api_key
        shown = (key if self.show_key.value else "<your API key>") if key else "any"
        # url and key are escaped as they are filled in; the quotes around them are the template's
        self.example.value = html(
            "<span>Client: <code style='user-select:all'>from openai import OpenAI; client = "
            "OpenAI(base_url=&quot;{}&quot;, api_key=&quot;{}&quot;)</code></span>",
            srv.url, shown,
        )

    def _show_warning(self) -> None:
        srv = self._shown
        host = srv.host if srv is not None else self.host.value.strip()
        if not host or is_loopback(host):
            self.warning.value = ""
            return
        verb = "Bound to" if srv is not None else "Binding"
        keyed = (srv.api_key if srv is not None else self.api_key.value.strip())
        text = f"{verb} {host}: other machines on the network can reach this server"
        text += "." if keyed else ", and with no API key anyone of them can use the model."
        self.warning.value = html('<span style="color:{}">⚠ {}</span>', _COLORS["warn"], text)

    def close(self) -> None:
        """Stop following the server (the server itself keeps running) and close the widget."""
        unsub, self._unsubscribe = self._unsubscribe, None
        if unsub is not None:
            unsub()
        super().close()
