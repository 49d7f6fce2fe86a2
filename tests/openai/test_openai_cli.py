"""tritonx-openai's command line: flags refused with Triton's wording, startup
failures, --backend and --default-max-tokens, no --tokenizer, and SIGTERM."""

from __future__ import annotations

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
            ["--tool-call-parser=llama3"],
            "--tool-call-parser (tool calling) is not supported",
        ),
        (
            ["--lora-separator=_lora_"],
            "--lora-separator (LoRA adapters) is not supported",
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
    """No tokenizer, every model in vLLM's request format, 2 tokens by default."""
    server = start_openai_server(
        tmp_path_factory.mktemp("plain"),
        "--backend=vllm",
        "--default-max-tokens=2",
        tokenizer=False,
    )
    try:
        yield server
    finally:
        stop_openai_server(server)


@pytest.fixture(scope="module")
def client(plain_server: OpenAIServer) -> Any:
    return openai.OpenAI(
        base_url=f"{plain_server.base_url}/v1", api_key="EMPTY", max_retries=0
    )


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


def test_sigterm_stops_cleanly(tmp_path: Path) -> None:
    server = start_openai_server(tmp_path, tokenizer=False)
    code = stop_openai_server(server)
    assert code == 0, server.log_text()
    log = server.log_text()
    assert "Shutting down tritonx OpenAI-compatible frontend" in log
    assert "successfully unloaded 'echo_llm'" in log
