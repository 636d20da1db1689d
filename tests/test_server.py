"""The OpenAI-compatible server, in-process on the real bundled model, called with the official
``openai`` client (sync, async, streaming) and with raw HTTP for the error cases."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
import time

import httpx
import openai
import pytest
from IPython.utils.capture import capture_output

import lmnb
from lmnb.server import Server

from .conftest import server_root
from .waiting import wait_for

ASK = [{"role": "user", "content": "Name three colours."}]


def idle(engine, timeout: float = 5.0) -> bool:
    """Wait until the engine has nothing queued or running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if engine.status().queue_depth == 0:
            return True
        time.sleep(0.02)
    return False


# ---- models, health, metrics ---------------------------------------------------------------------
def test_models_lists_the_loaded_model_first(client, loaded):
    models = client.models.list().data
    assert models[0].id == loaded.info.name
    assert models[0].model_extra["loaded"] is True
    assert all(m.model_extra["loaded"] is False for m in models[1:])
    assert client.models.retrieve(loaded.info.name).id == loaded.info.name


def test_health_and_metrics(server, client, loaded):
    h = httpx.get(server_root(server) + "/health")
    assert h.status_code == 200 and h.json() == {"status": "ok", "model": loaded.info.name}

    def metric(text: str, name: str) -> float:
        return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))

    before = httpx.get(server_root(server) + "/metrics").text
    r = client.chat.completions.create(model=loaded.info.name, messages=ASK, max_tokens=8, temperature=0)
    after = httpx.get(server_root(server) + "/metrics").text
    assert metric(after, "lmnb_generated_tokens_total") - metric(before, "lmnb_generated_tokens_total") == (
        r.usage.completion_tokens
    )
    assert metric(after, 'lmnb_http_requests_total{path="/v1/chat/completions",status="200"}') == (
        metric(before, 'lmnb_http_requests_total{path="/v1/chat/completions",status="200"}') + 1
    )
    for name in ("lmnb_queue_depth", "lmnb_tokens_per_second", "lmnb_prompt_tokens_total", "lmnb_decode_calls_total"):
        assert name in after
    spec = httpx.get(server_root(server) + "/openapi.json").json()
    assert "/v1/chat/completions" in spec["paths"] and "/v1/embeddings" in spec["paths"]


