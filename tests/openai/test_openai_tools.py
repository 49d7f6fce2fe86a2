"""tritonx-openai tool calling end to end: the real ``openai`` client against
``tritonx-openai --tool-call-parser=llama3`` and ``=mistral`` processes, with the
echo models answering tool calls for special prompt words (see openaiutil)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from openaiutil import OpenAIServer, start_openai_server, stop_openai_server

openai = pytest.importorskip("openai")

ECHO = "echo_llm"  # vLLM request format
TRT = "trt_llm"  # TensorRT-LLM request format

WEATHER = {"city": "Dallas", "state": "TX", "unit": "fahrenheit"}
_PLACE = {
    "city": {"type": "string", "description": "The city, e.g. 'San Francisco'"},
    "state": {"type": "string", "description": "two-letter state, e.g. 'CA'"},
    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_current_weather",
        "description": "Get the current weather in a given location",
        "parameters": {
            "type": "object",
            "properties": _PLACE,
            "required": ["city", "state", "unit"],
        },
    },
}
FORECAST_TOOL = {
    "type": "function",
    "function": {
        "name": "get_n_day_weather_forecast",
        "description": "Get an N-day weather forecast",
        "parameters": {
            "type": "object",
            "properties": {**_PLACE, "num_days": {"type": "integer"}},
            "required": ["city", "state", "unit", "num_days"],
        },
    },
}
TOOLS = [WEATHER_TOOL, FORECAST_TOOL]
FORECAST_CHOICE = {
    "type": "function",
    "function": {"name": "get_n_day_weather_forecast"},
}
# What the echo model answers under each tool's schema (openaiutil.example_of).
WEATHER_GUIDED = {"city": "x-city", "state": "x-state", "unit": "celsius"}
FORECAST_GUIDED = {**WEATHER_GUIDED, "num_days": 3}


def _ask(word: str) -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": "You're a helpful assistant!"},
        {"role": "user", "content": f"What is the weather in Dallas? {word}"},
    ]


FOLLOW_UP = [
    *_ask("please"),
    {
        "role": "assistant",
        "tool_calls": [
            {
                "id": "123456789",
                "type": "function",
                "function": {"name": "get_current_weather", "arguments": "{}"},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "123456789", "content": "98"},
]


def _server(root: Path, *flags: str) -> Iterator[OpenAIServer]:
    server = start_openai_server(root, *flags)
    try:
        yield server
    finally:
        stop_openai_server(server)


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    for server in _server(
        tmp_path_factory.mktemp("llama"), "--tool-call-parser=llama3"
    ):
        yield openai.OpenAI(
            base_url=f"{server.base_url}/v1", api_key="EMPTY", max_retries=0
        )


@pytest.fixture(scope="module")
def mistral(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    root = tmp_path_factory.mktemp("mistral")
    flags = ("--tool-call-parser=mistral", "--max-tool-call-parse-bytes=512")
    for server in _server(root, *flags):
        yield openai.OpenAI(
            base_url=f"{server.base_url}/v1", api_key="EMPTY", max_retries=0
        )


@dataclass
class Streamed:
    """A chat stream put back together."""

    roles: list[str] = field(default_factory=list)
    content: str = ""
    finish_reasons: list[str] = field(default_factory=list)
    ids: dict[int, list[str]] = field(default_factory=dict)
    names: dict[int, list[str]] = field(default_factory=dict)
    arguments: dict[int, str] = field(default_factory=dict)


def _stream(client: Any, **body: Any) -> Streamed:
    result = Streamed()
    for chunk in client.chat.completions.create(stream=True, **body):
        choice = chunk.choices[0]
        delta = choice.delta
        if delta.role:
            result.roles.append(delta.role)
        result.content += delta.content or ""
        if choice.finish_reason:
            result.finish_reasons.append(choice.finish_reason)
        calls = delta.tool_calls or []
        assert len(calls) <= 1  # one call's piece per chunk
        for call in calls:
            if call.id:
                result.ids.setdefault(call.index, []).append(call.id)
            if call.function and call.function.name:
                result.names.setdefault(call.index, []).append(call.function.name)
            if call.function and call.function.arguments:
                previous = result.arguments.get(call.index, "")
                result.arguments[call.index] = previous + call.function.arguments
    assert result.roles == ["assistant"]
    assert len(result.finish_reasons) == 1
    return result


@pytest.mark.parametrize("model", [ECHO, TRT])
def test_llama3_tool_call(llama: Any, model: str) -> None:
    body = {"model": model, "messages": _ask("LLAMA_CALL"), "tools": TOOLS}
    result = llama.chat.completions.create(**body)
    choice = result.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.role == "assistant" and choice.message.content == ""
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("cmpl-")
    assert call.function.name == "get_current_weather"
    assert json.loads(call.function.arguments) == WEATHER

    streamed = _stream(llama, **body)
    assert streamed.finish_reasons == ["tool_calls"]
    assert streamed.content == ""
    assert streamed.names == {0: ["get_current_weather"]}
    assert len(streamed.ids[0]) == 1 and streamed.ids[0][0].startswith("cmpl-")
    assert json.loads(streamed.arguments[0]) == WEATHER


def test_llama3_two_calls(llama: Any) -> None:
    body = {"model": ECHO, "messages": _ask("LLAMA_TWO"), "tools": TOOLS}
    calls = llama.chat.completions.create(**body).choices[0].message.tool_calls
    assert [c.function.name for c in calls] == [t["function"]["name"] for t in TOOLS]
    assert calls[0].id != calls[1].id
    expected = [WEATHER, {**WEATHER, "num_days": 5}]
    assert [json.loads(c.function.arguments) for c in calls] == expected
    streamed = _stream(llama, **body)
    assert streamed.names == {
        0: ["get_current_weather"],
        1: [FORECAST_CHOICE["function"]["name"]],
    }
    assert [json.loads(streamed.arguments[i]) for i in (0, 1)] == expected
    assert streamed.finish_reasons == ["tool_calls"]


@pytest.mark.parametrize("model", [ECHO, TRT])
def test_mistral_tool_call(mistral: Any, model: str) -> None:
    body = {"model": model, "messages": _ask("MISTRAL_CALL"), "tools": TOOLS}
    choice = mistral.chat.completions.create(**body).choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert re.fullmatch("[A-Za-z0-9]{9}", call.id)
    assert call.function.name == "get_current_weather"
    assert json.loads(call.function.arguments) == WEATHER
    streamed = _stream(mistral, **body)
    assert streamed.finish_reasons == ["tool_calls"]
    assert streamed.names == {0: ["get_current_weather"]}
    assert re.fullmatch("[A-Za-z0-9]{9}", streamed.ids[0][0])
    assert json.loads(streamed.arguments[0]) == WEATHER


def test_text_answer_with_tools(llama: Any) -> None:
    """A text answer stays text (the tools reached the template); with
    tool_choice "none" a call-shaped answer is text too."""
    body = {"model": ECHO, "messages": _ask("hi"), "tools": TOOLS, "max_tokens": 4}
    choice = llama.chat.completions.create(**body).choices[0]
    assert choice.message.content == (
        "<|tools|> get_current_weather get_n_day_weather_forecast <|system|>"
    )
    assert choice.message.tool_calls is None and choice.finish_reason == "stop"
    assert _stream(llama, **body).content == choice.message.content

    body = {"model": ECHO, "messages": _ask("LLAMA_CALL"), "tools": TOOLS}
    choice = llama.chat.completions.create(tool_choice="none", **body).choices[0]
    assert choice.message.content.startswith('<|python_tag|>{"name": "get_current')
    assert choice.message.tool_calls is None and choice.finish_reason == "stop"
    streamed = _stream(llama, tool_choice="none", **body)
    assert streamed.content == choice.message.content and not streamed.names


@pytest.mark.parametrize("model", [ECHO, TRT])
@pytest.mark.parametrize(
    ("tool_choice", "name", "arguments"),
    [
        (FORECAST_CHOICE, "get_n_day_weather_forecast", FORECAST_GUIDED),
        ("required", "get_current_weather", WEATHER_GUIDED),
    ],
)
def test_forced_tool_choice(
    llama: Any, model: str, tool_choice: Any, name: str, arguments: Any
) -> None:
    """The function's schema goes to the model as guided decoding; the answer
    is the call's arguments."""
    body = {
        "model": model,
        "messages": _ask("please"),
        "tools": TOOLS,
        "tool_choice": tool_choice,
    }
    result = llama.chat.completions.create(**body)
    choice = result.choices[0]
    assert choice.finish_reason == "stop"
    (call,) = choice.message.tool_calls
    assert call.id == result.id and call.function.name == name
    assert json.loads(call.function.arguments) == arguments
    streamed = _stream(llama, **body)
    assert streamed.finish_reasons == ["stop"]
    assert streamed.names == {0: [name]} and len(streamed.ids[0]) == 1
    assert json.loads(streamed.arguments[0]) == arguments


