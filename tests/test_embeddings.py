"""`lmnb.embed` and `/v1/embeddings`: batched, from the chat model or a separately loaded embedding
model (Gemma 3 270M here, beside the SmolLM2 chat model), on the real models."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

import lmnb
from lmnb.errors import LoadError, NoModelLoaded
from lmnb.sources.library import bundled_model

TEXTS = [f"Sentence {i}: a short note about {w}." for i, w in
         enumerate(["cats", "dogs", "the sea", "taxes", "rain", "music", "bread", "trains", "snow"] * 3)]  # fmt: skip


@pytest.fixture
def no_embedder(loaded):
    yield
    lmnb.unload_embedder()
    lmnb.configure(embedding_model="")


def n_embd(info) -> int:
    return int(info.metadata[f"{info.architecture}.embedding_length"])


def test_batched_embeddings_match_one_at_a_time(loaded, no_embedder):
    eng = lmnb.get_engine()
    many = lmnb.embed(TEXTS)  # 27 texts: two llama.cpp calls of up to 16
    assert many.dtype == np.float32 and many.shape == (len(TEXTS), n_embd(eng.info))
    assert np.allclose(np.linalg.norm(many, axis=1), 1, atol=1e-5)
    one = np.stack([lmnb.embed(t) for t in TEXTS[:5]])
    # packing texts into one call changes llama.cpp's summation order, not the direction
    assert ((one * many[:5]).sum(axis=1) > 0.9999).all()
    assert lmnb.embed(TEXTS[0]).shape == (n_embd(eng.info),)  # a string gives one vector


def test_bad_input_is_refused_and_the_engine_goes_on(loaded, no_embedder):
    with pytest.raises(ValueError, match=r"input\[1\] is empty"):
        lmnb.embed(["fine", ""])
    with pytest.raises(ValueError, match=r"input\[0\] is \d+ tokens; embeddings take at most 2048"):
        lmnb.embed(["word " * 3000])
    with pytest.raises(ValueError, match="list of strings"):
        lmnb.get_engine().embed([1, 2])
    assert lmnb.embed(["still works"]).shape[0] == 1
    assert lmnb.chat("Hi", max_tokens=3).text


def test_a_separate_embedding_model_beside_the_chat_model(loaded, no_embedder):
    chat_info = lmnb.get_engine().info
    gemma = bundled_model("gemma3")
    info = lmnb.load_embedder(gemma)
    v = lmnb.embed(TEXTS[:3])
    assert v.shape == (3, n_embd(info)) and n_embd(info) != n_embd(chat_info)
    # the chat model is untouched and still chats
    assert lmnb.status().model.path == chat_info.path
    assert lmnb.chat("Say hi.", max_tokens=4, temperature=0).text
    # naming the chat model uses it (no second copy of its weights); the embedder stays loaded
    assert lmnb.embed(TEXTS[:2], model=chat_info.path).shape == (2, n_embd(chat_info))
    assert lmnb.get_engine().embedder_info.path == info.path
    # unloading it gives embed back to the chat model
    assert lmnb.unload_embedder() is True
    assert lmnb.embed("x").shape == (n_embd(chat_info),)


def test_embedding_model_from_the_config_and_model_argument(loaded, no_embedder, tmp_path):
    lmnb.configure(embedding_model=bundled_model("gemma3"))
    assert lmnb.embed("hello").shape == (640,)  # loaded on first use
    bad = tmp_path / "notes.gguf"
    bad.write_text("not a model")
    with pytest.raises(LoadError, match="GGUF"):
        lmnb.embed("hello", model=str(bad))
    assert lmnb.embed("hello").shape == (640,)  # the embedding model in use is still there


def test_embedding_without_any_model_says_what_to_do(engine, no_embedder):
    if engine.loaded:
        lmnb.unload()
    try:
        with pytest.raises(NoModelLoaded):
            lmnb.embed("hello")
    finally:
        lmnb.load(bundled_model("smollm2"), n_ctx=2048)


def test_server_routes_embeddings_by_model_name(loaded, no_embedder):
    chat_info = lmnb.get_engine().info
    emb_info = lmnb.load_embedder(bundled_model("gemma3"))
    srv = lmnb.serve(port=0)
    try:
        def post(body):
            return httpx.post(srv.url + "/embeddings", json={"input": ["a", "b"], **body}, timeout=60)

        r = post({}).json()  # no model: the embedding model
        assert r["model"] == emb_info.name and len(r["data"][0]["embedding"]) == 640
        r = post({"model": chat_info.name}).json()
        assert r["model"] == chat_info.name and len(r["data"][1]["embedding"]) == n_embd(chat_info)
        r = post({"model": "nomic-embed-text"})
        assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
        assert emb_info.name in r.json()["error"]["message"]
        ids = [m["id"] for m in httpx.get(srv.url + "/models", timeout=30).json()["data"]]
        assert ids[:2] == [chat_info.name, emb_info.name]
    finally:
        srv.stop()
