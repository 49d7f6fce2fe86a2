"""tritonx-openai end to end: the real ``openai`` client against a real
``tritonx-openai`` process (one per module), with a vLLM-like echo model, a
TensorRT-LLM-style one and a chat template made by the test (see conftest.py)."""

from __future__ import annotations

import base64
import http.client
import json
import time
import urllib.error
import urllib.request
from typing import Any

import numpy as np
import pytest
from openaiutil import OpenAIServer

openai = pytest.importorskip("openai")

ECHO = "echo_llm"
TRT = "trt_llm"
EMBED = "embed_llm"


@pytest.fixture(scope="module")
def client(openai_server: OpenAIServer) -> Any:
    return openai.OpenAI(
        base_url=f"{openai_server.base_url}/v1", api_key="EMPTY", max_retries=0
    )


def _params(client: Any, model: str, **fields: Any) -> dict[str, Any]:
    """What the echo model received for the prompt "PARAMS"."""
    result = client.completions.create(model=model, prompt="PARAMS", **fields)
    received: dict[str, Any] = json.loads(result.choices[0].text)
    return received


def _get(server: OpenAIServer, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(server.base_url + path, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _post(server: OpenAIServer, path: str, body: Any) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", server.ports["openai"], timeout=30)
    try:
        conn.request(
            "POST", path, json.dumps(body), {"Content-Type": "application/json"}
        )
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


# -- models ----------------------------------------------------------------------------


def test_models_list_and_retrieve(client: Any) -> None:
    models = {model.id: model for model in client.models.list()}
    loras = {"echo_llm_lora_doc", "echo_llm_lora_sql", "trt_llm_lora_fr"}
    assert set(models) == {ECHO, TRT, EMBED} | loras
    for model in models.values():
        assert model.object == "model"
        assert model.owned_by == "Triton Inference Server"
        assert model.created > 0
    assert client.models.retrieve(ECHO).id == ECHO


def test_model_load_needs_explicit_mode(openai_server: OpenAIServer) -> None:
    status, body = _post(openai_server, "/v1/models/echo_llm/unload", {})
    assert status == 400
    assert body == {
        "detail": "Model load/unload requires --model-control-mode=explicit"
    }


def test_unknown_model_card_is_404(client: Any) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("nope")
    assert caught.value.status_code == 404
    assert caught.value.response.json() == {"detail": "Unknown model: nope"}


# -- completions -----------------------------------------------------------------------


def test_completion(client: Any) -> None:
    result = client.completions.create(
        model=ECHO, prompt="one two three four five", max_tokens=3
    )
    assert result.id.startswith("cmpl-")
    assert result.object == "text_completion"
    assert result.model == ECHO
    assert result.created > 0
    assert len(result.choices) == 1
    choice = result.choices[0]
    assert choice.text == "one two three"
    assert choice.finish_reason == "stop"
    assert choice.index == 0
    assert result.usage is not None
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (5, 3)
    assert result.usage.total_tokens == 8


def test_completion_echo_and_default_max_tokens(client: Any) -> None:
    prompt = " ".join(f"w{i}" for i in range(20))
    result = client.completions.create(model=ECHO, prompt=prompt)
    # --default-max-tokens is 16, as in Triton.
    assert result.choices[0].text.split() == prompt.split()[:16]
    echoed = client.completions.create(model=ECHO, prompt="a b", echo=True)
    assert echoed.choices[0].text == "a b a b"


def test_vllm_sampling_parameters(client: Any) -> None:
    received = _params(
        client, ECHO, max_tokens=7, temperature=0.5, top_p=0.9, seed=11, stop=["x"]
    )
    assert received["stream"] is False
    assert received["exclude_input_in_output"] is True
    assert received["return_num_input_tokens"] is True
    sampling = json.loads(received["sampling_parameters"])
    assert sampling["max_tokens"] == 7
    assert sampling["temperature"] == 0.5
    assert sampling["top_p"] == 0.9
    assert sampling["seed"] == 11
    assert sampling["stop"] == ["x"]
    for absent in ("model", "prompt", "stream", "echo", "best_of", "logprobs"):
        assert absent not in sampling


def test_tensorrtllm_request_format(client: Any) -> None:
    received = _params(client, TRT, max_tokens=5, temperature=0.25, stop="END")
    assert received["max_tokens"] == 5
    assert received["temperature"] == 0.25
    assert received["stop_words"] == ["END"]
    assert received["top_p"] == 1.0
    assert "sampling_parameters" not in received
    result = client.completions.create(model=TRT, prompt="p q r s", max_tokens=2)
    assert result.choices[0].text == "p q"
    assert result.usage is None  # the model reports no token counts


def test_completion_stream(client: Any) -> None:
    stream = client.completions.create(
        model=ECHO,
        prompt="alpha beta gamma",
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    ids = {chunk.id for chunk in chunks}
    assert len(ids) == 1 and ids.pop().startswith("cmpl-")
    texts = [chunk.choices[0].text for chunk in chunks if chunk.choices]
    assert texts[:3] == ["alpha", " beta", " gamma"]
    assert "".join(texts) == "alpha beta gamma"
    reasons = [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices]
    assert reasons[-1] == "stop"
    assert all(reason is None for reason in reasons[:-1])
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (3, 3)


def test_stream_ends_with_done(openai_server: OpenAIServer) -> None:
    conn = http.client.HTTPConnection(
        "127.0.0.1", openai_server.ports["openai"], timeout=30
    )
    body = {"model": ECHO, "prompt": "x y", "stream": True}
    conn.request(
        "POST",
        "/v1/completions",
        json.dumps(body),
        {"Content-Type": "application/json"},
    )
    response = conn.getresponse()
    assert response.status == 200
    assert response.getheader("Content-Type", "").startswith("text/event-stream")
    events = [e for e in response.read().decode().split("\n\n") if e]
    conn.close()
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    assert json.loads(events[0][len("data: ") :])["choices"][0]["text"] == "x"


# -- chat completions --------------------------------------------------------------------

MESSAGES = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "hello world"},
]
RENDERED = "<|system|> be brief <|user|> hello world <|assistant|>"


def test_chat_completion_applies_template(client: Any) -> None:
    result = client.chat.completions.create(
        model=ECHO, messages=MESSAGES, max_tokens=50
    )
    assert result.id.startswith("cmpl-")
    assert result.object == "chat.completion"
    assert result.model == ECHO
    choice = result.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == RENDERED
    assert choice.finish_reason == "stop"
    assert result.usage is not None and result.usage.prompt_tokens == 7


def test_chat_text_parts_and_max_completion_tokens(client: Any) -> None:
    messages = [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    result = client.chat.completions.create(
        model=ECHO, messages=messages, max_completion_tokens=1, max_tokens=40
    )
    # max_completion_tokens wins over max_tokens; the list content goes to the
    # template as it came.
    assert result.choices[0].message.content == "<|user|>"


def test_chat_default_temperature(client: Any) -> None:
    messages = [{"role": "user", "content": "PARAMS"}]
    result = client.chat.completions.create(model=TRT, messages=messages, max_tokens=3)
    assert result.choices[0].message.content == "<|user|> PARAMS <|assistant|>"
    received = _params(client, TRT)
    assert received["temperature"] == 1.0  # completions' default; chat's is 0.7


def test_chat_stream(client: Any) -> None:
    stream = client.chat.completions.create(
        model=ECHO,
        messages=MESSAGES,
        max_tokens=50,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    first = chunks[0].choices[0]
    assert first.delta.role == "assistant" and first.delta.content == ""
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == RENDERED
    finals = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finals[-1] == "stop" and finals.count("stop") == 1
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 7


# -- LoRA ------------------------------------------------------------------------------


def test_lora_vllm(client: Any) -> None:
    assert client.models.retrieve("echo_llm_lora_sql").id == "echo_llm_lora_sql"
    received = _params(client, "echo_llm_lora_sql")
    assert json.loads(received["sampling_parameters"])["lora_name"] == "sql"
    plain = _params(client, ECHO)
    assert "lora_name" not in json.loads(plain["sampling_parameters"])
    result = client.completions.create(model="echo_llm_lora_doc", prompt="a b")
    assert result.model == "echo_llm_lora_doc"
    assert result.choices[0].text == "a b"


def test_lora_tensorrtllm_sends_weights_once(client: Any) -> None:
    first = _params(client, "trt_llm_lora_fr")
    assert first["lora_task_id"] == 1
    assert first["lora_weights"] == [0.5, 1.5, 2.5]
    assert first["lora_config"] == [1, 2, 3]
    again = _params(client, "trt_llm_lora_fr")
    assert again["lora_task_id"] == 1
    assert "lora_weights" not in again and "lora_config" not in again


def test_unknown_lora_is_400(client: Any) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model="echo_llm_lora_xx", prompt="x")
    assert caught.value.response.json() == {
        "detail": "Unknown LoRA: xx; for model: echo_llm_lora_xx"
    }
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="nope_lora_sql", messages=MESSAGES)
    assert caught.value.response.json() == {"detail": "Unknown model: nope_lora_sql"}


# -- logprobs --------------------------------------------------------------------------


def test_completion_logprobs(client: Any) -> None:
    result = client.completions.create(model=ECHO, prompt="ab cd", logprobs=2)
    logprobs = result.choices[0].logprobs
    assert logprobs.tokens == ["ab", "cd"]
    assert logprobs.token_logprobs == [-0.25, -0.25]
    assert logprobs.text_offset == [0, 2]
    assert logprobs.top_logprobs == [
        {"ab": -0.25, "alt": -2.0},
        {"cd": -0.25, "alt": -2.0},
    ]
    received = _params(client, ECHO, logprobs=2)
    assert received["return_logprobs"] is True
    assert json.loads(received["sampling_parameters"])["logprobs"] == 2
    plain = client.completions.create(model=ECHO, prompt="ab")
    assert plain.choices[0].logprobs is None


def test_chat_logprobs_streamed(client: Any) -> None:
    stream = client.chat.completions.create(
        model=ECHO,
        messages=[{"role": "user", "content": "hi"}],
        logprobs=True,
        top_logprobs=1,
        stream=True,
    )
    tokens = []
    for chunk in stream:
        choice = chunk.choices[0]
        if choice.logprobs is not None:
            for entry in choice.logprobs.content:
                assert entry.logprob == -0.25
                assert entry.bytes == list(entry.token.encode())
                assert [t.token for t in entry.top_logprobs] == [entry.token, "alt"]
                tokens.append(entry.token)
    assert tokens == ["<|user|>", "hi", "<|assistant|>"]


# -- embeddings ------------------------------------------------------------------------


def test_embeddings(client: Any) -> None:
    result = client.embeddings.create(
        model=EMBED, input="three words here", encoding_format="float"
    )
    assert result.object == "list"
    assert result.model == EMBED
    assert len(result.data) == 1
    assert result.data[0].index == 0 and result.data[0].object == "embedding"
    assert result.data[0].embedding == [16.0, 0.5, -1.0, 2.0]
    assert result.usage.prompt_tokens == 3 and result.usage.total_tokens == 3
    shorter = client.embeddings.create(
        model=EMBED, input=[5, 6], dimensions=2, encoding_format="float"
    )
    assert shorter.data[0].embedding == [2.0, 0.5]


def test_embeddings_base64(openai_server: OpenAIServer) -> None:
    status, body = _post(
        openai_server,
        "/v1/embeddings",
        {"model": EMBED, "input": "ab", "encoding_format": "base64"},
    )
    assert status == 200
    raw = base64.b64decode(body["data"][0]["embedding"])
    assert np.frombuffer(raw, dtype=np.float32).tolist() == [2.0, 0.5, -1.0, 2.0]


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        ({"model": "nope", "input": "x"}, 400, "Unknown model: nope"),
        (
            {"model": TRT, "input": "x"},
            400,
            "TRT-LLM backend and Python backend do not support embedding requests",
        ),
        ({"model": EMBED, "input": ""}, 422, None),
        ({"model": EMBED, "input": "x", "encoding_format": "hex"}, 422, None),
        ({"model": EMBED}, 422, None),
    ],
)
def test_embeddings_refused(
    openai_server: OpenAIServer, body: dict[str, Any], status: int, detail: str | None
) -> None:
    got, answer = _post(openai_server, "/v1/embeddings", body)
    assert got == status
    if detail is not None:
        assert answer == {"detail": detail}