def test_follow_up_with_tool_message(llama: Any) -> None:
    body = {"model": ECHO, "messages": FOLLOW_UP, "tools": TOOLS, "max_tokens": 64}
    choice = llama.chat.completions.create(**body).choices[0]
    assert choice.finish_reason == "stop" and choice.message.tool_calls is None
    assert choice.message.content.endswith(
        "<|assistant|> call get_current_weather {} <|tool|> id 123456789 98 "
        "<|assistant|>"
    )
    streamed = _stream(llama, **body)
    assert streamed.content == choice.message.content
    assert streamed.finish_reasons == ["stop"] and not streamed.names


def test_streamed_parse_limit(mistral: Any) -> None:
    """Past --max-tool-call-parse-bytes a stream ends with "length"; without
    tools the limit does not apply."""
    body = {"model": ECHO, "messages": _ask("BIG_CALL")}
    streamed = _stream(mistral, tools=TOOLS, **body)
    assert streamed.finish_reasons == ["length"]
    plain = _stream(mistral, **body)
    assert plain.finish_reasons == ["stop"] and len(plain.content) > 2000


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"tool_choice": FORECAST_CHOICE},
            "Named tool choice requires CreateChatCompletionRequest.tools to be "
            "provided",
        ),
        (
            {"tool_choice": FORECAST_CHOICE, "tools": [WEATHER_TOOL]},
            "Tool 'get_n_day_weather_forecast' has not been passed in `tools`.",
        ),
        (
            {"tool_choice": "required", "tools": []},
            '"required" tool choice requires CreateChatCompletionRequest.tools to '
            "be provided",
        ),
    ],
)
def test_inconsistent_tool_choice_and_tools(
    llama: Any, fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        llama.chat.completions.create(model=ECHO, messages=_ask("x"), **fields)
    assert caught.value.response.json() == {"detail": message}
