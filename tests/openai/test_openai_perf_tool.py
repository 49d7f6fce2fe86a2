"""tritonx-perf's OpenAI service kind against a real tritonx-openai: the data
file's payloads POSTed to the chat and completions routes, plain and streamed (each
server-sent event a response of its own), and multi-turn chat sessions
(--session-concurrency) whose turns carry the conversation so far. The same
sessions through NVIDIA's perf_analyzer, when it is there, send the same
conversations (tests/openai/test_openai_perf_analyzer.py has its other modes)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from openaiutil import OpenAIServer
from perfutil import ok_run, perf
from test_perf_analyzer import perf_analyzer

pytestmark = pytest.mark.timeout(300)

ROUTES = {
    "v1/chat/completions": {"messages": [{"role": "user", "content": "hello there"}]},
    "v1/completions": {"prompt": "hello there"},
}


def _text(body: dict[str, Any]) -> str:
    choice = body["choices"][0]
    part = choice.get("delta") or choice.get("message") or {}
    return str(choice.get("text") or part.get("content") or "")


def _events(responses: list[str]) -> list[str]:
    return [
        line.removeprefix("data: ")
        for chunk in responses
        for line in chunk.splitlines()
        if line.startswith("data: ")
    ]


def _write(path: Path, entries: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps({"data": entries}))
    return path


def _export(path: Path) -> list[dict[str, Any]]:
    requests: list[dict[str, Any]] = json.loads(path.read_text())["experiments"][0][
        "requests"
    ]
    return requests


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("route", sorted(ROUTES))
def test_openai_service_kind(
    openai_server: OpenAIServer, tmp_path: Path, route: str, stream: bool
) -> None:
    payload = {"model": "echo_llm", "max_tokens": 8, "stream": stream, **ROUTES[route]}
    data = _write(tmp_path / "payload.json", [{"payload": [payload]}])
    export = tmp_path / "export.json"
    out = ok_run(
        "-m", "echo_llm", "--service-kind", "openai", "--endpoint", route,
        "-u", f"127.0.0.1:{openai_server.ports['openai']}",
        "--input-data", str(data), "--concurrency-range", "2",
        "--request-count", "20", "--profile-export-file", str(export),
    )  # fmt: skip
    assert "Service Kind: OPENAI" in out and "Avg time to first response" in out, out
    document = json.loads(export.read_text())
    assert (document["service_kind"], document["endpoint"]) == ("openai", route)
    requests = _export(export)
    assert len(requests) == 20
    for request in requests:
        assert json.loads(request["request_inputs"]["payload"]) == payload
        responses = [r["response"] for r in request["response_outputs"]]
        assert len(responses) == len(request["response_timestamps"])
        if not stream:
            assert len(responses) == 1
            assert "hello there" in _text(json.loads(responses[0]))
            continue
        # One event per response (perf_analyzer's may hold several): the words
        # one by one, then [DONE].
        assert all(r.startswith("data: ") and "\n\n" not in r for r in responses)
        events = _events(responses)
        assert len(events) == len(responses) > 2 and events[-1] == "[DONE]"
        text = "".join(_text(json.loads(e)) for e in events[:-1])
        assert "hello there" in text, responses


def _sessions(stream: bool) -> list[dict[str, Any]]:
    """Three chat sessions of 2, 3 and 2 turns, interleaved in the file."""

    def turn(session: str, words: str, delay: int | None) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "payload": [
                {
                    "model": "echo_llm",
                    "max_tokens": 64,
                    "stream": stream,
                    "messages": [{"role": "user", "content": words}],
                }
            ],
            "session_id": [session],
        }
        if delay is not None:
            entry["delay"] = [delay]
        return entry

    return [
        turn("a", "alpha one", 30),
        turn("b", "bravo one", 10),
        turn("c", "charlie one", 20),
        turn("a", "alpha two", None),
        turn("b", "bravo two", 10),
        turn("c", "charlie two", None),
        turn("b", "bravo three", None),
    ]


def _conversations(requests: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Per session, the messages each turn sent, in the order the turns went."""
    by_session: dict[str, list[dict[str, Any]]] = {}
    for request in sorted(requests, key=lambda r: r["timestamp"]):
        session = request["request_inputs"]["session_id"]
        by_session.setdefault(session, []).append(request)
    return {
        session: [json.loads(r["request_inputs"]["payload"])["messages"] for r in turns]
        for session, turns in by_session.items()
    }


