"""``lmnb.map``: one prompt template over many rows, decoded in parallel by the engine.

Every item becomes an ordinary request; the engine decodes up to ``n_parallel`` of them in each
``llama_decode`` step (continuous batching: a finished row's slot goes to the next one at once),
and a prefix the rows share (system prompt, the template's fixed start) is evaluated once and
shared through the KV cache. Results come back in input order; an item that fails records its
error in place and the others go on; Ctrl-C / Interrupt stops the batch and keeps what finished.
Connected to servers, the rows go through ``lmnb.farm`` (``parallel`` in flight at most, retries,
several endpoints); with a checkpoint file (``lmnb.checkpoint``) finished rows survive a restart.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Iterable, Optional

from .checkpoint import Checkpoint, completion as checkpoint_completion
from .errors import LmnbError, NoModelLoaded
from .interpolate import interpolate, names
from .types import Completion

# Rows decoded together by default: on a 2-core CPU llama-batched-bench peaks at 16 sequences
# (1.84x one sequence; 1.55x at 8), and the shared KV cache makes them cost no extra memory.
MAP_PARALLEL = 16

# Growing the context for a batch is capped: beyond this, rows wait for room instead (the KV
# cache of a 7B model is ~0.5 MB per cell).
_MAX_AUTO_CTX = 16384


class ItemError:
    """Stands in a ``map`` result where an item failed: falsy, with the reason.

    >>> [r for r in results if not r]      # the failed ones
    """

    def __init__(self, message: str, index: Any = None) -> None:
        self.message, self.index = message, index

    def __bool__(self) -> bool:
        return False

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ItemError) and other.message == self.message

    def __hash__(self) -> int:
        return hash(self.message)

    def __repr__(self) -> str:
        return f"ItemError({self.message!r})"

    __str__ = __repr__


class MapResult(list):
    """``map``'s results in input order (a list), with ``completions``, ``errors`` and ``stats``."""

    completions: list[Optional[Completion]]
    errors: dict[int, str]
    stats: dict[str, float]

    def __repr__(self) -> str:
        return f"MapResult({list.__repr__(self)}, errors={len(self.errors)})"


