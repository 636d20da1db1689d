"""The Python API: the same verbs as the magics (load, unload, chat, complete, status, ...).

Magics, widgets, the server and the CLI are thin layers over these functions and the one shared
``Engine``. Defaults come from the ``LM`` config (``lmnb.configure`` / ``%config LM.x = ...``).
"""

from __future__ import annotations

import atexit
import os
import threading
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from .config import get_config
from .errors import NoModelLoaded
from .types import SAMPLING_FIELDS, Completion, LoadOptions, Message, ModelInfo, SamplingParams, Status

_engine = None
_engine_lock = threading.Lock()
_loaded_paths: list[str] = []  # models loaded this session, for `lmnb.models()`
_sha256: dict[str, "threading.Thread"] = {}
_remote = None  # a RemoteBackend while `lmnb.connect()` is in effect


def get_engine():
    """The session's shared ``Engine`` (started on first use)."""
    global _engine
    with _engine_lock:
        if _engine is None:
            from .engine import Engine
            from .engine.logs import follow_config

            follow_config(get_config())
            _engine = Engine()
            # Free llama.cpp before the interpreter tears down: a daemon worker killed inside
            # llama_decode at exit can crash the process on its way out.
            atexit.register(_engine.shutdown, 10)
            _engine.listeners.append(_on_complete)
        return _engine


# ----------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------
def load(
    model: Optional[str] = None,
    *,
    n_ctx: Optional[int] = None,
    n_gpu_layers: Optional[Union[int, str]] = None,
    n_threads: Optional[int] = None,
    n_batch: Optional[int] = None,
    n_parallel: Optional[int] = None,
    flash_attn: Optional[bool] = None,
    use_mmap: Optional[bool] = None,
    seed: Optional[int] = None,
    chat_template: Optional[str] = None,
    progress: Any = None,
    download: bool = True,
) -> ModelInfo:
    """Load a GGUF model into the kernel, replacing the current one.

    Args:
        model: a ``.gguf`` path, ``"smollm2"``/``"gemma3"`` (bundled), a Hugging Face repo id
            (``"owner/repo"``, ``"owner/repo:Q4_K_M"``; downloaded first when not in the cache), a
            name from ``lmnb.models()`` (LM Studio, Ollama), or ``None`` for the default.
        n_ctx: context length in tokens (0 = the model's trained length).
        n_gpu_layers: layers on the GPU: an int, ``"auto"`` or ``"max"``.
        n_parallel: requests decoded together per step (``n_ctx / n_parallel`` tokens each).
        progress: optional ``callable(fraction)`` called while the weights load.
        download: fetch a Hugging Face model missing from the cache (with a progress bar).

    Returns:
        The model's ``ModelInfo``. Raises ``LoadError`` with a readable reason on failure; the
        previously loaded model stays loaded when the new file cannot even be opened.
    """
    from .library import resolve

    path = resolve(model, download=download)
    opts = LoadOptions(
        n_ctx=n_ctx,
        n_gpu_layers=n_gpu_layers,
        n_threads=n_threads,
        n_batch=n_batch,
        n_parallel=n_parallel,
        flash_attn=flash_attn,
        use_mmap=use_mmap,
        seed=seed,
        chat_template=chat_template,
    )
    if _remote is not None:
        disconnect()  # loading a local model means: use the local engine again
    info = get_engine().load(path, opts, progress=progress)
    if info.path not in _loaded_paths:
        _loaded_paths.append(info.path)
    from .history_db import record_use

    record_use(info.path, _history_db())
    _hash_in_background(info.path)
    return info


def unload() -> bool:
    """Free the loaded model and its context. Returns whether one was loaded."""
    return get_engine().unload()


def info(model: Optional[str] = None) -> ModelInfo:
    """Read a model's GGUF metadata without loading its weights."""
    from .engine.model import read_info
    from .library import resolve

    return read_info(resolve(model))


def status() -> Status:
    """Loaded model, load options, memory, last tokens/s, queue depth (or the remote backend's)."""
    return _backend().status()


