"""``lmnb.tokens(text)``: see how the loaded model splits text into tokens."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

from ..markup import html, join

# soft backgrounds that read in light and dark themes; neighbours always differ
COLOURS = ("#f9d5a7", "#b8e0d2", "#d6c5f0", "#f5b5c8", "#c2d9f7")


@dataclass(frozen=True)
class Token:
    id: int
    text: str  # the token's bytes as text (a byte of a longer character shows as \ufffd)
    special: bool  # a control token of the chat template, e.g. <|im_start|>


class TokenView(list):
    """The tokens of a text (a ``list[Token]``), shown with alternating colours and ids on hover."""

    def __init__(self, tokens: list[Token], source: str, model: str) -> None:
        super().__init__(tokens)
        self.source, self.model = source, model

    @property
    def ids(self) -> list[int]:
        return [t.id for t in self]

    def summary(self) -> str:
        n_special = sum(t.special for t in self)
        extra = f" ({n_special} special)" if n_special else ""
        return f"{len(self)} tokens{extra} for {len(self.source)} characters · {self.model}"

    def __repr__(self) -> str:
        return self.summary() + "\n" + " ".join(f"[{t.id} {t.text!r}]" for t in self)

    def _repr_html_(self) -> str:
        spans = []
        for i, t in enumerate(self):
            shown = t.text.replace(" ", "\u00b7" if t.text.strip() == "" else " ").replace("\t", "\u2192")
            style = f"background:{COLOURS[i % len(COLOURS)]};color:#111;padding:1px 0;border-radius:2px"
            if t.special:
                style = "background:#444;color:#fff;padding:1px 3px;border-radius:3px;font-weight:bold"
            spans.append(html('<span class="lmnb-token" data-id="{}" title="id {}" style="{}">{}</span>',
                              t.id, t.id, style, join(shown.split("\n"), "\u21b5<br>")))  # fmt: skip
        return str(html(
            '<div class="lmnb-tokens" style="font-family:var(--jp-code-font-family,monospace);line-height:1.9;'
            'white-space:pre-wrap">{}</div>'
            '<div style="font-size:85%;opacity:.75">{} · hover a token for its id</div>',
            join(spans), self.summary(),  # the summary names the model: GGUF metadata, not ours
        ))


def tokens(text: str, *, chat: bool = False, system: Optional[str] = None) -> TokenView:
    """Show how the loaded model splits ``text`` into tokens.

    Args:
        text: any text.
        chat: wrap it as a user message through the model's chat template first, to see the
            special tokens that mark turns (``<|im_start|>``, ...) and any default system prompt.
        system: a system prompt for ``chat=True``.

    Returns:
        A ``TokenView`` (a list of ``Token(id, text, special)``): alternating colours in a
        notebook, the id of each token on hover, and the count.
    """
    from ..api import get_engine
    from ..errors import NoModelLoaded

    engine = get_engine()
    if not engine.loaded:
        raise NoModelLoaded()
    source = text
    if chat:
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
        source = engine.render_chat(messages)
    triples = engine.tokenize(source, special=chat)
    out = [Token(id=i, text=b.decode("utf-8", errors="replace"), special=s) for i, b, s in triples]
    return TokenView(out, source, engine.info.name)


class ProbabilityView:
    """A reply with each token coloured by the probability the model gave it (from red, unlikely,
    to green, likely) and its alternatives on hover. Made from ``Completion.logprobs``."""

    def __init__(self, logprobs: list[dict]) -> None:
        self.entries = list(logprobs)

    @property
    def probabilities(self) -> list[float]:
        return [math.exp(e["logprob"]) for e in self.entries]

    def __repr__(self) -> str:
        return " ".join(f"{e['token']!r}:{math.exp(e['logprob']):.0%}" for e in self.entries)

    def _repr_html_(self) -> str:
        spans = []
        for e in self.entries:
            p = math.exp(e["logprob"])
            alts = "\n".join(f"{a['token']!r}  {math.exp(a['logprob']):.1%}" for a in e.get("top_logprobs", []))
            hue = int(120 * p)  # 0 red .. 120 green
            spans.append(html(
                '<span class="lmnb-prob" data-p="{:.4f}" title="{:.1%}\n{}" '
                'style="background:hsl({},75%,80%);color:#111;border-radius:2px">{}</span>',
                p, p, alts, hue, join(e["token"].split("\n"), "\u21b5<br>"),
            ))  # fmt: skip
        low = sum(p < 0.5 for p in self.probabilities)
        return str(html(
            '<div class="lmnb-probs" style="white-space:pre-wrap;line-height:1.8">{}</div>'
            '<div style="font-size:85%;opacity:.75">{} tokens, {} of them below 50% · '
            "red: the model found it unlikely, green: likely · hover a token for the alternatives</div>",
            join(spans), len(self.entries), low,
        ))


def token_probs(completion: Any) -> ProbabilityView:
    """The reply of ``completion`` (asked with ``logprobs=``) coloured by each token's probability."""
    if not completion.logprobs:
        raise ValueError("this reply has no probabilities: ask with logprobs=5 (or %%lm --show-probs)")
    return ProbabilityView(completion.logprobs)