# -- errors ----------------------------------------------------------------------------


def test_unknown_model_is_400(client: Any) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model="nope", prompt="x")
    assert caught.value.response.json() == {"detail": "Unknown model: nope"}
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="nope", messages=MESSAGES)
    assert caught.value.response.json() == {"detail": "Unknown model: nope"}


@pytest.mark.parametrize(
    ("field", "value"),
    [("temperature", 2.5), ("top_p", 1.5), ("max_tokens", -1), ("logprobs", 6)],
)
def test_out_of_range_parameter_is_422(client: Any, field: str, value: Any) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        client.completions.create(model=ECHO, prompt="x", extra_body={field: value})
    detail = caught.value.response.json()["detail"]
    assert detail[0]["loc"] == ["body", field]


def test_unknown_field_and_missing_messages_are_422(
    client: Any, openai_server: OpenAIServer
) -> None:
    with pytest.raises(openai.UnprocessableEntityError):
        client.completions.create(model=ECHO, prompt="x", extra_body={"bogus": 1})
    status, body = _post(openai_server, "/v1/chat/completions", {"model": ECHO})
    assert status == 422
    assert body["detail"][0]["msg"] == "Field required"
    assert body["detail"][0]["loc"] == ["body", "messages"]
    status, body = _post(openai_server, "/v1/completions", {})
    assert status == 422


