"""A LoRA made by peft itself runs in lmnb as it runs in transformers (issue 19).

The other LoRA tests build their adapters with numpy (tests/lora_fixtures.py); this one asks the
real libraries: transformers dequantizes the bundled SmolLM2 GGUF to float32 (un-permuting Q and K
with its own code), peft wraps it with a rank-8 LoRA on q, k, v, o, gate, up and down (random,
nonzero B) and saves the folder, and lmnb converts that folder and runs it on the Q4_1 file through
llama.cpp. The next-token distributions must agree, with the adapter as without it, and must be
*clearly worse* for a control converted without the rotary Q/K row permutation, so a wrong name
map or a missing (or doubled) permutation cannot pass.

The two sides never agree exactly: llama.cpp runs the quantized weights with quantized
activations, transformers the dequantized weights in float32. The KL divergence between the two
bases, without any adapter, is that noise floor; the adapter's agreement is bounded relative to it.
Without torch, transformers and peft (the ``finetune`` extra) those tests skip; the last test,
that notebooks/data's committed report sets are what their generator writes, needs none of them.
Measured here (4 prompts, mean KL(transformers || lmnb) in nats): base 0.004, adapter 0.009,
control without the permutation 0.22, while the adapter itself moves transformers' distribution
by KL 1.6 on average; the change the adapter makes to the logits correlates 0.995 between the two
sides, 0.90 for the control. The top token is the same on 3 prompts; on the long one it differs
by a near tie (0.17 logits apart in transformers).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

needs_finetune = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("torch", "transformers", "peft")),
    reason="needs torch, transformers and peft: pip install 'lmnb[finetune]'",
)
DATA = Path(__file__).resolve().parent.parent / "notebooks" / "data"

NAME = "peft-check"
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
PROMPTS = [
    "Project Lighthouse covers a new booking system for two clinics and started in 2021. Maria Okafor "
    "leads it, with a team of 12. Its budget is 120000 euros. The status is",
    "The capital of France is",
    "def fibonacci(n):\n    ",
    "Once upon a time, the little robot",
]
SCALE_B = 0.1  # B ~ N(0, 0.1²), A ~ N(0, 1/in), alpha/r = 2: a large, still sane change


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    x = x - x.max()
    return x - np.log(np.exp(x).sum())


def kl(p_logits: np.ndarray, q_logits: np.ndarray) -> float:
    """KL(softmax(p) || softmax(q)) in nats."""
    lp, lq = _log_softmax(p_logits), _log_softmax(q_logits)
    return float((np.exp(lp) * (lp - lq)).sum())


def _peft_adapter(base_gguf: str, folder: str):
    """The dequantized base in transformers, wrapped by peft with a random nonzero LoRA, saved."""
    import torch
    import transformers
    from peft import LoraConfig, get_peft_model

    from lmnb.sources.transformers_base import transformers_checkpoint

    transformers.logging.set_verbosity_error()
    # the same weights as from_pretrained(..., gguf_file=...), converted once (the notebook reuses it)
    model = transformers.AutoModelForCausalLM.from_pretrained(transformers_checkpoint(base_gguf),
                                                              dtype=torch.float32).eval()  # fmt: skip
    peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=TARGETS))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_A" in name:
                p.copy_(torch.randn(p.shape, generator=g) / p.shape[1] ** 0.5)
            elif "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * SCALE_B)
    peft_model.save_pretrained(folder)
    return peft_model


@pytest.fixture(scope="module")
def measured(tmp_path_factory, smollm2_path):
    """Last-position logits for each prompt: transformers base/adapter, lmnb base/adapter/control."""
    import torch

    import lmnb
    import lmnb.sources.peft as lmnb_peft

    tmp = tmp_path_factory.mktemp("peft-check")
    folder = str(tmp / "reports-lora")
    lmnb.load(smollm2_path, name=NAME, n_ctx=512, batch_invariant=True)
    try:
        eng = lmnb.get_engine(NAME)
        tokens = [[t for t, _, _ in eng.tokenize(p)] for p in PROMPTS]  # the same ids on both sides
    finally:
        # unloaded while torch computes: its threads and llama.cpp's, side by side on a small
        # machine, make transformers' forward passes several times slower
        lmnb.unload(NAME)

    peft_model = _peft_adapter(smollm2_path, folder)
    hf = {"base": [], "adapter": []}
    with torch.no_grad():
        for ids in tokens:
            x = torch.tensor([ids])
            hf["adapter"].append(peft_model(x).logits[0, -1].numpy())
            with peft_model.disable_adapter():
                hf["base"].append(peft_model(x).logits[0, -1].numpy())
    del peft_model

    lmnb.load(smollm2_path, name=NAME, n_ctx=512, batch_invariant=True)
    try:
        eng = lmnb.get_engine(NAME)
        lmnb.lora(folder, model=NAME)  # converted by lmnb.sources.peft, named "reports-lora"
        with pytest.MonkeyPatch.context() as mp:  # the control: Q/K rows left in HF's order
            mp.setattr(lmnb_peft, "rope_permute", lambda rows, n_head: rows)
            control = lmnb_peft.convert_peft(folder, smollm2_path, cache_dir=str(tmp / "control"))
        lmnb.lora(control, name="control", model=NAME)
        ours = {key: [eng.next_token_logits(ids, lora=lora) for ids in tokens]
                for key, lora in (("base", []), ("adapter", "reports-lora"), ("control", "control"))}  # fmt: skip
    finally:
        lmnb.unload(NAME)
    return hf, ours


@needs_finetune
def test_peft_adapter_agrees_with_transformers_within_the_quantization_noise(measured):
    hf, ours = measured
    floor = np.mean([kl(h, o) for h, o in zip(hf["base"], ours["base"])])
    effect = np.mean([kl(b, a) for b, a in zip(hf["base"], hf["adapter"])])
    agree = np.mean([kl(h, o) for h, o in zip(hf["adapter"], ours["adapter"])])
    # the adapter matters (else agreement proves nothing): measured 1.6 nats
    assert effect > 0.3, effect
    # measured: floor 0.004, adapter 0.009
    assert floor < 0.02, floor
    assert agree < max(5 * floor, 0.01) and agree < 0.03, (agree, floor)
    for h, o in zip(hf["adapter"], ours["adapter"]):
        # the same top token, unless transformers' own top two are a near tie
        assert h[o.argmax()] > h.max() - 0.5, (h.argmax(), o.argmax())
    assert sum(h.argmax() == o.argmax() for h, o in zip(hf["adapter"], ours["adapter"])) >= len(PROMPTS) - 1
    # the change the adapter makes, seen from each side: measured correlation 0.993-0.996
    for hb, ha, ob, oa in zip(hf["base"], hf["adapter"], ours["base"], ours["adapter"]):
        assert np.corrcoef(ha - hb, oa - ob)[0, 1] > 0.98


@needs_finetune
def test_without_the_rotary_permutation_the_agreement_is_clearly_worse(measured):
    hf, ours = measured
    agree = np.mean([kl(h, o) for h, o in zip(hf["adapter"], ours["adapter"])])
    control = np.mean([kl(h, o) for h, o in zip(hf["adapter"], ours["control"])])
    assert control > 0.05 and control > 5 * agree, (control, agree)  # measured 0.22 vs 0.009
    corr = [np.corrcoef(ha - hb, oc - ob)[0, 1]
            for hb, ha, ob, oc in zip(hf["base"], hf["adapter"], ours["base"], ours["control"])]  # fmt: skip
    assert np.mean(corr) < 0.96, corr  # measured 0.90


def test_the_report_sets_are_what_their_generator_writes(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(DATA))
    sys.modules.pop("project_reports", None)
    import project_reports

    project_reports.write(tmp_path)
    for name in ("reports_train.jsonl", "reports_test.jsonl"):
        assert (tmp_path / name).read_bytes() == (DATA / name).read_bytes(), name
    train, test = project_reports.splits()
    assert not {r["record"]["project"] for r in train} & {r["record"]["project"] for r in test}
