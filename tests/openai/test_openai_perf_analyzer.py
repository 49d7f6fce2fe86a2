"""NVIDIA perf_analyzer's OpenAI mode (what genai-perf drives) against tritonx-openai:
``--service-kind openai`` posting the data file's payloads to the chat completions
and completions routes, plain and streamed (server-sent events, each chunk a
response in the profile export). Skipped without perf_analyzer ($PERF_ANALYZER or
PATH)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from openaiutil import OpenAIServer
from test_perf_analyzer import perf_analyzer

pytestmark = [
    pytest.mark.skipif(
        perf_analyzer() is None,
        reason="perf_analyzer not found ($PERF_ANALYZER or PATH)",
    ),
    pytest.mark.timeout(300),
]

ROUTES = {
    "v1/chat/completions": {"messages": [{"role": "user", "content": "hello there"}]},
    "v1/completions": {"prompt": "hello there"},
}


def _text(route: str, body: dict[str, Any]) -> str:
    choice = body["choices"][0]
    if route == "v1/completions":
        return str(choice.get("text") or "")
    part = choice.get("delta") or choice.get("message") or {}
    return str(part.get("content") or "")


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("route", sorted(ROUTES))
def test_perf_analyzer_openai_service_kind(
    openai_server: OpenAIServer, tmp_path: Path, route: str, stream: bool
) -> None:
    binary = perf_analyzer()
    assert binary is not None
    payload = {"model": "echo_llm", "max_tokens": 8, "stream": stream, **ROUTES[route]}
    data = tmp_path / "payload.json"
    data.write_text(json.dumps({"data": [{"payload": [payload]}]}))
    export = tmp_path / "export.json"
    result = subprocess.run(
        [
            binary, "-m", "echo_llm", "--service-kind", "openai", "--endpoint", route,
            "-u", f"127.0.0.1:{openai_server.ports['openai']}", "-i", "http",
            "--async", "--input-data", str(data), "--concurrency-range", "2",
            # Exactly 20 requests in one window: no stability loop, which a busy
            # machine can fail (CI saw throughput vary over 2x between windows).
            "--request-count", "20",
            "--profile-export-file", str(export),
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Throughput:" in output and "Service Kind: OPENAI" in output, output
    requests = json.loads(export.read_text())["experiments"][0]["requests"]
    assert len(requests) == 20
    for request in requests:
        responses = [r["response"] for r in request["response_outputs"]]
        if not stream:
            assert len(responses) == 1
            assert "hello there" in _text(route, json.loads(responses[0]))
            continue
        # Server-sent events: a data line per chunk, the last one [DONE]; the
        # echoed prompt arrives across the chunks, each a response of its own.
        assert len(responses) > 1 and len(request["response_timestamps"]) > 1
        events = [
            line.removeprefix("data: ")
            for chunk in responses
            for line in chunk.splitlines()
            if line.startswith("data: ")
        ]
        assert events[-1] == "[DONE]", responses
        text = "".join(_text(route, json.loads(e)) for e in events[:-1])
        assert "hello there" in text, responses
