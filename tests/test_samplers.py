"""The llama.cpp sampler chain on the real SmolLM2 model: each sampler of ``lmnb.params.SAMPLING``
changes the reply as its help text says, and a fixed seed still reproduces a reply.

Effects are measured on the model's own probabilities (``logprobs``: the log-softmax of the raw
logits, before any sampler), with fixed seeds and wide margins, never on timing.
"""

from __future__ import annotations

import ctypes
import math

import llama_cpp as C
import psutil
import pytest

import lmnb
from lmnb.engine.engine import resolve_sampling
from lmnb.engine.sampler import Sampler, seed32
from lmnb.types import SamplingParams

QUESTION = "Name a fruit."
STORY = "The history of the city begins"
LOOP = "apple, banana, cherry, apple, banana, cherry, apple, banana, cherry,"
# temperature 1.5 with every other filter off: the whole vocabulary is in play, tails included
WILD = dict(temperature=1.5, top_k=0, top_p=1.0, min_p=0.0, repeat_penalty=1.0)
SEEDS = (1, 2)


def token_bytes(c) -> list[bytes]:
    """The reply's tokens, as bytes (needs ``logprobs`` set on the request)."""
    return [bytes(e["bytes"]) for e in c.logprobs]


def one_token(text: str) -> tuple[int, bytes]:
    """The id and bytes of ``text``, which must be a single token."""
    toks = lmnb.get_engine().tokenize(text, special=False)
    assert len(toks) == 1, toks
    return toks[0][0], toks[0][1]


def mean_logprob(prompt: str, n: int = 10, **params) -> float:
    """Mean model logprob of the tokens chosen over ``SEEDS`` (higher: fewer unlikely picks)."""
    lps = []
    for seed in SEEDS:
        c = lmnb.complete(prompt, max_tokens=n, seed=seed, logprobs=0, **params)
        lps += [e["logprob"] for e in c.logprobs]
    assert lps
    return sum(lps) / len(lps)


def longest_repeat(seq: list) -> int:
    """Length of the longest run of tokens that occurs at least twice in ``seq`` (overlaps allowed)."""
    best = 0
    for n in range(1, len(seq)):
        seen = set()
        found = False
        for i in range(len(seq) - n + 1):
            gram = tuple(seq[i : i + n])
            if gram in seen:
                found = True
                break
            seen.add(gram)
        if not found:
            break
        best = n
    return best


_baseline: list[float] = []


@pytest.fixture
def wild_baseline(loaded) -> float:
    """Mean logprob at temperature 1.5 with no filter at all (computed once, shared by the filter tests)."""
    if not _baseline:
        _baseline.append(mean_logprob(STORY, **WILD))
    return _baseline[0]


# --- logit bias ----------------------------------------------------------------------------------
def test_logit_bias_minus_100_bans_the_greedy_token(loaded):
    greedy = lmnb.chat(QUESTION, temperature=0, max_tokens=6, logprobs=0)
    first = token_bytes(greedy)[0]
    tok, b = one_token(first.decode())
    assert b == first
    banned = lmnb.chat(QUESTION, temperature=0, max_tokens=6, logprobs=0, logit_bias={tok: -100})
    assert first not in token_bytes(banned)
    assert banned.text != greedy.text


def test_logit_bias_plus_100_forces_the_token(loaded):
    tok, b = one_token(" banana")
    c = lmnb.chat(QUESTION, temperature=0, max_tokens=4, logprobs=0, logit_bias={str(tok): 100})  # JSON keys
    assert token_bytes(c) == [b] * 4
    assert c.text == " banana" * 4


@pytest.mark.parametrize(
    "bias, message",
    [
        ({10**6: 1.0}, r"logit_bias: token id 1000000 is out of range \(this model has \d+ tokens\)"),
        ({5: 500}, r"logit_bias\[5\]=500: the bias must be a number in \[-100, 100\]"),
        ({"abc": 1.0}, r"logit_bias: 'abc' is not a token id"),
    ],
)
def test_logit_bias_invalid_is_a_clear_value_error(loaded, bias, message):
    with pytest.raises(ValueError, match=message):
        lmnb.chat(QUESTION, temperature=0, max_tokens=2, logit_bias=bias)


