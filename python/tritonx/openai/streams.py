"""Server-sent events for streamed completions and chat completions.

Each inference response becomes one ``data: {json}`` chunk (chat streams first send
a chunk with the role alone), the last one with ``finish_reason: "stop"``; chat
answers that are tool calls become ``delta.tool_calls`` chunks (see ``tools``), and
one that grows past ``--max-tool-call-parse-bytes`` ends with ``finish_reason:
"length"`` (and the inference is cancelled); with
``stream_options.include_usage`` a chunk with no choices carries the token totals;
``data: [DONE]`` ends every stream. A model error after the status line went out
becomes an OpenAI error object in the stream. A client that leaves cancels the
inference.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from tritonx.errors import InvalidArgumentError, TritonXError
from tritonx.openai import tensors
from tritonx.openai.checks import ClientError, ServerError
from tritonx.openai.schemas import (
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatDelta,
    ChatStreamChoice,
    CompletionChoice,
    CompletionRequest,
    CompletionResponse,
    FinishReason,
    Usage,
)
from tritonx.openai.tools import AutoCallStream, ForcedCallStream, ParseLimitExceeded

logger = logging.getLogger("tritonx.openai")

ASSISTANT = "assistant"
DONE_EVENT = "data: [DONE]\n\n"


def model_error(error: TritonXError) -> Exception:
    """An error the server answered an inference with, as this frontend's: the
    request's fault (bad input) is the client's, anything else the server's."""
    message = str(error)
    if isinstance(error, InvalidArgumentError):
        return ClientError(message)
    return ServerError(message)


def _sse(payload: Any) -> str:
    return f"data: {payload.model_dump_json()}\n\n"


class TextEvents:
    """The event of a chunk in which only one text and whether it is the last
    change from token to token. Its JSON is pydantic's own, made once per kind
    (last or not) with a marker where the text goes, and filled in per token:
    building and dumping the models for every token took about a tenth of the
    event loop under streaming load (measured). ``build(text, last)`` makes the
    chunk; if its JSON does not hold the marker exactly once, every token is
    built in full."""

    _MARK = "\x00tritonx-text\x00"

    def __init__(self, build: Callable[[str, bool], Any]) -> None:
        self._build = build
        self._parts: dict[bool, tuple[str, str] | None] = {}

    def _template(self, last: bool) -> tuple[str, str] | None:
        if last not in self._parts:
            whole = self._build(self._MARK, last).model_dump_json()
            pieces = whole.split(json.dumps(self._MARK))
            self._parts[last] = (pieces[0], pieces[1]) if len(pieces) == 2 else None
        return self._parts[last]

    def __call__(self, text: str, last: bool) -> str:
        parts = self._template(last)
        if parts is None or self._MARK in text:
            return _sse(self._build(text, last))
        return f"data: {parts[0]}{json.dumps(text, ensure_ascii=False)}{parts[1]}\n\n"


def _error_event(message: str, code: int) -> str:
    """An error in a stream whose status line is already sent: OpenAI's error
    object (the ``openai`` client raises ``APIError`` with it)."""
    kind = "invalid_request_error" if code < 500 else "server_error"
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return f"data: {json.dumps(body)}\n\n"


def text_of(response: Any) -> str:
    """The response's text; ServerError when it is not one UTF-8 string."""
    try:
        return tensors.text_output(response)
    except tensors.OutputError as error:
        raise ServerError(str(error)) from None


class UsageCounter:
    """Token counts over a stream: the prompt's from the first response that
    reports them, the completion's summed over every response."""

    def __init__(self) -> None:
        self.prompt: int | None = None
        self.completion = 0

    def add(self, response: Any) -> None:
        counts = tensors.token_counts(response)
        if counts is None:
            return
        if self.prompt is None:
            self.prompt = counts[0]
        self.completion += counts[1]

    def usage(self) -> Usage | None:
        if self.prompt is None:
            return None
        return Usage(
            prompt_tokens=self.prompt,
            completion_tokens=self.completion,
            total_tokens=self.prompt + self.completion,
        )


class StreamCut(Exception):
    """Raised by a stream's ``chunks`` to end it early with ``events``."""

    def __init__(self, events: list[str]) -> None:
        super().__init__("stream cut")
        self.events = events


def _next_ready(responses: Any) -> Any:
    """A response that has already arrived, or None (never waits)."""
    ready = getattr(responses, "next_ready", None)
    return ready() if ready is not None else None


async def events(
    responses: Any,
    chunks: Callable[[Any], list[str]],
    final: Callable[[], list[str]],
    start: tuple[str, ...] = (),
) -> AsyncIterator[str]:
    """The server-sent events of one stream: ``chunks(response)`` for each
    response, ``final()`` after the last, then ``[DONE]``. A model's error
    ends the stream with an error event. When the client goes away (the
    generator is closed early) the inference is cancelled."""
    finished = False
    try:
        for event in start:
            yield event
        try:
            async for response in responses:
                # Responses that arrived meanwhile go out in the same write: one
                # pass through the ASGI stack and one send instead of one per token.
                batch = chunks(response)
                stop: Exception | None = None
                try:
                    while (more := _next_ready(responses)) is not None:
                        batch = batch + chunks(more)
                except (StreamCut, TritonXError, ClientError, ServerError) as error:
                    stop = error  # after what came before it
                if batch:
                    yield "".join(batch)
                if stop is not None:
                    raise stop
        except StreamCut as cut:
            # The rest of the answer is not wanted: the finally cancels it.
            for event in cut.events:
                yield event
            for event in final():
                yield event
            yield DONE_EVENT
            return
        except (TritonXError, ClientError, ServerError) as error:
            failure = model_error(error) if isinstance(error, TritonXError) else error
            code = 400 if isinstance(failure, ClientError) else 500
            yield _error_event(str(failure), code)
            yield DONE_EVENT
            return  # the finally cancels what the model may still send
        finished = True
        for event in final():
            yield event
        yield DONE_EVENT
    finally:
        if not finished:
            responses.cancel()


