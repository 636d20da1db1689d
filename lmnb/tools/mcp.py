"""Model Context Protocol servers as tools, with the ``mcp`` package (``pip install "lmnb[mcp]"``).

    files = lmnb.tools.mcp.connect("files", "npx", "-y", "@modelcontextprotocol/server-filesystem", ".")
    lmnb.chat("What is in README.md?", tools=[files])          # or %%lm chat --tools mcp:files
    %lm mcp                                                      # the servers and their tools

A server is a command run as a subprocess (stdio) or a Streamable HTTP URL. Each keeps one
session open on lmnb's own event loop thread, so the kernel's loop is never blocked nor needed.
A server that dies, hangs or refuses a call gives that call an error result (the model sees it)
and leaves the kernel working; ``connect`` again to restart it.
"""

from __future__ import annotations

import asyncio
import json
import threading
from concurrent.futures import Future
from typing import Any, Optional, Sequence

from ..errors import LmnbError
from .spec import Tool

__all__ = ["MCPServer", "connect", "disconnect", "servers"]

CALL_TIMEOUT_S = 120.0  # one tool call, at most
CONNECT_TIMEOUT_S = 60.0

_loop: Optional[asyncio.AbstractEventLoop] = None
_loop_lock = threading.Lock()
_servers: dict[str, "MCPServer"] = {}


def _event_loop() -> asyncio.AbstractEventLoop:
    """lmnb's MCP event loop, on a daemon thread (started on first use)."""
    global _loop
    with _loop_lock:
        if _loop is None:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="lmnb-mcp", daemon=True).start()
            _loop = loop
        return _loop


class MCPServer:
    """One connected MCP server; ``tools()`` are ``lmnb.tools.Tool``s that call it."""

    def __init__(self, name: str, target: Any, description: str) -> None:
        self.name = name
        self.description = description  # the command line or the URL, for listings
        self._target = target
        self._client: Any = None
        self._stop: Optional[asyncio.Event] = None
        self._task: Optional[Future] = None
        self._tools: list[Tool] = []
        self.error: Optional[str] = None  # why it stopped, when it did

    # ---- lifecycle ---------------------------------------------------------------------------
    def _start(self) -> None:
        ready: Future = Future()
        self._task = asyncio.run_coroutine_threadsafe(self._session(ready), _event_loop())
        try:
            specs = ready.result(CONNECT_TIMEOUT_S)
        except TimeoutError:
            self.close()
            raise LmnbError(f"MCP server {self.name!r} did not answer within {CONNECT_TIMEOUT_S:.0f} s "
                            f"({self.description})") from None  # fmt: skip
        except LmnbError:
            raise
        except BaseException as e:
            raise LmnbError(f"MCP server {self.name!r} could not start ({self.description}): {_why(e)}") from None
        self._tools = [self._tool(s) for s in specs]

    async def _session(self, ready: Future) -> None:
        from mcp import Client

        self._stop = asyncio.Event()
        try:
            async with Client(self._target) as client:
                self._client = client
                listing = await client.list_tools()
                ready.set_result(list(listing.tools))
                await self._stop.wait()
        except BaseException as e:  # the server died or could not start
            self.error = _why(e)
            if not ready.done():
                ready.set_exception(e)
        finally:
            self._client = None

    def close(self) -> None:
        """Stop the session (and the subprocess of a stdio server)."""
        if self._stop is not None and _loop is not None:
            _loop.call_soon_threadsafe(self._stop.set)
        if self._task is not None:
            try:
                self._task.result(10)
            except BaseException:
                pass

    @property
    def alive(self) -> bool:
        return self._client is not None

    # ---- tools -------------------------------------------------------------------------------
    def tools(self) -> list[Tool]:
        return list(self._tools)

    def _tool(self, spec: Any) -> Tool:
        name = spec.name

        def call(**arguments: Any) -> str:
            return self.call(name, arguments)

        schema = dict(getattr(spec, "input_schema", None) or getattr(spec, "inputSchema", None) or {"type": "object"})
        schema.setdefault("type", "object")
        return Tool(name, spec.description or "", schema, call)

    def call(self, tool: str, arguments: dict[str, Any]) -> str:
        """Call ``tool``; its text result. Raises ``LmnbError`` when the server is gone or says the call failed."""
        if self._client is None:
            raise LmnbError(f"MCP server {self.name!r} is not running" + (f": {self.error}" if self.error else "")
                            + f". Connect it again: lmnb.tools.mcp.connect({self.name!r}, ...)")  # fmt: skip
        fut = asyncio.run_coroutine_threadsafe(self._client.call_tool(tool, arguments), _event_loop())
        try:
            result = fut.result(CALL_TIMEOUT_S)
        except TimeoutError:
            fut.cancel()
            raise LmnbError(f"MCP tool {tool!r} did not answer within {CALL_TIMEOUT_S:.0f} s") from None
        except BaseException as e:
            why = _why(e)
            if "closed" in why.lower():  # the server is gone: say so from now on
                self.error, self._client = why, None
                self.close()
            raise LmnbError(f"MCP tool {tool!r} failed: {why}") from None
        text = _text(result)
        if getattr(result, "is_error", False) or getattr(result, "isError", False):
            raise LmnbError(text or f"MCP tool {tool!r} failed")
        return text

    def __repr__(self) -> str:
        state = "running" if self.alive else f"stopped ({self.error})" if self.error else "stopped"
        return f"<MCPServer {self.name!r} {state}: {len(self._tools)} tools>"