# ---- chat ----------------------------------------------------------------------------------------
def test_chat_is_the_notebook_model(client, loaded):
    """Greedy decoding through HTTP gives exactly what the notebook's lmnb.chat gives."""
    r = client.chat.completions.create(model=loaded.info.name, messages=ASK, max_tokens=24, temperature=0)
    local = lmnb.chat(ASK, max_tokens=24, temperature=0)
    assert r.choices[0].message.content == local.text
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.completion_tokens == local.usage.completion_tokens
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_chat_stream_has_deltas_finish_and_usage(client, loaded):
    plain = client.chat.completions.create(model="", messages=ASK, max_tokens=24, temperature=0, seed=7)
    chunks = list(client.chat.completions.create(
        model="", messages=ASK, max_tokens=24, temperature=0, seed=7, stream=True,
        stream_options={"include_usage": True},
    ))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 3  # really streamed
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [plain.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == plain.usage.completion_tokens


def test_prompt_progress_is_streamed_before_the_first_token_when_asked(client, loaded):
    """return_progress (llama-server's field): chunks with prompt_progress while a long prompt is
    read, the last one complete, all before the first token; none unless asked."""
    lmnb.reset()  # nothing of this prompt is cached from an earlier test
    long_text = "Summarise: " + " ".join(f"item {i} is blue." for i in range(250))  # ~1,500 tokens: 3 reads of 512

    def chunks(content: str, **extra) -> list:
        return list(client.chat.completions.create(
            model=loaded.info.name, messages=[{"role": "user", "content": content}], max_tokens=4,
            temperature=0, stream=True, extra_body=extra))  # fmt: skip

    got = chunks(long_text, return_progress=True)
    first_text = next(i for i, c in enumerate(got) if c.choices and c.choices[0].delta.content)
    progress = [(i, c.model_extra["prompt_progress"]) for i, c in enumerate(got) if "prompt_progress" in c.model_extra]
    assert len(progress) >= 3 and all(i < first_text for i, _ in progress)
    done = [p["processed"] for _, p in progress]
    assert done == sorted(done) and done[-1] == progress[-1][1]["total"] > 1000
    assert all(p["time_ms"] >= 0 and p["cache"] < 200 for _, p in progress)
    # asked again: the prompt is cached now, and a short prompt gets one complete report
    again = [c.model_extra["prompt_progress"] for c in chunks(long_text, return_progress=True)
             if "prompt_progress" in c.model_extra]  # fmt: skip
    assert again[-1]["cache"] > 1000 and again[-1]["processed"] == again[-1]["total"]
    short = [c.model_extra["prompt_progress"] for c in chunks("Hi", return_progress=True)
             if "prompt_progress" in c.model_extra]  # fmt: skip
    assert len(short) == 1 and short[0]["processed"] == short[0]["total"] > 0
    assert not any("prompt_progress" in c.model_extra for c in chunks(long_text))


def test_raw_sse_ends_with_done(server, loaded):
    with httpx.stream("POST", server.url + "/chat/completions", timeout=120,
                      json={"messages": ASK, "max_tokens": 5, "stream": True}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    assert json.loads(lines[0][6:])["object"] == "chat.completion.chunk"


def test_sampling_fields_and_seed(client, loaded):
    kw = dict(model="", messages=ASK, max_tokens=16, temperature=1.0, top_p=0.9, presence_penalty=0.5,
              frequency_penalty=0.2, extra_body={"top_k": 20, "min_p": 0.1, "repeat_penalty": 1.2})
    a = client.chat.completions.create(seed=1234, **kw).choices[0].message.content
    b = client.chat.completions.create(seed=1234, **kw).choices[0].message.content
    assert a == b
    stop = client.chat.completions.create(model="", messages=[{"role": "user", "content": "Count: 1, 2, 3,"}],
                                          max_tokens=30, temperature=0, stop=["5"])
    assert "5" not in stop.choices[0].message.content


def test_max_completion_tokens_and_n(client, loaded):
    r = client.chat.completions.create(model="", messages=ASK, max_completion_tokens=3, temperature=0.9, n=3, seed=5)
    assert [c.index for c in r.choices] == [0, 1, 2]
    assert all(c.finish_reason == "length" for c in r.choices)
    assert r.usage.completion_tokens == 9


def test_async_client(server, loaded):
    words = ("apple", "banana", "cherry")

    async def main() -> list[str]:
        aclient = openai.AsyncOpenAI(base_url=server.url, api_key="x", max_retries=0)
        rs = await asyncio.gather(*[
            aclient.chat.completions.create(model="", messages=[{"role": "user", "content": f"Write the word {w} three times."}],
                                            max_tokens=12, temperature=0)
            for w in words
        ])
        stream = await aclient.chat.completions.create(model="", messages=ASK, max_tokens=8, temperature=0,
                                                       stream=True)
        streamed = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        await aclient.close()
        return [r.choices[0].message.content for r in rs] + [streamed]

    texts = asyncio.run(main())
    assert all(texts) and len(texts) == 4
    # each of the concurrent replies answers its own prompt (not compared with the same prompt
    # alone: in the shared cache a greedy reply may drift from it after a few tokens, README "Batching")
    assert all(w in t.lower() for w, t in zip(words, texts)), texts


# ---- structured output and logprobs --------------------------------------------------------------
PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer", "minimum": 0},
        "languages": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
    },
    "required": ["name", "age", "languages"],
    "additionalProperties": False,
}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_json_schema_is_enforced(client, loaded, seed):
    import jsonschema

    r = client.chat.completions.create(
        model="", messages=[{"role": "user", "content": "Describe a programmer."}], max_tokens=120,
        temperature=0.8, seed=seed,
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}},
    )
    assert r.choices[0].finish_reason == "stop"
    jsonschema.validate(json.loads(r.choices[0].message.content), PERSON)


