"""The teaching views on the real model: tokens, the next-token distribution and its filters,
the explorer, probabilities of a reply, and side-by-side comparisons."""

from __future__ import annotations

import math

import numpy as np
import pytest
from markupsafe import escape

import lmnb
from lmnb.sources.library import bundled_model
from lmnb.teaching import distribution as D

from .conftest import run_cell

PROMPTS = ["The capital of France is", "Once upon a time, a small robot", "def fibonacci(n):"]


@pytest.fixture(scope="module")
def logits(engine, smollm2_path):
    lmnb.load(smollm2_path, n_ctx=2048)
    out = {}
    for p in PROMPTS:
        ids = [t for t, _, _ in engine.tokenize(p, special=False)]
        out[p] = (ids, engine.next_token_logits(ids))
    return out


# ---- the distribution ------------------------------------------------------------------------
def test_the_shown_distribution_sums_to_one(logits):
    for _, z in logits.values():
        for t, k, p, m in [(0.8, 40, 0.95, 0.05), (1.5, 0, 1.0, 0.0), (0.3, 5, 0.5, 0.2), (2.0, 100, 0.99, 0.01)]:
            d = D.shape(z, temperature=t, top_k=k, top_p=p, min_p=m)
            assert math.isclose(d.probs.sum(), 1.0, abs_tol=1e-9)
            assert math.isclose(d.model_probs.sum(), 1.0, abs_tol=1e-9)
            assert (d.probs[d.removed_by != ""] == 0).all()


def test_temperature_towards_zero_puts_all_mass_on_the_argmax(logits):
    for _, z in logits.values():
        best = int(np.argmax(z))
        for t in (0.0, 1e-3):
            d = D.shape(z, temperature=t, top_k=0, top_p=1.0, min_p=0.0)
            assert d.order[0] == best and d.probs[0] > 0.999
        warm = D.shape(z, temperature=1.5, top_k=0, top_p=1.0, min_p=0.0)
        assert warm.probs[0] < d.probs[0]  # warmer: flatter


def test_top_k_keeps_exactly_k(logits):
    _, z = logits[PROMPTS[1]]
    for k in (1, 5, 40):
        d = D.shape(z, temperature=1.0, top_k=k, top_p=1.0, min_p=0.0)
        assert d.kept == k and (d.probs > 0).sum() == k
        assert set(d.order[:k]) == set(np.argsort(-z)[:k])  # the k best


def test_top_p_keeps_the_smallest_set_reaching_p(logits):
    _, z = logits[PROMPTS[1]]
    p0 = D.softmax(z)
    ranked = np.sort(p0)[::-1]
    for p in (0.3, 0.6, 0.9):
        d = D.shape(z, temperature=1.0, top_k=0, top_p=p, min_p=0.0)
        n = d.kept
        assert ranked[:n].sum() >= p - 1e-12  # reaches p
        assert n == 1 or ranked[: n - 1].sum() < p  # and one fewer would not


def test_min_p_removes_tokens_below_min_p_times_the_best(logits):
    _, z = logits[PROMPTS[2]]
    p0 = D.softmax(z)
    for m in (0.05, 0.2, 0.5):
        d = D.shape(z, temperature=1.0, top_k=0, top_p=1.0, min_p=m)
        kept = d.order[d.removed_by == ""]
        assert (p0[kept] >= m * p0.max() * (1 - 1e-9)).all()
        assert int((p0 >= m * p0.max() * (1 + 1e-9)).sum()) <= d.kept
    assert set(D.shape(z, top_k=3, top_p=1, min_p=0).removed_by[3:10]) == {"top_k"}


def test_probabilities_match_llama_cpps_own(logits, smollm2_path):
    from llama_cpp import Llama

    llm = Llama(model_path=smollm2_path, n_ctx=512, n_threads=2, flash_attn=True, logits_all=True, verbose=False)
    try:
        for prompt, (_ids, z) in logits.items():
            r = llm.create_completion(prompt, max_tokens=1, logprobs=10, temperature=0)
            theirs = r["choices"][0]["logprobs"]["top_logprobs"][0]
            logp = np.log(D.softmax(z))
            ours = {lmnb.get_engine().token_bytes([int(t)])[0].decode("utf-8", "replace"): float(logp[t])
                    for t in np.argsort(-z)[:10]}  # fmt: skip
            shared = set(theirs) & set(ours)
            assert len(shared) >= 8, (theirs, ours)
            for tok in shared:
                assert abs(ours[tok] - float(theirs[tok])) < 2e-3, (prompt, tok, ours[tok], theirs[tok])
    finally:
        llm.close()


