"""The OpenAI request and response bodies that ``tritonx-openai`` speaks.

Field names, defaults and bounds follow the OpenAI API as Triton's frontend
declares it: request bodies refuse unknown fields and out-of-range values (FastAPI
answers 422 with the failing fields), and the vLLM-style extensions Triton adds
(``ignore_eos``, ``min_tokens``) are accepted. Responses carry the fields Triton's
responses carry, ``system_fingerprint`` and ``usage`` included (null when unknown).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1

Penalty = Annotated[float, Field(ge=-2.0, le=2.0)]
Seed = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)]
NonNegative = Annotated[int, Field(ge=0)]


class StreamOptions(BaseModel):
    include_usage: bool | None = False


# -- chat messages -------------------------------------------------------------------


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ImageUrl(BaseModel):
    url: str
    detail: Literal["auto", "low", "high"] | None = "auto"


class ImagePart(BaseModel):
    type: Literal["image_url"]
    image_url: ImageUrl


ContentPart = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class FunctionCall(BaseModel):
    name: str
    arguments: str


class ToolCall(BaseModel):
    id: str
    type: str = "function"
    function: FunctionCall


class SystemMessage(BaseModel):
    role: Literal["system"]
    content: str
    name: str | None = None


class UserMessage(BaseModel):
    role: Literal["user"]
    content: str | list[ContentPart]
    name: str | None = None


class AssistantMessage(BaseModel):
    role: Literal["assistant"]
    content: str | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    function_call: FunctionCall | None = None


class ToolMessage(BaseModel):
    role: Literal["tool"]
    content: str
    tool_call_id: str


class FunctionMessage(BaseModel):
    role: Literal["function"]
    content: str
    name: str


Message = Annotated[
    SystemMessage | UserMessage | AssistantMessage | ToolMessage | FunctionMessage,
    Field(discriminator="role"),
]


# -- tools ---------------------------------------------------------------------------


class FunctionObject(BaseModel):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None


class Tool(BaseModel):
    type: str
    function: FunctionObject


class NamedFunction(BaseModel):
    name: str


class NamedToolChoice(BaseModel):
    type: str
    function: NamedFunction


class ResponseFormat(BaseModel):
    type: Literal["text", "json_object"] | None = "text"


# -- requests ------------------------------------------------------------------------


class CompletionRequest(BaseModel):
    """``POST /v1/completions``."""

    model_config = ConfigDict(extra="forbid")

    model: str
    prompt: str | list[str] | list[int] | list[list[Any]]
    best_of: Annotated[int, Field(ge=0, le=20)] | None = 1
    echo: bool | None = False
    frequency_penalty: Penalty | None = 0
    ignore_eos: bool | None = False
    logit_bias: dict[str, int] | None = None
    logprobs: Annotated[int, Field(ge=0, le=5)] | None = None
    max_tokens: NonNegative | None = None
    min_tokens: NonNegative | None = None
    n: Annotated[int, Field(ge=1, le=128)] | None = 1
    presence_penalty: Penalty | None = 0
    seed: Seed | None = None
    stop: str | list[str] | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    suffix: str | None = None
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = 1
    top_p: Annotated[float, Field(ge=0.0, le=1.0)] | None = 1
    user: str | None = None


class ChatCompletionRequest(BaseModel):
    """``POST /v1/chat/completions``."""

    model_config = ConfigDict(extra="forbid")

    messages: Annotated[list[Message], Field(min_length=1)]
    model: str
    frequency_penalty: Penalty | None = 0
    ignore_eos: bool | None = False
    logit_bias: dict[str, int] | None = None
    logprobs: bool | None = False
    top_logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    max_completion_tokens: NonNegative | None = None
    max_tokens: NonNegative | None = None
    min_tokens: NonNegative | None = None
    n: Annotated[int, Field(ge=1, le=128)] | None = 1
    presence_penalty: Penalty | None = 0
    response_format: ResponseFormat | None = None
    seed: Seed | None = None
    stop: str | list[str] | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = 0.7
    top_p: Annotated[float, Field(ge=0.0, le=1.0)] | None = 1
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    user: str | None = None
    function_call: Literal["none", "auto"] | NamedFunction | None = None
    functions: Annotated[list[FunctionObject], Field(min_length=1, max_length=128)] | (
        None
    ) = None


class EmbeddingRequest(BaseModel):
    """``POST /v1/embeddings``."""

    model_config = ConfigDict(extra="forbid")

    input: Annotated[str | list[int], Field(min_length=1)]
    model: str
    dimensions: int | None = None
    encoding_format: Literal["float", "base64"] | None = "float"
    user: str | None = None


# -- responses -----------------------------------------------------------------------


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ModelCard(BaseModel):
    id: str
    created: int
    object: Literal["model"] = "model"
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


FinishReason = Literal[
    "stop", "length", "tool_calls", "content_filter", "function_call"
]


class CompletionChoice(BaseModel):
    finish_reason: FinishReason | None
    index: int
    logprobs: dict[str, Any] | None
    text: str


class CompletionResponse(BaseModel):
    id: str
    choices: list[CompletionChoice]
    created: int
    model: str
    system_fingerprint: str | None = None
    object: Literal["text_completion"] = "text_completion"
    usage: Usage | None = None


class ResponseMessage(BaseModel):
    content: str | None
    role: str
    tool_calls: list[ToolCall] | None = None
    function_call: FunctionCall | None = None


class ChatChoice(BaseModel):
    finish_reason: FinishReason
    index: int
    message: ResponseMessage
    logprobs: dict[str, Any] | None = None


class ChatCompletionResponse(BaseModel):
    id: str
    choices: list[ChatChoice]
    created: int
    model: str
    system_fingerprint: str | None = None
    object: Literal["chat.completion"] = "chat.completion"
    usage: Usage | None = None


class FunctionDelta(BaseModel):
    """A piece of a streamed call: the name (once), the arguments' next text."""

    name: str | None = None
    arguments: str | None = None


class ToolCallChunk(BaseModel):
    """A streamed tool call's piece; ``id`` and ``type`` come with the name."""

    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: FunctionDelta | None = None


class ChatDelta(BaseModel):
    role: str | None = None
    content: str | None = None
    function_call: FunctionCall | None = None
    tool_calls: list[ToolCallChunk] | None = None


class ChatStreamChoice(BaseModel):
    index: int
    delta: ChatDelta
    logprobs: dict[str, Any] | None = None
    finish_reason: FinishReason | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    choices: list[ChatStreamChoice]
    created: int
    model: str
    system_fingerprint: str | None = None
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    usage: Usage | None = None


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    embedding: list[float] | str
    index: int


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage | None
