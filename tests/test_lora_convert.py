"""PEFT LoRA folders converted to GGUF LoRA files (lmnb.sources.peft), judged by llama.cpp itself.

Everything runs on the real bundled SmolLM2-135M (llama architecture: 30 layers, hidden 576, 9
query heads, 3 KV heads), whose Q and K rows llama.cpp's converter permuted for its rope.

A note on "equal logits": SmolLM2 Q4_1 is computed with activations quantized to 8 bits, so any
nonzero change, even an adapter with B ~ 1e-7, flips roundings and moves logits by up to ~1 (mean
~0.15). Comparisons of different computations are therefore made against that noise floor,
measured here with such a tiny adapter; identical computations (same tensors, zero B) must agree
exactly.
"""

from __future__ import annotations

import ctypes
import json
import os
import struct

import numpy as np
import pytest

from lmnb.sources.peft import AdapterError, convert_peft, gguf_lora_info, is_peft_folder
from tests.lora_fixtures import (
    base_shapes,
    base_weight,
    make_gguf_lora,
    make_peft_folder,
    peft_key,
    rope_rows,
    write_gguf_lora,
    write_peft_folder,
)

PROMPT = b"The capital of France is Paris. The capital of Germany is"
ALL = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class Runner:
    """SmolLM2 in llama.cpp with the logits of every prompt token, with or without one adapter."""

    def __init__(self, path: str) -> None:
        from llama_cpp import Llama

        self.llm = Llama(path, n_ctx=128, logits_all=True, verbose=False, n_threads=2)
        self.tokens = self.llm.tokenize(PROMPT)
        self.adapters: dict[str, object] = {}

    def load(self, path: str):
        """``llama_adapter_lora_init``'s handle (``None``: llama.cpp refused the file)."""
        import llama_cpp as C

        if path not in self.adapters:
            self.adapters[path] = C.llama_adapter_lora_init(self.llm._model.model, os.fsencode(path)) or None
        return self.adapters[path]

    def logits(self, adapter: str | None = None) -> np.ndarray:
        import llama_cpp as C

        ctx = self.llm._ctx.ctx
        if adapter is None:
            C.llama_set_adapters_lora(ctx, None, 0, None)
        else:
            handle = self.load(adapter)
            assert handle, f"llama.cpp refused {adapter}"
            C.llama_set_adapters_lora(ctx, (C.llama_adapter_lora_p_ctypes * 1)(handle), 1, (ctypes.c_float * 1)(1.0))
        self.llm.reset()
        self.llm.eval(self.tokens)
        return self.llm.scores[: len(self.tokens)].copy()

    def close(self) -> None:
        import llama_cpp as C

        C.llama_set_adapters_lora(self.llm._ctx.ctx, None, 0, None)  # the context lets go first
        for handle in self.adapters.values():
            if handle:
                C.llama_adapter_lora_free(handle)
        self.llm.close()


@pytest.fixture(scope="module")
def runner(smollm2_path):
    r = Runner(smollm2_path)
    r.base = r.logits()
    yield r
    r.close()


@pytest.fixture(scope="module")
def noise_floor(runner, smollm2_path, tmp_path_factory) -> float:
    """Mean |Δlogit| that a negligible adapter (B ~ 1e-7 on every Q and V) causes."""
    path = make_gguf_lora(tmp_path_factory.mktemp("floor") / "tiny.gguf", smollm2_path, scale_b=1e-7)
    return float(np.abs(runner.logits(path) - runner.base).mean())


def lora_tensors(path) -> dict[str, np.ndarray]:
    from gguf import GGUFReader

    return {t.name: np.array(t.data) for t in GGUFReader(str(path)).tensors}


def assert_empty(cache) -> None:
    """Nothing, not even a partial file, was left in the cache dir."""
    assert not os.path.exists(cache) or os.listdir(cache) == []


