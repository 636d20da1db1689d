"""``lmnb.compare``: one prompt under several sampling settings and/or models, side by side."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from ..markup import html, join, markdown
from ..types import Completion


@dataclass
class Run:
    """One cell of a comparison: which model and settings, and what came out."""

    model: str
    settings: dict[str, Any]
    completion: Completion

    @property
    def text(self) -> str:
        return self.completion.text

    @property
    def tokens(self) -> int:
        return self.completion.usage.completion_tokens

    @property
    def tokens_per_s(self) -> float:
        return self.completion.timings.generation_tokens_per_s

    def title(self) -> str:
        params = ", ".join(f"{k}={v}" for k, v in self.settings.items()) or "defaults"
        return f"{self.model} · {params}"


@dataclass
class Comparison:
    """The runs of ``compare`` (a list in ``runs``), shown as columns side by side."""

    prompt: str
    runs: list[Run] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.runs)

    def __getitem__(self, i: int) -> Run:
        return self.runs[i]

    def to_dataframe(self) -> Any:
        import pandas as pd

        return pd.DataFrame([{"model": r.model, **r.settings, "text": r.text, "tokens": r.tokens,
                              "tokens_per_s": round(r.tokens_per_s, 1),
                              "finish_reason": r.completion.finish_reason} for r in self.runs])  # fmt: skip

    def __repr__(self) -> str:
        parts = [f"compare: {self.prompt!r}"]
        for r in self.runs:
            parts.append(f"--- {r.title()} ({r.tokens} tokens, {r.tokens_per_s:.1f} tok/s)\n{r.text}")
        return "\n".join(parts)

    def _repr_html_(self) -> str:
        # a reply is untrusted Markdown: markdown() keeps its formatting and drops anything active
        cols = join(
            html(
                '<div class="lmnb-compare-run" style="flex:1;min-width:220px;border:1px solid '
                'var(--jp-border-color2,#ddd);border-radius:4px;padding:6px">'
                '<div style="font-weight:bold;font-size:90%">{}</div>'
                '<div style="margin:6px 0">{}</div>'
                '<div style="font-size:80%;opacity:.75">{} tokens · {:.1f} tok/s · {}</div></div>',
                r.title(), markdown(r.text), r.tokens, r.tokens_per_s, r.completion.finish_reason,
            )
            for r in self.runs
        )
        return str(html('<div style="font-size:90%;margin-bottom:4px">{}</div>'
                        '<div class="lmnb-compare" style="display:flex;gap:8px;flex-wrap:wrap">{}</div>',
                        self.prompt, cols))  # fmt: skip


def compare(prompt: str, settings: Optional[list[dict[str, Any]]] = None, models: Optional[list[str]] = None,
            *, adapters: Optional[list[Any]] = None, max_tokens: int = 128,
            system: Optional[str] = None) -> Comparison:  # fmt: skip
    """Run ``prompt`` (as a chat message) under each of ``settings`` on each of ``models``.

    Args:
        prompt: the user message.
        settings: sampling parameters per column, e.g. ``[{"temperature": 0}, {"temperature": 1.2}]``
            (default: one column with the session defaults).
        models: model names or paths, as for ``lmnb.load`` (default: the default model). Loaded
            models answer side by side, each on its own worker; one that is not loaded is loaded
            beside them for the comparison (after a memory check) and unloaded afterwards.
        adapters: LoRA adapters per column, e.g. ``[None, "reports", ("reports", 0.5)]``: ``None``
            is the base model alone, a name its adapter at scale 1, ``(name, scale)`` at that scale,
            a list of those several at once (see ``lmnb.lora``).
        max_tokens: the longest reply per run.
        system: an optional system prompt.

    Returns:
        A ``Comparison``: the outputs side by side with token counts and tokens/s in a notebook;
        ``.runs``, ``.to_dataframe()`` in code. The chat history is not touched.

    Raises:
        NoModelLoaded: no ``models`` given and none is loaded.
        LoadError: a model that is not loaded will not fit in free memory, or cannot be loaded.
    """
    from .. import api
    from ..types import LoadOptions

    settings = [dict(s) for s in (settings or [{}])]
    if adapters is not None:  # each adapter choice is one more setting: the request's own lora
        settings = [{**s, "lora": _lora_label(a)} for a in adapters for s in settings]
    reg = api.registry()
    default_opts = api.backend().status().options
    keep = {} if default_opts is None else {"n_ctx": default_opts.n_ctx, "n_gpu_layers": default_opts.n_gpu_layers}
    names: list[str] = []
    borrowed: list[str] = []
    try:
        for i, wanted in enumerate(models or [None]):
            name = reg.find(wanted)
            if name is None and wanted is not None:
                name = _loaded_with_path(reg, wanted)
            if name is None and wanted is not None:
                from ..sources.library import resolve

                path = resolve(wanted, download=True)
                reg.check_fits(path, LoadOptions(n_ctx=keep.get("n_ctx")))
                name = f"compare-{i}"
                api.load(path, name=name, **keep)
                borrowed.append(name)
            if name is None:
                from ..errors import NoModelLoaded

                raise NoModelLoaded()
            names.append(name)
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
        # every request first, so that different models decode at the same time
        pending = [(name, s, api.chat(messages, model=name, stream=True, **{"max_tokens": max_tokens, **s}))
                   for name in names for s in settings]  # fmt: skip
        out = Comparison(prompt)
        for name, s, req in pending:
            comp = req.result()
            out.runs.append(Run(model=comp.model or name, settings=s, completion=comp))
        return out
    finally:
        for name in borrowed:
            api.unload(name)


def _loaded_with_path(reg: Any, wanted: str) -> Optional[str]:
    """The registry name of a loaded model whose file ``wanted`` resolves to (without downloading)."""
    import os

    from ..sources.library import resolve

    try:
        path = os.path.realpath(resolve(wanted, download=False))
    except Exception:
        return None
    for m in reg.loaded():
        if os.path.realpath(m.model.path) == path:
            return m.name
    return None


def _lora_label(choice: Any) -> str:
    """An ``adapters`` entry as the request's ``lora`` text: ``"none"``, ``"a:1"``, ``"a:0.5 b:1"``."""
    if choice is None or choice == [] or choice == "none":
        return "none"
    items = [choice] if isinstance(choice, (str, tuple)) else list(choice)
    out = []
    for item in items:
        name, scale = (item, 1.0) if isinstance(item, str) else item
        out.append(f"{name}:{float(scale):g}")
    return " ".join(out)
