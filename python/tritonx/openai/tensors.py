"""An OpenAI request as a model's input tensors, and the values a response holds.

Two request formats, chosen per model as Triton's frontend chooses them: models of
the vLLM backend take the prompt as ``text_input`` and every sampling setting as one
JSON text (``sampling_parameters``); every other model (TensorRT-LLM, ensembles,
python or BLS models) takes TensorRT-LLM's tensors, one per setting (``max_tokens``,
``temperature``, ``top_p``, ``stop_words``, ...). Both answer ``text_output``, and
optionally ``num_input_tokens`` / ``num_output_tokens`` (the ``usage``).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from tritonx.openai.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
)

VLLM = "vllm"
TENSORRTLLM = "tensorrtllm"

# Inputs that switch extra outputs on. Triton always sends them; tritonx sends only
# those the model declares, so that a model without them still serves (no usage).
RETURN_FLAGS = ("return_num_input_tokens", "return_num_output_tokens")
# The input that turns the prompt's echo off, by the names models use for it.
ECHO_INPUTS = ("exclude_input_in_output", "sampling_param_exclude_input_from_output")

# Request fields that are not vLLM sampling parameters (or are set separately).
_NOT_SAMPLING = frozenset(
    {
        "model",
        "stream",
        "messages",
        "prompt",
        "echo",
        "store",
        "metadata",
        "response_format",
        "service_tier",
        "stream_options",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "user",
        "function_call",
        "functions",
        "suffix",
        "max_completion_tokens",
        "max_tokens",
        "logprobs",
        "top_logprobs",
        "best_of",
    }
)

AnyRequest = CompletionRequest | ChatCompletionRequest


class OutputError(Exception):
    """A response that does not hold what the request format promises."""


def _bytes(values: Any) -> np.ndarray[Any, Any]:
    return np.array(values, dtype=np.object_)


def max_tokens_of(request: AnyRequest, default: int) -> int:
    """The token budget: ``max_completion_tokens`` (chat), then ``max_tokens``,
    then the server's ``--default-max-tokens``."""
    if (
        isinstance(request, ChatCompletionRequest)
        and request.max_completion_tokens is not None
    ):
        return request.max_completion_tokens
    if request.max_tokens is not None:
        return request.max_tokens
    return default


def sampling_parameters(
    request: AnyRequest,
    default_max_tokens: int,
    lora_name: str | None = None,
    guide: str | None = None,
) -> str:
    """The ``sampling_parameters`` JSON of a vLLM request: every field of the
    request that is set or has a default, less those that are not sampling
    settings; ``max_tokens`` always; ``logprobs`` as the number vLLM takes;
    ``structured_outputs`` (vLLM's ``StructuredOutputsParams`` as JSON text) with
    the JSON schema ``guide`` the answer must follow."""
    params: dict[str, Any] = request.model_dump(
        exclude=set(_NOT_SAMPLING), exclude_none=True
    )
    params["max_tokens"] = max_tokens_of(request, default_max_tokens)
    if isinstance(request, ChatCompletionRequest):
        if request.logprobs:
            params["logprobs"] = (
                request.top_logprobs if request.top_logprobs is not None else 1
            )
    elif request.logprobs is not None and request.logprobs > 0:
        params["logprobs"] = request.logprobs
    if lora_name is not None:
        params["lora_name"] = lora_name
    if guide is not None:
        params["structured_outputs"] = json.dumps({"json": guide})
    return json.dumps(params)


def wants_logprobs(request: AnyRequest) -> bool:
    if isinstance(request, ChatCompletionRequest):
        return bool(request.logprobs)
    return request.logprobs is not None and request.logprobs > 0


def _echo(request: AnyRequest) -> bool | None:
    return request.echo if isinstance(request, CompletionRequest) else None


def vllm_inputs(
    prompt: str,
    request: AnyRequest,
    declared: set[str],
    echo_input: str | None,
    default_max_tokens: int,
    lora_name: str | None = None,
    guide: str | None = None,
) -> dict[str, Any]:
    """The inputs of a vLLM-backend request (1-D tensors of one element)."""
    inputs: dict[str, Any] = {
        "text_input": _bytes([prompt.encode()]),
        "stream": np.array([bool(request.stream)]),
        "sampling_parameters": _bytes(
            [
                sampling_parameters(
                    request, default_max_tokens, lora_name, guide
                ).encode()
            ]
        ),
    }
    if echo_input is not None:
        echo = _echo(request)
        # The prompt is left out of the output unless the request echoes it.
        inputs[echo_input] = np.array([not echo if echo is not None else True])
    if "return_logprobs" in declared:
        inputs["return_logprobs"] = np.array([wants_logprobs(request)])
    for flag in RETURN_FLAGS:
        if flag in declared:
            inputs[flag] = np.array([True])
    return inputs


def tensorrtllm_inputs(
    prompt: str,
    request: AnyRequest,
    declared: set[str],
    echo_input: str | None,
    default_max_tokens: int,
    lora_name: str | None = None,
    guide: str | None = None,
) -> dict[str, Any]:
    """The inputs of a TensorRT-LLM-style request (2-D, batch of one), with
    ``guided_decoding_guide_type`` / ``guided_decoding_guide`` for a JSON schema
    ``guide``; the LoRA tensors are added by the caller
    (``lora.tensorrtllm_lora_inputs``)."""
    inputs: dict[str, Any] = {
        "text_input": _bytes([[prompt.encode()]]),
        "stream": np.array([[bool(request.stream)]]),
        "max_tokens": np.array(
            [[max_tokens_of(request, default_max_tokens)]], dtype=np.int32
        ),
    }
    if request.stop:
        stop = [request.stop] if isinstance(request.stop, str) else request.stop
        inputs["stop_words"] = _bytes([[word.encode() for word in stop]])
    for name in ("top_p", "frequency_penalty", "presence_penalty", "temperature"):
        value = getattr(request, name)
        if value is not None:  # zero is a value
            inputs[name] = np.array([[value]], dtype=np.float32)
    if request.seed is not None:
        inputs["seed"] = np.array([[request.seed]], dtype=np.uint64)
    echo = _echo(request)
    if echo is not None and echo_input is not None:
        inputs[echo_input] = np.array([[not echo]])
    if guide is not None:
        # Sent as Triton sends them: a model without these inputs refuses.
        inputs["guided_decoding_guide_type"] = _bytes([[b"json_schema"]])
        inputs["guided_decoding_guide"] = _bytes([[guide.encode()]])
    for flag in RETURN_FLAGS:
        if flag in declared:
            inputs[flag] = np.array([[True]])
    return inputs


