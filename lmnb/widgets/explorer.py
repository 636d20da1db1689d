"""The next-token explorer: the model's top candidates for the next token as bars, reshaped live
by temperature, top-k, top-p and min-p, with Sample / Greedy / Undo to walk the text forward.

Moving a slider recomputes the distribution from the logits already read (numpy, no model call);
only Sample, Greedy and Undo ask the engine, for the logits of the new position.
"""

from __future__ import annotations

from typing import Any, Optional

import ipywidgets as W
import numpy as np

from ..markup import Markup, html, join
from ..teaching import distribution as D
from ._html import SafeHTML
from ._pane import StatusPane

FILTER_NAMES = {"top_k": "top-k", "top_p": "top-p", "min_p": "min-p"}


class NextTokenExplorer(StatusPane, W.VBox):
    """``NextTokenExplorer(prompt)``: what the model would write next, and how sampling picks it.

    Args:
        prompt: the text so far.
        chat: wrap ``prompt`` as a user message through the chat template (the model then
            starts its reply); otherwise the model continues the text as written.
        top: how many candidates to draw as bars.
        seed: seeds Sample's random draws: the same seed and the same clicks give the same text.

    Python side: ``sample()``, ``greedy()``, ``undo()``, ``text`` (what was added),
    ``distribution`` (the current ``lmnb.teaching.distribution.Distribution``).
    """

    _status_attr = "message"  # where a failed Sample / Greedy / Undo says why

    def __init__(self, prompt: str, *, chat: bool = False, top: int = 15, seed: int = 0,
                 temperature: Optional[float] = None, top_k: Optional[int] = None, top_p: Optional[float] = None,
                 min_p: Optional[float] = None) -> None:  # fmt: skip
        from ..api import get_engine
        from ..config import get_config
        from ..errors import NoModelLoaded

        self._engine = get_engine()
        if not self._engine.loaded:
            raise NoModelLoaded()
        cfg = get_config()
        self.top = top
        self._rng = np.random.default_rng(seed)
        source = self._engine.render_chat([{"role": "user", "content": prompt}]) if chat else prompt
        self._prompt_tokens = [t for t, _, _ in self._engine.tokenize(source, special=chat)]
        self._added: list[int] = []
        self._rng_states: list[Any] = []  # the generator's state before each step, for Undo
        self._pieces: dict[int, str] = {}
        self._logits = self._engine.next_token_logits(self._prompt_tokens)
        self.prompt = prompt

        style = {"description_width": "90px"}
        layout = W.Layout(width="420px")

        def val(given: Any, default: Any) -> Any:
            return default if given is None else given

        self.temperature = W.FloatSlider(value=val(temperature, cfg.temperature), min=0, max=2, step=0.05,
                                         description="temperature", style=style, layout=layout)  # fmt: skip
        self.top_k = W.IntSlider(value=val(top_k, cfg.top_k), min=0, max=100, description="top_k",
                                 style=style, layout=layout)  # fmt: skip
        self.top_p = W.FloatSlider(value=val(top_p, cfg.top_p), min=0.05, max=1, step=0.01, description="top_p",
                                   style=style, layout=layout)  # fmt: skip
        self.min_p = W.FloatSlider(value=val(min_p, cfg.min_p), min=0, max=0.5, step=0.01, description="min_p",
                                   style=style, layout=layout)  # fmt: skip
        self.sample_button = W.Button(description="Sample", button_style="primary", tooltip="draw one token")
        self.greedy_button = W.Button(description="Greedy", tooltip="take the most likely token")
        self.undo_button = W.Button(description="Undo", tooltip="remove the last token", disabled=True)
        self.text_view = SafeHTML(layout=W.Layout(width="100%"))
        self.chart = SafeHTML(layout=W.Layout(width="100%"))
        self.message = SafeHTML()
        for name in ("temperature", "top_k", "top_p", "min_p"):
            getattr(self, name).add_class(f"lmnb-explorer-{name}")
        self.text_view.add_class("lmnb-explorer-text")
        self.chart.add_class("lmnb-explorer-chart")

        for s in (self.temperature, self.top_k, self.top_p, self.min_p):
            s.observe(lambda _change: self._redraw(), names="value")
        self.sample_button.on_click(self._guard(lambda _b: self.sample()))
        self.greedy_button.on_click(self._guard(lambda _b: self.greedy()))
        self.undo_button.on_click(self._guard(lambda _b: self.undo()))

        super().__init__([
            self.text_view,
            W.HBox([W.VBox([self.temperature, self.top_k, self.top_p, self.min_p]),
                    W.VBox([W.HBox([self.sample_button, self.greedy_button, self.undo_button]), self.message])]),
            self.chart,
        ])  # fmt: skip
        self.add_class("lmnb-explorer")
        self._redraw()

    # --- the model ----------------------------------------------------------------------------
    @property
    def distribution(self) -> D.Distribution:
        return D.shape(self._logits, temperature=self.temperature.value, top_k=self.top_k.value,
                       top_p=self.top_p.value, min_p=self.min_p.value)  # fmt: skip

    @property
    def text(self) -> str:
        """The tokens added so far, as text."""
        return b"".join(self._piece(t) for t in self._added).decode("utf-8", errors="replace")

    @property
    def tokens(self) -> list[int]:
        return list(self._added)

    def sample(self) -> int:
        """Draw the next token from the distribution the sliders make; returns its id."""
        dist = self.distribution
        state = self._rng.bit_generator.state
        tok = dist.sample(self._rng)
        p = float(dist.probs[int(np.flatnonzero(dist.order == tok)[0])])
        self._advance(tok, state, f"drew {self._label(tok)} (p = {p:.1%} after sampling)")
        return tok

    def greedy(self) -> int:
        """Take the most likely token; returns its id."""
        dist = self.distribution
        tok = dist.greedy()
        self._advance(tok, self._rng.bit_generator.state,
                      f"took {self._label(tok)}, the most likely (model p = {dist.model_probs[0]:.1%})")  # fmt: skip
        return tok

    def undo(self) -> None:
        """Remove the last token (and rewind the random draws, so Sample repeats itself)."""
        if not self._added:
            return
        self._added.pop()
        self._rng.bit_generator.state = self._rng_states.pop()
        self._logits = self._engine.next_token_logits(self._prompt_tokens + self._added)
        self._redraw("undone")

    def _advance(self, tok: int, rng_state: Any, what: str) -> None:
        self._added.append(tok)
        self._rng_states.append(rng_state)
        self._logits = self._engine.next_token_logits(self._prompt_tokens + self._added)
        self._redraw(what)

    # --- drawing ------------------------------------------------------------------------------
    def _piece(self, tok: int) -> bytes:
        if tok not in self._pieces:
            self._fetch([tok])
        return self._pieces[tok]

    def _fetch(self, ids: list[int]) -> None:
        missing = [t for t in ids if t not in self._pieces]
        if missing:  # one trip to the engine for every label of a redraw
            self._pieces.update(zip(missing, self._engine.token_bytes(missing)))

    def _label(self, tok: int) -> str:
        return repr(self._piece(tok).decode("utf-8", errors="replace"))

    def _redraw(self, message: Optional[str] = None) -> None:
        dist = self.distribution
        self.undo_button.disabled = not self._added
        if message is not None:
            self.message.value = message  # text (token pieces are in it): SafeHTML escapes it
        self.text_view.value = html(
            '<div style="font-family:var(--jp-code-font-family,monospace);white-space:pre-wrap;padding:6px;'
            'border:1px solid var(--jp-border-color2);border-radius:4px">'
            '<span style="opacity:.7">{}</span>'
            '<span class="lmnb-explorer-added" style="background:var(--jp-brand-color3,#cfe8fc);color:#111">'
            "{}</span></div>",
            self.prompt, self.text,
        )
        rows = []
        best = D.top(dist, self.top)
        self._fetch([t for t, *_ in best] + self._added)
        for tok, model_p, p, removed in best:
            piece = self._piece(tok).decode("utf-8", errors="replace")
            label = piece.replace(" ", "\u00b7").replace("\n", "\u21b5") or Markup("&nbsp;")
            gone = bool(removed)
            colour = "var(--jp-layout-color3,#bbb)" if gone else "var(--jp-brand-color1,#1976d2)"
            note = f"removed by {FILTER_NAMES[removed]}" if gone else f"{p:.1%}"
            rows.append(html(
                '<div class="lmnb-bar" data-token="{tok}" data-removed="{removed}" data-p="{p:.6f}" '
                'style="display:flex;align-items:center;gap:6px;margin:1px 0;{fade}">'
                '<code style="width:130px;text-align:right;overflow:hidden" title="id {tok}">{label}</code>'
                '<div style="flex:1;position:relative;height:14px;background:var(--jp-layout-color2,#eee)">'
                '<div style="position:absolute;height:100%;width:{model_w:.2f}%;'
                'border:1px dashed var(--jp-border-color1,#999);box-sizing:border-box"></div>'
                '<div style="position:absolute;height:100%;width:{w:.2f}%;background:{colour}"></div></div>'
                '<span style="width:170px;font-size:85%">{model_p:.1%} → {note}</span></div>',
                tok=tok, removed=removed, p=p, fade="opacity:.45" if gone else "", label=label,
                model_w=model_p * 100, w=p * 100, colour=colour, model_p=model_p, note=note,
            ))  # fmt: skip
        self.chart.value = html(
            '<div style="font-size:85%;margin:4px 0">Next token: {} of {:,} candidates '
            "kept · spread {:.2f} bits · dashed: the model's own probability, "
            "filled: after the sampling parameters</div>{}",
            dist.kept, len(dist.order), D.entropy_bits(dist.probs), join(rows),
        )


def explore(prompt: str, **kwargs: Any) -> NextTokenExplorer:
    """A ``NextTokenExplorer`` for ``prompt`` (see its arguments)."""
    return NextTokenExplorer(prompt, **kwargs)