# ---- tokens ----------------------------------------------------------------------------------
def test_tokens_view_splits_text_and_shows_special_tokens(loaded):
    text = "Tokenizers split <b>words</b> into pieces."
    view = lmnb.tokens(text)
    assert "".join(t.text for t in view) == text and not any(t.special for t in view)
    assert len(view) == len(view.ids) > 5
    page = view._repr_html_()
    assert page.count('class="lmnb-token"') == len(view)
    assert "<b>" not in page and "</b>" not in page and "&lt;/" in page  # shown as text, never rendered
    assert f'title="id {view[0].id}"' in page and f"{len(view)} tokens" in page

    chat = lmnb.tokens("Hi!", chat=True)
    specials = [t.text for t in chat if t.special]
    assert "<|im_start|>" in specials and "<|im_end|>" in specials
    assert len(chat) > len(lmnb.tokens("Hi!"))


# ---- the explorer ----------------------------------------------------------------------------
def test_explorer_reshapes_live_and_samples_reproducibly(loaded):
    from lmnb.widgets import NextTokenExplorer

    a = NextTokenExplorer(PROMPTS[1], seed=3, temperature=1.0, top_k=40, top_p=0.95, min_p=0.05)
    chart = a.chart.value
    assert chart.count('class="lmnb-bar"') == 15
    a.top_k.value = 2  # the filter greys out everything after the two best
    assert a.distribution.kept == 2 and a.chart.value != chart
    assert a.chart.value.count('data-removed="top_k"') == 13
    a.top_k.value = 40

    picks = [a.sample() for _ in range(4)]
    b = NextTokenExplorer(PROMPTS[1], seed=3, temperature=1.0, top_k=40, top_p=0.95, min_p=0.05)
    assert [b.sample() for _ in range(4)] == picks  # same seed, same clicks: same text
    assert a.text == b.text and a.text
    assert str(escape(a.text)) in a.text_view.value  # the pane shows the text grown

    a.undo()
    assert a.tokens == picks[:3]
    assert a.sample() == picks[3]  # undo rewinds the draws too
    a.temperature.value = 0
    best = int(a.distribution.order[0])
    assert a.greedy() == best and a.tokens[-1] == best
    assert "most likely" in a.message.value


# ---- probabilities of a reply ----------------------------------------------------------------
def test_show_probs_colours_each_token_with_alternatives(shell):
    result, cap = run_cell(shell, "--show-probs -n 12 -t 0", "Name a colour.")
    assert result.success, result.error_in_exec
    html_out = [o.data["text/html"] for o in cap.outputs if "text/html" in o.data and "lmnb-probs" in
                o.data["text/html"]]  # fmt: skip
    assert html_out, [o.data.keys() for o in cap.outputs]
    page = html_out[-1]
    n = page.count('class="lmnb-prob"')
    assert n >= 3
    ps = [float(x.split('"')[0]) for x in page.split('data-p="')[1:]]
    assert len(ps) == n and all(0 < p <= 1 for p in ps)
    assert page.count("%") > n  # each token's title lists alternatives with their percentages


def test_token_probs_from_the_api(loaded):
    r = lmnb.chat("Say yes.", max_tokens=6, temperature=0, logprobs=3)
    view = lmnb.token_probs(r)
    assert "".join(e["token"] for e in view.entries) == r.text
    with pytest.raises(ValueError, match="logprobs"):
        lmnb.token_probs(lmnb.chat("Say yes.", max_tokens=3))


# ---- compare ---------------------------------------------------------------------------------
def test_compare_settings_and_models_side_by_side(loaded, smollm2_path):
    cmp = lmnb.compare("Name a fruit.", settings=[{"temperature": 0}, {"temperature": 1.3, "seed": 5}],
                       models=[smollm2_path, bundled_model("gemma3")], max_tokens=12)  # fmt: skip
    assert len(cmp) == 4
    assert [r.settings["temperature"] for r in cmp.runs] == [0, 1.3, 0, 1.3]
    assert cmp[0].model != cmp[2].model
    assert all(r.text and r.tokens > 0 and r.tokens_per_s > 0 for r in cmp.runs)
    page = cmp._repr_html_()
    assert page.count('class="lmnb-compare-run"') == 4 and "tok/s" in page
    assert lmnb.status().model.path == smollm2_path  # the model loaded before is back
    assert list(cmp.to_dataframe().columns)[:2] == ["model", "temperature"]
