"""``lmnb.compare``: one prompt under several sampling settings and/or models, side by side."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from .markup import html, join, markdown
from .types import Completion


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
            *, max_tokens: int = 128, system: Optional[str] = None) -> Comparison:  # fmt: skip
    """Run ``prompt`` (as a chat message) under each of ``settings`` on each of ``models``.

    Args:
        prompt: the user message.
        settings: sampling parameters per column, e.g. ``[{"temperature": 0}, {"temperature": 1.2}]``
            (default: one column with the session defaults).
        models: model names or paths, as for ``lmnb.load`` (default: the loaded model). Each is
            loaded in turn with the current load options; the model loaded before comes back
            at the end.
        max_tokens: the longest reply per run.
        system: an optional system prompt.

    Returns:
        A ``Comparison``: the outputs side by side with token counts and tokens/s in a notebook;
        ``.runs``, ``.to_dataframe()`` in code. The chat history is not touched.
    """
    from . import api

    settings = [dict(s) for s in (settings or [{}])]
    engine = api.get_engine()
    before = engine.info
    if before is None and not models:
        from .errors import NoModelLoaded

        raise NoModelLoaded()
    opts = engine.status().options
    keep = {} if opts is None else {"n_ctx": opts.n_ctx, "n_gpu_layers": opts.n_gpu_layers}
    out = Comparison(prompt)
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    try:
        for name in models or [None]:
            if name is not None:
                info = api.load(name, **keep)
            else:
                info = engine.info
            for s in settings:
                params = {"max_tokens": max_tokens, **s}
                comp = api.chat(messages, **params)
                out.runs.append(Run(model=info.name, settings=s, completion=comp))
    finally:
        if models and before is not None and (engine.info is None or engine.info.path != before.path):
            api.load(before.path, **keep)
    return out
