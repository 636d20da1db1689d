"""The Chat pane: LM Studio's chat, as an anywidget.

Tokens reach the browser as small custom messages (``{"type": "token", "text": delta}``), never as
the whole reply per token; the finished conversation is the synced ``messages`` trait. Generation
runs on a background thread, so the kernel stays free to handle Stop while a reply streams (a
comm message waits while a cell runs). The conversation is ``lmnb.conversation(name)``, the same
one ``%%lm chat`` continues: a turn taken in a cell shows up here, and the reverse.

With several models loaded (``lmnb.load(..., name=...)``), a picker in the header chooses which one
answers: its entries are the names the models are loaded under (the default model shown by its own
name), kept current by the registry's listeners; the choice is passed to ``lmnb.chat(model=...)``.

``Chat(tools=[f, g])`` lets the model call Python functions (``lmnb.chat(tools=...)``): a Tools
menu in the header switches each on or off, every call and its result shows (folded) as it
happens, and Stop cancels the request under way. A reasoning model's thinking streams into a
folded block above its answer.

A second picker chooses a document library (``lmnb.docs``) the replies answer from
(``lmnb.chat(docs=...)``); its list is read again whenever the picker gets focus. A reply's
``Completion.sources`` are kept on its message (``"sources"``): the front end turns each ``[n]``
into a citation that shows the source's location and text on hover and opens it, listed under the
reply, on click. File names and document text are untrusted too, and set as text.

The front end (``static/chat.js``, built from ``js/src/chat.js``) renders Markdown with code
highlighting and sanitizes the HTML; thinking, calls and results are set as text: model output
and tool results are untrusted.
"""

from __future__ import annotations

import pathlib
import threading
import time
from typing import Any, Callable, Optional, Sequence, Union

import anywidget
from traitlets import Bool, Dict, List, Unicode, observe

from .. import api
from ..docs.library import check_name, names as library_names
from ..errors import LmnbError, NoModelLoaded
from ..registry import DEFAULT
from ..types import Completion

_STATIC = pathlib.Path(__file__).parent / "static"
# Tokens arriving faster than this are sent together: one comm message per ~frame, not per token.
_COALESCE_S = 0.015


