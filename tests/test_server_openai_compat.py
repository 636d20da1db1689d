"""What OpenAI clients (and tools built on them: LangChain, curl scripts, llama-server clients) send
and expect, beyond the basics of test_server.py: request limits, top_p=0, usage with n>1,
system_fingerprint, non-JSON bodies, routes without /v1, /tokenize and /detokenize.
Real server, real bundled model."""

from __future__ import annotations

import json
import re

import httpx
import openai
import pytest

import lmnb
from lmnb.server import Server

from .conftest import server_root

ASK = [{"role": "user", "content": "Name three colours."}]


def error(r: httpx.Response, status: int = 400) -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and "Traceback" not in err["message"]
    return err


# ---- /v1/embeddings: up to 2048 inputs, as OpenAI ------------------------------------------------
def test_embeddings_take_up_to_2048_inputs(client, loaded):
    texts = [f"item {i}" for i in range(2049)]
    # 2048 pass validation: the request gets as far as choosing the model (embedding them all would
    # take minutes on a small CI machine)
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="no-such-model", input=texts[:2048])
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model="no-such-model", input=texts)
    assert e.value.body["param"] == "input" and "2048" in e.value.message and "2049" in e.value.message
    assert "valid string" not in e.value.message
    # more than one llama.cpp batch (16 texts), in order
    r = client.embeddings.create(model="", input=texts[:40])
    assert [d.index for d in r.data] == list(range(40))
    one = client.embeddings.create(model="", input=texts[33]).data[0].embedding
    assert r.data[33].embedding == pytest.approx(one, abs=1e-4)


# ---- sampling ------------------------------------------------------------------------------------
def test_top_p_zero_is_greedy(client, loaded):
    greedy = client.chat.completions.create(model="", messages=ASK, max_tokens=16, temperature=0)
    for seed in (1, 2):
        r = client.chat.completions.create(model="", messages=ASK, max_tokens=16, temperature=1.5, top_p=0,
                                           seed=seed)
        assert r.choices[0].message.content == greedy.choices[0].message.content
    text = client.completions.create(model="", prompt="Once upon a time", max_tokens=8, temperature=1.5, top_p=0,
                                     seed=3)
    assert text.choices[0].text == lmnb.complete("Once upon a time", max_tokens=8, temperature=0).text


# ---- usage ---------------------------------------------------------------------------------------
def test_usage_counts_the_prompt_once_with_n(client, loaded):
    one = client.chat.completions.create(model="", messages=ASK, max_tokens=3, temperature=0.9, seed=1)
    three = client.chat.completions.create(model="", messages=ASK, max_tokens=3, temperature=0.9, seed=1, n=3)
    assert len(three.choices) == 3
    assert three.usage.prompt_tokens == one.usage.prompt_tokens
    assert 3 <= three.usage.completion_tokens <= 9  # every choice's tokens
    assert three.usage.total_tokens == three.usage.prompt_tokens + three.usage.completion_tokens
    cached = three.usage.prompt_tokens_details.cached_tokens
    assert 0 <= cached <= three.usage.prompt_tokens
    # several prompts, n each: every prompt counted once
    prompts = ["One, two,", "The sky is"]
    alone = [client.completions.create(model="", prompt=p, max_tokens=2).usage.prompt_tokens for p in prompts]
    both = client.completions.create(model="", prompt=prompts, max_tokens=2, n=2, temperature=0.9, seed=4)
    assert len(both.choices) == 4 and both.usage.prompt_tokens == sum(alone)


# ---- system_fingerprint --------------------------------------------------------------------------
def test_system_fingerprint_everywhere(client, loaded):
    chat = client.chat.completions.create(model="", messages=ASK, max_tokens=4)
    fp = chat.system_fingerprint
    assert fp and fp.startswith("lmnb-")
    assert client.completions.create(model="", prompt="Hi", max_tokens=4).system_fingerprint == fp
    chunks = list(client.chat.completions.create(model="", messages=ASK, max_tokens=4, stream=True,
                                                 stream_options={"include_usage": True}))
    assert chunks and all(c.system_fingerprint == fp for c in chunks)
    chunks = list(client.completions.create(model="", prompt="Hi", max_tokens=4, stream=True, echo=True,
                                            stream_options={"include_usage": True}))
    assert chunks and all(c.system_fingerprint == fp for c in chunks)


# ---- bodies not sent as JSON ---------------------------------------------------------------------
@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "text/plain"])
def test_curl_d_without_json_content_type(server, loaded, content_type):
    """`curl -d '{...}'` sends the JSON as a form: a clear 400 naming the header, and it is not read."""
    before = dict(loaded.stats)
    body = json.dumps({"messages": ASK, "max_tokens": 2})
    r = httpx.post(server.url + "/chat/completions", content=body, headers={"content-type": content_type})
    err = error(r)
    assert "Content-Type: application/json" in err["message"] and content_type in err["message"]
    assert "valid dictionary" not in err["message"]
    assert loaded.stats["prompt_tokens"] == before["prompt_tokens"]


