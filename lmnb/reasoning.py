"""Reasoning models: the thinking kept apart from the answer.

Models that think before answering write it between markers their chat template knows:
``<think>…</think>`` (Qwen3, DeepSeek-R1 and its distills, QwQ, SmolLM3, Phi-4 reasoning),
``[THINK]…[/THINK]`` (Magistral), ``<|START_THINKING|>…<|END_THINKING|>`` (Command R7B),
``<|channel>thought…<channel|>`` (Gemma 4), or gpt-oss's ``analysis`` channel. Some templates open the thinking themselves at the end of the
prompt (the reply then starts inside it).

``ReasoningStage`` is an output stage: streamed text inside the markers becomes
``("reasoning", text)`` events, the rest stays ``("delta", text)``; the final ``Completion`` has
the answer in ``text`` and the thinking in ``reasoning``. ``json_after_thinking`` makes a
schema's grammar allow the thinking first, so structured output works with thinking models.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Iterable, Optional

from .engine.request import Event, GenerationSpec, Stage
from .engine.sequence import partial_suffix
from .types import Completion

__all__ = ["ThinkFormat", "detect", "ReasoningStage", "split", "json_after_thinking", "for_request"]


@dataclass(frozen=True)
class ThinkFormat:
    """One family's thinking markers."""

    name: str
    open: str
    close: str
    special: bool = False  # the markers are control tokens: the reply must keep them as text
    switch: Optional[str] = None  # the template variable that turns thinking off (Qwen3: enable_thinking)


THINK = ThinkFormat("think", "<think>", "</think>")
FORMATS = (
    THINK,
    ThinkFormat("mistral", "[THINK]", "[/THINK]", special=True),
    ThinkFormat("command", "<|START_THINKING|>", "<|END_THINKING|>", special=True),
    ThinkFormat("gpt-oss", "<|channel|>analysis<|message|>", "<|end|>", special=True),
    ThinkFormat("gemma4", "<|channel>thought", "<channel|>", special=True),
)


def detect(template: Optional[str]) -> Optional[ThinkFormat]:
    """The thinking markers a chat template uses, or ``None`` for a model that does not think."""
    t = template or ""
    for fmt in FORMATS:
        if fmt.open in t or (fmt.name == "gpt-oss" and "<|channel|>" in t and "analysis" in t) or \
                (fmt.name == "gemma4" and "<|channel>" in t and "<channel|>" in t):
            switch = "enable_thinking" if "enable_thinking" in t else None
            return ThinkFormat(fmt.name, fmt.open, fmt.close, fmt.special, switch)
    return None


@functools.lru_cache(maxsize=32)
def opens_in_prompt(template: str, fmt_open: str) -> bool:
    """Whether the template's generation prompt ends inside the thinking (it wrote the open marker)."""
    try:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        prompt = Jinja2ChatFormatter(template, eos_token="", bos_token="")(
            messages=[{"role": "user", "content": "x"}]).prompt
    except Exception:
        return False
    return prompt.rstrip().endswith(fmt_open)


def split(text: str, fmt: ThinkFormat, inside: bool = False) -> tuple[str, str]:
    """(reasoning, answer) of a finished reply; ``inside``: it started inside the thinking."""
    start = 0 if inside else text.find(fmt.open)
    if start < 0 or (not inside and text[:start].strip()):
        if fmt.name == "gpt-oss" and _HARMONY_FINAL in text:  # no analysis, only the final channel
            return "", _final_channel(text)
        return "", text  # no thinking, or the answer came first: all of it is the answer
    body_from = start if inside else start + len(fmt.open)
    end = text.find(fmt.close, body_from)
    if end < 0:  # cut off while thinking (max_tokens): no answer yet
        return text[body_from:].strip(), ""
    answer = text[end + len(fmt.close):]
    if fmt.name == "gpt-oss":
        answer = _final_channel(answer)
    return text[body_from:end].strip(), answer.lstrip()


def _final_channel(text: str) -> str:
    """gpt-oss: the text of the final channel (what the user reads), or ``text`` without one."""
    m = re.search(r"<\|channel\|>final<\|message\|>(.*?)(?:<\|end\|>|<\|return\|>|$)", text, re.S)
    return m.group(1) if m else text


