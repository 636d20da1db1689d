"""``GET``/``POST /lora-adapters``: the loaded model's LoRA adapters and their scales (llama-server's routes).

The scales set here are what requests without their own ``lora`` field get; adapters are added
and removed in the notebook (``lmnb.lora``) or with ``lmnb serve --lora``.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from ..engine import Engine
from . import schemas as S
from .errors import ERROR_DOCS, APIError, no_model
from .routes import authenticate, get_engine

lora_routes = APIRouter(dependencies=[Depends(authenticate)], responses=ERROR_DOCS)


def _listing(engine: Engine) -> list[dict]:
    return [{"id": i, "path": a.source or a.path, "scale": a.scale} for i, a in enumerate(engine.loras())]


@lora_routes.get("/lora-adapters", response_model=list[S.LoraAdapter])
async def list_adapters(engine: Engine = Depends(get_engine)) -> JSONResponse:
    """The adapters on the default model, with their ids (positions) and scales."""
    if not engine.loaded:
        raise no_model()
    return JSONResponse(_listing(engine))


@lora_routes.post("/lora-adapters", response_model=list[S.LoraAdapter])
async def set_adapters(body: list[S.LoraScale], engine: Engine = Depends(get_engine)) -> JSONResponse:
    """Set the scales: each listed adapter gets its scale, the others 0 (as llama-server does)."""
    import asyncio

    if not engine.loaded:
        raise no_model()
    adapters = engine.loras()
    scales = {a.name: 0.0 for a in adapters}
    for entry in body:
        if not 0 <= entry.id < len(adapters):
            raise APIError(400, f"no LoRA adapter with id {entry.id} ({len(adapters)} loaded)", param="lora")
        scales[adapters[entry.id].name] = entry.scale

    def apply() -> None:  # waits for running requests, like the notebook's own rescale
        for name, scale in scales.items():
            engine.scale_lora(name, scale)

    await asyncio.get_running_loop().run_in_executor(None, apply)
    return JSONResponse(_listing(engine))