def test_json_object_mode(client, loaded):
    r = client.chat.completions.create(model="", messages=[{"role": "user", "content": "Give me a JSON object."}],
                                       max_tokens=80, temperature=0, response_format={"type": "json_object"})
    assert isinstance(json.loads(r.choices[0].message.content), dict)


def test_logprobs(client, loaded):
    import math

    # logprobs are the model's own distribution; with the repeat penalty off, greedy takes its argmax
    off = {"repeat_penalty": 1.0}
    r = client.chat.completions.create(model="", messages=ASK, max_tokens=10, temperature=0, logprobs=True,
                                       top_logprobs=3, extra_body=off)
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens
    assert "".join(t.token for t in content) == r.choices[0].message.content
    for t in content:
        assert len(t.top_logprobs) == 3
        lps = [a.logprob for a in t.top_logprobs]
        assert lps == sorted(lps, reverse=True) and all(lp <= 0 for lp in lps)
        assert t.token == t.top_logprobs[0].token  # greedy picks the most likely token
        assert math.isclose(t.logprob, lps[0])
    streamed = list(client.chat.completions.create(model="", messages=ASK, max_tokens=10, temperature=0,
                                                   logprobs=True, top_logprobs=1, stream=True, extra_body=off))
    entries = [e for c in streamed if c.choices and c.choices[0].logprobs for e in c.choices[0].logprobs.content]
    assert [e.token for e in entries] == [t.token for t in content]


# ---- completions and embeddings ------------------------------------------------------------------
def test_completions(client, loaded):
    prompt = "The capital of France is"
    r = client.completions.create(model="", prompt=prompt, max_tokens=8, temperature=0, logprobs=2)
    local = lmnb.complete(prompt, max_tokens=8, temperature=0)
    assert r.choices[0].text == local.text
    assert len(r.choices[0].logprobs.tokens) == r.usage.completion_tokens
    echo = client.completions.create(model="", prompt=prompt, max_tokens=4, temperature=0, echo=True)
    assert echo.choices[0].text.startswith(prompt)
    two = client.completions.create(model="", prompt=["One,", "Two,"], max_tokens=4, temperature=0)
    assert [c.index for c in two.choices] == [0, 1]
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model="", prompt=prompt, max_tokens=8, temperature=0, stream=True) if c.choices)
    assert streamed == local.text


def test_embeddings(client, loaded):
    import numpy as np

    texts = ["The cat sat on the mat.", "A cat is sitting on a mat.", "Quarterly revenue fell by 3%."]
    r = client.embeddings.create(model="", input=texts)  # the openai client asks for base64
    v = np.array([d.embedding for d in r.data])
    assert v.shape == (3, loaded.info.metadata.get("llama.embedding_length") and int(
        loaded.info.metadata["llama.embedding_length"]) or v.shape[1])
    assert np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-4)
    assert v[0] @ v[1] > v[0] @ v[2]
    floats = httpx.post(client.base_url.join("embeddings").__str__(),
                        json={"input": texts[0], "encoding_format": "float"}).json()
    assert np.allclose(floats["data"][0]["embedding"], v[0], atol=1e-5)
    # alone or packed with others into one llama.cpp call: the same direction
    assert lmnb.embed(texts[0]) @ v[0] > 0.9999


# ---- errors --------------------------------------------------------------------------------------
def _post(server, path: str, body, headers=None):
    data = body if isinstance(body, str) else json.dumps(body)
    return httpx.post(server.url + path, content=data,
                      headers={"content-type": "application/json", **(headers or {})}, timeout=60)


