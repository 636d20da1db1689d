"""Errors in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``.

``APIError`` is what routes raise; ``as_api_error`` maps engine exceptions (no model, prompt too
long, bad value) to it, so nothing a client does produces a 500; ``install_handlers`` makes
FastAPI's own errors (validation, 404, 405) and anything unexpected answer in the same shape.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import ContextOverflow, LmnbError, NoModelLoaded
from . import schemas as S
from .guard import quote

log = logging.getLogger("lmnb.server")

_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 403: "invalid_request_error",
          404: "invalid_request_error", 405: "invalid_request_error", 413: "invalid_request_error",
          415: "invalid_request_error", 503: "server_error", 500: "server_error"}

# the OpenAPI ``responses`` of every route that can fail
ERROR_DOCS: dict[int | str, dict[str, Any]] = {
    400: {"model": S.ErrorResponse, "description": "Invalid request (bad value, prompt too long for the context)"},
    401: {"model": S.ErrorResponse, "description": "Missing or wrong API key"},
    404: {"model": S.ErrorResponse, "description": "Unknown model"},
    503: {"model": S.ErrorResponse, "description": "No model loaded"},
}


class APIError(Exception):
    """An error to send to the client in OpenAI's shape."""

    def __init__(self, status: int, message: str, param: Optional[str] = None, code: Optional[str] = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


def error_body(status: int, message: str, param: Optional[str] = None, code: Optional[str] = None) -> dict:
    """The JSON body of an error response."""
    return {"error": {"message": message, "type": _TYPES.get(status, "invalid_request_error"),
                      "param": param, "code": code}}


def error_response(e: APIError) -> JSONResponse:
    return JSONResponse(error_body(e.status, e.message, e.param, e.code), status_code=e.status)


def as_api_error(e: BaseException, prompt_field: str = "messages") -> APIError:
    """Map engine exceptions to HTTP errors: nothing a client does may produce a 500.

    Args:
        e: what the engine (or a route) raised.
        prompt_field: the request field a too-long prompt is blamed on (``messages`` or ``prompt``).
    """
    if isinstance(e, APIError):
        return e
    if isinstance(e, NoModelLoaded):
        return no_model()
    if isinstance(e, ContextOverflow):
        return APIError(400, str(e), param=prompt_field, code="context_length_exceeded")
    if isinstance(e, (ValueError, LmnbError)):
        return APIError(400, str(e))
    log.exception("internal error")
    return APIError(500, f"internal error ({type(e).__name__}); see the kernel's log")


_as_api_error = as_api_error  # the name it had in app.py


def no_model() -> APIError:
    return APIError(503, "No model is loaded in the kernel. Load one with `%lm load` (or lmnb.load()).",
                    code="model_not_loaded")


def cancelled_in_kernel() -> APIError:
    """A generation cancelled while its client was still there: the notebook unloaded or
    reloaded the model, or the server is stopping. Never reported as a normal "stop"."""
    return APIError(503, "The generation was cancelled in the kernel (the model was unloaded or reloaded, "
                         "or the server is stopping).", code="cancelled")


def not_json(content_type: str) -> APIError:
    """A body sent as something other than JSON. It is never parsed: a web page can send text
    and form bodies to localhost without a CORS preflight."""
    got = f"Content-Type {quote(content_type)}" if content_type else "no Content-Type"
    return APIError(400, f"The request body must be JSON sent with 'Content-Type: application/json' "
                         f"(this request has {got}).")


def is_json_type(content_type: str) -> bool:
    """Whether a Content-Type header names JSON (``application/json``, ``application/*+json``)."""
    media = content_type.split(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def _is_type_tag(part: Any) -> bool:
    """Whether a validation-error path element is pydantic's union-branch tag, not a field."""
    if not isinstance(part, str):
        return False
    return part in ("str", "int", "float", "bool", "list", "dict") or "[" in part or part[:1].isupper()


def validation_error(request: Request, e: RequestValidationError) -> APIError:
    """One readable 400 for a request pydantic refused: the first problem, by its field path."""
    errs = list(e.errors())
    # A value that fits no branch of a union gets one error per branch; the type mismatches
    # ("Input should be a valid string" for a list) say less than the others (a list too long).
    errs.sort(key=lambda err: str(err.get("type", "")).endswith("_type"))
    first = errs[0] if errs else {"loc": (), "msg": "invalid request"}
    content_type = request.headers.get("content-type", "")
    if tuple(first.get("loc", ())) == ("body",) and not is_json_type(content_type):
        return not_json(content_type)  # FastAPI reads only JSON bodies as JSON: others arrive as bytes
    if first.get("type") == "json_invalid":
        return APIError(400, f"The request body is not valid JSON: {first.get('ctx', {}).get('error', first['msg'])}")
    # drop "body" and pydantic's union-branch tags ("str", "list[str]", "TextPart") from the path
    loc = [str(x) for x in first.get("loc", ()) if x != "body" and not _is_type_tag(x)]
    param = ".".join(loc) or None
    ctx = first.get("ctx") or {}
    if first.get("type") == "too_long" and "max_length" in ctx:
        got = f" (this request has {ctx['actual_length']})" if ctx.get("actual_length") is not None else ""
        return APIError(400, f"{param or 'body'}: at most {ctx['max_length']} items are allowed{got}.", param=param)
    more = f" (and {len(errs) - 1} more problems)" if len(errs) > 1 else ""
    return APIError(400, f"{param or 'body'}: {first['msg']}{more}", param=param)


def install_handlers(app: FastAPI) -> None:
    """Answer every error of ``app`` in OpenAI's shape."""

    async def api_error(_: Request, e: Exception) -> JSONResponse:
        return error_response(e if isinstance(e, APIError) else as_api_error(e))

    async def invalid(request: Request, e: Exception) -> JSONResponse:
        assert isinstance(e, RequestValidationError)
        return error_response(validation_error(request, e))

    async def http(_: Request, e: Exception) -> JSONResponse:
        assert isinstance(e, StarletteHTTPException)
        return error_response(APIError(e.status_code, str(e.detail)))

    app.add_exception_handler(APIError, api_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(StarletteHTTPException, http)
    app.add_exception_handler(Exception, api_error)