def connect(url: str, *, api_key: Optional[str] = None, model: Optional[str] = None):
    """Send generations to an OpenAI-compatible server instead of the in-kernel engine.

    Args:
        url: the server's base URL, e.g. ``http://localhost:1234/v1`` (LM Studio),
            ``http://localhost:11434/v1`` (Ollama), or another lmnb's ``server.url``.
        api_key: sent as ``Authorization: Bearer``.
        model: the model to use; default: the one the server has loaded, else the first listed.

    Returns:
        The ``RemoteBackend``. ``%%lm``, ``%%lm chat``, ``chat()``, ``complete()`` and the widgets
        use it until ``disconnect()`` (or a local ``load()``).
    """
    global _remote
    from .remote import RemoteBackend

    backend = RemoteBackend(url, api_key=api_key, model=model)
    backend.listeners.append(_on_complete)
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


def _backend():
    return _remote if _remote is not None else get_engine()


def embed(texts: Union[str, list[str]], *, model: Optional[str] = None):
    """Unit-length embedding vectors of ``texts``: a numpy float32 array, one row per text (a
    single vector for a single string).

    Args:
        texts: a string or a list of strings (batched, up to 16 per llama.cpp call).
        model: an embedding model to use (a name or path, as for ``load``): loaded once beside
            the chat model and kept, as ``load_embedder``. ``None``: the embedding model already
            loaded, else ``LM.embedding_model`` when set, else the loaded chat model (the mean
            of its hidden states).
    """
    single = isinstance(texts, str)
    engine = get_engine()
    wanted = model or (engine.embedder_info is None and get_config().embedding_model) or None
    source = "auto"
    if wanted:
        from .library import resolve

        path = os.path.abspath(resolve(wanted, download=True))
        if engine.info is not None and engine.info.path == path:
            source = "chat"  # the chat model itself: no second copy of its weights
        else:
            if engine.embedder_info is None or engine.embedder_info.path != path:
                load_embedder(path)
            source = "embedder"
    elif not engine.loaded and engine.embedder_info is None:
        raise NoModelLoaded()
    vectors, _ = engine.embed([texts] if single else list(texts), source)
    return vectors[0] if single else vectors


def load_embedder(model: str, *, n_gpu_layers: Optional[Union[int, str]] = None,
                  n_threads: Optional[int] = None) -> ModelInfo:  # fmt: skip
    """Load ``model`` (a name or path, as for ``load``) for embeddings only, beside the chat model.

    From then on ``lmnb.embed`` and the server's ``/v1/embeddings`` use it; the chat model is not
    touched. A dedicated embedding GGUF (nomic-embed, bge, e5, ...) pools as its header says.
    """
    from .library import resolve

    path = resolve(model, download=True)
    return get_engine().load_embedder(path, LoadOptions(n_gpu_layers=n_gpu_layers, n_threads=n_threads))


def unload_embedder() -> bool:
    """Free the embedding model (``embed`` goes back to the chat model). Returns whether one was loaded."""
    return get_engine().unload_embedder()


def models():
    """Every local GGUF model: bundled, HF cache, ``LM.models_dir``, LM Studio, Ollama, loaded this session.

    Returns a ``ModelList`` (a list of ``LocalModel``) shown as a table with sizes,
    quantization, architecture, last use and the disk space used.
    """
    from .library import local_models

    out = local_models(tuple(_loaded_paths))
    current = _engine.info if _engine is not None and _engine.loaded else None
    out.loaded_path = current.path if current else None
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
    from .library import rm as _rm

    current = _engine.info if _engine is not None and _engine.loaded else None
    return _rm(model, loaded_path=current.path if current else None)


def model_sha256(path: Optional[str] = None) -> Optional[str]:
    """sha256 of the loaded (or given) model file; computed once, in the background at load."""
    from .history_db import file_sha256

    path = path or (get_engine().info.path if get_engine().info else None)
    if not path:
        return None
    t = _sha256.get(path)
    if t is not None:
        t.join()
    return file_sha256(path, _history_db())


def _hash_in_background(path: str) -> None:
    from .history_db import file_sha256

    if path in _sha256:
        return
    t = threading.Thread(target=lambda: _safe(file_sha256, path, _history_db()), daemon=True, name="lmnb-sha256")
    _sha256[path] = t
    t.start()


def _safe(fn, *a):
    try:
        fn(*a)
    except Exception:
        pass


