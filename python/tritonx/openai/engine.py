"""The engine behind the OpenAI routes: which models there are, how a request
becomes an inference on a tritonx model, and how the responses become OpenAI
objects and server-sent events.

As in Triton's frontend: the models are those ready when the frontend starts;
a model's request format is ``--backend`` when given, else "vllm" for a model of
the vLLM backend and TensorRT-LLM's for every other model; chat prompts are made
by the tokenizer's chat template (``--tokenizer``, optionally ``--chat-template``);
a response's ``id`` is ``cmpl-<uuid1>`` and ``model`` is the name asked for.
Requests the frontend cannot serve raise ``ClientError`` (HTTP 400) with Triton's
messages (see ``checks``); faults on the server's side raise ``ServerError`` (HTTP
500).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from tritonx.errors import InvalidArgumentError, NotFoundError, TritonXError
from tritonx.openai import tensors
from tritonx.openai.checks import ClientError, ServerError, check_chat, check_completion
from tritonx.openai.lora import LoraConfig, find_loras, tensorrtllm_lora_inputs
from tritonx.openai.schemas import (
    ChatChoice,
    ChatCompletionRequest,
    ChatCompletionResponse,
    CompletionChoice,
    CompletionRequest,
    CompletionResponse,
    Embedding,
    EmbeddingRequest,
    EmbeddingResponse,
    EmbeddingUsage,
    ModelCard,
    TextPart,
    Usage,
    UserMessage,
)
from tritonx.openai.streams import (
    chat_events,
    completion_events,
    model_error,
    text_of,
)
from tritonx.openai.toolparsers import (
    DEFAULT_MAX_TOOL_CALL_PARSE_BYTES,
    ToolParser,
    get_parser,
)
from tritonx.openai.tools import (
    AutoCallStream,
    ForcedCallStream,
    auto_parser,
    chat_message,
    check_tools,
    forced_function,
    guided_schema,
)

logger = logging.getLogger("tritonx.openai")

OWNED_BY = "Triton Inference Server"

InputBuilder = Callable[..., dict[str, Any]]


@dataclass
class ModelInfo:
    name: str
    backend: str  # the config's backend ("ensemble" for an ensemble)
    request_format: str  # tensors.VLLM or tensors.TENSORRTLLM
    model: Any  # tritonx.api.Model
    inputs: set[str]
    echo_input: str | None
    created: int
    loras: list[LoraConfig] | None = None  # None: not known (no --lora-separator)

    @property
    def build_inputs(self) -> InputBuilder:
        if self.request_format == tensors.VLLM:
            return tensors.vllm_inputs
        return tensors.tensorrtllm_inputs


def _usage(response: Any) -> Usage | None:
    counts = tensors.token_counts(response)
    if counts is None:
        return None
    return Usage(
        prompt_tokens=counts[0],
        completion_tokens=counts[1],
        total_tokens=counts[0] + counts[1],
    )


class Engine:
    """Serves OpenAI requests with the models of a started ``tritonx.api.Server``."""

    def __init__(
        self,
        server: Any,
        tokenizer: Any = None,
        backend: str | None = None,
        default_max_tokens: int = 16,
        chat_template: str | None = None,
        lora_separator: str | None = None,
        tool_call_parser: str | None = None,
        max_tool_call_parse_bytes: int = DEFAULT_MAX_TOOL_CALL_PARSE_BYTES,
    ) -> None:
        self.server = server
        self.tokenizer = tokenizer
        self.backend = backend
        self.default_max_tokens = default_max_tokens
        self.chat_template = chat_template
        self.lora_separator = lora_separator
        # KeyError for a name no parser has (the command line refuses it first).
        self.tool_parser: ToolParser | None = (
            get_parser(tool_call_parser) if tool_call_parser else None
        )
        self.max_tool_call_parse_bytes = max_tool_call_parse_bytes
        self.models_by_name = self._find_models()
        self._manage_lock = asyncio.Lock()

    # -- models ----------------------------------------------------------------------

    def _find_models(self) -> dict[str, ModelInfo]:
        found: dict[str, ModelInfo] = {}
        for name, _version in self.server.models(exclude_not_ready=True):
            if name not in found:
                found[name] = self._model_info(name)
        return found

    def _model_info(self, name: str) -> ModelInfo:
        model = self.server.model(name)
        config = model.config()
        backend = config.get("backend") or ""
        if not backend and config.get("platform") == "ensemble":
            backend = "ensemble"
        request_format = self.backend or backend
        if request_format != tensors.VLLM:
            request_format = tensors.TENSORRTLLM
        inputs = {str(i.get("name")) for i in config.get("input", [])}
        echo_input = next((n for n in tensors.ECHO_INPUTS if n in inputs), None)
        loras = None
        if self.lora_separator:
            repos = self.server.options.model_repository
            repos = [repos] if isinstance(repos, str) else [str(r) for r in repos]
            loras = find_loras(repos, name, request_format)
        logger.info(
            "OpenAI frontend: model '%s' (backend '%s', %s request format)",
            name,
            backend,
            request_format,
        )
        return ModelInfo(
            name=name,
            backend=backend,
            request_format=request_format,
            model=model,
            inputs=inputs,
            echo_input=echo_input,
            created=int(time.time()),
            loras=loras,
        )

    def _card(self, info: ModelInfo) -> ModelCard:
        return ModelCard(
            id=info.name, created=info.created, object="model", owned_by=OWNED_BY
        )

    def _check_explicit(self) -> None:
        from tritonx.api import ModelControlMode

        if self.server.options.model_control_mode != ModelControlMode.EXPLICIT:
            raise ClientError(
                "Model load/unload requires --model-control-mode=explicit"
            )

    async def load_model(self, name: str) -> ModelCard:
        """Load a model (EXPLICIT mode) and serve it; blocks until it is ready."""
        self._check_explicit()
        async with self._manage_lock:
            if name in self.models_by_name:
                raise ClientError(f"Model '{name}' is already loaded")

            def load() -> ModelInfo:
                try:
                    self.server.load(name)
                except TritonXError as error:
                    # A name no repository holds is the client's mistake (Triton
                    # answers 500 for it).
                    known = {key[0] for key in self.server.models()}
                    if name not in known:
                        raise NotFoundError(str(error)) from None
                    raise
                return self._model_info(name)

            try:
                info = await asyncio.to_thread(load)
            except (InvalidArgumentError, NotFoundError) as error:
                raise ClientError(f"Failed to load model '{name}': {error}") from None
            except TritonXError as error:
                raise ServerError(f"Failed to load model '{name}': {error}") from None
            self.models_by_name[name] = info
        return self._card(info)

    async def unload_model(self, name: str) -> None:
        """Stop serving a model and unload it (EXPLICIT mode); in-flight requests
        finish first."""
        self._check_explicit()
        async with self._manage_lock:
            if name not in self.models_by_name:
                raise ClientError(f"Unknown model: {name}")

            def unload() -> None:
                self.server.unload(name, wait_until_unloaded=True)

            try:
                await asyncio.to_thread(unload)
            except (InvalidArgumentError, NotFoundError) as error:
                raise ClientError(f"Failed to unload model '{name}': {error}") from None
            except TritonXError as error:
                raise ServerError(f"Failed to unload model '{name}': {error}") from None
            del self.models_by_name[name]

    def ready(self) -> bool:
        return bool(self.server.ready())

    def metrics(self) -> str:
        return str(self.server.metrics())

    def models(self) -> list[ModelCard]:
        cards = []
        # A snapshot: the routes that read it run on worker threads, while load
        # and unload change the dict on the event loop.
        for info in list(self.models_by_name.values()):
            cards.append(self._card(info))
            for lora in info.loras or []:
                card = self._card(info)
                card.id = f"{info.name}{self.lora_separator}{lora.name}"
                cards.append(card)
        return cards

    def _resolve(self, model: str) -> tuple[ModelInfo, LoraConfig | None]:
        """The model (and LoRA adapter) a request names."""
        name, lora_name = model, None
        if self.lora_separator:
            parts = model.split(self.lora_separator)
            if len(parts) == 2:
                name, lora_name = parts
        info = self.models_by_name.get(name)
        if info is None:
            raise ClientError(f"Unknown model: {model}")
        if lora_name is None or info.loras is None:
            return info, None
        for lora in info.loras:
            if lora.name == lora_name:
                return info, lora
        raise ClientError(f"Unknown LoRA: {lora_name}; for model: {model}")

    # -- prompts ---------------------------------------------------------------------

    @staticmethod
    def _conversation(request: ChatCompletionRequest) -> list[dict[str, Any]]:
        """The messages as the chat template takes them (assistant tool-call
        arguments as objects, not JSON text)."""
        conversation: list[dict[str, Any]] = []
        for message in request.messages:
            entry: dict[str, Any] = {"role": message.role}
            content = message.content
            if isinstance(content, list):
                parts = []
                for part in content:
                    if not isinstance(part, TextPart):
                        raise ClientError(
                            f"only text message is supported, but got {part.type}"
                        )
                    parts.append({"type": "text", "text": part.text})
                entry["content"] = parts
            else:
                entry["content"] = content
            if isinstance(message, UserMessage) and message.name is not None:
                entry["name"] = message.name
            if message.role == "assistant" and getattr(message, "tool_calls", None):
                calls = []
                for call in message.tool_calls or []:
                    try:
                        arguments = json.loads(call.function.arguments)
                    except ValueError:
                        raise ClientError(
                            f"tool call '{call.id}' has arguments that are not JSON"
                        ) from None
                    calls.append(
                        {
                            "id": call.id,
                            "type": call.type,
                            "function": {
                                "name": call.function.name,
                                "arguments": arguments,
                            },
                        }
                    )
                entry["tool_calls"] = calls
            if message.role == "tool":
                entry["tool_call_id"] = getattr(message, "tool_call_id", None)
            conversation.append(entry)
        return conversation

    def _chat_prompt(self, request: ChatCompletionRequest) -> str:
        import jinja2

        tools = [tool.model_dump() for tool in request.tools] if request.tools else None
        try:
            prompt = self.tokenizer.apply_chat_template(
                conversation=self._conversation(request),
                tokenize=False,
                add_generation_prompt=True,
                tools=tools,
                chat_template=self.chat_template,
            )
        except jinja2.TemplateError as error:
            # The template refused the conversation (raise_exception), or could
            # not render it: the request's fault.
            raise ClientError(f"chat template error: {error}") from None
        except ValueError as error:  # no chat template at all
            raise ServerError(str(error)) from None
        if not isinstance(prompt, str):
            raise ServerError("the chat template did not render a text prompt")
        return prompt

    # -- inference -------------------------------------------------------------------

    def _infer(
        self,
        info: ModelInfo,
        lora: LoraConfig | None,
        prompt: str,
        request: CompletionRequest | ChatCompletionRequest,
        guide: str | None = None,
    ) -> Any:
        inputs = info.build_inputs(
            prompt,
            request,
            info.inputs,
            info.echo_input,
            self.default_max_tokens,
            lora_name=lora.name if lora is not None else None,
            guide=guide,
        )
        if lora is not None and info.request_format == tensors.TENSORRTLLM:
            inputs.update(tensorrtllm_lora_inputs(lora))
        try:
            return info.model.async_infer(inputs=inputs)
        except TritonXError as error:
            raise model_error(error) from None

    @staticmethod
    async def _all_responses(responses: Any) -> Any:
        """The one response of a request that did not stream (a decoupled
        model may follow it with an empty final one)."""
        collected = []
        try:
            async for response in responses:
                collected.append(response)
        except TritonXError as error:
            raise model_error(error) from None
        except asyncio.CancelledError:  # the server is stopping: stop the model too
            responses.cancel()
            raise
        if not 1 <= len(collected) <= 2:
            raise ServerError(
                f"Unexpected number of responses: {len(collected)}, expected 1 or 2."
            )
        if not collected[-1].final:
            raise ServerError("Unexpected internal error with incorrect response flags")
        return collected[0]

    async def completion(
        self, request: CompletionRequest
    ) -> CompletionResponse | AsyncIterator[str]:
        info, lora = self._resolve(request.model)
        prompt = check_completion(info.backend, info.request_format, request)
        responses = self._infer(info, lora, prompt, request)
        request_id = f"cmpl-{uuid.uuid1()}"
        created = int(time.time())
        if request.stream:
            return completion_events(request_id, created, request, responses)
        response = await self._all_responses(responses)
        logprobs = (
            tensors.completion_logprobs(response)
            if tensors.wants_logprobs(request)
            else None
        )
        choice = CompletionChoice(
            finish_reason="stop", index=0, logprobs=logprobs, text=text_of(response)
        )
        return CompletionResponse(
            id=request_id,
            choices=[choice],
            created=created,
            model=request.model,
            system_fingerprint=None,
            object="text_completion",
            usage=_usage(response),
        )

    async def embedding(self, request: EmbeddingRequest) -> EmbeddingResponse:
        info, _ = self._resolve(request.model)
        if info.request_format != tensors.VLLM:
            raise ClientError(
                "TRT-LLM backend and Python backend do not support embedding requests"
            )
        inputs = tensors.vllm_embedding_inputs(request, info.inputs)
        try:
            responses = info.model.async_infer(inputs=inputs)
        except TritonXError as error:
            raise model_error(error) from None
        response = await self._all_responses(responses)
        try:
            values = tensors.embedding_output(response)
        except tensors.OutputError as error:
            raise ServerError(str(error)) from None
        embedding: list[float] | str = values
        if request.encoding_format == "base64":
            raw = np.array(values, dtype=np.float32).tobytes()
            embedding = base64.b64encode(raw).decode()
        counts = tensors.token_counts(response)
        usage = (
            EmbeddingUsage(prompt_tokens=counts[0], total_tokens=counts[0])
            if counts is not None
            else None
        )
        return EmbeddingResponse(
            object="list",
            data=[Embedding(object="embedding", embedding=embedding, index=0)],
            model=request.model,
            usage=usage,
        )

    async def chat(
        self, request: ChatCompletionRequest
    ) -> ChatCompletionResponse | AsyncIterator[str]:
        info, lora = self._resolve(request.model)
        check_chat(
            info.backend, info.request_format, request, self.tokenizer is not None
        )
        check_tools(request, self.tool_parser)
        prompt = self._chat_prompt(request)
        guide = guided_schema(request)
        responses = self._infer(info, lora, prompt, request, guide)
        request_id = f"cmpl-{uuid.uuid1()}"
        created = int(time.time())
        if request.stream:
            return chat_events(
                request_id,
                created,
                request,
                responses,
                self._tool_stream(request, request_id, info.request_format),
            )
        response = await self._all_responses(responses)
        logprobs = tensors.chat_logprobs(response) if request.logprobs else None
        message, finish_reason = chat_message(
            request,
            request_id,
            text_of(response),
            self.tool_parser,
            info.request_format,
        )
        return ChatCompletionResponse(
            id=request_id,
            choices=[
                ChatChoice(
                    finish_reason=finish_reason,
                    index=0,
                    message=message,
                    logprobs=logprobs,
                )
            ],
            created=created,
            model=request.model,
            system_fingerprint=None,
            object="chat.completion",
            usage=_usage(response),
        )

    def _tool_stream(
        self, request: ChatCompletionRequest, request_id: str, request_format: str
    ) -> AutoCallStream | ForcedCallStream | None:
        """What turns a streamed answer into tool-call deltas, if anything."""
        forced = forced_function(request)
        if forced is not None:
            return ForcedCallStream(request_id, forced)
        parser = auto_parser(request, self.tool_parser)
        if parser is None:
            return None
        return AutoCallStream(parser, request_format, self.max_tool_call_parse_bytes)