# ---- routes without /v1 --------------------------------------------------------------------------
def test_routes_without_v1(server, loaded):
    bare = openai.OpenAI(base_url=server_root(server), api_key="unused", max_retries=0, timeout=120)
    assert bare.models.list().data[0].id == loaded.info.name
    assert bare.models.retrieve(loaded.info.name).id == loaded.info.name
    assert bare.chat.completions.create(model="", messages=ASK, max_tokens=2).choices
    assert bare.completions.create(model="", prompt="Hi", max_tokens=2).choices
    assert len(bare.embeddings.create(model="", input=["a", "b"]).data) == 2
    streamed = list(bare.chat.completions.create(model="", messages=ASK, max_tokens=2, stream=True))
    assert streamed[0].choices[0].delta.role == "assistant"
    assert error(httpx.get(server_root(server) + "/models/gpt-4o"), 404)["code"] == "model_not_found"
    # the schema documents each route once, under /v1
    paths = httpx.get(server_root(server) + "/openapi.json").json()["paths"]
    assert "/v1/chat/completions" in paths and "/chat/completions" not in paths
    assert {"/tokenize", "/detokenize", "/health", "/metrics"} <= set(paths)


def test_bare_routes_need_the_key_too(loaded):
    with Server("127.0.0.1", 0, api_key="k") as srv:
        assert httpx.get(server_root(srv) + "/models").status_code == 401
        assert httpx.post(server_root(srv) + "/tokenize", json={"content": "hi"}).status_code == 401
        ok = httpx.post(server_root(srv) + "/tokenize", json={"content": "hi"}, headers={"Authorization": "Bearer k"})
        assert ok.status_code == 200


# ---- /tokenize and /detokenize (llama-server's) --------------------------------------------------
def test_tokenize_and_detokenize(server, loaded):
    text = "Hello world, ça va? <|im_start|>"
    r = httpx.post(server_root(server) + "/tokenize", json={"content": text})
    assert r.status_code == 200, r.text
    ids = r.json()["tokens"]
    assert ids == [t for t, _, _ in loaded.tokenize(text, special=False)] and all(isinstance(t, int) for t in ids)
    back = httpx.post(server_root(server) + "/detokenize", json={"tokens": ids}).json()
    assert back == {"content": text}
    pieces = httpx.post(server_root(server) + "/tokenize", json={"content": text, "with_pieces": True}).json()["tokens"]
    assert [p["id"] for p in pieces] == ids
    assert "".join(p["piece"] for p in pieces if isinstance(p["piece"], str)).startswith("Hello world,")
    # add_special: special-token text is read as the one token it names (and BOS added if the model wants)
    special = httpx.post(server_root(server) + "/tokenize", json={"content": "<|im_start|>", "add_special": True}).json()
    assert len(special["tokens"]) < len(httpx.post(server_root(server) + "/tokenize",
                                                   json={"content": "<|im_start|>"}).json()["tokens"])
    assert httpx.post(server_root(server) + "/detokenize", json={"tokens": special["tokens"]}).json()["content"].endswith(
        "<|im_start|>")


def test_tokenize_pieces_that_are_not_whole_utf8(server, loaded):
    text = "🦙🦙 漢字"
    pieces = httpx.post(server_root(server) + "/tokenize", json={"content": text, "with_pieces": True}).json()["tokens"]
    raw = b"".join(p["piece"].encode() if isinstance(p["piece"], str) else bytes(p["piece"]) for p in pieces)
    assert raw.decode("utf-8") == text


@pytest.mark.parametrize("tokens", [[-1], [10**9], [1, 2, 2**31]])
def test_detokenize_refuses_ids_outside_the_vocabulary(server, loaded, tokens):
    """llama.cpp aborts the process on such an id: the server checks it first."""
    err = error(httpx.post(server_root(server) + "/detokenize", json={"tokens": tokens}))
    assert err["param"] == "tokens" and "not a token id" in err["message"]
    assert httpx.post(server_root(server) + "/detokenize", json={"tokens": [1]}).status_code == 200  # still alive


def test_tokenize_errors(server, loaded, smollm2_path):
    assert error(httpx.post(server_root(server) + "/tokenize", json={"content": 5}))["param"] == "content"
    assert error(httpx.post(server_root(server) + "/detokenize", json={"tokens": "12"}))["param"] == "tokens"
    lmnb.unload()
    try:
        assert error(httpx.post(server_root(server) + "/tokenize", json={"content": "hi"}), 503)["code"] == (
            "model_not_loaded")
        assert error(httpx.post(server_root(server) + "/detokenize", json={"tokens": [1]}), 503)["code"] == (
            "model_not_loaded")
    finally:
        lmnb.load(smollm2_path, n_ctx=2048)


# ---- a prompt too long for the context -----------------------------------------------------------
def test_context_overflow_suggests_a_context_that_exists(server, loaded):
    trained = loaded.info.context_length  # SmolLM2: 8192; loaded with 2048
    err = error(httpx.post(server.url + "/completions", json={"prompt": "word " * 3000}, timeout=120))
    assert err["code"] == "context_length_exceeded" and err["param"] == "prompt"
    sizes = [int(n) for n in re.findall(r"--ctx (\d+)", err["message"])]
    assert sizes and all(2048 < n <= trained for n in sizes), err["message"]
    # longer than the model was trained on: no --ctx would help, and the message says so
    err = error(httpx.post(server.url + "/completions", json={"prompt": "word " * (trained + 100)}, timeout=120))
    assert err["code"] == "context_length_exceeded"
    assert "--ctx" not in err["message"] and "too long for this model" in err["message"], err["message"]
