"""Tool calling in chat completions, as Triton's frontend does it.

``tools`` always reach the chat template. What the model's answer becomes depends
on ``tool_choice``:

- a named function, or ``"required"`` (the first tool): the model is asked for
  that function's ``parameters`` schema by guided decoding (see ``tensors``), and
  its whole answer is the call's arguments (``finish_reason: "stop"``, the call's
  id is the response's);
- ``"auto"`` or none, with ``--tool-call-parser`` and tools: the answer is parsed
  (``toolparsers``); calls found give ``finish_reason: "tool_calls"`` and
  ``content: ""``; streams send each call's id, type and name once, then its
  arguments in pieces (``delta.tool_calls``);
- ``"none"``: the answer is text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from tritonx.openai.checks import ClientError
from tritonx.openai.schemas import (
    ChatCompletionRequest,
    ChatDelta,
    FinishReason,
    FunctionCall,
    FunctionDelta,
    NamedToolChoice,
    ResponseMessage,
    ToolCall,
    ToolCallChunk,
)
from tritonx.openai.toolparsers import PartialCall, ToolParser


def check_tools(request: ChatCompletionRequest, parser: ToolParser | None) -> None:
    """Refuses tool settings that cannot be served (Triton's messages)."""
    choice = request.tool_choice
    if choice == "required" and not request.tools:
        raise ClientError(
            '"required" tool choice requires CreateChatCompletionRequest.tools '
            "to be provided"
        )
    if isinstance(choice, NamedToolChoice) and not request.tools:
        raise ClientError(
            "Named tool choice requires CreateChatCompletionRequest.tools to be "
            "provided"
        )
    if choice == "auto" and parser is None:
        raise ClientError('"auto" tool choice requires --tool-call-parser to be set')
    if choice is None and request.tools and parser is None:
        raise ClientError(
            "having tools in the request requires --tool-call-parser to be set"
        )
    if request.functions is not None or request.function_call is not None:
        raise ClientError("functions and function_call are not supported: use tools")
    guided_schema(request)


def forced_function(request: ChatCompletionRequest) -> str | None:
    """The function a named or ``"required"`` tool choice calls."""
    choice = request.tool_choice
    if isinstance(choice, NamedToolChoice):
        return choice.function.name
    if choice == "required" and request.tools:
        return request.tools[0].function.name
    return None


def guided_schema(request: ChatCompletionRequest) -> str | None:
    """The JSON schema (as text) the model's answer must follow: the forced
    function's ``parameters``."""
    name = forced_function(request)
    if name is None or not request.tools:
        return None
    for tool in request.tools:
        if tool.function.name == name:
            # A function without parameters takes any JSON object.
            return json.dumps(tool.function.parameters or {"type": "object"})
    raise ClientError(f"Tool '{name}' has not been passed in `tools`.")


def auto_parser(
    request: ChatCompletionRequest, parser: ToolParser | None
) -> ToolParser | None:
    """The parser for this request's answer, when it may hold calls."""
    if parser is None or not request.tools or request.tool_choice not in (None, "auto"):
        return None
    return parser


def chat_message(
    request: ChatCompletionRequest,
    request_id: str,
    text: str,
    parser: ToolParser | None,
    request_format: str,
) -> tuple[ResponseMessage, FinishReason]:
    """The message and finish reason of a whole (non-streamed) answer."""
    forced = forced_function(request)
    if forced is not None:
        call = ToolCall(
            id=request_id, function=FunctionCall(name=forced, arguments=text)
        )
        return ResponseMessage(content="", role="assistant", tool_calls=[call]), "stop"
    auto = auto_parser(request, parser)
    calls = auto.parse(text, request_format) if auto is not None else None
    if auto is None or calls is None:
        return ResponseMessage(content=text, role="assistant"), "stop"
    tool_calls = [
        ToolCall(
            id=auto.new_id(),
            function=FunctionCall(name=call.name, arguments=call.arguments),
        )
        for call in calls
    ]
    return (
        ResponseMessage(content="", role="assistant", tool_calls=tool_calls),
        "tool_calls",
    )


class ParseLimitExceeded(Exception):
    """A streamed answer grew past ``--max-tool-call-parse-bytes``."""


def _tool_delta(chunk: ToolCallChunk) -> ChatDelta:
    return ChatDelta(tool_calls=[chunk])


class ForcedCallStream:
    """The deltas of a named or ``"required"`` choice: the call's id, type and
    name with the first text, then the text as its arguments."""

    def __init__(self, request_id: str, name: str) -> None:
        self.request_id = request_id
        self.name = name
        self.started = False

    def feed(self, text: str) -> list[ChatDelta]:
        if not text:
            return []
        if self.started:
            return [
                _tool_delta(
                    ToolCallChunk(index=0, function=FunctionDelta(arguments=text))
                )
            ]
        self.started = True
        chunk = ToolCallChunk(
            index=0,
            id=self.request_id,
            type="function",
            function=FunctionDelta(name=self.name, arguments=text),
        )
        return [_tool_delta(chunk)]

    def finish(self) -> tuple[list[ChatDelta], FinishReason]:
        return [], "stop"


@dataclass
class _Progress:
    """What a stream has sent of one call."""

    name_sent: bool = False
    arguments_sent: str = ""
    last_seen: str | None = None  # the arguments' JSON at the previous parse


def _common_prefix(a: str, b: str) -> str:
    size = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        size += 1
    return a[:size]


class AutoCallStream:
    """The deltas of an answer that may be tool calls (``tool_choice`` auto).

    Text goes out as content until the answer starts with the parser's marker;
    from then on the growing text is parsed, and each call's name goes out once
    complete, its arguments as far as they cannot change any more (what two
    parses in a row agree on; all of it once the call is whole). The end of
    the answer is parsed whole: what was not sent yet goes out, or, when the
    answer was not calls after all, its text as content."""

    def __init__(self, parser: ToolParser, request_format: str, limit: int) -> None:
        self.parser = parser
        self.request_format = request_format
        self.limit = limit
        self.text = ""
        self.is_call: bool | None = None
        self.calls: list[_Progress] = []

    def feed(self, text: str) -> list[ChatDelta]:
        if len(self.text) + len(text) > self.limit:
            raise ParseLimitExceeded
        self.text += text
        if self.is_call is False:
            return [ChatDelta(content=text)]
        if self.is_call is None:
            self.is_call = self.parser.starts_call(self.text)
            if self.is_call is None:
                return []
            if not self.is_call:
                return [ChatDelta(content=self.text)]
        return self._advance(self.parser.partial(self.text))

    def _advance(self, calls: list[PartialCall]) -> list[ChatDelta]:
        deltas: list[ChatDelta] = []
        for index, call in enumerate(calls):
            if index == len(self.calls):
                self.calls.append(_Progress())
            progress = self.calls[index]
            if not progress.name_sent:
                if call.name is None:
                    break  # later calls wait for this one's name
                progress.name_sent = True
                chunk = ToolCallChunk(
                    index=index,
                    id=self.parser.new_id(),
                    type="function",
                    function=FunctionDelta(name=call.name),
                )
                deltas.append(_tool_delta(chunk))
            if call.arguments is None:
                continue
            if call.complete:
                settled = call.arguments
            elif progress.last_seen is None or progress.last_seen == call.arguments:
                # Unchanged text may end in brackets the parser closed for us.
                settled = progress.arguments_sent
            else:
                settled = _common_prefix(progress.last_seen, call.arguments)
            progress.last_seen = call.arguments
            sent = progress.arguments_sent
            if len(settled) > len(sent) and settled.startswith(sent):
                progress.arguments_sent = settled
                piece = FunctionDelta(arguments=settled[len(sent) :])
                deltas.append(_tool_delta(ToolCallChunk(index=index, function=piece)))
        return deltas

    def finish(self) -> tuple[list[ChatDelta], FinishReason]:
        if self.is_call is False:
            return [], "stop"
        calls = None
        if self.is_call:
            calls = self.parser.parse(self.text, self.request_format)
        if calls is None:
            if any(progress.name_sent for progress in self.calls):
                return [], "tool_calls"
            # Not calls after all: the text the stream held back.
            return ([ChatDelta(content=self.text)] if self.text else []), "stop"
        whole = [PartialCall(call.name, call.arguments, True) for call in calls]
        return self._advance(whole), "tool_calls"
