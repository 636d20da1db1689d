"""`lmnb.rerank` and `/v1/rerank` (Jina/Cohere shape): documents ranked by the cosine similarity of
their embeddings with the query's, on the real SmolLM2 model (mean-pooled) and Gemma 3 270M as a
separate embedding model."""

from __future__ import annotations

import re

import httpx
import pytest

import lmnb
from lmnb.relevance import RerankInputError
from lmnb.server import Server
from lmnb.sources.library import bundled_model

from .conftest import server_root

DOCS = [
    "Penguins live in Antarctica and the southern oceans.",
    "The stock market fell sharply on Tuesday.",
    "Bake the bread at 220 degrees for thirty minutes.",
    "The train to Paris leaves at noon.",
]
# Questions whose answer SmolLM2's mean-pooled embeddings rank first, each by a margin of 0.05 or
# more in cosine (measured; single keywords such as "bread" do not rank right with this model).
QUESTIONS = {
    "Where do penguins live?": 0,
    "What happened to the stock market?": 1,
    "How long should I bake bread?": 2,
    "What time does the train to Paris leave?": 3,
}


def _rerank(url: str, body: dict, headers: dict | None = None) -> httpx.Response:
    return httpx.post(url + "/rerank", json=body, headers=headers, timeout=60)


@pytest.fixture
def no_embedder(loaded):
    yield
    lmnb.unload_embedder()


def test_the_relevant_document_ranks_first(loaded, no_embedder):
    for question, best in QUESTIONS.items():
        ranked = lmnb.rerank(question, DOCS)
        assert ranked[0].index == best and ranked[0].text == DOCS[best], (question, ranked)
        assert sorted(r.index for r in ranked) == [0, 1, 2, 3]
        scores = [r.score for r in ranked]
        assert scores == sorted(scores, reverse=True) and all(-1 <= s <= 1 for s in scores)
    top = lmnb.rerank(question, DOCS, top_n=2)
    assert [(r.index, r.score) for r in top] == [(r.index, r.score) for r in ranked[:2]]


def test_the_route_and_the_verb_give_the_same_ranking(server, loaded, no_embedder):
    question = "What time does the train to Paris leave?"
    r = _rerank(server.url, {"query": question, "documents": DOCS})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "list" and body["model"] == loaded.info.name
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 20
    verb = lmnb.rerank(question, DOCS)
    assert [x["index"] for x in body["results"]] == [x.index for x in verb]
    assert [x["relevance_score"] for x in body["results"]] == pytest.approx([x.score for x in verb], abs=1e-5)
    assert [x["document"]["text"] for x in body["results"]] == [x.text for x in verb]
    # llama-server's other addresses answer the same: without /v1, and the /reranking alias
    for url, path in ((server_root(server), "/rerank"), (server.url, "/reranking")):
        again = httpx.post(url + path, json={"query": question, "documents": DOCS}, timeout=60).json()
        assert [x["index"] for x in again["results"]] == [x.index for x in verb]


def test_top_n_document_objects_and_no_documents_back(server, loaded, no_embedder):
    question = "How long should I bake bread?"
    full = _rerank(server.url, {"query": question, "documents": DOCS}).json()["results"]
    mixed = [{"text": d} if i % 2 else d for i, d in enumerate(DOCS)]  # strings and {"text": ...} alike
    r = _rerank(server.url, {"query": question, "documents": mixed, "top_n": 2, "return_documents": False})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["index"] for x in results] == [x["index"] for x in full[:2]] and results[0]["index"] == 2
    assert all(set(x) == {"index", "relevance_score"} for x in results)
    # a top_n past the number of documents gives them all
    assert len(_rerank(server.url, {"query": question, "documents": DOCS, "top_n": 50}).json()["results"]) == 4


@pytest.mark.parametrize(
    "body, status, param, message",
    [
        ({"query": "", "documents": DOCS}, 400, "query", None),
        ({"query": "   ", "documents": DOCS}, 400, "query", "the query is empty"),
        ({"query": "x", "documents": []}, 400, "documents", None),
        ({"query": "x", "documents": ["fine", "word " * 3000]}, 400, "documents.1",
         r"documents\[1\] is \d+ tokens; embeddings take at most 2048"),
        ({"query": "x", "documents": ["fine", " "]}, 400, "documents.1", r"documents\[1\] is empty"),
        ({"query": "x", "documents": [{"title": "no text"}]}, 400, "documents.0.text", None),
        ({"query": "x", "documents": DOCS, "top_n": 0}, 400, "top_n", None),
        ({"query": "x", "documents": DOCS, "model": "no-such-reranker"}, 404, "model", "no-such-reranker"),
    ],
)
def test_bad_requests_get_openai_errors(server, loaded, body, status, param, message):
    r = _rerank(server.url, body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["type"] == "invalid_request_error"
    assert err["param"] == param
    if message:
        assert re.search(message, err["message"]), err["message"]


def test_the_verb_refuses_bad_input(loaded, no_embedder):
    for args, kwargs, field in [
        (("  ", DOCS), {}, "query"),
        (("bread?", []), {}, "documents"),
        (("bread?", DOCS), {"top_n": 0}, "top_n"),
        (("word " * 3000, DOCS), {}, "query"),
        (("bread?", ["fine", ""]), {}, "documents.1"),
    ]:
        with pytest.raises(RerankInputError) as e:
            lmnb.rerank(*args, **kwargs)
        assert e.value.field == field and isinstance(e.value, ValueError)
    assert lmnb.rerank("Where do penguins live?", DOCS, top_n=1)[0].index == 0  # the engine goes on


def test_a_separate_embedding_model_ranks_and_names_itself(server, loaded, no_embedder):
    info = lmnb.load_embedder(bundled_model("gemma3"))
    question = "Where do penguins live?"
    body = _rerank(server.url, {"query": question, "documents": DOCS}).json()
    assert body["model"] == info.name
    verb = lmnb.rerank(question, DOCS)
    assert [x["index"] for x in body["results"]] == [x.index for x in verb]
    assert [x["relevance_score"] for x in body["results"]] == pytest.approx([x.score for x in verb], abs=1e-5)
    # the chat model by name scores as without the embedding model
    chat = _rerank(server.url, {"query": question, "documents": DOCS, "model": loaded.info.name}).json()
    assert chat["model"] == loaded.info.name and chat["results"][0]["index"] == 0


def test_the_api_key_guards_rerank(loaded):
    with Server("127.0.0.1", 0, api_key="s3cret") as srv:
        body = {"query": "Where do penguins live?", "documents": DOCS}
        r = _rerank(srv.url, body)
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        assert _rerank(srv.url, body, {"Authorization": "Bearer nope"}).status_code == 401
        r = _rerank(srv.url, body, {"Authorization": "Bearer s3cret"})
        assert r.status_code == 200 and r.json()["results"][0]["index"] == 0


def test_openapi_documents_the_route_once(server, loaded):
    spec = httpx.get(server_root(server) + "/openapi.json", timeout=30).json()
    assert "/v1/rerank" in spec["paths"]
    assert not {"/rerank", "/v1/reranking", "/reranking"} & set(spec["paths"])
    props = spec["components"]["schemas"]["RerankRequest"]["properties"]
    assert {"query", "documents", "top_n", "return_documents", "model"} <= set(props)