@pytest.mark.parametrize(
    "path, body, status, param, code",
    [
        ("/chat/completions", '{"messages": [', 400, None, None),
        ("/chat/completions", {"messages": []}, 400, "messages", None),
        ("/chat/completions", {"messages": "hi"}, 400, "messages", None),
        ("/chat/completions", {"messages": ASK, "max_tokens": -5}, 400, "max_tokens", None),
        ("/chat/completions", {"messages": ASK, "temperature": 7}, 400, "temperature", None),
        ("/chat/completions", {"messages": ASK, "temperature": "hot"}, 400, "temperature", None),
        ("/chat/completions", {"messages": ASK, "top_p": -0.1}, 400, "top_p", None),
        ("/chat/completions", {"messages": [{"role": "wizard", "content": "x"}]}, 400, "messages.0.role", None),
        ("/chat/completions", {"messages": ASK, "n": 2, "stream": True}, 400, "n", None),
        ("/chat/completions", {"messages": ASK, "tools": [{"type": "function"}]}, 400, "tools.0.function", None),
        ("/chat/completions", {"messages": ASK, "response_format": {"type": "xml"}}, 400, None, None),
        ("/chat/completions", {"messages": [{"role": "user", "content": "word " * 3000}]}, 400, "messages",
         "context_length_exceeded"),
        ("/completions", {"prompt": "word " * 3000, "stream": True}, 400, "prompt", "context_length_exceeded"),
        ("/completions", {"prompt": ""}, 400, "prompt", None),
        ("/embeddings", {"input": []}, 400, "input", None),
        ("/nothing/here", {}, 404, None, None),
    ],
)
def test_errors_have_openai_shape(server, loaded, path, body, status, param, code):
    r = _post(server, path, body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["message"] and "Traceback" not in err["message"]
    assert err["type"] == "invalid_request_error"
    if param is not None:
        assert err["param"] == param
    if code is not None:
        assert err["code"] == code


def test_an_unknown_model_is_a_404_with_strict_model_names(server, loaded):
    cfg = lmnb.configure(strict_model_names=True)
    try:
        r = _post(server, "/chat/completions", {"model": "gpt-4o", "messages": ASK, "max_tokens": 2})
    finally:
        cfg.strict_model_names = False
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    assert r.json()["error"]["param"] == "model"
    # by default the default model answers, and says so
    r = _post(server, "/chat/completions", {"model": "gpt-4o", "messages": ASK, "max_tokens": 2})
    assert r.status_code == 200 and r.json()["model"] == lmnb.get_engine().info.name


def test_no_model_loaded_is_503(server, client, loaded, smollm2_path):
    lmnb.unload()
    try:
        assert httpx.get(server_root(server) + "/health").status_code == 503
        with pytest.raises(openai.InternalServerError) as e:
            client.chat.completions.create(model="", messages=ASK)
        assert e.value.status_code == 503 and "No model is loaded" in e.value.message
    finally:
        lmnb.load(smollm2_path, n_ctx=2048)
    assert httpx.get(server_root(server) + "/health").status_code == 200


def test_api_key_is_enforced(loaded):
    with Server("127.0.0.1", 0, api_key="s3cret") as srv:
        assert httpx.get(srv.url + "/models").status_code == 401
        assert httpx.get(srv.url + "/models", headers={"Authorization": "Bearer nope"}).json()["error"]["code"] == (
            "invalid_api_key")
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=srv.url, api_key="wrong", max_retries=0).models.list()
        good = openai.OpenAI(base_url=srv.url, api_key="s3cret", max_retries=0)
        assert good.chat.completions.create(model="", messages=ASK, max_tokens=2).choices
        assert httpx.get(server_root(srv) + "/health").status_code == 200  # health checks need no key


