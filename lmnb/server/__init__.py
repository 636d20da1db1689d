"""The OpenAI-compatible server, running as a thread in the kernel on the model the notebook loaded.

    server = lmnb.serve(port=0)        # or %lm serve
    server.url                          # http://127.0.0.1:54321/v1
    server.stop()

Any OpenAI client works against ``server.url``; see ``lmnb.server.app`` for the endpoints.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any, Optional, Sequence

from ..errors import LmnbError
from .stats import ServerStats

_current: Optional["Server"] = None
_current_lock = threading.Lock()


class Server:
    """A running server: ``.url``, ``.stop()``, ``.stats``. Created by ``lmnb.serve()``."""

    def __init__(
        self,
        host: str,
        port: int,
        api_key: Optional[str] = None,
        cors: Sequence[str] = (),
        engine: Any = None,
        allowed_hosts: Sequence[str] = (),
    ) -> None:
        """Bind ``host:port`` and start serving from a daemon thread.

        Args:
            host: address to bind (a loopback address keeps other machines out).
            port: port to bind (0 = any free port; ``.port`` tells which).
            api_key: when set, clients must send ``Authorization: Bearer <api_key>``.
            cors: browser origins allowed to call the API.
            engine: one engine to serve alone (default: every model loaded in the session).
            allowed_hosts: names the ``Host`` header may carry besides this machine's
                (localhost, 127.0.0.1, [::1]); ``"*"`` accepts any (no DNS-rebinding protection).

        Raises:
            LmnbError: the port is busy or the address cannot be bound.
        """
        import uvicorn

        from ..api import get_engine
        from . import thread
        from .app import create_app

        self.engine = engine if engine is not None else get_engine()  # the default model, for status
        self.host = host
        self.api_key = api_key or None
        self.cors = list(cors)
        self.allowed_hosts = list(allowed_hosts)
        self.stats = ServerStats()
        app = create_app(engine=engine, api_key=self.api_key, cors=self.cors, stats=self.stats,
                         allowed_hosts=self.allowed_hosts, host=host)
        self._app = app
        thread.route_logs()
        # Bind here, not in uvicorn: a busy port is then a clear error in the caller's thread
        # (uvicorn would log it and sys.exit inside the server thread).
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as e:
            sock.close()
            why = "is in use" if e.errno in (98, 48) else f"cannot be bound ({e.strerror})"
            raise LmnbError(f"Port {port} on {host} {why}; pick another with --port (0 = any free port).") from None
        sock.listen(128)
        self._sock = sock
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            app,
            log_config=None,  # uvicorn's handlers would print into whatever cell runs next (see thread.py)
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=3,
            ws="none",
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=thread.run, args=(lambda: self._server.serve(sockets=[sock]),), name=f"lmnb-server-{self.port}",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise LmnbError("The server thread did not start; see `%lm log`.")
            time.sleep(0.01)

    @property
    def url(self) -> str:
        """The base URL for OpenAI clients (ends in /v1)."""
        host = self.host
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1"
        elif ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/v1"

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 10) -> None:
        """Stop serving and free the port. In-flight generations are cancelled.

        They are cancelled first, so that each client is answered (503 ``cancelled``: the server is
        stopping) and uvicorn's graceful shutdown finds no request left to cut off.
        """
        global _current
        for req in list(self._app.state.requests):
            req.cancel()
        self._server.should_exit = True
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(timeout)
        try:
            self._sock.close()
        except OSError:
            pass
        with _current_lock:
            if _current is self:
                _current = None

    def status(self) -> str:
        """One paragraph: URL, uptime, requests served, key, CORS and allowed-host settings.

        Returns:
            Lines of plain text; the third holds the access settings.
        """
        if not self.running:
            return "The server is stopped."
        up = self.stats.uptime_s
        uptime = f"{up:.0f} s" if up < 120 else (f"{up / 60:.0f} min" if up < 7200 else f"{up / 3600:.1f} h")
        info = self.engine.info
        model = info.name if info is not None else "no model loaded"
        lines = [
            f"Serving {model} at {self.url}",
            f"Up {uptime}, {self.stats.total} requests served, {self.stats.in_flight} in flight",
            f"API key: {'required' if self.api_key else 'none'}"
            + (f" · CORS: {', '.join(self.cors)}" if self.cors else "")
            + (f" · {self._hosts_text()}" if self.allowed_hosts else ""),
        ]
        from .guard import is_loopback

        if not is_loopback(self.host):
            lines.append(f"Bound to {self.host}: reachable from other machines.")
        return "\n".join(lines)

    def _hosts_text(self) -> str:
        if "*" in self.allowed_hosts:
            return "any Host accepted (no DNS-rebinding protection)"
        return f"also answers Host: {', '.join(self.allowed_hosts)}"

    def __repr__(self) -> str:
        return f"<lmnb.Server {self.url} {'running' if self.running else 'stopped'}>"

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def serve(
    model: Optional[str] = None,
    *,
    host: Optional[str] = None,
    port: Optional[int] = None,
    api_key: Optional[str] = None,
    cors: Optional[Sequence[str]] = None,
    allowed_hosts: Optional[Sequence[str]] = None,
) -> Server:
    """Serve the loaded model over an OpenAI-compatible API, from a thread in this process.

    Args:
        model: load this model first (as ``lmnb.load``); ``None`` serves whatever is loaded.
        host: address to bind (default ``LM.server_host``, 127.0.0.1).
        port: port (default ``LM.server_port``, 1234; 0 picks a free one).
        api_key: when set, clients must send ``Authorization: Bearer <api_key>``.
        cors: browser origins allowed to call the API (default ``LM.server_cors``).
        allowed_hosts: names clients may address the server by besides localhost, 127.0.0.1 and
            [::1] (the ``Host`` header; default ``LM.server_allowed_hosts``; ``"*"``: any).

    Returns:
        The running ``Server``. Calling ``serve`` again with the same settings returns it; with
        different settings the old server is stopped first.
    """
    global _current
    from ..api import load
    from ..config import get_config

    cfg = get_config()
    host = cfg.server_host if host is None else host
    port = cfg.server_port if port is None else port
    api_key = (cfg.server_api_key or None) if api_key is None else (api_key or None)
    cors = list(cfg.server_cors) if cors is None else list(cors)
    allowed_hosts = list(cfg.server_allowed_hosts) if allowed_hosts is None else list(allowed_hosts)
    if model is not None:
        load(model)
    with _current_lock:
        cur = _current
    if cur is not None and cur.running:
        same = (cur.host == host and port in (0, cur.port) and cur.api_key == api_key and cur.cors == cors
                and cur.allowed_hosts == allowed_hosts)
        if same:
            return cur
        cur.stop()
    srv = Server(host, port, api_key=api_key, cors=cors, allowed_hosts=allowed_hosts)
    with _current_lock:
        _current = srv
    return srv


def current() -> Optional[Server]:
    """The running server, if any."""
    return _current if _current is not None and _current.running else None


__all__ = ["Server", "serve", "current"]