def test_logit_bias_token_just_past_the_vocabulary(loaded):
    # the vocabulary size, from the error itself; then its edge: n_vocab - 1 is a valid id
    with pytest.raises(ValueError) as err:
        lmnb.chat(QUESTION, temperature=0, max_tokens=1, logit_bias={10**6: 1.0})
    n_vocab = int(str(err.value).split("this model has ")[1].split()[0])
    with pytest.raises(ValueError, match=f"token id {n_vocab} is out of range"):
        lmnb.chat(QUESTION, temperature=0, max_tokens=1, logit_bias={n_vocab: 1.0})
    c = lmnb.chat(QUESTION, temperature=0, max_tokens=1, logit_bias={n_vocab - 1: -100})
    assert c.usage.completion_tokens == 1


# --- DRY -----------------------------------------------------------------------------------------
def test_dry_shortens_the_longest_repetition(loaded):
    plain = lmnb.complete(LOOP, temperature=0, max_tokens=24, repeat_penalty=1.0, logprobs=0)
    dry = lmnb.complete(LOOP, temperature=0, max_tokens=24, repeat_penalty=1.0, logprobs=0, dry_multiplier=0.8)
    loop, kept = longest_repeat(token_bytes(plain)), longest_repeat(token_bytes(dry))
    assert loop >= 8, plain.text  # greedy decoding of a list falls into a loop
    assert kept <= loop // 2, (plain.text, dry.text)


def test_dry_window_limits_what_it_sees(loaded):
    """dry_penalty_last_n=3 with dry_allowed_length=2: too short a window to ever penalize, so the
    reply is the greedy one; 0 is off as well."""
    plain = lmnb.complete(LOOP, temperature=0, max_tokens=8, repeat_penalty=1.0)
    for last_n in (0, 3):
        c = lmnb.complete(LOOP, temperature=0, max_tokens=8, repeat_penalty=1.0, dry_multiplier=0.8,
                          dry_penalty_last_n=last_n)  # fmt: skip
        assert c.text == plain.text


# --- XTC -----------------------------------------------------------------------------------------
def _xtc_case():
    """A threshold between two well-separated top probabilities of the first reply token, and the
    token XTC must then pick: the least likely of those above it."""
    greedy = lmnb.chat(QUESTION, temperature=0, max_tokens=1, logprobs=20, repeat_penalty=1.0)
    top = [(math.exp(e["logprob"]), bytes(e["bytes"])) for e in greedy.logprobs[0]["top_logprobs"]]
    for i in range(1, len(top) - 1):
        hi, lo = top[i][0], top[i + 1][0]
        if hi / lo > 1.15 and hi < 0.5:
            return greedy, math.sqrt(hi * lo), top[i][1]
    pytest.skip("no clear gap among the top probabilities")


def test_xtc_drops_the_top_choices_but_the_least_likely(loaded):
    greedy, threshold, expected = _xtc_case()
    c = lmnb.chat(QUESTION, temperature=0, max_tokens=1, logprobs=0, repeat_penalty=1.0, top_k=0, top_p=1.0,
                  min_p=0.0, xtc_probability=1.0, xtc_threshold=threshold)  # fmt: skip
    assert token_bytes(c) == [expected]
    assert token_bytes(c) != token_bytes(greedy)


def test_xtc_with_a_grammar_picks_the_same_token(loaded):
    """The grammar path samples over its own buffer; XTC moves the array's start past the top
    choices, which that path must follow."""
    _, threshold, expected = _xtc_case()
    c = lmnb.chat(QUESTION, temperature=0, max_tokens=1, logprobs=0, repeat_penalty=1.0, top_k=0, top_p=1.0,
                  min_p=0.0, xtc_probability=1.0, xtc_threshold=threshold, grammar="root ::= [^\\n]+")  # fmt: skip
    assert token_bytes(c) == [expected]


def test_xtc_off_above_half_or_at_zero_probability(loaded):
    greedy = lmnb.chat(QUESTION, temperature=0, max_tokens=3)
    for kw in (dict(xtc_probability=1.0, xtc_threshold=0.6), dict(xtc_probability=0.0, xtc_threshold=0.01)):
        assert lmnb.chat(QUESTION, temperature=0, max_tokens=3, **kw).text == greedy.text


# --- typical, top-n-sigma ------------------------------------------------------------------------
def test_typical_p_drops_unlikely_tokens(loaded, wild_baseline):
    typical = mean_logprob(STORY, typical_p=0.5, **WILD)
    assert typical > wild_baseline + 2.0, (typical, wild_baseline)