# ---- concurrency and cancellation ----------------------------------------------------------------
def test_eight_clients_at_once_get_their_own_answers(client, loaded, smollm2_path):
    # batch_invariant: decoded together, each reply is exactly the one alone (in the default shared
    # cache a greedy reply can part from it: tests/test_shared_cache.py covers that mode)
    lmnb.load(smollm2_path, n_ctx=2048, batch_invariant=True)
    questions = [f"Repeat exactly: {w}" for w in ("apple", "river", "seven", "violet", "Paris", "laptop",
                                                  "thunder", "oxygen")]
    alone = [lmnb.chat(q, max_tokens=12, temperature=0).text for q in questions]
    answers: dict[int, str] = {}

    def ask(i: int) -> None:
        r = client.chat.completions.create(model="", messages=[{"role": "user", "content": questions[i]}],
                                           max_tokens=12, temperature=0)
        answers[i] = r.choices[0].message.content

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert [answers.get(i) for i in range(8)] == alone


def test_disconnect_mid_stream_cancels_generation(server, client, loaded):
    before = dict(loaded.stats)
    with httpx.stream("POST", server.url + "/chat/completions", timeout=60,
                      json={"messages": [{"role": "user", "content": "Write a very long story."}],
                            "max_tokens": 1500, "stream": True}) as r:
        got = 0
        for line in r.iter_lines():
            if line.startswith("data: "):
                got += 1
            if got >= 5:
                break
    # the engine goes idle with far fewer than the 1500 tokens asked for: it stopped, not finished
    assert idle(loaded, 30.0), "the engine kept generating for a client that left"
    assert loaded.stats["requests_cancelled"] == before["requests_cancelled"] + 1
    assert loaded.stats["generated_tokens"] - before["generated_tokens"] < 200
    r = client.chat.completions.create(model="", messages=ASK, max_tokens=4, temperature=0)
    assert r.choices and r.usage.completion_tokens > 0  # the next request is served


def test_disconnect_while_waiting_for_a_plain_reply_cancels_it(server, loaded):
    before = loaded.stats["requests_cancelled"]
    # the end-of-generation tokens are banned, so the reply runs to 1,500 tokens (seconds), far past
    # the client's 1 s: a short sampled story would otherwise end before the client gives up
    no_end = {str(t): -100 for t in (0, 2, 4)}  # SmolLM2's <|endoftext|>, <|im_end|>, <reponame>
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(server.url + "/chat/completions", timeout=1.0,
                   json={"messages": [{"role": "user", "content": "Write a very long story."}], "max_tokens": 1500,
                         "logit_bias": no_end})  # fmt: skip
    assert idle(loaded, 30.0)
    assert loaded.stats["requests_cancelled"] == before + 1


def test_cancelled_in_the_kernel_is_an_error_not_a_stop(server, client, loaded):
    """The notebook cancels an HTTP client's generation: the client hears why, not "stop"."""
    got: dict = {}

    def ask() -> None:
        try:
            client.chat.completions.create(model="", messages=[{"role": "user", "content": "Write a long story."}],
                                           max_tokens=1500)
        except openai.APIStatusError as e:
            got["error"] = e

    t = threading.Thread(target=ask)
    t.start()
    deadline = time.monotonic() + 10
    while not loaded.active() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert loaded.cancel(loaded.active()[0].id)
    t.join(30)
    assert got["error"].status_code == 503 and got["error"].code == "cancelled"
    assert client.chat.completions.create(model="", messages=ASK, max_tokens=2).choices


def test_kernel_stays_responsive_while_serving(server, loaded):
    def long_stream() -> None:
        with httpx.stream("POST", server.url + "/chat/completions", timeout=60,
                          json={"messages": ASK, "max_tokens": 200, "stream": True}) as r:
            for _ in r.iter_lines():
                pass

    t = threading.Thread(target=long_stream)
    t.start()
    assert wait_for(lambda: loaded.active()), "the HTTP request never started"
    t0 = time.perf_counter()
    st = lmnb.status()
    assert time.perf_counter() - t0 < 0.5 and st.loaded
    # a notebook cell queues behind the HTTP request and then runs: both finish
    assert lmnb.chat("Hi", max_tokens=4).text is not None
    t.join(60)