@pytest.mark.parametrize(
    ("model", "fields", "message"),
    [
        (
            ECHO,
            {"n": 2},
            "Received n=2, but only single choice (n=1) is currently supported",
        ),
        (ECHO, {"prompt": ""}, "prompt must be non-empty"),
        (ECHO, {"prompt": ["a", "b"]}, "only single string input is supported"),
        (ECHO, {"suffix": "s"}, "suffix is not currently supported"),
        (ECHO, {"logit_bias": {"1": 1}}, "logit bias is not supported"),
        (ECHO, {"best_of": 1}, "best_of is no longer supported in vLLM backend"),
        (TRT, {"best_of": 2}, "only single choice (best_of=1) is currently supported"),
        (
            TRT,
            {"logprobs": 1},
            "logprobs are currently available only for the vLLM backend",
        ),
        (
            ECHO,
            {"stream_options": {"include_usage": True}},
            "`stream_options` can only be used",
        ),
    ],
)
def test_refused_completion_is_400(
    client: Any, model: str, fields: dict[str, Any], message: str
) -> None:
    body = {"prompt": "x", **fields}
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model=model, **body)
    assert message in caught.value.response.json()["detail"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"n": 3}, "only single choice (n=1) is currently supported"),
        ({"logit_bias": {"1": 1}}, "logit bias is not currently supported"),
        (
            {"top_logprobs": 2},
            "`top_logprobs` can only be used when `logprobs` is True",
        ),
        (
            {"tools": [{"type": "function", "function": {"name": "f"}}]},
            "having tools in the request requires --tool-call-parser to be set",
        ),
        (
            {
                "tools": [{"type": "function", "function": {"name": "f"}}],
                "tool_choice": "auto",
            },
            '"auto" tool choice requires --tool-call-parser to be set',
        ),
        (
            {"messages": [{"role": "tool", "content": "r", "tool_call_id": "1"}]},
            "a conversation cannot start with a tool message",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "image_url",
                                "image_url": {"url": "http://x/y.png"},
                            }
                        ],
                    }
                ]
            },
            "only text message is supported, but got image_url",
        ),
    ],
)
def test_refused_chat_is_400(client: Any, fields: dict[str, Any], message: str) -> None:
    body = {"messages": MESSAGES, **fields}
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=ECHO, **body)
    assert message in caught.value.response.json()["detail"]