def map(  # noqa: A001 - the verb users know; `lmnb.map` never shadows the builtin inside lmnb
    template: str,
    items: Any,
    *,
    schema: Any = None,
    grammar: Optional[str] = None,
    parallel: int = MAP_PARALLEL,
    system: Optional[str] = None,
    raw: bool = False,
    progress: bool = True,
    model: Optional[str] = None,
    checkpoint: "Optional[str | os.PathLike[str]]" = None,
    **params: Any,
) -> Any:
    """Run ``template`` over every item, ``parallel`` at a time, and return the replies in order.

    Args:
        template: the prompt; ``{column}`` is filled from each row (a DataFrame's columns, a dict's
            keys), ``{item}`` (or ``{}``) is the item itself. Other braces (JSON) stay as typed.
        items: a list, a pandas Series or a DataFrame.
        schema: a pydantic model, dataclass, TypedDict, JSON Schema dict or ``"json"``: each reply
            is generated under that grammar and returned parsed.
        grammar: a GBNF grammar (llama.cpp's format) every reply must follow; not with ``schema``.
        parallel: sequences decoded together (the context is grown to make room when needed);
            connected to servers (``lmnb.connect``), the requests in flight at most, over all of
            them (the least busy server gets the next row; a busy or unreachable one is tried
            again with backoff, honouring ``Retry-After``, then its rows go to another).
        system: a system prompt for every row (evaluated once, shared through the KV cache).
        raw: continue the text as is instead of going through the chat template.
        progress: show a progress bar (done/total, tokens/s, time left).
        model: the loaded model to use (its name, see ``lmnb.load(name=...)``); ``None``: the default.
        checkpoint: a JSON-lines file each row's reply is appended to as it finishes. Run the
            same call again with the same file (after an interrupt or a kernel restart) and the
            rows found there are not sent again; a row whose prompt changed is.
        **params: sampling parameters (temperature, max_tokens, seed, ...).

    Returns:
        A ``MapResult`` (list) or, for pandas input, a Series with the input's index. A failed
        item holds an ``ItemError`` (falsy). After an interrupt, finished items keep their results
        and the rest are ``ItemError('cancelled')``.

    Raises:
        NoModelLoaded: no model is loaded and no server is connected.
        ValueError: the template names a field the items lack, or ``parallel`` is out of range.
    """
    from . import api
    from .engine import Engine, GenerationSpec

    rows, index, pandas_name = _rows(items)
    _check_fields(template, rows)
    p = api.sampling_params(params)
    stages, grammar = api.schema_stage(schema, grammar)
    backend = api.backend(model)
    if not backend.loaded:
        raise NoModelLoaded()

    specs = []
    for ns in rows:
        text = _fill(template, ns)
        if raw:
            specs.append(GenerationSpec(prompt=text, params=p, grammar=grammar))
        else:
            msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
            specs.append(GenerationSpec(messages=msgs, params=p, grammar=grammar))
    if not specs:
        return _package([], index, pandas_name, [], {}, {})
    ckpt = Checkpoint(checkpoint, specs) if checkpoint is not None else None
    resumed = ckpt.finished() if ckpt is not None else {}
    todo = [i for i in range(len(specs)) if i not in resumed]
    local = isinstance(backend, Engine)
    restore = None
    if local and todo:  # a local model: grow its context for the parallel rows
        restore = _make_room(backend, [specs[i] for i in todo], parallel, p)

    side_by_side = backend.n_parallel if local else parallel  # what the context made room for
    bar = _progress_bar(len(specs), len(resumed)) if progress else None
    t0, tokens0 = time.perf_counter(), backend.tokens_generated
    written: set[int] = set()

    def finished(i: int, req: Any) -> None:
        if bar is not None:
            _tick(bar, backend, t0, tokens0)
        _save(ckpt, written, i, req)

    extra: dict[str, int] = {}
    try:
        if local:
            out, interrupted = _run_local(specs, todo, finished, lambda spec: api.submit(
                spec, kind="map", model=model, stages=stages))  # fmt: skip
        else:
            from .farm import Farm

            farm = backend if isinstance(backend, Farm) else Farm([backend])
            out, interrupted, extra = farm.spread(specs, todo, parallel, finished=finished, submit=lambda spec, target: (
                api.submit(spec, kind="map", stages=stages, target=target)))  # fmt: skip
    finally:
        if bar is not None:
            bar.close()
        if restore is not None:
            # give the session back the context it had: requests that overlap later are batched
            # only if the user asked for it (LM.n_parallel / %lm load --parallel)
            backend.resize(*restore)  # queued: it runs once the rows are finished or cancelled

    results: list[Any] = []
    completions: list[Optional[Completion]] = []
    errors: dict[int, str] = {}
    for i in range(len(specs)):
        if i in resumed:
            comp = checkpoint_completion(resumed[i], p, stages)
            value = _value(comp, schema)
        else:
            value, comp = _outcome(out.get(i), schema)
            _save(ckpt, written, i, out.get(i))  # rows that ended as Ctrl-C came
        if isinstance(value, ItemError):
            value.index = index[i] if index is not None else i
            errors[i] = value.message
        results.append(value)
        completions.append(comp)
    elapsed = time.perf_counter() - t0
    n_tokens = sum(completions[i].usage.completion_tokens for i in todo if completions[i] is not None)
    stats = {"items": len(specs), "failed": len(errors), "parallel": side_by_side, "seconds": round(elapsed, 3),
             "completion_tokens": n_tokens, "tokens_per_s": round(n_tokens / elapsed, 1) if elapsed else 0.0,
             "resumed": len(resumed), **extra}  # fmt: skip
    if interrupted:
        kept = len(specs) - sum(1 for e in errors.values() if e == "cancelled")
        where = f" (and in {ckpt.path}: run the same call again to do the rest)" if ckpt is not None else ""
        print(f"Interrupted: {kept} of {len(specs)} items finished and are kept{where}; the rest are "
              "ItemError('cancelled').")  # fmt: skip
    return _package(results, index, pandas_name, completions, errors, stats)


def _run_local(specs: list, todo: list[int], finished: Callable[[int, Any], None],
               submit: Callable[[Any], Any]) -> tuple[dict[int, Any], bool]:  # fmt: skip
    """Rows ``todo`` on the in-kernel engine, which queues them and decodes ``n_parallel`` at once.
    Returns each row's request and whether Ctrl-C interrupted (in-flight rows are then cancelled)."""
    reqs: dict[int, Any] = {}
    try:
        if not todo:
            return reqs, False
        # The first row alone until its prompt is cached, so every other row finds the shared
        # prefix (system prompt, chat template, the template's fixed start) there to borrow.
        reqs[todo[0]] = submit(specs[todo[0]])
        while not reqs[todo[0]].prompt_done.wait(0.1):
            pass
        for i in todo[1:]:
            reqs[i] = submit(specs[i])
        waiting = list(todo)
        while waiting:
            still = []
            for i in waiting:
                if reqs[i].done:
                    finished(i, reqs[i])
                else:
                    still.append(i)
            waiting = still
            if waiting:
                time.sleep(0.05)
    except KeyboardInterrupt:
        for r in reqs.values():
            r.cancel()
        return reqs, True
    return reqs, False


def _save(ckpt: Optional[Checkpoint], written: set[int], i: int, req: Any) -> None:
    """Write row ``i`` to the checkpoint once, if it finished (not cancelled, not failed)."""
    if ckpt is None or i in written or req is None or isinstance(req, BaseException):
        return
    try:
        comp = req.result()
    except (LmnbError, ValueError):
        return
    if comp.finish_reason in ("stop", "length"):
        ckpt.write(i, comp)
        written.add(i)


