"""The Host/Origin guard: web pages the user visits must not drive the local server.

The server binds 127.0.0.1, but a browser will still send it requests on behalf of any web page:
"simple" cross-site POSTs (no preflight), and, through DNS rebinding (a page re-points its own
domain at 127.0.0.1), requests whose answers the page can read as same-origin. The first is
stopped by refusing a foreign ``Origin``, the second by refusing a ``Host`` that does not name
this machine, as Jupyter server does.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from typing import Any, Callable, Optional, Union

from starlette.responses import JSONResponse

log = logging.getLogger("lmnb.server")


def split_host(value: str) -> Optional[tuple[str, Optional[str]]]:
    """Split a ``Host`` header (or a name given by the user) into a normalized name and port.

    Args:
        value: ``name``, ``name:port``, an IPv4 address, or an IPv6 address in brackets
            (``[::1]:8080``); a bare IPv6 address (``::1``) is accepted as a name without port.

    Returns:
        ``(name, port)``: the name lower-cased, without brackets or a trailing dot; ``port`` is
        ``None`` when absent. ``None`` when ``value`` is malformed.
    """
    v = value.strip().lower()
    port: Optional[str] = None
    if v.startswith("["):
        end = v.find("]")
        if end < 0:
            return None
        name, rest = v[1:end], v[end + 1:]
        if rest:
            if not rest.startswith(":"):
                return None
            port = rest[1:]
    elif v.count(":") == 1:
        name, port = v.split(":")
    else:
        name = v  # no port, or a bare IPv6 address
    if port and not port.isdigit():
        return None
    if name.endswith("."):
        name = name[:-1]  # "localhost." is "localhost"
    if not _NAME.match(name):
        return None
    return name, port


_NAME = re.compile(r"^[a-z0-9_.:-]+$")  # DNS names (IDNs arrive as punycode), IPv4 and IPv6 addresses


def _ip(name: str) -> Optional[Union[ipaddress.IPv4Address, ipaddress.IPv6Address]]:
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None


def is_loopback_name(name: str) -> bool:
    """Whether ``name`` (already normalized by ``split_host``) always means this machine."""
    if name == "localhost":
        return True
    ip = _ip(name)
    if ip is None:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a bind address or a Host header) only ever means this machine."""
    parts = split_host(host)
    return parts is not None and is_loopback_name(parts[0])


class HostOriginGuard:
    """Refuses requests a web page could make through the user's browser (pure ASGI).

    * ``Host`` must name this machine (localhost, a loopback address), a name in
      ``allowed_hosts``, or, when the server is bound to a non-loopback address, an IP address
      (DNS rebinding needs a domain name) or the bound name. A request without ``Host`` is refused.
    * ``Origin``, when present, must be in ``cors`` or be the server's own origin (its host:port
      equals the ``Host`` header: the /docs page). ``Origin: null`` only when ``cors`` has "null".

    Refusals are 403 with OpenAI's error shape, codes ``forbidden_host`` / ``forbidden_origin``.
    """

    def __init__(self, app: Any, allowed_hosts: list[str], cors: list[str], host: str,
                 error_body: Callable[..., dict]) -> None:
        self.app = app
        self.error_body = error_body  # the server's OpenAI-shaped error
        self.any_host = "*" in allowed_hosts
        self.names: set[str] = set()
        for h in allowed_hosts:
            parts = split_host(h)
            if parts is not None and h != "*":
                self.names.add(parts[0])
        bound = split_host(host)
        bound_name = bound[0] if bound is not None else ""
        self.exposed = bool(bound_name) and not is_loopback_name(bound_name)
        if self.exposed and bound_name not in ("0.0.0.0", "::"):
            self.names.add(bound_name)
        self.any_origin = "*" in cors
        self.origins = {o.strip().lower().rstrip("/") for o in cors}
        accepted = ["localhost", "127.0.0.1", "[::1]"] + sorted(self.names - {"localhost", "127.0.0.1", "::1"})
        self.accepted_text = ", ".join(accepted) + (", or any IP address" if self.exposed else "")

    def _host_ok(self, name: str) -> bool:
        return (self.any_host or name in self.names or is_loopback_name(name)
                or (self.exposed and _ip(name) is not None))  # fmt: skip

    def _origin_ok(self, origin: str, host: str) -> bool:
        o = origin.strip().lower()
        if o == "null":
            return "null" in self.origins
        if self.any_origin or o.rstrip("/") in self.origins:
            return True
        scheme, sep, netloc = o.partition("://")
        return bool(sep) and scheme in ("http", "https") and netloc == host.strip().lower()

    def _refusal(self, headers: list) -> Optional[tuple[str, str]]:
        """``(code, message)`` when the request is refused, else ``None``."""
        hosts = [v.decode("latin-1") for k, v in headers if k == b"host"]
        origins = [v.decode("latin-1") for k, v in headers if k == b"origin"]
        how = ("add a name with --allow-host NAME (LM.server_allowed_hosts). "
               "This blocks DNS-rebinding attacks from web pages.")  # fmt: skip
        if len(hosts) != 1:
            what = "has no Host header" if not hosts else "has several Host headers"
            return "forbidden_host", (f"The request {what}: this server answers only requests addressed to this "
                                      f"machine ({self.accepted_text}); send exactly one Host header, as every "
                                      "HTTP/1.1 client does. This blocks DNS-rebinding attacks from web pages.")
        host = hosts[0]
        parts = split_host(host)
        if parts is None or not self._host_ok(parts[0]):
            return "forbidden_host", (f"Host {quote(host)} is not allowed: this server answers only requests "
                                      f"addressed to this machine ({self.accepted_text}); {how}")
        if len(origins) > 1 or (origins and not self._origin_ok(origins[0], host)):
            return "forbidden_origin", (
                f"Origin {quote(origins[0])} is not allowed: web pages may call this server only from origins "
                "given with --cors ORIGIN (LM.server_cors), or from its own pages. This stops other websites "
                "from using your local model through your browser.")
        return None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        refused = self._refusal(scope.get("headers") or [])
        if refused is None:
            return await self.app(scope, receive, send)
        code, message = refused
        log.info("refused %s %s: %s", scope.get("method", "WEBSOCKET"), scope.get("path"), message)
        if scope["type"] == "websocket":  # no WebSocket routes today; refuse the handshake all the same
            await send({"type": "websocket.close", "code": 1008})
            return
        await JSONResponse(self.error_body(403, message, code=code), status_code=403)(scope, receive, send)


def quote(value: str, limit: int = 100) -> str:
    """A header value for an error message: quoted, control characters escaped, bounded length."""
    v = value if len(value) <= limit else value[:limit] + "..."
    return repr(v)
