"""Every sampling and load parameter, declared once.

A ``Param`` says everything about one parameter: its type, session default, valid range, help
text, command-line flags, its name in OpenAI-style requests, and how the Parameters pane draws
it. Every surface is built from these two tables: the ``LM`` config traits, the ``%%lm``/``%lm
load`` and ``lmnb`` CLI flags (and their help), ``SamplingParams.validate``, the server's request
schema, the Parameters pane and the lab side panel, presets, and the remote backend's mapping.

To add a sampler: declare it in ``SAMPLING`` and give ``engine/sampler.py`` the llama.cpp call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

INF = float("inf")


@dataclass(frozen=True)
class Param:
    """One parameter's declaration."""

    name: str
    type: type  # float, int, bool, str, list (stop strings), dict (logit_bias)
    default: Any  # the session default (the LM trait's)
    help: str  # one line, for the config, the flags and the Parameters pane
    lo: float = -INF  # valid range, inclusive...
    hi: float = INF
    lo_open: bool = False  # ...unless open at that end
    special: tuple = ()  # values allowed outside the range, with a meaning given in ``help``
    choices: tuple = ()  # the only values of a named setting (context_overflow); the flags and schema list them
    flags: tuple[str, ...] = ()  # command-line flags; default ``--name-with-dashes``
    openai: Optional[str] = None  # the field's name in OpenAI requests; None: a llama.cpp extension
    server: bool = True  # accepted in server requests (under ``openai`` or its own name)
    style: bool = False  # part of a sampling preset (how to pick tokens, not how long or where to stop)
    widget: Optional[tuple] = None  # the pane's control: ("slider", lo, hi, step), ("int", lo, hi), ...
    group: str = "sampling"  # the pane's section: sampling, penalties, advanced, length, load
    brief: bool = False  # always shown in summaries (the lab side panel); others only when changed

    @property
    def cli_flags(self) -> tuple[str, ...]:
        return self.flags or ("--" + self.name.replace("_", "-"),)

    @property
    def range_text(self) -> str:
        """The valid values in words, as every error message says them."""
        if self.choices:
            return "one of " + ", ".join(map(str, self.choices))
        if self.type in (bool, str, list, dict):
            return ""
        lo, hi = self.lo, self.hi
        if lo == -INF and hi == INF:
            text = "any number"
        elif hi == INF:
            text = f"> {_num(lo)}" if self.lo_open else f">= {_num(lo)}"
        elif lo == -INF:
            text = f"<= {_num(hi)}"
        else:
            text = f"in {'(' if self.lo_open else '['}{_num(lo)}, {_num(hi)}]"
        if self.special:
            text += ", or " + " or ".join(_num(v) for v in self.special)
        return text

    def check(self, value: Any) -> Any:
        """``value`` if valid for this parameter; else ``ValueError`` saying the valid range."""
        if value is None:
            return value
        if self.choices:
            if value not in self.choices:
                raise ValueError(f"{self.name}={value!r}: must be {self.range_text}")
            return value
        if self.type in (float, int):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{self.name}={value!r}: expected a number")
            if self.type is int and isinstance(value, float):
                if not value.is_integer():
                    raise ValueError(f"{self.name}={value!r}: expected an integer")
                value = int(value)
            if value in self.special:
                return value
            low_ok = value > self.lo if self.lo_open else value >= self.lo
            if not (low_ok and value <= self.hi):
                raise ValueError(f"{self.name}={value!r}: must be {self.range_text}")
        return value

    def json_schema(self) -> dict[str, Any]:
        """The parameter's range as JSON Schema keywords (for the server's request schema)."""
        out: dict[str, Any] = {}
        if self.choices:
            out["enum"] = list(self.choices)
        if self.type in (float, int) and not self.special:
            if self.lo != -INF:
                out["exclusiveMinimum" if self.lo_open else "minimum"] = self.lo
            if self.hi != INF:
                out["maximum"] = self.hi
        return out


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else str(v)


SEED_MAX = 2**63 - 1  # OpenAI takes any int64; llama.cpp uses its low 32 bits