def _text(result: Any) -> str:
    """A call result as text: its text parts, or its structured content as JSON."""
    parts = []
    for block in getattr(result, "content", None) or ():
        kind = getattr(block, "type", "")
        if kind == "text":
            parts.append(block.text)
        else:
            parts.append(f"[{kind} content]")
    structured = getattr(result, "structured_content", None) or getattr(result, "structuredContent", None)
    if not parts and structured is not None:
        parts.append(json.dumps(structured, ensure_ascii=False))
    return "\n".join(parts)


def _why(e: BaseException) -> str:
    inner = getattr(e, "exceptions", None)  # anyio's ExceptionGroup: say what is inside
    if inner:
        return "; ".join(_why(x) for x in inner)
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


def connect(name: str, command_or_url: str, *args: str, env: Optional[dict[str, str]] = None,
            cwd: Optional[str] = None) -> MCPServer:  # fmt: skip
    """Start (or restart) the MCP server ``name`` and list its tools.

    Args:
        name: what lmnb calls it (``%%lm chat --tools mcp:NAME``).
        command_or_url: a command to run (stdio), with ``args``; or an ``http(s)://`` URL
            (Streamable HTTP).
        env: extra environment variables for a command.
        cwd: the command's working folder.

    Raises:
        LmnbError: the server could not start, or did not answer.
        ImportError: the ``mcp`` package is missing (``pip install "lmnb[mcp]"``).
    """
    try:
        from mcp import StdioServerParameters
    except ImportError:
        raise ImportError('MCP needs the mcp package: pip install "lmnb[mcp]"') from None
    disconnect(name)
    if command_or_url.startswith(("http://", "https://")):
        target: Any = command_or_url
        description = command_or_url
    else:
        import os

        target = StdioServerParameters(command=command_or_url, args=list(args),
                                       env={**os.environ, **(env or {})} if env else None, cwd=cwd)  # fmt: skip
        description = " ".join([command_or_url, *args])
    server = MCPServer(name, target, description)
    server._start()
    _servers[name] = server
    return server


def disconnect(name: str) -> bool:
    """Stop the server ``name``; whether there was one."""
    server = _servers.pop(name, None)
    if server is not None:
        server.close()
    return server is not None


def servers() -> dict[str, MCPServer]:
    """The connected servers, by name."""
    return dict(_servers)


def tools_of(names: Sequence[str]) -> list[Tool]:
    """The tools of the servers named (``LmnbError`` for one that is not connected)."""
    out: list[Tool] = []
    for n in names:
        if n not in _servers:
            known = ", ".join(_servers) or "none"
            raise LmnbError(f"no MCP server is called {n!r} (connected: {known}); see %lm mcp")
        out += _servers[n].tools()
    return out