# ----------------------------------------------------------------------------------------------
# Generation
# ----------------------------------------------------------------------------------------------
@dataclass
class Conversation:
    """A named chat, shared by ``%%lm chat --name N``, ``lmnb.chat(..., conversation=N)`` and the
    Chat widget. Assistant messages also carry ``"stats"`` (tokens, tokens/s, time to first token)."""

    name: str
    system: Optional[str] = None
    messages: list[Message] = field(default_factory=list)
    # called with the conversation after every change (a widget showing it redraws)
    listeners: list = field(default_factory=list, repr=False, compare=False)

    def all_messages(self) -> list[Message]:
        """What the chat template sees: the system prompt, then role and content of each message."""
        sys = [{"role": "system", "content": self.system}] if self.system else []
        return sys + [{"role": m["role"], "content": m["content"]} for m in self.messages]

    def clear(self) -> None:
        """Forget the messages (the system prompt stays)."""
        self.messages.clear()
        self.changed()

    def changed(self) -> None:
        """Tell the listeners the messages changed (call after editing ``messages`` in place)."""
        for fn in list(self.listeners):
            try:
                fn(self)
            except Exception:  # a closed widget must not break the conversation
                pass

    def __repr__(self) -> str:
        return f"Conversation({self.name!r}, {len(self.messages)} messages)"


_conversations: dict[str, Conversation] = {}
DEFAULT_CONVERSATION = "default"


def _named_conversation(name: str) -> Conversation:
    # separate from `conversation()` because chat()'s `conversation` argument shadows that name
    conv = _conversations.get(name)
    if conv is None:
        conv = _conversations[name] = Conversation(name)
    return conv


def conversation(name: str = DEFAULT_CONVERSATION) -> Conversation:
    """The named conversation (created empty on first use)."""
    return _named_conversation(name)


def reset(name: Optional[str] = None) -> None:
    """Forget a conversation's messages (all conversations when ``name`` is None)."""
    # cleared in place, so that widgets showing a conversation see it empty
    for conv in list(_conversations.values()) if name is None else [_conversations.get(name)]:
        if conv is not None:
            conv.clear()


def _params(kw: dict[str, Any]) -> SamplingParams:
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
    **params: Any,
):
    """Ask the loaded model, through its chat template.

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
            a dict); a reply cut off at ``max_tokens`` raises ``StructuredOutputError``. Say what
            you want in the prompt too: the grammar fixes the shape, not the content.
        logprobs: record each reply token's probability and this many alternatives
            (``Completion.logprobs``, OpenAI's format; ``lmnb.token_probs`` shows them).
        **params: sampling parameters (temperature, top_p, top_k, min_p, repeat_penalty,
            presence_penalty, frequency_penalty, max_tokens, seed, stop).

    Returns:
        A ``Completion`` (or a streaming ``Request`` when ``stream=True``; with a ``schema``, its
        ``.result().parsed`` is the object, or ``None`` when the reply could not be parsed).
    """
    from .engine import GenerationSpec

    p = _params(params)
    tags: dict[str, Any] = {"kind": "chat"}
    grammar = _schema_grammar(schema, grammar, tags)
    if isinstance(message, list):
        messages = [dict(m) for m in message]
        if system:
            messages = [{"role": "system", "content": system}] + messages
    else:
        user = {"role": "user", "content": message}
        if conversation is not None:
            conv = _named_conversation(conversation)
            if system is not None:
                conv.system = system or None
            messages = conv.all_messages() + [user]
            tags.update(conversation=conversation, user=user)
        else:
            sys_prompt = system if system is not None else (get_config().system_prompt or None)
            messages = ([{"role": "system", "content": sys_prompt}] if sys_prompt else []) + [user]
    return _run(GenerationSpec(messages=messages, params=p, grammar=grammar, tags=tags, logprobs=logprobs), stream)


def complete(
    prompt: str, *, stream: bool = False, grammar: Optional[str] = None, schema: Any = None,
    logprobs: Optional[int] = None, **params: Any,
):  # fmt: skip
    """Continue ``prompt`` as raw text (no chat template). Same parameters as ``chat``."""
    from .engine import GenerationSpec

    tags: dict[str, Any] = {"kind": "complete"}
    grammar = _schema_grammar(schema, grammar, tags)
    spec = GenerationSpec(prompt=prompt, params=_params(params), grammar=grammar, tags=tags, logprobs=logprobs)
    return _run(spec, stream)


