"""The Python API: the same verbs as the magics (load, unload, chat, complete, status, ...).

Magics, widgets, the server and the CLI are thin layers over these functions and the one shared
``Engine``. Defaults come from the ``LM`` config (``lmnb.configure`` / ``%config LM.x = ...``).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence, Union

from .config import get_config
from .conversations import DEFAULT_CONVERSATION, Conversation, named as named_conversation, reset as reset_conversations
from .errors import LmnbError, NoModelLoaded
from .replies import append_to, history_path, history_recorder, schema_stage
from .types import SAMPLING_FIELDS, Completion, LoadOptions, Message, ModelInfo, SamplingParams, Status

_registry: Optional["Registry"] = None
_registry_lock = threading.Lock()
_loaded_paths: list[str] = []  # models loaded this session, for `lmnb.models()`
_remote = None  # a RemoteBackend while `lmnb.connect()` is in effect
_log = logging.getLogger("lmnb")

if TYPE_CHECKING:
    from .engine import Engine, GenerationSpec, Request, Stage
    from .registry import Loaded, Registry
    from .tools.loop import Step
    from .types import ToolCall


def registry() -> "Registry":
    """The models loaded in this kernel, by name (created on first use)."""
    global _registry
    with _registry_lock:
        if _registry is None:
            from .engine import Engine
            from .engine.logs import follow_config
            from .registry import Registry

            follow_config(get_config())
            _registry = Registry(lambda name: Engine(name=name))
            # Free llama.cpp before the interpreter tears down: a daemon worker killed inside
            # llama_decode at exit can crash the process on its way out.
            atexit.register(_registry.shutdown, 10)
        return _registry


def get_engine(model: Optional[str] = None) -> "Engine":
    """The ``Engine`` of a loaded model (``None``: the default model's, started on first use)."""
    if model is None:
        from .registry import DEFAULT

        return registry().engine(DEFAULT)
    return registry().get(model)


def engine_if_started() -> Optional["Engine"]:
    """The default model's engine if anything started it, else ``None`` (starts nothing)."""
    from .registry import DEFAULT

    return _registry._engines.get(DEFAULT) if _registry is not None else None


# ----------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------
def load(
    model: Optional[str] = None,
    *,
    name: Optional[str] = None,
    n_ctx: Optional[int] = None,
    n_gpu_layers: Optional[Union[int, str]] = None,
    n_threads: Optional[int] = None,
    n_batch: Optional[int] = None,
    n_parallel: Optional[int] = None,
    batch_invariant: Optional[bool] = None,
    flash_attn: Optional[bool] = None,
    use_mmap: Optional[bool] = None,
    seed: Optional[int] = None,
    chat_template: Optional[str] = None,
    lora: Union[None, str, Sequence[str]] = None,
    progress: Any = None,
    download: bool = True,
) -> ModelInfo:
    """Load a GGUF model into the kernel.

    Args:
        model: a ``.gguf`` path, ``"smollm2"``/``"gemma3"`` (bundled), a Hugging Face repo id
            (``"owner/repo"``, ``"owner/repo:Q4_K_M"``; downloaded first when not in the cache), a
            name from ``lmnb.models()`` (LM Studio, Ollama), or ``None`` for the default.
        name: load it under this name, beside the models already loaded (requests choose it
            with ``model=name``). ``None``: it becomes the default model, replacing the previous
            default (the other named models stay loaded).
        n_ctx: context length in tokens (0 = the model's trained length).
        n_gpu_layers: layers on the GPU: an int, ``"auto"`` or ``"max"``.
        n_parallel: requests decoded together per step; they share the context's cells.
        batch_invariant: one KV stream per sequence (``n_ctx / n_parallel`` cells each), so a
            greedy reply is the same alone and in a batch.
        lora: LoRA adapters to add once it is loaded: ``"PATH"``, ``"PATH:SCALE"`` or a list of
            them (GGUF files, PEFT folders or repo ids; see ``lmnb.lora``).
        progress: optional ``callable(fraction)`` called while the weights load.
        download: fetch a Hugging Face model missing from the cache (with a progress bar).

    Returns:
        The model's ``ModelInfo``.

    Raises:
        LoadError: with a readable reason; the model loaded under that name before stays loaded
            when the new file cannot even be opened.
    """
    from .sources.library import resolve

    path = resolve(model, download=download)
    opts = LoadOptions(
        n_ctx=n_ctx,
        n_gpu_layers=n_gpu_layers,
        n_threads=n_threads,
        n_batch=n_batch,
        n_parallel=n_parallel,
        batch_invariant=batch_invariant,
        flash_attn=flash_attn,
        use_mmap=use_mmap,
        seed=seed,
        chat_template=chat_template,
    )
    if _remote is not None:
        disconnect()  # loading a local model means: use the local engine again
    if name is not None and not name.strip():
        raise ValueError("name must not be empty (leave it out to load the default model)")
    info = registry().load(path, opts, name=name, progress=progress)
    if info.path not in _loaded_paths:
        _loaded_paths.append(info.path)
    from .history_db import hash_in_background, record_use

    record_use(info.path, history_path())
    hash_in_background(info.path, history_path())
    from .sources.adapter_files import gguf_for, split_scale

    for item, scale in map(split_scale, [lora] if isinstance(lora, str) else lora or ()):
        path, source = gguf_for(item, info.path)
        get_engine(name).add_lora(path, 1.0 if scale is None else scale, source=source)
    return info


def unload(model: Optional[str] = None, *, all: bool = False) -> bool:
    """Free a loaded model and its context.

    Args:
        model: which one (its name, as for ``chat(model=...)``); ``None``: the default model.
        all: unload every model.

    Returns:
        Whether a model was loaded.
    """
    if all:
        return registry().unload_all() > 0
    return registry().unload(model)


def loaded() -> list["Loaded"]:
    """Every loaded model, with its name, memory and whether a request loaded it on demand."""
    return registry().loaded()


def info(model: Optional[str] = None) -> ModelInfo:
    """Read a model's GGUF metadata without loading its weights."""
    from .engine.model import read_info
    from .sources.library import resolve

    return read_info(resolve(model))


def status() -> Status:
    """The default model, load options, memory, last tokens/s, queue depth (or the remote
    backend's); ``.models`` lists every loaded model with its memory."""
    st = _backend().status()
    st.models = registry().loaded()
    return st


def connect(url: Union[str, Sequence[str]], *, api_key: Optional[str] = None, model: Optional[str] = None):
    """Send generations to an OpenAI-compatible server instead of the in-kernel engine.

    Args:
        url: the server's base URL, e.g. ``http://localhost:1234/v1`` (LM Studio),
            ``http://localhost:11434/v1`` (Ollama), or another lmnb's ``server.url``; or a list
            of URLs (a farm): ``map`` spreads its rows over them, chats use the first that is up.
        api_key: sent as ``Authorization: Bearer``.
        model: the model to use; default: the one the server has loaded, else the first listed.

    Returns:
        The ``RemoteBackend`` (a ``Farm`` for several URLs). ``%%lm``, ``%%lm chat``, ``chat()``,
        ``complete()`` and the widgets use it until ``disconnect()`` (or a local ``load()``).
    """
    global _remote
    from .farm import connect_backend

    backend = connect_backend(url, api_key=api_key, model=model)
    _remote = backend
    return backend


def disconnect() -> bool:
    """Go back to the in-kernel engine. Returns whether a remote backend was connected."""
    global _remote
    was, _remote = _remote, None
    return was is not None


def current_model() -> Optional[ModelInfo]:
    """The local model that generations use now (``None`` when none is loaded or when connected)."""
    return _backend().info


def backend(model: Optional[str] = None):
    """What serves a request for ``model``: the remote backend while connected (no model
    named), else the engine of the loaded model so named (``None``: the default model, else the
    first loaded; an engine with no model when none is)."""
    if model is None:
        if _remote is not None:
            return _remote
        reg = registry()
        name = reg.find(None)
        return reg.engine(name) if name is not None else get_engine()
    return registry().get(model)


_backend = backend


def models():
    """Every local GGUF model: bundled, HF cache, ``LM.models_dir``, LM Studio, Ollama, loaded this session.

    Returns a ``ModelList`` (a list of ``LocalModel``) shown as a table with sizes,
    quantization, architecture, last use and the disk space used.
    """
    from .sources.library import local_models

    out = local_models(tuple(_loaded_paths))
    loaded = [m.model.path for m in registry().loaded()] if _registry is not None else []
    out.loaded_path = loaded[0] if loaded else None
    out.loaded_paths = loaded
    return out


def search(query: str = "", *, limit: int = 20, sort: str = "downloads"):
    """Search Hugging Face for GGUF repositories (see ``lmnb.hub.search``)."""
    from .hub import search as _search

    return _search(query, limit=limit, sort=sort)


def download(model: str, *, quant: Optional[str] = None, revision: Optional[str] = None, progress: Any = True):
    """Download a GGUF model from Hugging Face into the HF cache (see ``lmnb.hub.download``).

    ``model`` is ``"owner/repo"`` (Q4_K_M when present), ``"owner/repo:QUANT"`` or
    ``"owner/repo/file.gguf"``. Resumes an interrupted download; returns a ``Downloaded``.
    """
    from .hub import download as _download

    return _download(model, quant=quant, revision=revision, progress=progress)


def rm(model: str) -> int:
    """Delete a local model lmnb manages (HF cache, ``LM.models_dir``); returns the bytes freed.

    Models of LM Studio and Ollama, and the bundled ones, are refused with the way to remove them.
    """
    from .sources.library import resolve, rm as _rm

    try:
        target = os.path.realpath(resolve(model, download=False)) if model else None
    except LmnbError:
        target = None  # not found: _rm says so, with what there is
    for m in registry().loaded() if _registry is not None else []:
        if target is not None and os.path.realpath(m.model.path) == target:
            return _rm(model, loaded_path=m.model.path)  # refused, with the reason
    return _rm(model, loaded_path=None)


def model_sha256(path: Optional[str] = None, *, wait: bool = True) -> Optional[str]:
    """sha256 of the loaded (or given) model file; computed once, in the background at load.

    With ``wait=False``, ``None`` while the hash is still being computed (a reply never waits
    for a multi-GB file to be hashed).
    """
    from .history_db import known_sha256, wait_sha256

    path = path or (get_engine().info.path if get_engine().info else None)
    if not path:
        return None
    return wait_sha256(path, history_path()) if wait else known_sha256(path, history_path())


# ----------------------------------------------------------------------------------------------
# Generation
# ----------------------------------------------------------------------------------------------
def conversation(name: str = DEFAULT_CONVERSATION) -> Conversation:
    """The named conversation (created empty on first use)."""
    return named_conversation(name)


def reset(name: Optional[str] = None) -> None:
    """Forget a conversation's messages (all conversations when ``name`` is None)."""
    reset_conversations(name)


def sampling_params(kw: dict[str, Any]) -> SamplingParams:
    """``kw`` as ``SamplingParams``; raises ``TypeError`` naming unknown parameters."""
    unknown = set(kw) - set(SAMPLING_FIELDS)
    if unknown:
        raise TypeError(f"unknown parameter(s): {', '.join(sorted(unknown))}; known: {', '.join(SAMPLING_FIELDS)}")
    return SamplingParams(**kw)


def chat(
    message: Union[str, list[Message]],
    *,
    system: Optional[str] = None,
    conversation: Optional[str] = None,
    stream: bool = False,
    grammar: Optional[str] = None,
    schema: Any = None,
    logprobs: Optional[int] = None,
    model: Optional[str] = None,
    tools: Optional[Sequence[Any]] = None,
    tool_choice: Union[None, str, dict] = None,
    max_steps: int = 5,
    confirm: Union[bool, Callable[["ToolCall"], bool]] = False,
    on_step: Optional[Callable[["Step"], None]] = None,
    on_request: Optional[Callable[["Request"], None]] = None,
    think: Optional[bool] = None,
    lora: Any = None,
    docs: Optional[str] = None,
    **params: Any,
) -> Union[Completion, "Request"]:
    """Ask a loaded model, through its chat template.

    Args:
        message: the user's text, or a full list of ``{"role", "content"}`` messages.
        system: a system prompt (for a conversation, it is kept for later turns).
        conversation: continue this named conversation (shared with ``%%lm chat --name``);
            ``None`` asks a one-shot question with no history.
        stream: return a ``Request`` to iterate for text deltas (``.result()`` gives the ``Completion``).
        grammar: a GBNF grammar the reply must follow (llama.cpp's format).
        schema: JSON the reply must match, by construction (a grammar made from it): a pydantic
            model, dataclass or TypedDict class, a JSON Schema dict, or ``"json"`` for any JSON
            object. The ``Completion``'s ``.parsed`` holds the object (a model instance, a dataclass,
            a dict). Say what you want in the prompt too: the grammar fixes the shape, not the content.
        logprobs: record each reply token's probability and this many alternatives
            (``Completion.logprobs``, OpenAI's format; ``lmnb.token_probs`` shows them).
        model: which loaded model answers (its name, see ``load(name=...)``); ``None``: the default.
        tools: Python functions (or ``lmnb.tools.Tool``s) the model may call. Their schemas come
            from type hints and docstrings; the calls run here, their results go back to the model,
            until it answers (see ``lmnb.tools.loop``). The ``Completion``'s ``.steps`` lists them.
        tool_choice: ``"auto"`` (default), ``"required"``, ``"none"`` or a tool's name, for the first request.
        max_steps: rounds of tool calls before the model must answer without tools.
        confirm: ask before each call runs (``True``: a yes/no prompt; or a function of the call).
        on_step: called after each tool call with its ``lmnb.tools.loop.Step`` (cells show them).
        on_request: with ``tools``, called with each ``Request`` the loop submits, as it starts
            (the chat pane streams their text from another thread, and cancels them on Stop).
        think: for reasoning models whose template can switch thinking (Qwen3's ``enable_thinking``):
            ``False`` answers at once. Their thinking is kept apart either way: ``text`` is the
            answer, ``reasoning`` the thinking.
        lora: this request's LoRA adapters: a name, ``"name:scale"``, a list of those, ``{name: scale}``,
            or ``[]`` for the base alone; ``None``: the adapters at their ``lmnb.lora`` scales.
        docs: answer from this document library (``lmnb.docs``), citing its sources as ``[1]``
            (``Completion.sources``); with ``tools``, the library is a ``search_documents`` tool.
        **params: sampling parameters (temperature, top_p, top_k, min_p, repeat_penalty,
            presence_penalty, frequency_penalty, max_tokens, seed, stop), and ``context_overflow``
            (``"stop"``, ``"truncate_middle"``, ``"rolling_window"``: what happens when the chat
            outgrows the context; ``Completion.dropped_messages`` says how many were left out).

    Returns:
        A ``Completion``, or a streaming ``Request`` when ``stream=True`` (with a ``schema``, its
        ``.result().parsed`` is the object, or ``None`` and ``.parse_error`` says why).

    Raises:
        NoModelLoaded: no model is loaded.
        StructuredOutputError: with ``schema`` and ``stream=False``, the reply is not a valid object
            (e.g. cut off at ``max_tokens``); ``.completion`` holds the reply.
        ValueError: a parameter is out of range.
    """
    from .engine import GenerationSpec

    p = sampling_params(params)
    if tools:
        if stream or schema is not None or grammar is not None:
            raise ValueError("tools= cannot be combined with stream=True, schema= or grammar= yet")
        if docs is not None:
            from .docs.grounding import search_tool

            tools = [*tools, search_tool(docs, backend(model))]
        return _chat_with_tools(message, tools, system=system, conversation=conversation, logprobs=logprobs,
                                model=model, params=p, tool_choice=tool_choice, max_steps=max_steps,
                                confirm=confirm, on_step=on_step, on_request=on_request, lora=lora)  # fmt: skip
    stages, grammar = schema_stage(schema, grammar)
    messages, conv, user = _prompt(message, system, conversation)
    if any(m.get("role") == "tool" or m.get("tool_calls") for m in messages):  # earlier tool calls
        from .tools.plan import history_messages

        info = backend(model).info
        messages = history_messages(messages, info.chat_template if info else None)
    on_done = [append_to(conv, user)] if conv is not None else []
    if docs is not None:  # the conversation keeps the question; the prompt carries the sources
        from .docs.grounding import ground

        messages, cite = ground(docs, messages, backend(model), p.max_tokens)
        on_done.insert(0, cite)  # first: the turn kept in the conversation carries the sources
    spec = GenerationSpec(messages=messages, params=p, grammar=grammar, logprobs=logprobs, lora=lora,
                          template_kwargs=None if think is None else {"enable_thinking": think})  # fmt: skip
    req = submit(spec, kind="chat", model=model, conversation=conversation, stages=stages, on_done=on_done)
    return req if stream else _wait(req)


def _prompt(message: Union[str, list[Message]], system: Optional[str], conversation: Optional[str]):
    """(messages for the template, the named conversation or None, the user's message or None)."""
    if isinstance(message, list):
        return ([{"role": "system", "content": system}] if system else []) + [dict(m) for m in message], None, None
    user = {"role": "user", "content": message}
    if conversation is not None:
        conv = named_conversation(conversation)
        if system is not None:
            conv.system = system or None
        return conv.all_messages() + [user], conv, user
    sys_prompt = system if system is not None else (get_config().system_prompt or None)
    return ([{"role": "system", "content": sys_prompt}] if sys_prompt else []) + [user], None, user


def _chat_with_tools(message, tools, *, system, conversation, logprobs, model, params, tool_choice, max_steps,
                     confirm, on_step, on_request=None, lora=None) -> Completion:  # fmt: skip
    """``chat`` with tools: ``lmnb.tools.loop.run`` asking through ``submit``."""
    from .engine import GenerationSpec
    from .tools import as_tools
    from .tools.loop import ask_yes_no, run

    tool_list = as_tools(tools)
    target = backend(model)
    messages, conv, user = _prompt(message, system, conversation)

    def ask(msgs, tool_plan):
        spec = GenerationSpec(messages=msgs, params=params, logprobs=logprobs, lora=lora, **(tool_plan.spec_fields() if tool_plan else {}))
        req = submit(spec, kind="chat", model=model, conversation=conversation,
                     stages=[tool_plan.stage()] if tool_plan else ())  # fmt: skip
        if on_request is not None:
            on_request(req)
        return _wait(req)

    kept: list[Message] = []
    try:
        done = run(messages, tool_list, ask, target.info.chat_template if target.info else None,
                   tool_choice=tool_choice, max_steps=max_steps, on_step=on_step, record=kept,
                   confirm=ask_yes_no if confirm is True else (confirm or None))  # fmt: skip
    except KeyboardInterrupt:
        if conv is not None and kept:  # the calls that ran, and their results, stay in the conversation
            conv.append_turn(user, *kept)
        raise
    if conv is not None:
        conv.append_turn(user, *done.messages)
    done.completion.steps = done.steps
    return done.completion


def complete(
    prompt: str, *, stream: bool = False, grammar: Optional[str] = None, schema: Any = None,
    logprobs: Optional[int] = None, model: Optional[str] = None, lora: Any = None, **params: Any,
) -> Union[Completion, "Request"]:  # fmt: skip
    """Continue ``prompt`` as raw text (no chat template). Same parameters as ``chat``."""
    from .engine import GenerationSpec

    stages, grammar = schema_stage(schema, grammar)
    spec = GenerationSpec(prompt=prompt, params=sampling_params(params), grammar=grammar, logprobs=logprobs, lora=lora)
    req = submit(spec, kind="complete", model=model, stages=stages)
    return req if stream else _wait(req)


def submit(spec: "GenerationSpec", *, kind: str, model: Optional[str] = None, conversation: Optional[str] = None,
           stages: Sequence["Stage"] = (), on_done: Sequence[Callable[[Completion], None]] = (),
           target: Any = None) -> "Request":  # fmt: skip
    """Send ``spec`` to the current backend and return the streaming ``Request``.

    Every generation goes through here (cells, widgets, ``map``, the server), so each gets its
    history row, written with the model that serves it, off the decode thread.

    Args:
        spec: what to generate.
        kind: recorded in the history (``chat``, ``complete``, ``map``, ``server``).
        model: the loaded model to use (see ``backend``).
        conversation: the conversation name recorded with the row.
        stages: output stages (see ``lmnb.engine.Stage``).
        on_done: callbacks for the final ``Completion``, run before the row is written.
        target: the backend to send it to instead (``map`` picks one server of a farm).

    Raises:
        NoModelLoaded: no model is loaded.
    """
    target = target if target is not None else backend(model)
    info = target.info
    if not target.loaded:
        raise NoModelLoaded()
    path = info.path if info else None
    from .reasoning import for_request

    spec, thinking = for_request(spec, info.chat_template if info else None)
    record = history_recorder(spec, kind, conversation, path)
    req = target.submit(spec, stages=[*thinking, *stages], on_done=[*on_done, record])
    req.model_path = path
    return req


def _wait(req: "Request") -> Completion:
    try:
        result = req.result()
    except KeyboardInterrupt:
        req.cancel()
        req.result()
        raise
    if result.parse_error is not None:
        raise result.parse_error
    return result


# ----------------------------------------------------------------------------------------------
# History
# ----------------------------------------------------------------------------------------------
def history(last: Optional[int] = None):
    """Recorded generations, oldest first: a pandas DataFrame when pandas is installed, else dicts."""
    from .history_db import WRITER, read

    WRITER.flush()
    rows = read(history_path(), last)
    try:
        import pandas as pd
    except ImportError:
        return rows
    return pd.DataFrame(rows)