def _answer(request: dict[str, Any]) -> str:
    responses = [r["response"] for r in request["response_outputs"]]
    if len(responses) == 1 and not responses[0].startswith("data:"):
        return _text(json.loads(responses[0]))
    return "".join(_text(json.loads(e)) for e in _events(responses) if e != "[DONE]")


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_chat_sessions_carry_the_conversation(
    openai_server: OpenAIServer, tmp_path: Path, stream: bool
) -> None:
    entries = _sessions(stream)
    data = _write(tmp_path / "sessions.json", entries)
    export = tmp_path / "export.json"
    out = ok_run(
        "-m", "echo_llm", "--service-kind", "openai",
        "--endpoint", "v1/chat/completions",
        "-u", f"127.0.0.1:{openai_server.ports['openai']}",
        "--input-data", str(data), "--session-concurrency", "2",
        "--profile-export-file", str(export),
    )  # fmt: skip
    assert "Session concurrency: 2" in out, out
    requests = _export(export)
    assert len(requests) == len(entries) and all(r["success"] for r in requests)
    by_session: dict[str, list[dict[str, Any]]] = {}
    for request in sorted(requests, key=lambda r: r["timestamp"]):
        by_session.setdefault(request["request_inputs"]["session_id"], []).append(
            request
        )
    for session, turns in by_session.items():
        asked = [
            e["payload"][0]["messages"][0]
            for e in entries
            if e["session_id"] == [session]
        ]
        assert len(turns) == len(asked)
        history: list[dict[str, Any]] = []
        for k, request in enumerate(turns):
            # Each turn sends the conversation so far and its own question.
            history.append(asked[k])
            # (An answer's message goes back whole: its null fields too.)
            sent = [
                {"role": m["role"], "content": m["content"]}
                for m in json.loads(request["request_inputs"]["payload"])["messages"]
            ]
            assert sent == history, (session, k)
            answer = _answer(request)
            assert asked[k]["content"] in answer  # the echo model repeats the prompt
            history.append({"role": "assistant", "content": answer})
            if k + 1 < len(turns):
                # The next turn waits for this answer and then its delay.
                delay = request["request_inputs"]["delay"]
                gap = turns[k + 1]["timestamp"] - request["end_timestamp"]
                assert gap >= delay * 1_000_000, (session, k, gap)
            else:
                assert "delay" not in request["request_inputs"]


def test_chat_sessions_match_perf_analyzer(
    openai_server: OpenAIServer, tmp_path: Path
) -> None:
    binary = perf_analyzer()
    if binary is None:
        pytest.skip("perf_analyzer not found ($PERF_ANALYZER or PATH)")
    data = _write(tmp_path / "sessions.json", _sessions(stream=False))
    port = openai_server.ports["openai"]
    ours, theirs = tmp_path / "ours.json", tmp_path / "theirs.json"
    common = ["-m", "echo_llm", "--service-kind", "openai",
              "--endpoint", "v1/chat/completions", "-u", f"127.0.0.1:{port}",
              "--input-data", str(data), "--session-concurrency", "2"]  # fmt: skip
    ok_run(*common, "--profile-export-file", str(ours))
    theirs_args = ["-i", "http", "--async", "--profile-export-file", str(theirs)]
    result = subprocess.run(
        [binary, *common, *theirs_args],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # The same conversations, turn by turn (the echo model answers the same).
    assert _conversations(_export(ours)) == _conversations(_export(theirs))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "Must supply --endpoint for OpenAI service kind."),
        (["--endpoint", "v1/completions", "--sync"], "Only async mode is currently"),
        (["--endpoint", "v1/completions", "-b", "2"], "Batching is not currently"),
        (
            ["--endpoint", "v1/chat/completions", "--session-concurrency", "4"],
            "contains 3 unique session IDs, which is fewer than the required session "
            "concurrency level of 4",
        ),
        (
            ["--endpoint", "v1/chat/completions", "--session-concurrency", "2",
             "--concurrency-range", "2"],
            "Cannot use both Concurrency and SessionConcurrency inference load modes.",
        ),
    ],
)  # fmt: skip
def test_openai_flags_refused_in_perf_analyzers_words(
    tmp_path: Path, extra: list[str], message: str
) -> None:
    data = _write(tmp_path / "sessions.json", _sessions(stream=False))
    result = perf(
        "-m", "echo_llm", "--service-kind", "openai", "-u", "127.0.0.1:9",
        "--input-data", str(data), *extra,
    )  # fmt: skip
    assert result.returncode == 1 and message in result.stderr, result.stderr


def test_openai_input_data_checked_before_the_load(tmp_path: Path) -> None:
    no_data = perf("-m", "m", "--service-kind", "openai", "--endpoint", "v1/x")
    assert "Must supply --input-data for OpenAI service kind." in no_data.stderr
    triton_sessions = perf("-m", "m", "--session-concurrency", "2")
    assert (
        "Session concurrency mode is only supported with OpenAI service kind."
        in triton_sessions.stderr
    )
    entries = _sessions(stream=False)
    del entries[0]["delay"]  # session a's first turn has a next turn
    data = _write(tmp_path / "sessions.json", entries)
    no_delay = perf(
        "-m", "echo_llm", "--service-kind", "openai", "--endpoint", "v1/chat/completions",
        "-u", "127.0.0.1:9", "--input-data", str(data), "--session-concurrency", "1",
    )  # fmt: skip
    assert "Missing 'delay' input for payload with index 0" in no_delay.stderr
    bad = _write(tmp_path / "bad.json", [{"payload": ["not json"]}])
    not_json = perf(
        "-m", "m", "--service-kind", "openai", "--endpoint", "v1/completions",
        "--input-data", str(bad),
    )  # fmt: skip
    assert "'payload' is not JSON" in not_json.stderr, not_json.stderr