def _schema_grammar(schema: Any, grammar: Optional[str], tags: dict[str, Any]) -> Optional[str]:
    """The grammar for ``schema`` (noted in ``tags``, so the reply gets parsed), else ``grammar``."""
    if schema is None:
        return grammar
    if grammar is not None:
        raise ValueError("pass either grammar= or schema=, not both (a schema is turned into a grammar)")
    from .structured import grammar as schema_to_grammar

    tags["schema"] = schema
    return schema_to_grammar(schema)


def _parse_reply(result: Completion, schema: Any) -> Any:
    """``result``'s text as ``schema``'s object; raises ``StructuredOutputError`` (with the result)."""
    from .errors import StructuredOutputError
    from .structured import parse

    max_tokens = result.params.max_tokens if result.params else None
    try:
        return parse(result.text, schema, result.finish_reason, max_tokens=max_tokens)
    except StructuredOutputError as e:
        e.completion = result
        raise


def _run(spec, stream: bool):
    backend = _backend()
    if not backend.loaded:
        raise NoModelLoaded()
    req = backend.submit(spec)
    if stream:
        return req
    try:
        result = req.result()
    except KeyboardInterrupt:
        req.cancel()
        req.result()
        raise
    if "schema" in spec.tags and result.parsed is None:
        # _on_complete parsed it already unless it failed: parse again, to raise why
        result.parsed = _parse_reply(result, spec.tags["schema"])
    return result


# ----------------------------------------------------------------------------------------------
# History and logs
# ----------------------------------------------------------------------------------------------
def _history_db() -> str:
    return get_config().resolved_history_path()


def _on_complete(req, result: Completion) -> None:
    """Engine listener (worker thread): keep conversations and the history database up to date."""
    tags = req.spec.tags or {}
    if "schema" in tags:
        # Here rather than in _run, so that a streaming request's .result() has .parsed too; a
        # failure leaves it None (_run and %%lm raise the StructuredOutputError for the caller).
        try:
            result.parsed = _parse_reply(result, tags["schema"])
        except Exception:
            pass
    name = tags.get("conversation")
    if name is not None and result.error is None:
        conv = _named_conversation(name)
        conv.messages.append(tags["user"])
        conv.messages.append({"role": "assistant", "content": result.text, "stats": reply_stats(result)})
        conv.changed()
    cfg = get_config()
    if not cfg.history:
        return
    from .history_db import WRITER, make_row

    spec = req.spec
    info = _backend().info
    path = info.path if info else None
    WRITER.record(
        _history_db(),
        make_row(
            request_id=req.id,
            kind=tags.get("kind", "chat" if spec.messages is not None else "complete"),
            conversation=name,
            model=result.model,
            model_path=path,
            model_sha256=None,
            params=result.params.to_dict() if result.params else {},
            messages=spec.messages if spec.messages is not None else spec.prompt,
            completion=result,
        ),
    )


def reply_stats(result: Completion) -> dict[str, Any]:
    """The figures shown under a reply: tokens, tokens/s, time to first token, why it ended."""
    return {
        "tokens": result.usage.completion_tokens,
        "tokens_per_s": round(result.timings.generation_tokens_per_s, 2),
        "ttft_s": round(result.timings.ttft_s, 4),
        "finish_reason": result.finish_reason,
        "model": result.model,
        "seed": result.params.seed if result.params else None,
    }


def history(last: Optional[int] = None):
    """Recorded generations, oldest first: a pandas DataFrame when pandas is installed, else dicts."""
    from .history_db import WRITER, read

    WRITER.flush()
    rows = read(_history_db(), last)
    try:
        import pandas as pd
    except ImportError:
        return rows
    return pd.DataFrame(rows)


def logs(level: Optional[str] = None, last: Optional[int] = None) -> list:
    """llama.cpp's log lines kept in the ring buffer (``level``: debug, info, warn, error)."""
    from .engine.logs import LOGS

    return LOGS.records(level=level, last=last)
