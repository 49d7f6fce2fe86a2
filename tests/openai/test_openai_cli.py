"""tritonx-openai's command line: flags refused with Triton's wording, startup
failures, --backend and --default-max-tokens, no --tokenizer, explicit model
control with the load/unload routes, --openai-restricted-api, and SIGTERM."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openaiutil import (
    OpenAIServer,
    make_repository,
    openai_command,
    start_openai_server,
    stop_openai_server,
)
from serverutil import server_env

openai = pytest.importorskip("openai")


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        openai_command(*args),
        capture_output=True,
        text=True,
        env=server_env(),
        timeout=timeout,
    )


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--tool-call-parser=hermes"],
            "tool parser: 'hermes' not found (--tool-call-parser takes llama3, "
            "mistral)",
        ),
        (
            ["--tool-call-parser=llama3", "--max-tool-call-parse-bytes=0"],
            "--max-tool-call-parse-bytes must be a positive integer",
        ),
        (
            ["--load-model=echo_llm"],
            "Use of '--load-model' requires setting '--model-control-mode=explicit'",
        ),
        (["--openai-port=70000"], "--openai-port must be a port number"),
    ],
)
def test_refused_flags(tmp_path: Path, flags: list[str], message: str) -> None:
    result = _run(f"--model-repository={tmp_path}", *flags)
    assert result.returncode == 1
    assert message in result.stderr


def test_bad_choice_and_missing_repository_are_usage_errors() -> None:
    result = _run("--model-repository=x", "--backend=onnx")
    assert result.returncode == 2  # argparse, as Triton's command
    assert "invalid choice: 'onnx'" in result.stderr
    result = _run("--openai-port=9000")
    assert result.returncode == 2
    assert "--model-repository" in result.stderr


def test_repository_that_does_not_exist(tmp_path: Path) -> None:
    result = _run(f"--model-repository={tmp_path / 'absent'}", "--openai-port=0")
    assert result.returncode == 1
    assert "failed to start the server" in result.stderr


def test_openai_port_in_use(tmp_path: Path) -> None:
    repo, backends = make_repository(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = _run(
            f"--model-repository={repo}",
            f"--backend-directory={backends}",
            "--host=127.0.0.1",
            f"--openai-port={port}",
        )
    assert result.returncode == 1
    assert (
        f"failed to start OpenAI frontend: Socket '127.0.0.1:{port}'" in result.stderr
    )


@pytest.fixture(scope="module")
def plain_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenAIServer]:
    """No tokenizer, every model in vLLM's request format, 2 tokens by default,
    explicit model control, the model routes behind a header."""
    server = start_openai_server(
        tmp_path_factory.mktemp("plain"),
        "--backend=vllm",
        "--default-max-tokens=2",
        "--model-control-mode=explicit",
        "--load-model=echo_llm",
        "--load-model=trt_llm",
        "--openai-restricted-api",
        "model-repository,metrics",
        "admin-key",
        "s3cret",
        tokenizer=False,
    )
    try:
        yield server
    finally:
        stop_openai_server(server)


ADMIN = {"admin-key": "s3cret"}


@pytest.fixture(scope="module")
def client(plain_server: OpenAIServer) -> Any:
    return openai.OpenAI(
        base_url=f"{plain_server.base_url}/v1", api_key="EMPTY", max_retries=0
    )


def _call(
    server: OpenAIServer, method: str, path: str, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", server.ports["openai"], timeout=60)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        text = response.read().decode()
        try:
            return response.status, json.loads(text)
        except ValueError:
            return response.status, text
    finally:
        conn.close()


def test_default_max_tokens(client: Any) -> None:
    result = client.completions.create(model="echo_llm", prompt="a b c d")
    assert result.choices[0].text == "a b"


def test_backend_flag_overrides_request_format(client: Any) -> None:
    # trt_llm takes TensorRT-LLM's tensors; --backend=vllm sends it vLLM's, which
    # it does not declare: the server refuses the request.
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model="trt_llm", prompt="x")
    detail = caught.value.response.json()["detail"]
    assert "unexpected inference input 'sampling_parameters'" in detail


def test_chat_without_tokenizer(client: Any) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(
            model="echo_llm", messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.response.json() == {"detail": "Unknown tokenizer"}


def test_restricted_routes(plain_server: OpenAIServer, client: Any) -> None:
    status, body = _call(plain_server, "GET", "/v1/models")
    assert status == 401
    assert body == {
        "error": {
            "message": "This API is restricted, expecting header 'admin-key' with "
            "valid value",
            "type": "authentication_error",
            "code": "invalid_auth",
        }
    }
    assert _call(plain_server, "GET", "/metrics", {"admin-key": "wrong"})[0] == 401
    assert _call(plain_server, "GET", "/metrics", ADMIN)[0] == 200
    assert _call(plain_server, "GET", "/health/ready")[0] == 200  # not restricted
    # Inference is not restricted.
    assert (
        client.completions.create(model="echo_llm", prompt="x").choices[0].text == "x"
    )


def test_unload_and_load(plain_server: OpenAIServer) -> None:
    def names() -> set[str]:
        status, body = _call(plain_server, "GET", "/v1/models", ADMIN)
        assert status == 200
        return {card["id"] for card in body["data"]}

    assert names() == {"echo_llm", "trt_llm"}
    status, body = _call(plain_server, "POST", "/v1/models/trt_llm/unload", ADMIN)
    assert (status, body) == (200, {"status": "success", "model": "trt_llm"})
    assert names() == {"echo_llm"}
    status, body = _call(plain_server, "POST", "/v1/models/trt_llm/unload", ADMIN)
    assert (status, body) == (400, {"detail": "Unknown model: trt_llm"})
    status, body = _call(plain_server, "POST", "/v1/models/trt_llm/load", ADMIN)
    assert status == 200
    assert body["id"] == "trt_llm" and body["owned_by"] == "Triton Inference Server"
    assert names() == {"echo_llm", "trt_llm"}
    status, body = _call(plain_server, "POST", "/v1/models/trt_llm/load", ADMIN)
    assert (status, body) == (400, {"detail": "Model 'trt_llm' is already loaded"})
    status, body = _call(plain_server, "POST", "/v1/models/absent/load", ADMIN)
    assert status == 400
    assert body["detail"].startswith("Failed to load model 'absent': ")
    assert _call(plain_server, "POST", "/v1/models/trt_llm/unload")[0] == 401


def test_bad_restriction_is_refused(tmp_path: Path) -> None:
    result = _run(
        f"--model-repository={tmp_path}", "--openai-restricted-api", "bogus", "k", "v"
    )
    assert result.returncode == 1
    assert "Unknown API 'bogus'" in result.stderr


def test_chat_template_flag_then_sigterm(tmp_path: Path) -> None:
    template = tmp_path / "template.jinja"
    template.write_text("{% for m in messages %}[{{ m['content'] }}]{% endfor %}")
    server = start_openai_server(tmp_path / "run", f"--chat-template={template}")
    try:
        client = openai.OpenAI(
            base_url=f"{server.base_url}/v1", api_key="EMPTY", max_retries=0
        )
        reply = client.chat.completions.create(
            model="echo_llm", messages=[{"role": "user", "content": "hi"}]
        )
        # The file's template, not the tokenizer's.
        assert reply.choices[0].message.content == "[hi]"
    finally:
        code = stop_openai_server(server)
    assert code == 0, server.log_text()
    log = server.log_text()
    assert "Shutting down tritonx OpenAI-compatible frontend" in log
    assert "successfully unloaded 'echo_llm'" in log