# ---- starting and stopping -----------------------------------------------------------------------
def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def test_serve_magic_start_status_stop_restart(shell):
    from lmnb.server import current

    if current() is not None:
        current().stop()
    with capture_output() as cap:
        shell.run_line_magic("lm", "serve --port 0")
    srv = current()
    assert srv is not None and srv.url in cap.stdout and srv.host == "127.0.0.1"
    port = srv.port
    httpx.get(srv.url + "/models")
    with capture_output() as cap:
        shell.run_line_magic("lm", "serve")
    assert "requests served" in cap.stdout and srv.url in cap.stdout and "Up " in cap.stdout
    assert lmnb.get_engine().info.name in cap.stdout
    with capture_output() as cap:
        shell.run_line_magic("lm", "serve --stop")
    assert "Stopped" in cap.stdout and current() is None and _port_free(port)
    with capture_output():
        shell.run_line_magic("lm", f"serve --port {port}")  # start again, same port
    assert current().port == port and httpx.get(server_root(current()) + "/health").status_code == 200
    current().stop()


def test_busy_port_is_a_clear_error(loaded):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(lmnb.LmnbError, match="in use"):
            lmnb.serve(port=s.getsockname()[1])


def test_cors(loaded):
    with Server("127.0.0.1", 0, cors=["http://example.org"]) as srv:
        r = httpx.options(srv.url + "/chat/completions", headers={
            "Origin": "http://example.org", "Access-Control-Request-Method": "POST"})
        assert r.headers.get("access-control-allow-origin") == "http://example.org"
        r = httpx.get(srv.url + "/models", headers={"Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in r.headers


# ---- remote backends -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def other_process_server(smollm2_path):
    """An lmnb server in a separate process (as another machine would run it)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "lmnb", "serve", smollm2_path, "--port", "0", "--ctx", "2048", "--api-key", "k2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("Serving "), proc.stderr.read()
        yield line.split(" at ")[-1].strip()
    finally:
        proc.terminate()
        proc.wait(30)


def test_connect_to_another_lmnb_process(other_process_server, shell, loaded):
    url = other_process_server
    with pytest.raises(lmnb.LmnbError, match="API key"):
        lmnb.connect(url, api_key="wrong")
    local = lmnb.chat(ASK, max_tokens=16, temperature=0).text
    backend = lmnb.connect(url, api_key="k2")
    try:
        assert backend.model == loaded.info.name
        remote = lmnb.chat(ASK, max_tokens=16, temperature=0)
        assert remote.text == local  # the same model and greedy decoding, in another process
        assert remote.usage.completion_tokens > 0 and lmnb.status().backend.startswith(url)
        streamed = "".join(lmnb.chat(ASK, max_tokens=16, temperature=0, stream=True))
        assert streamed == local
        with capture_output() as cap:
            r = shell.run_cell("%%lm chat --name remote -t 0 -n 12\nMy name is Ada. Say hi.")
        assert r.success
        assert lmnb.conversation("remote").messages[-1]["role"] == "assistant"
        with capture_output() as cap:
            shell.run_line_magic("lm", "status")
        assert "Connected to" in cap.stdout
    finally:
        with capture_output() as cap:
            shell.run_line_magic("lm", "disconnect")
    assert "local engine" in cap.stdout and lmnb.status().backend == "local"


def test_connect_errors_are_clear(loaded):
    with pytest.raises(lmnb.LmnbError, match="Cannot reach"):
        lmnb.connect("http://127.0.0.1:9/v1")
    with Server("127.0.0.1", 0) as srv:
        with pytest.raises(lmnb.LmnbError, match="no model 'nope'"):
            lmnb.connect(srv.url, model="nope")