class ReasoningStage(Stage):
    """Splits streamed text into reasoning and answer events; sets ``Completion.reasoning``."""

    def __init__(self, fmt: ThinkFormat, inside: bool = False) -> None:
        self.fmt = fmt
        self.state = "thinking" if inside else "start"  # start -> thinking -> answer
        self.inside = inside
        self.buf = ""
        self.lead = False  # right after the thinking: the answer's leading space is dropped
        self.ended = False  # gpt-oss: the final channel's end marker was seen (the rest is not answer)
        self.in_final = False  # gpt-oss: the final channel's header was seen (its text is the answer)

    def on_event(self, event: Event) -> Iterable[Event]:
        kind, payload = event
        if kind != "delta":
            return (event,)
        self.buf += payload  # type: ignore[operator]
        out: list[Event] = []
        while True:
            if self.state == "start":
                stripped = self.buf.lstrip()
                if stripped.startswith(self.fmt.open):
                    self.buf = stripped[len(self.fmt.open):]
                    self.state = "thinking"
                    continue
                if stripped and not self.fmt.open.startswith(stripped[: len(self.fmt.open)]):
                    self.state = "answer"  # the reply did not open with thinking
                    continue
                return out  # not enough text to tell yet
            if self.state == "thinking":
                i = self.buf.find(self.fmt.close)
                if i >= 0:
                    if self.buf[:i]:
                        out.append(("reasoning", self.buf[:i]))
                    self.buf = self.buf[i + len(self.fmt.close):]
                    self.state, self.lead = "answer", True
                    continue
                keep = partial_suffix(self.buf, self.fmt.close)
                if len(self.buf) > keep:
                    out.append(("reasoning", self.buf[: len(self.buf) - keep]))
                    self.buf = self.buf[len(self.buf) - keep:]
                return out
            if self.fmt.name == "gpt-oss" and not self.in_final:  # answer: after the final-channel header
                i = self.buf.find(_HARMONY_FINAL)
                if i < 0:
                    return out  # the header is still coming (or another channel is being written)
                self.buf, self.in_final = self.buf[i + len(_HARMONY_FINAL):], True
            if self.lead:
                self.buf = self.buf.lstrip()
                self.lead = not self.buf
            if self.fmt.name == "gpt-oss":
                self.buf, self.ended = _before_end(self.buf, self.ended)
                keep = max(partial_suffix(self.buf, m) for m in _HARMONY_ENDS)
                chunk, self.buf = self.buf[: len(self.buf) - keep], self.buf[len(self.buf) - keep:]
                if chunk:
                    out.append(("delta", chunk))
                return out
            if self.buf:
                out.append(("delta", self.buf))
                self.buf = ""
            return out

    def on_end(self, result: Completion) -> Iterable[Event]:
        if self.fmt.name == "gpt-oss" and self.state == "answer":
            rest, _ = _before_end(self.buf, self.ended) if self.in_final else ("", True)
            return (("delta", rest),) if rest else ()
        if self.state == "answer" and self.buf:
            return (("delta", self.buf),)
        if self.state == "start" and self.buf:  # a short reply that never opened thinking
            return (("delta", self.buf),)
        return ()

    def on_result(self, result: Completion) -> Completion:
        reasoning, answer = split(result.text, self.fmt, self.inside)
        result.reasoning = reasoning or None
        result.text = answer
        return result


_HARMONY_FINAL = "<|channel|>final<|message|>"
_HARMONY_ENDS = ("<|end|>", "<|return|>")


def _before_end(text: str, ended: bool) -> tuple[str, bool]:
    """gpt-oss: the answer text before the final channel's end marker (nothing once it was seen)."""
    if ended:
        return "", True
    cut = min((i for i in (text.find(m) for m in _HARMONY_ENDS) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def json_after_thinking(grammar: str, fmt: ThinkFormat, inside: bool = False) -> str:
    """A grammar that lets the reply think first, then holds the answer to ``grammar`` (GBNF with ``root``).

    The thinking may not contain ``<`` followed by ``/`` before its close marker (a plain-text
    approximation of "anything but the close marker" that GBNF can say)."""
    body = re.sub(r"^root ::=", "rs-answer ::=", grammar, flags=re.M)
    close = fmt.close.replace("\\", "\\\\").replace('"', '\\"')
    open_ = fmt.open.replace("\\", "\\\\").replace('"', '\\"')
    lead = "" if inside else f'"{open_}" '
    return (f'root ::= {lead}rs-thought "{close}" rs-ws rs-answer\n'
            'rs-thought ::= ([^<] | "<" [^/])*\n'
            "rs-ws ::= [ \\t\\n]{0,4}\n" + body)


def for_request(spec: GenerationSpec, template: Optional[str]) -> tuple[GenerationSpec, list[Stage]]:
    """The spec and leading stages a chat request needs on a model whose template is ``template``:
    a ``ReasoningStage`` for thinking models (with the markers kept as text, and a grammar that
    lets the thinking come first); nothing for other models or raw completions."""
    import dataclasses

    fmt = detect(template) if spec.messages is not None else None
    if fmt is None:
        return spec, []
    off = (spec.template_kwargs or {}).get("enable_thinking") is False
    inside = not off and opens_in_prompt(template or "", fmt.open)
    changes: dict = {"think_markers": (fmt.open, fmt.close), "think_inside": inside}
    if fmt.special and not spec.keep_special:
        changes["keep_special"] = True
    if spec.grammar and not off:
        changes["grammar"] = json_after_thinking(spec.grammar, fmt, inside)
    return dataclasses.replace(spec, **changes), [ReasoningStage(fmt, inside)]
