"""Request and response bodies of the OpenAI-compatible API, as pydantic models.

They are the validation layer (a wrong type or an out-of-range value becomes a 400 before the
engine sees it) and the ``/openapi.json`` documentation at once. Requests are strict (no
``"0.5"`` for a number) and ignore fields we do not use (``user``, ``store``, ``metadata``...), as
OpenAI clients send them freely.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field


class _Request(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


# ---- sampling fields shared by /v1/chat/completions and /v1/completions ------------------------
class _Sampling(_Request):
    model: Optional[str] = Field(None, description="The loaded model's id (see /v1/models); empty means the loaded one.")
    temperature: Optional[float] = Field(None, ge=0, le=2)
    top_p: Optional[float] = Field(None, ge=0, le=1, description="0 keeps only the most likely token (greedy).")
    top_k: Optional[int] = Field(None, ge=0, description="llama.cpp extension: keep the k most likely tokens.")
    min_p: Optional[float] = Field(None, ge=0, le=1, description="llama.cpp extension.")
    repeat_penalty: Optional[float] = Field(None, gt=0, le=10, description="llama.cpp extension.")
    presence_penalty: Optional[float] = Field(None, ge=-2, le=2)
    frequency_penalty: Optional[float] = Field(None, ge=-2, le=2)
    max_tokens: Optional[int] = Field(None, ge=1)
    seed: Optional[int] = Field(None, ge=-(2**63), le=2**63 - 1)
    stop: Optional[Union[str, Annotated[list[str], Field(max_length=16)]]] = None
    stream: Optional[bool] = False
    stream_options: Optional["StreamOptions"] = None
    n: Optional[int] = Field(1, ge=1, le=16)


class StreamOptions(_Request):
    include_usage: Optional[bool] = False


class TextPart(_Request):
    type: Literal["text"]
    text: str


class OtherPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str


class ChatMessage(_Request):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Optional[Union[str, list[Union[TextPart, OtherPart]]]] = None
    name: Optional[str] = None


class JSONSchemaSpec(_Request):
    name: str = "response"
    description: Optional[str] = None
    schema_: Optional[dict[str, Any]] = Field(None, alias="schema")
    strict: Optional[bool] = None


class ResponseFormatText(_Request):
    type: Literal["text"]


class ResponseFormatJSONObject(_Request):
    type: Literal["json_object"]


class ResponseFormatJSONSchema(_Request):
    type: Literal["json_schema"]
    json_schema: JSONSchemaSpec


ResponseFormat = Annotated[
    Union[ResponseFormatText, ResponseFormatJSONObject, ResponseFormatJSONSchema], Field(discriminator="type")
]


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(..., min_length=1)
    max_completion_tokens: Optional[int] = Field(None, ge=1)
    response_format: Optional[ResponseFormat] = None
    logprobs: Optional[bool] = False
    top_logprobs: Optional[int] = Field(None, ge=0, le=20)
    tools: Optional[list[dict[str, Any]]] = None


class CompletionRequest(_Sampling):
    prompt: Union[str, Annotated[list[str], Field(min_length=1, max_length=16)]]
    echo: Optional[bool] = False
    suffix: Optional[str] = None
    logprobs: Optional[int] = Field(None, ge=0, le=5)
    max_tokens: Optional[int] = Field(16, ge=1)  # OpenAI's default for this endpoint


MAX_EMBEDDING_INPUTS = 2048  # OpenAI's limit (LangChain sends 1000 texts per request)


class EmbeddingRequest(_Request):
    input: Union[str, Annotated[list[str], Field(min_length=1, max_length=MAX_EMBEDDING_INPUTS)]]
    model: Optional[str] = None
    encoding_format: Optional[Literal["float", "base64"]] = "float"
    dimensions: Optional[int] = Field(None, ge=1)


class TokenizeRequest(_Request):
    """llama-server's ``/tokenize``."""

    content: str
    add_special: bool = Field(False, description="Add the model's special tokens (BOS) and read special-token "
                                                 "text such as <|im_start|> as the one token it names.")
    with_pieces: bool = Field(False, description="Give each token as {id, piece} (piece: its text, or its bytes "
                                                 "when they are not whole UTF-8).")


class DetokenizeRequest(_Request):
    """llama-server's ``/detokenize``."""

    tokens: list[int]


# ---- responses (documentation for /openapi.json; checked by the schemathesis test) ------------
class ErrorDetail(BaseModel):
    message: str
    type: str
    param: Optional[str] = None
    code: Optional[str] = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: Optional[dict[str, int]] = None


class AssistantMessage(BaseModel):
    role: Literal["assistant"]
    content: Optional[str]


class TokenLogprob(BaseModel):
    token: str
    logprob: float
    bytes: Optional[list[int]]
    top_logprobs: list[dict[str, Any]]


class ChoiceLogprobs(BaseModel):
    content: Optional[list[TokenLogprob]]


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: Optional[Literal["stop", "length"]]
    logprobs: Optional[ChoiceLogprobs] = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
    system_fingerprint: Optional[str] = None
    timings: Optional[dict[str, float]] = Field(None, description="lmnb extension: engine timings of each choice.")


class CompletionChoice(BaseModel):
    index: int
    text: str
    finish_reason: Optional[Literal["stop", "length"]]
    logprobs: Optional[dict[str, Any]] = None


class TextCompletion(BaseModel):
    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage


class Embedding(BaseModel):
    object: Literal["embedding"]
    index: int
    embedding: Union[list[float], str]


class EmbeddingList(BaseModel):
    object: Literal["list"]
    data: list[Embedding]
    model: str
    usage: dict[str, int]


class ModelCard(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str
    loaded: bool = Field(description="lmnb extension: whether this model is the one loaded in the kernel.")
    path: Optional[str] = None


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[ModelCard]


class Health(BaseModel):
    status: Literal["ok", "no model loaded"]
    model: Optional[str] = None


class TokenPiece(BaseModel):
    id: int
    piece: Union[str, list[int]]


class TokenizeResponse(BaseModel):
    tokens: Union[list[int], list[TokenPiece]]


class DetokenizeResponse(BaseModel):
    content: str