def test_top_n_sigma_drops_unlikely_tokens(loaded, wild_baseline):
    sigma = mean_logprob(STORY, top_n_sigma=1.0, **WILD)
    assert sigma > wild_baseline + 2.0, (sigma, wild_baseline)


def test_top_n_sigma_zero_keeps_only_the_best_token(loaded):
    """n = 0: only the best logit is within 0 standard deviations of itself: greedy, at any temperature."""
    greedy = lmnb.chat(QUESTION, temperature=0, max_tokens=8)
    c = lmnb.chat(QUESTION, temperature=1.5, top_k=0, top_p=1.0, min_p=0.0, top_n_sigma=0.0, max_tokens=8, seed=3)
    assert c.text == greedy.text


# --- mirostat ------------------------------------------------------------------------------------
@pytest.mark.parametrize("version", [1, 2])
def test_mirostat_low_tau_gives_less_surprise(loaded, version):
    # mirostat replaces top-k/top-p/min-p; temperature 1.5 leaves it the whole tail to steer away from
    focused = -mean_logprob(STORY, n=8, mirostat=version, mirostat_tau=1.0, **WILD)
    loose = -mean_logprob(STORY, n=8, mirostat=version, mirostat_tau=8.0, **WILD)
    assert focused + 2.0 < loose, (focused, loose)


def test_mirostat_at_temperature_zero_is_greedy(loaded):
    greedy = lmnb.chat(QUESTION, temperature=0, max_tokens=6)
    assert lmnb.chat(QUESTION, temperature=0, max_tokens=6, mirostat=2, mirostat_tau=8.0, seed=4).text == greedy.text


# --- seeds ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kw",
    [
        dict(typical_p=0.7),
        dict(top_n_sigma=1.5),
        dict(xtc_probability=0.5, xtc_threshold=0.05),
        dict(dry_multiplier=0.8),
        dict(mirostat=1),
        dict(mirostat=2),
        dict(logit_bias={13: -5.0}),
    ],
    ids=["typical", "top_n_sigma", "xtc", "dry", "mirostat1", "mirostat2", "logit_bias"],
)
def test_fixed_seed_reproduces_with_each_sampler(loaded, kw):
    a = lmnb.complete(STORY, temperature=1.0, max_tokens=5, seed=1234, **kw)
    b = lmnb.complete(STORY, temperature=1.0, max_tokens=5, seed=1234, **kw)
    assert a.text == b.text and a.usage.completion_tokens > 0


def test_any_int64_seed_uses_its_low_32_bits(loaded):
    kw = dict(temperature=1.5, max_tokens=5, top_k=0, top_p=1.0, min_p=0.0)
    base = lmnb.complete(STORY, seed=7, **kw).text
    assert lmnb.complete(STORY, seed=2**40 + 7, **kw).text == base
    # low bits all ones would be llama.cpp's "random seed": such a seed must still reproduce
    for seed in (2**32 - 1, -1 - 2**32):
        assert lmnb.complete(STORY, seed=seed, **kw).text == lmnb.complete(STORY, seed=seed, **kw).text


def test_seed32_keeps_low_bits_and_avoids_llama_cpps_random_seed():
    assert seed32(7) == seed32(2**40 + 7) == 7
    assert seed32(-1) != 0xFFFFFFFF and seed32(2**32 - 1) != 0xFFFFFFFF
    assert 0 <= seed32(-(2**63)) < 2**32 and 0 <= seed32(2**63 - 1) < 2**32


# --- the chain alone, on made-up logits (no model: exact and instant) ---------------------------
def pick(sampler: Sampler, logits: list[float]) -> int:
    """Run the sampler's chain over ``logits`` (token i has logits[i]); the token it selects."""
    n = len(logits)
    data = (C.llama_token_data * n)(*[C.llama_token_data(i, x, 0.0) for i, x in enumerate(logits)])
    arr = C.llama_token_data_array(data=data, size=n, selected=-1, sorted=False)
    C.llama_sampler_apply(sampler._chain, ctypes.byref(arr))
    return int(arr.data[arr.selected].id)


def make(**kw) -> Sampler:
    return Sampler(resolve_sampling(SamplingParams(**kw)), n_vocab=8)