class Chat(anywidget.AnyWidget):
    """Chat with the loaded model: streamed Markdown replies, Stop, Regenerate, Clear, Copy.

    >>> chat = lmnb.widgets.Chat()          # the conversation `%%lm chat` uses
    >>> chat                                # show it; type, press Enter
    >>> chat.ask("Name three rivers.")      # or from Python (returns the streaming Request)
    >>> chat.messages                       # [{"role": "user", ...}, {"role": "assistant", ..., "stats": {...}}]
    >>> chat.docs = "papers"                # answer from a document library, citing it as [1], [2]

    Args:
        conversation: the conversation's name (default: the one ``%%lm chat`` uses).
        model: the name of the loaded model to chat with (``lmnb.load(..., name=...)``); default:
            the default model (else the first loaded). The header's picker changes it.
        system_prompt: the system prompt for this conversation ('' = the template's own).
        tools: Python functions (or ``lmnb.tools.Tool`` objects) the model may call; all on at first.
        tool_choice: for the first request of each turn with tools (``"auto"``, ``"required"`` or a
            tool's name); see ``lmnb.chat``.
        docs: the document library the replies answer from (``lmnb.docs``); ``None``: none.
        **params: sampling parameters for this chat's replies (temperature, max_tokens, ...);
            the rest come from the session defaults (the Parameters pane, ``%lm set``).
    """

    _esm = _STATIC / "chat.js"
    _css = _STATIC / "chat.css"

    messages = List(Dict(), help="The conversation: role, content, and stats for replies.").tag(sync=True)
    system_prompt = Unicode("", help="System prompt ('' = the chat template's own).").tag(sync=True)
    busy = Bool(False, help="A reply is being generated.").tag(sync=True)
    model_name = Unicode("", help="The chosen model's own name, shown in the header.").tag(sync=True)
    model = Unicode("default", help="The name the chosen model is loaded under ('default': the default model).").tag(
        sync=True
    )
    models = List(Dict(), help="The loaded models, the default first: {name, label, model}.").tag(sync=True)
    status = Unicode("", help="The last error or notice, shown under the input.").tag(sync=True)
    conversation = Unicode(api.DEFAULT_CONVERSATION, help="Name of the shared conversation.").tag(sync=True)
    tools = List(Dict(), help="The tools the model may call: {name, description, enabled}.").tag(sync=True)
    docs = Unicode("", help="The document library replies answer from ('' = none).").tag(sync=True)
    libraries = List(Unicode(), help="The document libraries on this machine (lmnb.docs.list()).").tag(sync=True)

    def __init__(self, conversation: str = api.DEFAULT_CONVERSATION, *, model: Optional[str] = None,
                 system_prompt: Optional[str] = None, tools: Optional[Sequence[Any]] = None,
                 tool_choice: Union[None, str, dict] = None, docs: Optional[str] = None,
                 **params: Any) -> None:  # fmt: skip
        api.sampling_params(dict(params))  # unknown sampling names fail here, not at the first message
        from ..tools import as_tools

        self._tools = {t.name: t for t in as_tools(tools or [])}  # bad tools fail here, too
        super().__init__(conversation=conversation, model=model or DEFAULT, docs=check_name(docs) if docs else "",
                         libraries=library_names(),
                         tools=[{"name": t.name, "description": t.description, "enabled": True}
                                for t in self._tools.values()])  # fmt: skip
        self.params: dict[str, Any] = params
        self.tool_choice = tool_choice
        self._stopping = False  # Stop was pressed during a turn with tools
        self._forwarders: list[threading.Thread] = []
        self.grammar: Optional[str] = None  # GBNF the replies must follow (None: free text)
        self.last_result: Optional[Completion] = None
        # called with each finished reply's Completion (the studio's Documents pane shows its sources)
        self.reply_listeners: list[Callable[[Completion], None]] = []
        self._req = None
        self._thread: Optional[threading.Thread] = None
        self._partial = ""  # the reply being streamed, for views opened mid-reply
        self._lock = threading.Lock()
        self._syncing = False
        self._conv = api.conversation(conversation)
        if system_prompt is not None:
            self.system_prompt = system_prompt
        elif self._conv.system:
            self.system_prompt = self._conv.system
        self._conv.listeners.append(self._on_conversation)
        self._on_conversation(self._conv)
        self._registry = api.registry()
        self._registry.listeners.append(self._on_model)
        self._on_model()
        self.on_msg(self._on_front_end)

    # --- Python API -------------------------------------------------------------------------
    def ask(self, text: str):
        """Send ``text`` as the user's next message; returns the streaming ``Request``.

        Raises ``LmnbError`` when a reply is still being generated or no model is loaded (the
        error is also shown in the widget).
        """
        text = text.strip()
        if not text:
            raise ValueError("the message is empty")
        with self._lock:
            if self.busy:
                raise LmnbError("A reply is still being generated; press Stop first.")
            tools = [self._tools[t["name"]] for t in self.tools if t.get("enabled")]
            try:
                if tools and self.grammar is not None:
                    raise ValueError("switch the tools off to reply with a grammar")
                req = None if tools else api.chat(text, system=self.system_prompt, conversation=self.conversation,
                                                  stream=True, grammar=self.grammar, model=self._target(),
                                                  docs=self.docs or None, **self.params)  # fmt: skip
                if tools and getattr(api.backend(self._target()), "loaded", True) is False:
                    raise NoModelLoaded()  # said now, not from the thread
            except (LmnbError, ValueError, KeyError) as e:  # KeyError: the library is gone
                self.status = _message_for(e)
                raise
            self._req, self._partial, self.status, self._stopping = req, "", "", False
            self.busy = True
            # the user's message shows at once; the conversation records it when the reply is done
            self._show(self._view() + [{"role": "user", "content": text}])
            target, args = (self._run_tools, (text, tools)) if tools else (self._stream, (req,))
            self._thread = threading.Thread(target=target, args=args, name="lmnb-chat", daemon=True)
            self._thread.start()
            return req

    def stop(self) -> None:
        """Stop the reply being generated (the text so far is kept); with tools, the turn ends
        once a tool that is running returns."""
        self._stopping = self.busy
        req = self._req
        if req is not None:
            req.cancel()

    def regenerate(self):
        """Generate the last reply again (a new seed, unless one is fixed); returns the Request."""
        with self._lock:
            if self.busy:
                raise LmnbError("A reply is still being generated; press Stop first.")
            removed = self._conv.pop_last_turn()
            if not removed:
                raise LmnbError("There is no message to regenerate a reply for.")
        try:
            return self.ask(removed[0]["content"])
        except Exception:
            with self._conv.lock:  # put the old turn back when the new one cannot start
                self._conv.messages.extend(removed)
            self._conv.changed()
            raise

    def clear(self) -> None:
        """Forget the conversation (also for ``%%lm chat`` cells that continue it)."""
        self.stop()
        self.wait(5)
        self._conv.clear()
        self.status = ""

    def wait(self, timeout: Optional[float] = None) -> Optional[Completion]:
        """Wait for the reply being generated; returns it (``None`` if there was none)."""
        t = self._thread
        if t is not None:
            t.join(timeout)
        return self.last_result

    def close(self) -> None:
        conv = getattr(self, "_conv", None)  # None when __init__ failed (close runs from __del__)
        if conv is not None:
            self.stop()
            if self._on_conversation in conv.listeners:
                conv.listeners.remove(self._on_conversation)
            reg = getattr(self, "_registry", None)
            if reg is not None and self._on_model in reg.listeners:
                reg.listeners.remove(self._on_model)
        super().close()

    # --- background generation --------------------------------------------------------------
    def _stream(self, req) -> None:
        self.send({"type": "start"})
        try:
            self._pump(req)
            self._finished(req.result())
        except Exception as e:  # shown in the widget; the kernel never sees a thread's traceback
            self.status = _message_for(e)
            self.last_result = None
        finally:
            self._end()

    def _pump(self, req) -> None:
        """Send the request's text and thinking to the front end, a frame's worth at a time."""
        pending = {"token": "", "thinking": ""}
        last_sent = 0.0
        for kind, payload in req.events():
            if kind == "progress":
                done, total = payload  # type: ignore[misc]
                self.send({"type": "progress", "done": done, "total": total})
                continue
            if kind not in ("delta", "reasoning"):
                continue
            key = "token" if kind == "delta" else "thinking"
            pending[key] += payload  # type: ignore[operator]
            if kind == "delta":
                self._partial += payload  # type: ignore[operator]
            now = time.monotonic()
            if now - last_sent >= _COALESCE_S:
                for key, text in pending.items():
                    if text:
                        self.send({"type": key, "text": text})
                pending, last_sent = {"token": "", "thinking": ""}, now
        for key, text in pending.items():
            if text:
                self.send({"type": key, "text": text})

    def _run_tools(self, text: str, tools: list) -> None:
        """A turn with tools: the loop runs here; each request's text streams from a forwarder."""
        self.send({"type": "start"})
        try:
            result = api.chat(text, system=self.system_prompt, conversation=self.conversation, tools=tools,
                              tool_choice=self.tool_choice, model=self._target(), on_step=self._on_step,
                              on_request=self._follow, docs=self.docs or None, **self.params)  # fmt: skip
            self._join_forwarders()
            self._finished(result)
        except Exception as e:
            self.status = _message_for(e)
            self.last_result = None
        finally:
            self._join_forwarders()
            self._end()

    def _follow(self, req) -> None:
        """A request of the tool loop starts: stream it, and let Stop reach it."""
        self._join_forwarders()  # the previous round's text is all out before this one's
        with self._lock:
            self._req = req
        if self._stopping:
            req.cancel()
        self._partial = ""
        self.send({"type": "round"})
        t = threading.Thread(target=self._pump, args=(req,), name="lmnb-chat-stream", daemon=True)
        self._forwarders.append(t)
        t.start()

    def _on_step(self, step: Any) -> None:
        self._join_forwarders()
        self.send({"type": "tool_step", "name": step.call.name, "arguments": step.call.arguments,
                   "output": step.output, "error": step.error or "", "seconds": round(step.seconds, 3)})  # fmt: skip

    def _join_forwarders(self) -> None:
        while self._forwarders:
            self._forwarders.pop(0).join(30)

    def _finished(self, result: Completion) -> None:
        self.last_result = result
        if result.finish_reason == "length":
            self.status = f"Stopped at max_tokens={result.params.max_tokens}."
        if result.sources:
            self._keep_sources(result)
        for fn in list(self.reply_listeners):
            try:
                fn(result)
            except Exception as e:  # noqa: BLE001 - a listener (another pane) must not break the chat
                self.status = _message_for(e)

    def _keep_sources(self, result: Completion) -> None:
        """Put a docs= reply's sources on its message, which the conversation has just recorded
        (the chat template never sees them), so every view of it shows the citations."""
        with self._conv.lock:
            reply = next((m for m in reversed(self._conv.messages) if m.get("role") == "assistant"), None)
            if reply is None or reply.get("content") != result.text or "sources" in reply:
                return
            reply["sources"] = [dict(s) for s in result.sources]
        self._conv.changed()

    def _end(self) -> None:
        with self._lock:
            self._req = None
            self._partial = ""
            self.busy = False
            self._show(self._view())
        self.send({"type": "end"})

    # --- front end and shared state -------------------------------------------------------------
    def _on_front_end(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if not isinstance(content, dict):
            return
        kind = content.get("type")
        try:
            if kind == "send":
                self.ask(str(content.get("text", "")))
            elif kind == "stop":
                self.stop()
            elif kind == "regenerate":
                self.regenerate()
            elif kind == "clear":
                self.clear()
            elif kind == "hello" and self.busy:  # a view opened mid-reply: give it the text so far
                self.send({"type": "sync", "text": self._partial})
            elif kind == "libraries":  # the library picker got focus: list them again
                self.refresh_libraries()
            elif kind == "tool_toggle":
                name, on = content.get("name"), content.get("enabled") is True
                self.tools = [{**t, "enabled": on} if t["name"] == name else t for t in self.tools]
        except (LmnbError, ValueError, KeyError) as e:
            self.status = _message_for(e)
            if kind == "send":
                self.send({"type": "restore", "text": str(content.get("text", ""))})

    def _view(self) -> list[dict]:
        return self._conv.snapshot()

    def _show(self, messages: list[dict]) -> None:
        self._syncing = True
        try:
            self.messages = messages
        finally:
            self._syncing = False

    def _on_conversation(self, conv: Any) -> None:
        if not self.busy:  # while busy, the finished turn is drawn when the stream ends
            self._show(self._view())

    @observe("messages")
    def _messages_set(self, change: dict) -> None:
        # `chat.messages = [...]` from Python edits the shared conversation
        if self._syncing or self.busy:
            return
        clean = [dict(m) for m in change["new"] if isinstance(m, dict) and m.get("role") in ("user", "assistant")]
        if clean != self._conv.snapshot():
            self._conv.replace(clean)

    @observe("system_prompt")
    def _system_set(self, change: dict) -> None:
        self._conv.system = change["new"] or None

    # --- the document library picker ----------------------------------------------------------
    def refresh_libraries(self) -> list[str]:
        """List the document libraries again (the picker's entries); returns their names."""
        found = library_names()
        if found != self.libraries:
            self.libraries = found
        return found

    @observe("docs")
    def _docs_chosen(self, change: dict) -> None:
        name = change["new"]
        if not name:
            return
        try:
            check_name(name)
        except ValueError as e:
            self.status = _message_for(e)
            self.docs = ""
            return
        if name not in self.refresh_libraries():
            self.status = f"No document library is named {name!r} yet: add a folder to it in the Documents tab."

    # --- the model picker ---------------------------------------------------------------------
    def _target(self) -> Optional[str]:
        """What ``api.chat(model=...)`` gets: ``None`` for the default model (as before pickers)."""
        return None if self.model in ("", DEFAULT) else self.model

    def _on_model(self, _name: Optional[str] = None, _info: Any = None) -> None:
        """A model was loaded or unloaded (anywhere in the kernel): list them again."""
        entries = []
        for m in self._registry.loaded():
            label = m.model.name if m.name == DEFAULT else m.name
            entries.append({"name": m.name, "label": label, "model": m.model.name})
        self.models = entries
        self._show_model()

    @observe("model")
    def _model_chosen(self, change: dict) -> None:
        self._show_model()

    def _show_model(self) -> None:
        """The header names the chosen model: the default one (else the first loaded) for "default"."""
        if not hasattr(self, "_registry"):
            return  # still in __init__: the list comes first
        entries = self.models
        chosen = next((e for e in entries if e["name"] == self.model), None)
        if chosen is None and self.model not in ("", DEFAULT):
            self.status = f"No model is loaded as {self.model!r}: the default model answers."
            self.model = DEFAULT  # observed: comes back here
            return
        if chosen is None and entries:
            chosen = entries[0]  # no default model: lmnb.chat() goes to the first loaded
        self.model_name = chosen["model"] if chosen is not None else ""


def _message_for(error: BaseException) -> str:
    if isinstance(error, NoModelLoaded):
        return "No model is loaded: pick one in the Models tab, or run `%lm load`."
    if isinstance(error, KeyError) and error.args:
        return str(error.args[0])  # str(KeyError) would quote the message
    return str(error)
