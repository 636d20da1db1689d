"""``POST /v1/rerank``: documents ranked by relevance to a query, for clients that bring their own RAG.

Jina's and Cohere's request and response shape, which llama-server's ``/v1/rerank`` also answers
(and its alias ``/v1/reranking``). The score is the cosine similarity of the query's and each
document's embedding from the embedding model, chosen as for ``/v1/embeddings``; a cross-encoder
reranker GGUF is not used as one (it would be read as an embedding model).
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from ..engine import Engine
from ..relevance import RerankInputError, rank
from . import schemas as S
from .errors import ERROR_DOCS, APIError
from .routes import authenticate, embedding_model, get_engine

# mounted at /v1 and at the root, like the other OpenAI routes
rerank_routes = APIRouter(dependencies=[Depends(authenticate)], responses=ERROR_DOCS)


@rerank_routes.post("/rerank", response_model=S.RerankResponse)
@rerank_routes.post("/reranking", response_model=S.RerankResponse, include_in_schema=False)  # llama-server's alias
async def rerank(body: S.RerankRequest, engine: Engine = Depends(get_engine)) -> JSONResponse:
    """The documents, best first, scored by the cosine similarity of their embeddings with the query's."""
    source, info = embedding_model(engine, body.model)
    texts = [d if isinstance(d, str) else d.text for d in body.documents]
    try:
        pairs, n_tokens = await asyncio.to_thread(rank, engine, body.query, texts, source=source, top_n=body.top_n)
    except RerankInputError as e:
        raise APIError(400, str(e), param=e.field) from None
    results = []
    for i, score in pairs:
        result: dict = {"index": i, "relevance_score": score}
        if body.return_documents:
            result["document"] = {"text": texts[i]}
        results.append(result)
    return JSONResponse({"object": "list", "model": info.name, "results": results,
                         "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens}})