def test_chain_logit_bias_comes_before_greedy():
    logits = [5.0, 4.0, 3.0, 0, 0, 0, 0, 0]
    assert pick(make(temperature=0), logits) == 0
    assert pick(make(temperature=0, logit_bias={0: -100}), logits) == 1
    assert pick(make(temperature=0, logit_bias={"2": 100}), logits) == 2
    with pytest.raises(ValueError, match=r"token id 8 is out of range \(this model has 8 tokens\)"):
        make(logit_bias={8: 1.0})


def test_chain_dry_penalizes_extending_a_repetition_of_the_prompt():
    """History 1 2 3 1 2: token 3 would repeat "1 2 3"; DRY (allowed length 2) takes
    0.8 * 1.75^0 = 0.8 off its logit, so 4 (0.5 behind) wins. Without the prompt, 3 wins."""
    logits = [0, 0, 0, 5.0, 4.5, 0, 0, 0]
    kw = dict(temperature=0, repeat_penalty=1.0, dry_multiplier=0.8, dry_allowed_length=2)
    s = make(**kw)
    assert pick(s, logits) == 3
    s.accept_prompt_tokens([1, 2, 3, 1, 2])
    assert pick(s, logits) == 4
    s2 = make(**kw)
    for t in [1, 2, 3, 1, 2]:
        s2.accept_prompt(t)
    assert pick(s2, logits) == 4
    assert pick(make(**{**kw, "dry_multiplier": 0.0}), logits) == 3


def test_chain_xtc_keeps_the_least_likely_top_choice():
    logits = [math.log(p) for p in (0.5, 0.3, 0.15, 0.04, 0.01)] + [-30.0] * 3
    s = make(temperature=0, top_k=0, top_p=1.0, min_p=0.0, xtc_probability=1.0, xtc_threshold=0.1)
    assert pick(s, logits) == 2  # 0.5 and 0.3 dropped; 0.15 is the last above 0.1


def test_every_sampler_combination_builds_and_frees():
    """Each mode builds (temperature 0 or not; mirostat off, 1, 2; every filter on), close() is
    idempotent, and building and freeing many chains leaks nothing (each DRY holds 800 kB here)."""
    full = dict(typical_p=0.9, top_n_sigma=2.0, xtc_probability=0.5, xtc_threshold=0.1, dry_multiplier=0.8,
                dry_penalty_last_n=100_000, logit_bias={1: 2.0}, presence_penalty=0.5)  # fmt: skip
    for temperature in (0.0, 0.8):
        for mirostat in (0, 1, 2):
            s = make(temperature=temperature, mirostat=mirostat, **full)
            assert pick(s, [1.0, 3.0, 2.0, 0, 0, 0, 0, 0]) in range(8)
            s.close()
            s.close()
    proc = psutil.Process()
    before = proc.memory_info().rss
    for _ in range(300):
        make(temperature=0.8, **full).close()
    assert proc.memory_info().rss - before < 60 * 2**20


class Person(__import__("pydantic").BaseModel):
    name: str
    age: int
    city: str


@pytest.mark.parametrize("kw,narrows", [
    (dict(temperature=0), True),
    (dict(temperature=0, repeat_penalty=1.3, presence_penalty=0.5, logit_bias={"13": -5}), True),
    (dict(temperature=0.8, seed=5), False),  # top_k=40: fewer allowed tokens than that at these steps
    (dict(temperature=1.0, top_k=2, repeat_penalty=1.3, seed=9), True),
])  # fmt: skip
def test_a_grammars_resample_among_the_likeliest_tokens_changes_nothing(loaded, monkeypatch, kw, narrows):
    """A refused pick is resampled first among the most likely tokens where that is exact: the
    replies are token for token those of a resample over the whole vocabulary."""
    from lmnb.engine import sampler as sampler_mod

    settled: list[int] = []
    narrow = sampler_mod.Sampler._pick_narrow

    def spy(self, ctx, idx):
        tok = narrow(self, ctx, idx)
        settled.append(tok)
        return tok

    monkeypatch.setattr(sampler_mod.Sampler, "_pick_narrow", spy)
    prompt = "Invent a person: JSON with name, age and city."
    fast = lmnb.chat(prompt, schema=Person, max_tokens=60, **kw)
    assert settled and any(t >= 0 for t in settled) == narrows  # settled among the likeliest tokens?
    monkeypatch.setattr(sampler_mod, "NARROW", ())
    settled.clear()
    whole = lmnb.chat(prompt, schema=Person, max_tokens=60, **kw)
    assert settled and all(t < 0 for t in settled)  # every resample went over the whole vocabulary
    assert fast.text == whole.text