def completion_events(
    request_id: str,
    created: int,
    request: CompletionRequest,
    responses: Any,
) -> AsyncIterator[str]:
    usage = UsageCounter()
    include_usage = bool(
        request.stream_options and request.stream_options.include_usage
    )
    want_logprobs = tensors.wants_logprobs(request)
    offset = 0

    def completion(
        text: str, last: bool, logprobs: dict[str, Any] | None = None
    ) -> CompletionResponse:
        choice = CompletionChoice(
            finish_reason="stop" if last else None,
            index=0,
            logprobs=logprobs,
            text=text,
        )
        return CompletionResponse(
            id=request_id,
            choices=[choice],
            created=created,
            model=request.model,
            system_fingerprint=None,
            object="text_completion",
            usage=None,
        )

    plain_event = TextEvents(completion)

    def chunks(response: Any) -> list[str]:
        nonlocal offset
        if include_usage:
            usage.add(response)
        text = text_of(response)
        if not want_logprobs:
            return [plain_event(text, response.final)]
        logprobs = tensors.completion_logprobs(response, offset)
        offset += len(text)
        return [_sse(completion(text, response.final, logprobs))]

    def final() -> list[str]:
        total = usage.usage() if include_usage else None
        if total is None:
            return []
        last = CompletionResponse(
            id=request_id,
            choices=[],
            created=created,
            model=request.model,
            system_fingerprint=None,
            object="text_completion",
            usage=total,
        )
        return [_sse(last)]

    return events(responses, chunks, final)


def chat_events(
    request_id: str,
    created: int,
    request: ChatCompletionRequest,
    responses: Any,
    tool_stream: AutoCallStream | ForcedCallStream | None = None,
) -> AsyncIterator[str]:
    usage = UsageCounter()
    include_usage = bool(
        request.stream_options and request.stream_options.include_usage
    )

    def chunk_model(
        choices: list[ChatStreamChoice], total: Usage | None = None
    ) -> ChatCompletionChunk:
        return ChatCompletionChunk(
            id=request_id,
            choices=choices,
            created=created,
            model=request.model,
            system_fingerprint=None,
            object="chat.completion.chunk",
            usage=total,
        )

    def chunk(choices: list[ChatStreamChoice], total: Usage | None = None) -> str:
        return _sse(chunk_model(choices, total))

    def choice(
        delta: ChatDelta,
        finish_reason: FinishReason | None = None,
        logprobs: dict[str, Any] | None = None,
    ) -> ChatStreamChoice:
        return ChatStreamChoice(
            index=0, delta=delta, logprobs=logprobs, finish_reason=finish_reason
        )

    def tool_chunks(response: Any, text: str, logprobs: Any) -> list[str]:
        assert tool_stream is not None
        try:
            deltas = tool_stream.feed(text)
        except ParseLimitExceeded:
            logger.warning(
                "Streaming tool-call parse buffer exceeded %d bytes (request %s); "
                "truncating response and cancelling backend inference.",
                getattr(tool_stream, "limit", 0),
                request_id,
            )
            cut = chunk([choice(ChatDelta(content=""), "length")])
            raise StreamCut([cut]) from None
        reason: FinishReason | None = None
        if response.final:
            more, reason = tool_stream.finish()
            deltas += more
            if not deltas:
                deltas = [ChatDelta(content="")]
        if not deltas:
            return []
        choices = [choice(delta) for delta in deltas]
        choices[0].logprobs = logprobs
        choices[-1].finish_reason = reason
        return [chunk([c]) for c in choices]

    def content(
        text: str, last: bool, logprobs: dict[str, Any] | None = None
    ) -> ChatCompletionChunk:
        delta = ChatDelta(role=None, content=text, function_call=None)
        return chunk_model([choice(delta, "stop" if last else None, logprobs)])

    content_event = TextEvents(content)

    def chunks(response: Any) -> list[str]:
        if include_usage:
            usage.add(response)
        text = text_of(response)
        logprobs = tensors.chat_logprobs(response) if request.logprobs else None
        if tool_stream is not None:
            return tool_chunks(response, text, logprobs)
        if logprobs is None:
            return [content_event(text, response.final)]
        return [_sse(content(text, response.final, logprobs))]

    def final() -> list[str]:
        total = usage.usage() if include_usage else None
        return [] if total is None else [chunk([], total)]

    # The first chunk names the role and carries no text.
    role = ChatDelta(role=ASSISTANT, content="", function_call=None)
    start = chunk([ChatStreamChoice(index=0, delta=role)])
    return events(responses, chunks, final, (start,))