def test_model_error(client: Any) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        client.completions.create(model=ECHO, prompt="FAIL")
    assert caught.value.response.json() == {"detail": "the model failed"}
    stream = client.completions.create(model=ECHO, prompt="FAIL", stream=True)
    with pytest.raises(openai.APIError, match="the model failed"):
        list(stream)


def test_oversized_body_is_413(openai_server: OpenAIServer) -> None:
    conn = http.client.HTTPConnection(
        "127.0.0.1", openai_server.ports["openai"], timeout=30
    )
    conn.putrequest("POST", "/v1/completions")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", str((1 << 26) + 1))
    conn.endheaders()
    response = conn.getresponse()
    body = json.loads(response.read())
    conn.close()
    assert response.status == 413
    assert body["error"]["code"] == "content_too_large"


# -- observability, KServe, disconnects ------------------------------------------------


def test_health_and_metrics(client: Any, openai_server: OpenAIServer) -> None:
    client.completions.create(model=ECHO, prompt="count me")
    status, _ = _get(openai_server, "/health/ready")
    assert status == 200
    status, text = _get(openai_server, "/metrics")
    assert status == 200
    assert 'nv_inference_request_success{model="echo_llm",version="1"}' in text
    status, _ = _get(openai_server, "/does-not-exist")
    assert status == 404