def vllm_embedding_inputs(
    request: EmbeddingRequest, declared: set[str]
) -> dict[str, Any]:
    """The inputs of a vLLM embedding request: ``embedding_request`` JSON with
    the input and its pooling parameters (``dimensions``)."""
    pooling: dict[str, Any] = {}
    if request.dimensions is not None:
        pooling["dimensions"] = [request.dimensions]
    body = {"input": request.input, "pooling_params": pooling}
    inputs: dict[str, Any] = {"embedding_request": _bytes([json.dumps(body).encode()])}
    for flag in RETURN_FLAGS:
        if flag in declared:
            inputs[flag] = np.array([True])
    return inputs


def embedding_output(response: Any) -> list[float]:
    """The embedding a vLLM model answers: a JSON list of numbers in
    ``text_output``."""
    text = text_output(response)
    try:
        values = json.loads(text)
    except ValueError:
        raise OutputError("the model's embedding is not JSON") from None
    if not isinstance(values, list) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in values
    ):
        raise OutputError("the model's embedding is not a list of numbers")
    return [float(v) for v in values]


def text_output(response: Any) -> str:
    """The response's ``text_output`` as text ("" when it has none, as a
    decoupled stream's empty last response)."""
    tensor = response.outputs.get("text_output")
    if tensor is None:
        return ""
    if tensor.data_type.name != "BYTES":
        raise OutputError(
            f"expected text_output of type BYTES, got {tensor.data_type.name}"
        )
    values = tensor.to_bytes_array().reshape(-1)
    if values.size != 1:
        raise OutputError(
            f"Expected to find 1 string in the output, found {values.size} instead."
        )
    raw = values[0]
    try:
        return bytes(raw).decode("utf-8")
    except UnicodeDecodeError as error:
        raise OutputError(f"text_output is not UTF-8 text: {error}") from None


def _first_int(tensor: Any) -> int | None:
    if tensor is None or tensor.data_type.name not in ("INT32", "UINT32"):
        return None
    array = np.from_dlpack(tensor).reshape(-1)
    return int(array[0]) if array.size else None


def token_counts(response: Any) -> tuple[int, int] | None:
    """(prompt tokens, completion tokens) when the response reports both."""
    prompt = _first_int(response.outputs.get("num_input_tokens"))
    completion = _first_int(response.outputs.get("num_output_tokens"))
    if prompt is None or completion is None:
        return None
    return prompt, completion


def _vllm_logprobs(response: Any) -> list[dict[str, Any]] | None:
    """The ``logprobs`` output of a vLLM response: per generated token, the
    candidates by token id with ``logprob``, ``rank`` and ``decoded_token``."""
    tensor = response.outputs.get("logprobs")
    if tensor is None or tensor.data_type.name != "BYTES":
        return None
    values = tensor.to_bytes_array().reshape(-1)
    if values.size != 1:
        return None
    try:
        data = json.loads(bytes(values[0]).decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(data, list):
        return None
    return [entry for entry in data if isinstance(entry, dict) and entry]


def _ranked(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """A token's candidates, the chosen one (lowest rank) first."""
    candidates = [c for c in entry.values() if isinstance(c, dict)]
    return sorted(candidates, key=lambda c: c.get("rank", float("inf")))


def completion_logprobs(response: Any, offset: int = 0) -> dict[str, Any] | None:
    """The completions API's ``logprobs`` object for one response (text offsets
    counted from ``offset``), or None when the response has none."""
    entries = _vllm_logprobs(response)
    if not entries:
        return None
    result: dict[str, list[Any]] = {
        "text_offset": [],
        "token_logprobs": [],
        "tokens": [],
        "top_logprobs": [],
    }
    for entry in entries:
        ranked = _ranked(entry)
        if not ranked:
            continue
        chosen = str(ranked[0].get("decoded_token", ""))
        result["text_offset"].append(offset)
        result["token_logprobs"].append(float(ranked[0].get("logprob", 0.0)))
        result["tokens"].append(chosen)
        result["top_logprobs"].append(
            {
                str(c.get("decoded_token", "")): float(c.get("logprob", 0.0))
                for c in ranked
            }
        )
        offset += len(chosen)
    return result


def chat_logprobs(response: Any) -> dict[str, Any] | None:
    """The chat API's ``logprobs`` object (``{"content": [...]}``) or None."""
    entries = _vllm_logprobs(response)
    if not entries:
        return None
    content = []
    for entry in entries:
        ranked = _ranked(entry)
        if not ranked:
            continue
        tops = [
            {
                "token": str(c.get("decoded_token", "")),
                "logprob": float(c.get("logprob", 0.0)),
                "bytes": list(str(c.get("decoded_token", "")).encode()),
            }
            for c in ranked
        ]
        content.append({**tops[0], "top_logprobs": tops})
    return {"content": content} if content else None
