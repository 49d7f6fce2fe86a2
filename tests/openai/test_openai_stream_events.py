"""The per-token event of a streamed completion or chat completion is filled into
pydantic's own JSON of the chunk (streams.TextEvents): it must be the very bytes
pydantic writes for every text a model may send, the last chunk's too."""

from __future__ import annotations

from typing import Any

import pytest

from tritonx.openai.schemas import (
    ChatCompletionChunk,
    ChatDelta,
    ChatStreamChoice,
    CompletionChoice,
    CompletionResponse,
)
from tritonx.openai.streams import TextEvents, _sse

TEXTS = [
    "",
    " t0",
    'a "quoted" word and a \\ backslash',
    "new\nline, tab\t, return\r, form feed\f",
    "ünïcödé ✓ 🚀 中文",
    "\x00 and \x1f and \x7f",
    "\u2028 \u2029 </script> /slash",
    TextEvents._MARK,  # the marker itself goes the slow way
    "x" * 10_000,
]


def completion(text: str, last: bool) -> CompletionResponse:
    choice = CompletionChoice(
        finish_reason="stop" if last else None, index=0, logprobs=None, text=text
    )
    return CompletionResponse(id="cmpl-1", choices=[choice], created=7, model="m")


def chat(text: str, last: bool) -> ChatCompletionChunk:
    delta = ChatDelta(role=None, content=text, function_call=None)
    choice = ChatStreamChoice(
        index=0, delta=delta, finish_reason="stop" if last else None
    )
    return ChatCompletionChunk(id="chatcmpl-1", choices=[choice], created=7, model="m")


@pytest.mark.parametrize("build", [completion, chat], ids=["completion", "chat"])
@pytest.mark.parametrize("last", [False, True], ids=["token", "last"])
@pytest.mark.parametrize("text", TEXTS, ids=range(len(TEXTS)))
def test_same_bytes_as_pydantic(build: Any, last: bool, text: str) -> None:
    # (Texts are decoded as strict UTF-8 first: no lone surrogates to cover.)
    assert TextEvents(build)(text, last) == _sse(build(text, last))


def test_a_model_name_holding_the_marker_falls_back() -> None:
    def build(text: str, last: bool) -> CompletionResponse:
        return completion(text, last).model_copy(update={"model": TextEvents._MARK})

    events = TextEvents(build)
    assert events("hi", False) == _sse(build("hi", False))
