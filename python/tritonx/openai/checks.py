"""What the frontend refuses before any inference, with Triton's messages.

``ClientError`` is the request's fault (HTTP 400), ``ServerError`` the server's
(HTTP 500). ``backend`` is the model's configured backend ("vllm" for the vLLM
backend); ``request_format`` is the format its requests take (see ``tensors``).
"""

from __future__ import annotations

from tritonx.openai import tensors
from tritonx.openai.schemas import ChatCompletionRequest, CompletionRequest


class ClientError(Exception):
    """The request cannot be served as asked: HTTP 400 with this message."""


class ServerError(Exception):
    """The server cannot serve a valid request: HTTP 500 with this message."""


def _single_choice(request: CompletionRequest | ChatCompletionRequest) -> None:
    if request.n and request.n > 1:
        raise ClientError(
            f"Received n={request.n}, but only single choice (n=1) is "
            "currently supported"
        )


def _stream_options(request: CompletionRequest | ChatCompletionRequest) -> None:
    if request.stream_options and not request.stream:
        raise ClientError("`stream_options` can only be used when `stream` is True")


def _seed(
    request_format: str, request: CompletionRequest | ChatCompletionRequest
) -> None:
    # TensorRT-LLM's seed tensor is unsigned (tritonx's check: Triton fails to
    # build the request).
    if (
        request_format == tensors.TENSORRTLLM
        and request.seed is not None
        and request.seed < 0
    ):
        raise ClientError("seed must not be negative for this model")


def check_completion(
    backend: str, request_format: str, request: CompletionRequest
) -> str:
    """The prompt of a completions request that can be served."""
    if request.suffix is not None:
        raise ClientError("suffix is not currently supported")
    if not request.prompt:
        raise ClientError("prompt must be non-empty")
    if not isinstance(request.prompt, str):
        raise ClientError("only single string input is supported")
    if "best_of" in request.model_fields_set and backend == tensors.VLLM:
        raise ClientError(
            "best_of is no longer supported in vLLM backend, removed from vLLM "
            "V1 engine"
        )
    _single_choice(request)
    if request.best_of and request.best_of > 1:
        raise ClientError(
            f"Received best_of={request.best_of}, but only single choice "
            "(best_of=1) is currently supported"
        )
    if request.logit_bias is not None:
        raise ClientError("logit bias is not supported")
    if tensors.wants_logprobs(request) and backend != tensors.VLLM:
        raise ClientError("logprobs are currently available only for the vLLM backend")
    _stream_options(request)
    _seed(request_format, request)
    return request.prompt


def check_chat(
    backend: str, request_format: str, request: ChatCompletionRequest, tokenizer: bool
) -> None:
    """Tool settings are checked by ``tools.check_tools``."""
    if not tokenizer:
        raise ServerError("Unknown tokenizer")
    _single_choice(request)
    if request.logit_bias is not None:
        raise ClientError("logit bias is not currently supported")
    if backend != tensors.VLLM and (
        request.logprobs or request.top_logprobs is not None
    ):
        raise ClientError("logprobs are currently available only for the vLLM backend")
    if request.top_logprobs is not None and not request.logprobs:
        raise ClientError("`top_logprobs` can only be used when `logprobs` is True")
    _stream_options(request)
    _seed(request_format, request)