def test_kserve_frontends(openai_server: OpenAIServer) -> None:
    import queue

    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    http_client = httpclient.InferenceServerClient(
        f"127.0.0.1:{openai_server.ports['http']}"
    )
    try:
        assert http_client.is_server_ready()
        assert http_client.is_model_ready(ECHO)
        assert http_client.get_model_config(ECHO)["backend"] == "vllm"
    finally:
        http_client.close()
    grpc_client = grpcclient.InferenceServerClient(
        f"127.0.0.1:{openai_server.ports['grpc']}"
    )
    results: queue.Queue[Any] = queue.Queue()
    grpc_client.start_stream(
        callback=lambda result, error: results.put((result, error))
    )
    try:
        text = grpcclient.InferInput("text_input", [1], "BYTES")
        text.set_data_from_numpy(np.array([b"red green"], dtype=np.object_))
        stream = grpcclient.InferInput("stream", [1], "BOOL")
        stream.set_data_from_numpy(np.array([False]))
        grpc_client.async_stream_infer(ECHO, [text, stream])
        result, error = results.get(timeout=30)
        assert error is None
        assert result.as_numpy("text_output").tolist() == [b"red green"]
    finally:
        grpc_client.stop_stream()
        grpc_client.close()


def test_client_disconnect_mid_stream(client: Any, openai_server: OpenAIServer) -> None:
    stream = client.completions.create(model=ECHO, prompt="SLOW", stream=True)
    seen = []
    for chunk in stream:
        seen.append(chunk.choices[0].text)
        if len(seen) == 2:
            break
    stream.close()  # the client goes away with the stream half read
    assert seen == ["w0", " w1"]
    # The frontend cancels the inference, and the model sees it (it would send
    # 400 words otherwise); the wait is for that event, bounded.
    marker = openai_server.repo / ECHO / "cancelled"
    deadline = time.monotonic() + 30
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists()
    # The server serves on.
    result = client.completions.create(model=ECHO, prompt="still here")
    assert result.choices[0].text == "still here"
    assert openai_server.process.poll() is None
