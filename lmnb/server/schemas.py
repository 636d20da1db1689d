"""Request and response bodies of the OpenAI-compatible API, as pydantic models.

They are the validation layer (a wrong type or an out-of-range value becomes a 400 before the
engine sees it) and the ``/openapi.json`` documentation at once. Requests are strict (no
``"0.5"`` for a number) and ignore fields we do not use (``user``, ``store``, ``metadata``...), as
OpenAI clients send them freely.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, create_model, field_validator


class _Request(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


# ---- sampling fields shared by /v1/chat/completions and /v1/completions ------------------------
from ..params import SAMPLING  # noqa: E402 - the declarations the fields are built from


def _sampling_fields() -> dict[str, Any]:
    """One request field per declared sampling parameter (lmnb.params), with its range and help.

    A parameter with special values outside its range (``max_tokens: -1``) is checked by
    ``SamplingRequest._declared_ranges`` instead, with the message every other surface gives.
    """
    fields: dict[str, Any] = {}
    for p in SAMPLING:
        if p.name == "stop":
            continue  # a string or a list (below)
        if p.type is dict:
            fields[p.openai or p.name] = (Optional[dict[str, float]], Field(None, description=p.help))
            continue
        if p.choices:  # Literal: the schema lists the values, and a wrong one is a 400 naming them
            fields[p.openai or p.name] = (Optional[Literal[p.choices]], Field(None, description="lmnb extension. " + p.help))
            continue
        kind = float if p.type is float else int
        extension = "" if p.openai else "llama.cpp extension. "
        fields[p.openai or p.name] = (Optional[kind], Field(None, description=extension + p.help,
                                                            **_bounds(p)))  # fmt: skip
    return fields


def _bounds(p: Any) -> dict[str, float]:
    if p.special:
        return {}
    out: dict[str, float] = {}
    if p.lo != float("-inf"):
        out["gt" if p.lo_open else "ge"] = p.lo
    if p.hi != float("inf"):
        out["le"] = p.hi
    return out


_SamplingFields = create_model("_SamplingFields", __base__=_Request, **_sampling_fields())
_SPECIAL = tuple(p.name for p in SAMPLING if p.special)  # checked by SamplingRequest._declared_ranges


class LoraScale(_Request):
    id: int = Field(ge=0, description="The adapter's position in GET /lora-adapters")
    scale: float = Field(1.0, allow_inf_nan=False)


class SamplingRequest(_SamplingFields):  # type: ignore[misc, valid-type]
    model: Optional[str] = Field(None, description="A loaded model's id (see /v1/models); empty means the default one.")
    stop: Optional[Union[str, Annotated[list[str], Field(max_length=16)]]] = None
    stream: Optional[bool] = False
    stream_options: Optional["StreamOptions"] = None
    n: Optional[int] = Field(1, ge=1, le=16)
    lora: Optional[Annotated[list[LoraScale], Field(max_length=64)]] = Field(None, description=(
        "LoRA adapters for this request (llama-server's field): [{id, scale}] with ids from "
        "GET /lora-adapters; [] is the base model alone. Absent: the adapters at their set scales."))
    return_progress: Optional[bool] = Field(False, description=(
        "Streaming: chunks with prompt_progress {total, cache, processed, time_ms} while the prompt is "
        "read, before the first token (llama-server's field)."))

    @field_validator(*_SPECIAL, "logit_bias")
    @classmethod
    def _declared_ranges(cls, value: Any, info: ValidationInfo) -> Any:
        """Parameters with special values outside their range, and logit_bias: the message every
        surface gives, as a 400 naming the field."""
        from ..params import BY_NAME, check_logit_bias

        if value is None:
            return value
        if info.field_name == "logit_bias":
            check_logit_bias(value)
            return value
        return BY_NAME[info.field_name].check(value)


class LoraAdapter(BaseModel):
    id: int
    path: str
    scale: float


class StreamOptions(_Request):
    include_usage: Optional[bool] = False


class TextPart(_Request):
    type: Literal["text"]
    text: str


class OtherPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str


class FunctionCall(_Request):
    name: str
    arguments: str = "{}"  # JSON text, as OpenAI sends it


class ToolCallItem(_Request):
    id: str = ""
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(_Request):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Optional[Union[str, list[Union[TextPart, OtherPart]]]] = None
    name: Optional[str] = None
    tool_calls: Optional[list[ToolCallItem]] = None  # an assistant's calls, earlier in the chat
    tool_call_id: Optional[str] = None  # a tool message: the call it answers


class FunctionSpec(_Request):
    name: str = Field(..., min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    description: Optional[str] = None
    parameters: Optional[dict[str, Any]] = None
    strict: Optional[bool] = None


class ToolSpec(_Request):
    type: Literal["function"]
    function: FunctionSpec


class NamedToolChoice(_Request):
    type: Literal["function"]
    function: dict[str, Any]


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


class ChatCompletionRequest(SamplingRequest):
    messages: list[ChatMessage] = Field(..., min_length=1)
    max_completion_tokens: Optional[int] = Field(None, ge=1)
    response_format: Optional[ResponseFormat] = None
    logprobs: Optional[bool] = False
    top_logprobs: Optional[int] = Field(None, ge=0, le=20)
    tools: Optional[list[ToolSpec]] = Field(None, max_length=128)
    tool_choice: Optional[Union[Literal["none", "auto", "required"], NamedToolChoice]] = None
    parallel_tool_calls: Optional[bool] = None
    # llama-server's: extra variables for the chat template, e.g. {"enable_thinking": false} (Qwen3)
    chat_template_kwargs: Optional[dict[str, Union[bool, int, float, str]]] = None
    # lmnb's extension (OpenAI's Responses API has the same field): continue a conversation of the
    # session, the one `%%lm chat --name NAME`, `lmnb.chat(conversation=NAME)` and the chat pane use
    conversation: Optional[str] = Field(
        None, min_length=1, max_length=200,
        description="lmnb: continue this named conversation of the kernel's session. Its history comes "
                    "before `messages` (whose last one is the user's new turn), and the turn is appended "
                    "to it when the reply is done.")


class CompletionRequest(SamplingRequest):
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


class RerankDocument(_Request):
    text: str


class RerankRequest(_Request):
    """``/v1/rerank`` in Jina's and Cohere's shape (llama-server's too)."""

    model: Optional[str] = Field(None, description="The embedding model that scores (as for /v1/embeddings).")
    query: str = Field(min_length=1)
    documents: Annotated[list[Union[str, RerankDocument]], Field(min_length=1, max_length=MAX_EMBEDDING_INPUTS)]
    top_n: Optional[int] = Field(None, ge=1, description="Return only the best top_n documents (default: all).")
    return_documents: bool = Field(True, description="Give each result's document text back.")


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
    dropped_messages: Optional[int] = Field(
        None, description="lmnb extension, present when the request's context_overflow policy left earlier "
                          "messages out of the prompt to fit the context: how many.")


class CalledFunction(BaseModel):
    name: str
    arguments: str


class CalledTool(BaseModel):
    id: str
    type: Literal["function"]
    function: CalledFunction


class AssistantMessage(BaseModel):
    role: Literal["assistant"]
    content: Optional[str]
    reasoning_content: Optional[str] = None  # a reasoning model's thinking, apart from the answer
    tool_calls: Optional[list[CalledTool]] = None


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
    finish_reason: Optional[Literal["stop", "length", "tool_calls"]]
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


class RerankResult(BaseModel):
    index: int = Field(description="The document's position in the request's documents.")
    relevance_score: float = Field(description="Cosine similarity of the query's and the document's embeddings.")
    document: Optional[RerankDocument] = None


class RerankResponse(BaseModel):
    object: Literal["list"]
    model: str
    results: list[RerankResult] = Field(description="Best first.")
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