# ------------------------------------------------------------------------------------------------
# 1. Conversion and cache
# ------------------------------------------------------------------------------------------------
def test_converts_and_caches(tmp_path, smollm2_path, monkeypatch):
    folder = make_peft_folder(tmp_path / "my adapter", smollm2_path, rank=4, alpha=8.0)
    cache = tmp_path / "cache"
    assert is_peft_folder(folder) and not is_peft_folder(tmp_path) and not is_peft_folder(smollm2_path)

    out = convert_peft(folder, smollm2_path, cache_dir=str(cache))
    assert os.path.dirname(out) == str(cache) and out.endswith(".gguf")
    info = gguf_lora_info(out)
    assert info == {"architecture": "llama", "alpha": 8.0, "rank": 4, "n_tensors": 120, "targets": ["attn_q", "attn_v"]}
    shapes = base_shapes(smollm2_path)
    tensors = lora_tensors(out)
    assert tensors["blk.7.attn_v.weight.lora_a"].shape == (4, shapes["blk.7.attn_v.weight"][1])
    assert tensors["blk.7.attn_v.weight.lora_b"].shape == (shapes["blk.7.attn_v.weight"][0], 4)

    # the same inputs: the cached file, untouched, without converting again
    mtime = os.stat(out).st_mtime_ns
    import lmnb.sources.peft as peft

    monkeypatch.setattr(peft, "_write_gguf", lambda *a: pytest.fail("converted again"))
    assert convert_peft(folder, smollm2_path, cache_dir=str(cache)) == out
    assert os.stat(out).st_mtime_ns == mtime
    monkeypatch.undo()

    # another alpha is another adapter; use_rslora scales alpha so llama.cpp's alpha/r = alpha/sqrt(r)
    config_path = os.path.join(folder, "adapter_config.json")
    config = json.load(open(config_path))
    json.dump({**config, "use_rslora": True}, open(config_path, "w"))
    out2 = convert_peft(folder, smollm2_path, cache_dir=str(cache))
    assert out2 != out and gguf_lora_info(out2)["alpha"] == pytest.approx(8.0 * 2)
    assert sorted(os.listdir(cache)) == sorted([os.path.basename(out), os.path.basename(out2)])


# ------------------------------------------------------------------------------------------------
# 2. llama.cpp loads it and applies it
# ------------------------------------------------------------------------------------------------
def test_llama_cpp_applies_converted_adapter(tmp_path, smollm2_path, runner, noise_floor):
    cache = str(tmp_path / "cache")
    out = convert_peft(make_peft_folder(tmp_path / "a", smollm2_path), smollm2_path, cache_dir=cache)
    assert runner.load(out), "llama_adapter_lora_init returned NULL"
    delta = np.abs(runner.logits(out) - runner.base)
    # scale_b=0.05 moves logits well beyond the noise floor (the model still writes text)
    assert delta.max() > 0.5 and delta.mean() > 2 * noise_floor, (delta.max(), delta.mean(), noise_floor)

    zero = convert_peft(make_peft_folder(tmp_path / "z", smollm2_path, zero_b=True), smollm2_path, cache_dir=cache)
    np.testing.assert_array_equal(runner.logits(zero), runner.base)  # B = 0 adds exactly nothing


# ------------------------------------------------------------------------------------------------
# 3. The rotary permutation
# ------------------------------------------------------------------------------------------------
def test_route_agreement(tmp_path, smollm2_path, runner):
    """lmnb's conversion and the fixture's direct GGUF (its own permutation code) are the same adapter."""
    kw = dict(targets=ALL, rank=8, alpha=16.0, seed=3, layers=(0, 1, 5, 29))
    out = convert_peft(
        make_peft_folder(tmp_path / "p", smollm2_path, **kw), smollm2_path, cache_dir=str(tmp_path / "c")
    )
    direct = make_gguf_lora(tmp_path / "direct.gguf", smollm2_path, **kw)
    mine, theirs = lora_tensors(out), lora_tensors(direct)
    assert sorted(mine) == sorted(theirs)
    for name in mine:
        np.testing.assert_array_equal(mine[name], theirs[name], err_msg=name)
    np.testing.assert_allclose(runner.logits(out), runner.logits(direct), atol=1e-4, rtol=0)