# ----------------------------------------------------------------------------------------------
def _rows(items: Any) -> tuple[list[dict], Optional[list], Optional[str]]:
    """Items -> one namespace per row (for the template), the pandas index, the Series name."""
    mod = type(items).__module__
    if mod.startswith("pandas"):
        import pandas as pd

        if isinstance(items, pd.DataFrame):
            records = items.to_dict("records")
            return [dict(r, index=i) for r, i in zip(records, items.index)], list(items.index), None
        if isinstance(items, pd.Series):
            key = items.name if isinstance(items.name, str) and items.name.isidentifier() else None
            rows = [{"item": v, "index": i, **({key: v} if key else {})} for i, v in items.items()]
            return rows, list(items.index), None
    if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
        raise TypeError("items must be a list, a pandas Series or a DataFrame (one prompt per element)")
    rows = []
    for i, v in enumerate(items):
        rows.append(dict(v, index=i, item=v) if isinstance(v, dict) else {"item": v, "index": i})
    return rows, None, None


def _check_fields(template: str, rows: list[dict]) -> None:
    if not rows:
        return
    wanted = set(names(template))
    missing = wanted - set(rows[0])
    if missing:
        have = ", ".join(sorted(k for k in rows[0] if k != "index")) or "item"
        raise ValueError(f"the template uses {', '.join('{' + m + '}' for m in sorted(missing))}, but the "
                         f"items have: {have}")  # fmt: skip
    if "{}" not in template and not wanted:
        raise ValueError("the template has no {field}: every item would get the same prompt. "
                         "Use {item} for the item itself, or {column} for a DataFrame column.")  # fmt: skip


def _fill(template: str, ns: dict) -> str:
    return interpolate(template.replace("{}", "{item}"), ns)


def _make_room(engine: Any, specs: list, parallel: int, params: Any) -> Optional[tuple[int, int]]:
    """Recreate the context with ``parallel`` sequences, each with room for the longest prompt and
    its reply; returns the size to restore afterwards (``None`` when nothing changed)."""
    if not 1 <= parallel <= 64:
        raise ValueError(f"parallel={parallel}: must be between 1 and 64")
    lengths = engine.count_prompt_tokens(specs)
    st = engine.status()
    n_ctx, info = st.options.n_ctx, st.model
    from .engine.engine import resolve_sampling

    reply = resolve_sampling(params).max_tokens
    reply = reply if reply and reply > 0 else 512
    need = (max(lengths) if lengths else 0) + reply  # cells per sequence
    limit = min(info.context_length or _MAX_AUTO_CTX, _MAX_AUTO_CTX)
    # the rows side by side must fit at once (in the shared cache, or in n_ctx / n_parallel cells
    # each with batch_invariant): fewer rows side by side rather than rows that run out of room
    new_par = max(1, min(parallel, len(specs), max(n_ctx, limit) // need))
    new_ctx = max(n_ctx, min(limit, _round_up(new_par * need, 256)))
    old = (n_ctx, engine.n_parallel)
    if (new_ctx, new_par) == old:
        return None
    engine.resize(n_ctx=new_ctx, n_parallel=new_par)
    return old


def _round_up(n: int, k: int) -> int:
    return (n + k - 1) // k * k


def _progress_bar(total: int, initial: int = 0) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="lmnb.map", unit="item")


def _tick(bar: Any, backend: Any, t0: float, tokens0: int) -> None:
    bar.update(1)
    elapsed = time.perf_counter() - t0
    tokens = backend.tokens_generated - tokens0
    if elapsed > 0 and tokens:
        bar.set_postfix_str(f"{tokens / elapsed:.0f} tok/s", refresh=False)


def _outcome(req: Any, schema: Any) -> tuple[Any, Optional[Completion]]:
    if req is None:
        return ItemError("cancelled"), None
    if isinstance(req, BaseException):  # a row no server was left to take
        return ItemError(str(req)), None
    try:
        comp = req.result()
    except (LmnbError, ValueError) as e:
        return ItemError(str(e)), None
    return _value(comp, schema), comp


def _value(comp: Completion, schema: Any) -> Any:
    """A finished row's entry in the results: its text, its parsed object, or an ``ItemError``."""
    if comp.finish_reason == "cancelled":
        return ItemError("cancelled")
    if schema is None:
        return comp.text
    if comp.parse_error is not None:
        return ItemError(str(comp.parse_error))
    return comp.parsed


def _package(results: list, index: Optional[list], name: Optional[str], completions: list, errors: dict,
             stats: dict) -> Any:  # fmt: skip
    if index is not None:
        import pandas as pd

        out = pd.Series(results, index=index, name=name, dtype=object)
        out.attrs["lmnb"] = {"errors": errors, "stats": stats}
        return out
    res = MapResult(results)
    res.completions, res.errors, res.stats = completions, errors, stats
    return res