SAMPLING: tuple[Param, ...] = (
    Param("temperature", float, 0.8, brief=True, lo=0, hi=2, flags=("-t", "--temperature"), openai="temperature", style=True,
          widget=("slider", 0.0, 2.0, 0.05),
          help="Randomness: low values pick the likely tokens, high values take more chances "
               "(0 = always the most likely token, the same reply every time)."),
    Param("top_p", float, 0.95, brief=True, lo=0, hi=1, openai="top_p", style=True, widget=("slider", 0.0, 1.0, 0.01),
          help="Nucleus sampling: keep only the most likely tokens whose probabilities add up to top_p "
               "(1 = off, 0 = only the most likely token)."),
    Param("top_k", int, 40, brief=True, lo=0, style=True, widget=("islider", 0, 200, 1),
          help="Keep only the k most likely tokens before sampling (0 = off)."),
    Param("min_p", float, 0.05, brief=True, lo=0, hi=1, style=True, widget=("slider", 0.0, 1.0, 0.01),
          help="Drop tokens less than min_p times as likely as the best one; adapts to how sure the model is "
               "(0 = off)."),
    Param("typical_p", float, 1.0, lo=0, hi=1, style=True, widget=("slider", 0.0, 1.0, 0.01), group="advanced",
          help="Locally typical sampling: keep the tokens whose surprise is closest to the expected surprise, "
               "up to this probability mass (1 = off)."),
    Param("top_n_sigma", float, -1.0, lo=0, special=(-1,), style=True, widget=("float", -1.0, 10.0, 0.1),
          group="advanced",
          help="Keep tokens whose logit is within n standard deviations of the best one; robust at high "
               "temperature (-1 = off)."),
    Param("xtc_probability", float, 0.0, lo=0, hi=1, style=True, widget=("slider", 0.0, 1.0, 0.01),
          group="advanced",
          help="Exclude Top Choices: with this probability per token, drop the most likely tokens above "
               "xtc_threshold but the last, for more varied text (0 = off)."),
    Param("xtc_threshold", float, 0.1, lo=0, hi=1, style=True, widget=("slider", 0.0, 1.0, 0.01),
          group="advanced",
          help="XTC: tokens at least this likely count as top choices (above 0.5 XTC does nothing)."),
    Param("repeat_penalty", float, 1.1, brief=True, lo=0, lo_open=True, hi=10, style=True, widget=("slider", 0.5, 2.0, 0.05),
          group="penalties",
          help="Make tokens seen in the last 64 (prompt included) less likely, against loops (1.0 = off)."),
    Param("presence_penalty", float, 0.0, lo=-2, hi=2, openai="presence_penalty", style=True,
          widget=("slider", -2.0, 2.0, 0.05), group="penalties",
          help="Push away from any token already used in the last 64, however often: new topics (0 = off)."),
    Param("frequency_penalty", float, 0.0, lo=-2, hi=2, openai="frequency_penalty", style=True,
          widget=("slider", -2.0, 2.0, 0.05), group="penalties",
          help="Push away from tokens by how often they were used in the last 64: less repetition (0 = off)."),
    Param("dry_multiplier", float, 0.0, lo=0, hi=5, style=True, widget=("slider", 0.0, 5.0, 0.05), group="advanced",
          help="DRY (Don't Repeat Yourself): penalize a token that would extend a sequence already seen, "
               "growing with its length (0 = off; 0.8 is a usual value)."),
    Param("dry_base", float, 1.75, lo=1, hi=4, style=True, widget=("slider", 1.0, 4.0, 0.05), group="advanced",
          help="DRY: how fast the penalty grows with each token of repetition beyond dry_allowed_length."),
    Param("dry_allowed_length", int, 2, lo=0, hi=100, style=True, widget=("int", 0, 100), group="advanced",
          help="DRY: repeated sequences up to this many tokens are not penalized."),
    Param("dry_penalty_last_n", int, -1, lo=0, special=(-1,), style=True, widget=("int", -1, 1_000_000),
          group="advanced", help="DRY: how many recent tokens are searched for repetitions (-1 = this request's context length)."),
    Param("mirostat", int, 0, lo=0, hi=2, style=True, widget=("choice", (0, 1, 2)), group="advanced",
          help="Mirostat: steer the sampling to keep the text's surprise near mirostat_tau (1 or 2 = the "
               "algorithm's version; 0 = off). It replaces top-n σ, top-k, top-p, min-p, typical and XTC."),
    Param("mirostat_tau", float, 5.0, lo=0, hi=20, style=True, widget=("slider", 0.0, 20.0, 0.1), group="advanced",
          help="Mirostat: the target surprise (cross-entropy) of the text; lower is more focused."),
    Param("mirostat_eta", float, 0.1, lo=0, hi=1, style=True, widget=("slider", 0.0, 1.0, 0.01), group="advanced",
          help="Mirostat: how fast it corrects towards mirostat_tau."),
    Param("logit_bias", dict, {}, openai="logit_bias", group="advanced",
          help="Add to chosen tokens' logits: {token id: bias}, bias in [-100, 100]; -100 bans the token, "
               "+100 all but forces it."),
    Param("max_tokens", int, 1024, brief=True, lo=1, special=(-1,), flags=("-n", "--max-tokens"), openai="max_tokens",
          widget=("int", -1, 10_000_000), group="length",
          help="The longest reply, in tokens (-1 = until the model stops or the context is full)."),
    Param("seed", int, -1, lo=-(2**63), hi=SEED_MAX, openai="seed", widget=("int", -1, SEED_MAX), group="length",
          help="Random seed: the same seed, prompt and settings give the same reply "
               "(-1 = a new seed per request; it is recorded)."),
    Param("stop", list, [], openai="stop", group="length", help="Extra stop strings (repeatable)."),
    Param("context_overflow", str, "stop", choices=("stop", "truncate_middle", "rolling_window"),
          widget=("choice", ("stop", "truncate_middle", "rolling_window")), group="length",
          help="When a chat no longer fits the context with room for the reply (max_tokens, at most half the "
               "context; 512 tokens when unlimited): stop = fail with a clear error; truncate_middle = keep the "
               "system prompt and the first turn, leave out the oldest turns after it; rolling_window = keep the "
               "system prompt, leave out the oldest turns. Whole turns are left out of the prompt, never the "
               "last one, and never from the conversation's history."),
    Param("reasoning_budget", int, -1, lo=0, special=(-1,), widget=("int", -1, 1_000_000), group="length",
          help="Reasoning models: the most tokens of thinking before the answer is started for them "
               "(-1 = no limit, 0 = no thinking)."),
)