def test_rotary_permutation_meaning(tmp_path, smollm2_path, runner, noise_floor):
    """The permutation puts HF's rotary pairs where llama.cpp's rope rotates pairs.

    HF's rope rotates, per head, the row pairs (i, i + d/2) of Q and K by angle pos·θ_i. Build, in
    HF layout, an adapter that turns Q and K into M·Q and M·K, M rotating every such pair by a fixed
    angle φ_i (the same for every head). Plane rotations commute with rope's, and rotating both sides
    of a dot product by the same M leaves it unchanged: q·k after rope is the same, so the logits
    must stay at the base ones (within the noise floor). With the pairs put anywhere else, M mixes
    rows that rope rotates apart, and the attention (the logits) changes a lot: the same adapter
    written without the permutation must show it, or this test would prove nothing.

    ΔW = (M − I)·W_hf as LoRA: A = W_hf (r = its rows: the base rows dequantized, put back in HF
    order), B = M − I; alpha = r, so llama.cpp's scale is 1.
    """
    n_head, n_kv, d, r = 9, 3, 64, 576
    phi = 0.6 + 0.04 * np.arange(d // 2)

    def m_minus_i(n_rows):
        out = np.zeros((n_rows, n_rows), np.float32)
        for h in range(n_rows // d):
            for i in range(d // 2):
                x, y = h * d + i, h * d + d // 2 + i
                out[x, x] = out[y, y] = np.cos(phi[i]) - 1
                out[x, y], out[y, x] = -np.sin(phi[i]), np.sin(phi[i])
        return out

    peft, unpermuted = {}, {}
    for layer in (0, 1, 2):
        for target, kind, heads in (("q_proj", "attn_q", n_head), ("k_proj", "attn_k", n_kv)):
            w = base_weight(smollm2_path, f"blk.{layer}.{kind}.weight")
            w_hf = np.empty_like(w)
            w_hf[rope_rows(len(w), heads)] = w  # gguf row j holds hf row idx[j]
            a = np.zeros((r, w.shape[1]), np.float32)
            a[: len(w)] = w_hf
            b = np.zeros((len(w), r), np.float32)
            b[:, : len(w)] = m_minus_i(len(w))
            peft[peft_key(layer, target, "A")], peft[peft_key(layer, target, "B")] = a, b
            unpermuted[f"blk.{layer}.{kind}.weight.lora_a"], unpermuted[f"blk.{layer}.{kind}.weight.lora_b"] = a, b
    folder = write_peft_folder(tmp_path / "rot", peft, {"r": r, "lora_alpha": float(r)})
    out = convert_peft(folder, smollm2_path, cache_dir=str(tmp_path / "c"))
    wrong = write_gguf_lora(tmp_path / "unpermuted.gguf", "llama", float(r), unpermuted)

    right_delta = np.abs(runner.logits(out) - runner.base).mean()
    wrong_delta = np.abs(runner.logits(wrong) - runner.base).mean()
    # measured: floor 0.16, permuted 0.20, unpermuted 1.9 (inverse permutation 1.4)
    assert right_delta < 2 * noise_floor, (right_delta, noise_floor)
    assert wrong_delta > 5 * noise_floor and wrong_delta > 4 * right_delta, (wrong_delta, right_delta)


# ------------------------------------------------------------------------------------------------
# 4. Errors: a clear AdapterError, and nothing in the cache
# ------------------------------------------------------------------------------------------------
def _bigger_model(folder, base):
    a, b = np.zeros((4, 896), np.float32), np.ones((896, 4), np.float32)
    write_peft_folder(folder, {peft_key(3, "q_proj", "A"): a, peft_key(3, "q_proj", "B"): b}, {})


def _truncated(folder, base):
    make_peft_folder(folder, base)
    path = os.path.join(folder, "adapter_model.safetensors")
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])


def _edit_config(**changes):
    def build(folder, base):
        make_peft_folder(folder, base, layers=(0,))
        path = os.path.join(folder, "adapter_config.json")
        json.dump({**json.load(open(path)), **changes}, open(path, "w"))

    return build


def _extra_tensor(key, shape, **config):
    def build(folder, base):
        make_peft_folder(folder, base, layers=(0,))
        from safetensors.numpy import load_file, save_file

        path = os.path.join(folder, "adapter_model.safetensors")
        save_file({**load_file(path), key: np.zeros(shape, np.float32)}, path)
        if config:
            cpath = os.path.join(folder, "adapter_config.json")
            json.dump({**json.load(open(cpath)), **config}, open(cpath, "w"))

    return build


ERRORS = {
    "shape mismatch": (_bigger_model, ["adapter for another model", "blk.3.attn_q expects (576 → 576)", "(896 → 896)"]),
    "layer past the base": (lambda f, b: make_peft_folder(f, b, layers=(30,)), ["another model", "blk.30.attn_q"]),
    "truncated safetensors": (_truncated, ["adapter_model.safetensors", "truncated or corrupt"]),
    "not safetensors": (
        lambda f, b: (make_peft_folder(f, b), open(os.path.join(f, "adapter_model.safetensors"), "wb").write(b"\0" * 9)),
        ["adapter_model.safetensors"],
    ),
    "unknown module": (lambda f, b: make_peft_folder(f, b, targets=("q_proj", "foo_proj"), layers=(0,)), ["mlp.foo_proj", "Known: self_attn.q_proj"]),
    "lm_head": (lambda f, b: make_peft_folder(f, b, targets=("lm_head",), layers=(0,)), ["lm_head", "cannot map"]),
    "no config": (lambda f, b: (make_peft_folder(f, b), os.remove(os.path.join(f, "adapter_config.json"))), ["adapter_config.json is missing"]),
    "config not JSON": (lambda f, b: (make_peft_folder(f, b), open(os.path.join(f, "adapter_config.json"), "w").write("{r: 4")), ["adapter_config.json is not valid JSON"]),
    "no weights": (lambda f, b: (make_peft_folder(f, b), os.remove(os.path.join(f, "adapter_model.safetensors"))), ["has no adapter_model.safetensors"]),
    "dora": (_edit_config(use_dora=True), ["use_dora", "DoRA"]),
    "rank_pattern": (_edit_config(rank_pattern={"q_proj": 8}), ["rank_pattern", "not supported"]),
    "rank disagrees with r": (_edit_config(r=8), ["rank 4", "r=8"]),
    "modules_to_save": (_extra_tensor("base_model.model.lm_head.weight", (8, 576), modules_to_save=["lm_head"]), ["modules_to_save", "lm_head.weight"]),
    "trained bias": (_extra_tensor("base_model.model.model.layers.0.self_attn.q_proj.bias", (576,)), ["q_proj.bias", "not LoRA"]),
    "embedding lora": (_extra_tensor("base_model.model.model.embed_tokens.lora_embedding_A", (4, 49152)), ["token embeddings", "embed_tokens"]),
    "not lora": (_edit_config(peft_type="IA3"), ["IA3", "not LoRA"]),
}  # fmt: skip


@pytest.mark.parametrize("case", list(ERRORS))
def test_errors(case, tmp_path, smollm2_path):
    build, words = ERRORS[case]
    folder = str(tmp_path / "adapter")
    os.makedirs(folder)
    build(folder, smollm2_path)
    cache = tmp_path / "cache"
    with pytest.raises(AdapterError) as e:
        convert_peft(folder, smollm2_path, cache_dir=str(cache))
    for w in words:
        assert w in str(e.value), str(e.value)
    assert_empty(cache)


def test_unknown_architecture(tmp_path, smollm2_path):
    import gguf

    w = gguf.GGUFWriter(str(tmp_path / "gpt2.gguf"), "gpt2")
    w.add_tensor("blk.0.attn_qkv.weight", np.zeros((4, 4), np.float32))
    w.write_header_to_file(), w.write_kv_data_to_file(), w.write_tensors_to_file(), w.close()
    folder = make_peft_folder(tmp_path / "a", smollm2_path, layers=(0,))
    with pytest.raises(AdapterError, match=r"'gpt2' architecture.*supported: llama, .*gemma3"):
        convert_peft(folder, str(tmp_path / "gpt2.gguf"), cache_dir=str(tmp_path / "cache"))


def test_failed_write_leaves_nothing(tmp_path, smollm2_path, monkeypatch):
    import lmnb.sources.peft as peft

    def disk_full(path, *args):
        open(path, "wb").write(b"GGUF partial")
        raise OSError("No space left on device")

    monkeypatch.setattr(peft, "_write_gguf", disk_full)
    cache = tmp_path / "cache"
    with pytest.raises(OSError, match="No space"):
        convert_peft(make_peft_folder(tmp_path / "a", smollm2_path, layers=(0,)), smollm2_path, cache_dir=str(cache))
    assert_empty(cache)


def test_torch_bin_without_torch(tmp_path, smollm2_path):
    try:
        import torch  # noqa: F401

        pytest.skip("torch is installed: .bin adapters are read with it")
    except ImportError:
        pass
    folder = make_peft_folder(tmp_path / "a", smollm2_path, layers=(0,))
    os.rename(os.path.join(folder, "adapter_model.safetensors"), os.path.join(folder, "adapter_model.bin"))
    with pytest.raises(AdapterError, match=r"adapter_model.bin.*needs torch.*pip install torch.*safetensors"):
        convert_peft(folder, smollm2_path, cache_dir=str(tmp_path / "cache"))


# ------------------------------------------------------------------------------------------------
# 5. Other inputs: bfloat16 weights, named adapters, activated LoRA, modules_to_save left unsaved
# ------------------------------------------------------------------------------------------------
def test_bfloat16_and_adapter_names(tmp_path, smollm2_path):
    """bfloat16 tensors (numpy has none) convert to their exact float32 values; keys that carry
    PEFT's adapter name (``lora_A.default.weight``) are the same adapter."""
    from safetensors.numpy import load_file

    src = make_peft_folder(tmp_path / "f32", smollm2_path, targets=("q_proj", "k_proj"), layers=(0, 4))
    tensors = load_file(os.path.join(src, "adapter_model.safetensors"))
    # the float32 values bfloat16 can hold: the top 16 bits
    truncated = {k: (v.view(np.uint32) & 0xFFFF0000).view(np.float32) for k, v in tensors.items()}
    config = {"r": 4, "lora_alpha": 8.0}
    ref = write_peft_folder(tmp_path / "ref", truncated, config)

    bf16 = write_peft_folder(tmp_path / "bf16", {}, config)
    header, blobs, offset = {}, [], 0
    for k, v in truncated.items():
        blob = (v.view(np.uint32) >> 16).astype("<u2").tobytes()
        named = k.replace(".weight", ".default.weight")
        header[named] = {"dtype": "BF16", "shape": list(v.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    with open(os.path.join(bf16, "adapter_model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(head)) + head + b"".join(blobs))

    cache = str(tmp_path / "cache")
    got = lora_tensors(convert_peft(bf16, smollm2_path, cache_dir=cache))
    want = lora_tensors(convert_peft(ref, smollm2_path, cache_dir=cache))
    assert sorted(got) == sorted(want)
    for name in got:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def test_activated_lora_and_unsaved_modules_to_save(tmp_path, smollm2_path, runner):
    """aLoRA invocation tokens reach llama.cpp; a modules_to_save naming nothing saved is ignored."""
    import llama_cpp as C

    folder = make_peft_folder(tmp_path / "a", smollm2_path, layers=(0,))
    path = os.path.join(folder, "adapter_config.json")
    json.dump(
        {**json.load(open(path)), "alora_invocation_tokens": [1, 2, 3], "modules_to_save": ["score"]}, open(path, "w")
    )
    out = convert_peft(folder, smollm2_path, cache_dir=str(tmp_path / "cache"))
    handle = runner.load(out)
    assert handle and C.llama_adapter_get_alora_n_invocation_tokens(handle) == 3


def test_gemma3(tmp_path):
    """Gemma 3 (no permutation; Q has 4 heads × 256 = 1024 rows over a 640 hidden size) loads in llama.cpp."""
    from lmnb.errors import LoadError
    from lmnb.sources.library import bundled_model

    try:
        base = bundled_model("gemma3")
    except LoadError:
        pytest.skip("the bundled Gemma 3 model is not installed")
    import llama_cpp as C

    kw = dict(targets=ALL, layers=(0, 17), seed=5)
    out = convert_peft(make_peft_folder(tmp_path / "g", base, **kw), base, cache_dir=str(tmp_path / "c"))
    info = gguf_lora_info(out)
    assert info["architecture"] == "gemma3" and info["n_tensors"] == 2 * 7 * 2
    assert lora_tensors(out)["blk.0.attn_q.weight.lora_b"].shape == (1024, 4)
    direct = lora_tensors(make_gguf_lora(tmp_path / "direct.gguf", base, **kw))
    for name, t in lora_tensors(out).items():
        np.testing.assert_array_equal(t, direct[name], err_msg=name)

    C.llama_backend_init()
    model = C.llama_model_load_from_file(os.fsencode(base), C.llama_model_default_params())
    assert model
    try:
        handle = C.llama_adapter_lora_init(model, os.fsencode(out))
        assert handle, "llama.cpp refused the Gemma 3 adapter"
        C.llama_adapter_lora_free(handle)
    finally:
        C.llama_model_free(model)