LOGIT_BIAS_RANGE = (-100.0, 100.0)

LOAD: tuple[Param, ...] = (
    Param("n_ctx", int, 4096, brief=True, lo=0, flags=("--ctx",), group="load", widget=("int", 0, 10_000_000, 256),
          help="Context length: how many tokens (prompt + reply) the model can see at once; more costs memory "
               "(0 = the model's trained length)."),
    Param("n_gpu_layers", str, "auto", flags=("--gpu-layers",), group="load", widget=("text",),
          help="Layers to run on the GPU: an integer (0 = CPU only), 'auto' (all of them when llama.cpp was "
               "built with GPU support) or 'max'."),
    Param("n_threads", int, 0, lo=0, hi=1024, flags=("--threads",), group="load", widget=("int", 0, 1024),
          help="CPU threads for generation (0 = one per physical core)."),
    Param("n_batch", int, 512, lo=1, flags=("--batch",), group="load",
          help="Prompt tokens evaluated per llama_decode call."),
    Param("n_parallel", int, 4, brief=True, lo=1, hi=64, flags=("--parallel",), group="load",
          help="Requests decoded together in each step (continuous batching): concurrent server clients, "
               "widgets and cells run side by side instead of waiting in line. They share the n_ctx cells of "
               "one KV cache, so each can use the whole context while the others leave room. lmnb.map "
               "raises it for its batch, then gives it back."),
    Param("batch_invariant", bool, False, flags=("--batch-invariant",), group="load", widget=("check",),
          help="Replies identical alone and in a batch: each parallel sequence gets its own KV stream of "
               "n_ctx / n_parallel cells (in one shared cache, where a reply's cells land depends on the "
               "others, which can change a greedy reply after a few dozen tokens)."),
    Param("flash_attn", bool, True, group="load", widget=("check",),
          help="Flash attention: a fused attention kernel that saves memory and time, used wherever the "
               "backend has it. It also keeps greedy replies identical whether decoded alone or in a batch."),
    Param("use_mmap", bool, True, flags=("--mmap",), group="load",
          help="Memory-map the model file instead of reading it into RAM."),
    Param("chat_template", str, "", flags=("--chat-template",), group="load",
          help="Jinja chat template overriding the one in the GGUF file ('' = the file's own)."),
)

BY_NAME: dict[str, Param] = {p.name: p for p in SAMPLING + LOAD}


def check_logit_bias(bias: Any, n_vocab: Optional[int] = None) -> dict[int, float]:
    """``{token id: bias}`` from a dict whose keys may be strings (OpenAI's JSON); ``ValueError``
    names the bad entry."""
    if bias is None:
        return {}
    if not isinstance(bias, dict):
        raise ValueError(f"logit_bias={bias!r}: expected a mapping of token id to bias")
    out: dict[int, float] = {}
    lo, hi = LOGIT_BIAS_RANGE
    for key, value in bias.items():
        try:
            token = int(key)
        except (TypeError, ValueError):
            raise ValueError(f"logit_bias: {key!r} is not a token id (an integer)") from None
        if token < 0 or (n_vocab is not None and token >= n_vocab):
            limit = f" (this model has {n_vocab} tokens)" if n_vocab is not None else ""
            raise ValueError(f"logit_bias: token id {token} is out of range{limit}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
            raise ValueError(f"logit_bias[{token}]={value!r}: the bias must be a number in [-100, 100]")
        out[token] = float(value)
    return out


def sampling_defaults(source: Any = None) -> dict[str, Any]:
    """``{name: default}`` for every sampling parameter, read from ``source`` (an ``LM``) when given."""
    return {p.name: (getattr(source, p.name) if source is not None else p.default) for p in SAMPLING}


def style_names() -> tuple[str, ...]:
    """The parameters a sampling preset sets."""
    return tuple(p.name for p in SAMPLING if p.style)
