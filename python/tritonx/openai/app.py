"""The FastAPI application: Triton's OpenAI-compatible routes over an ``Engine``.

Routes: ``GET /v1/models``, ``GET /v1/models/{model}``, ``POST /v1/completions``,
``POST /v1/chat/completions`` (JSON, or server-sent events with ``stream``),
``POST /v1/embeddings`` (vLLM-format models),
``POST /v1/models/{model}/load`` and ``/unload`` (EXPLICIT mode), ``GET /metrics``
and ``GET /health/ready``. Errors are Triton's: ``{"detail": message}`` with 400
for requests the engine refuses, 404 for an unknown model's card, 422 (FastAPI's
field list) for bodies that do not fit the schema, 500 for faults on the server's
side; OpenAI's error object with 413 for bodies over ``--http-max-input-size`` and
401 for restricted routes asked for without their header.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import (
    JSONResponse,
    PlainTextResponse,
    Response,
    StreamingResponse,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tritonx.openai.access import Unauthorized, requires
from tritonx.openai.checks import ClientError, ServerError
from tritonx.openai.engine import Engine
from tritonx.openai.schemas import (
    ChatCompletionRequest,
    ChatCompletionResponse,
    CompletionRequest,
    CompletionResponse,
    EmbeddingRequest,
    EmbeddingResponse,
    ModelCard,
    ModelList,
)

logger = logging.getLogger("tritonx.openai")

# Triton's default --http-max-input-size (64 MiB).
DEFAULT_MAX_INPUT_SIZE = 1 << 26
SSE_MEDIA_TYPE = "text/event-stream"


async def get_engine(request: Request) -> Engine:
    # A coroutine function for the reason access.requires gives.
    engine: Engine | None = getattr(request.app.state, "engine", None)
    if engine is None:
        raise HTTPException(status_code=500, detail="No attached inference engine")
    return engine


EngineDep = Annotated[Engine, Depends(get_engine)]
INFERENCE = [Depends(requires("inference"))]
REPOSITORY = [Depends(requires("model-repository"))]
METRICS = [Depends(requires("metrics"))]
HEALTH = [Depends(requires("health"))]


async def _serve(call: Any) -> Any:
    """Run an engine call, turning its errors into HTTP errors: the engine's own
    with their messages, anything unexpected as a bare 500 (logged here)."""
    try:
        return await call
    except ClientError as error:
        raise HTTPException(status_code=400, detail=str(error)) from None
    except ServerError as error:
        logger.error("OpenAI frontend: %s", error)
        raise HTTPException(status_code=500, detail=str(error)) from None
    except HTTPException:
        raise
    except Exception:
        logger.exception("OpenAI frontend: unexpected error")
        raise HTTPException(status_code=500, detail="Internal server error") from None


class EventStreamResponse(StreamingResponse):
    """Server-sent events: Starlette's StreamingResponse, watching for the client
    leaving with one plain asyncio task. Starlette opens an anyio task group for
    that on every response (its cancel scope formats the task's repr when the
    stream ends), about a tenth of the event loop's time under streaming load,
    measured. When the client leaves, the watcher cancels the streaming task; the
    event iterator's cleanup then cancels the inference, as with Starlette's."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        streaming = asyncio.current_task()
        assert streaming is not None
        client_left = False

        async def watch() -> None:
            nonlocal client_left
            try:
                while (await receive())["type"] != "http.disconnect":
                    pass
            except Exception:  # a receive that fails: the connection is gone too
                pass
            client_left = True
            streaming.cancel()

        watcher = asyncio.get_running_loop().create_task(watch())
        try:
            await self.stream_response(send)
        except asyncio.CancelledError:
            if not client_left:
                raise
            uncancel = getattr(streaming, "uncancel", None)  # Python 3.11+
            if uncancel is not None:
                uncancel()
        finally:
            watcher.cancel()


def _stream(events: AsyncIterator[str]) -> StreamingResponse:
    return EventStreamResponse(events, media_type=SSE_MEDIA_TYPE)


def _oversized(size: int, limit: int) -> str:
    return (
        f"Request size of {size} bytes exceeds the maximum allowed input size of "
        f"{limit} bytes. Use --http-max-input-size to increase the limit."
    )


class RequestSizeLimit:
    """Refuses request bodies over ``limit`` bytes (413), by Content-Length
    before anything is read, else while the body arrives; the body read is
    handed on to the application."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def _refuse(
        self, scope: Scope, send: Send, status: int, code: str, message: str
    ) -> None:
        async def disconnected() -> Message:
            return {"type": "http.disconnect"}

        body = {
            "error": {"message": message, "type": "invalid_request_error", "code": code}
        }
        await JSONResponse(status_code=status, content=body)(scope, disconnected, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name != b"content-length":
                continue
            try:
                declared = int(value)
            except ValueError:
                declared = -1
            if declared < 0:
                await self._refuse(
                    scope,
                    send,
                    400,
                    "invalid_content_length",
                    "Invalid Content-Length header: must be a non-negative integer.",
                )
                return
            if declared > self.limit:
                await self._refuse(
                    scope,
                    send,
                    413,
                    "content_too_large",
                    _oversized(declared, self.limit),
                )
                return
            break
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.limit:
                await self._refuse(
                    scope, send, 413, "content_too_large", _oversized(total, self.limit)
                )
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        pending: Message | None = {
            "type": "http.request",
            "body": b"".join(chunks),
            "more_body": False,
        }

        async def replay() -> Message:
            nonlocal pending
            if pending is not None:
                message, pending = pending, None
                return message
            return await receive()

        await self.app(scope, replay, send)


def _unauthorized(request: Request, error: Exception) -> JSONResponse:
    body = {
        "error": {
            "message": str(error),
            "type": "authentication_error",
            "code": "invalid_auth",
        }
    }
    return JSONResponse(status_code=401, content=body)


def create_app(
    engine: Engine,
    max_input_size: int = DEFAULT_MAX_INPUT_SIZE,
    restrictions: dict[str, tuple[str, str]] | None = None,
) -> FastAPI:
    """The application; ``restrictions``: group -> (header, value), see access."""
    app = FastAPI(
        title="tritonx OpenAI-compatible API",
        description="OpenAI's REST API (completions, chat completions, models) "
        "served by tritonx.",
        version="1.0.0",
    )
    app.state.engine = engine
    app.state.restrictions = dict(restrictions or {})
    app.add_exception_handler(Unauthorized, _unauthorized)

    @app.get("/health/ready", tags=["Utilities"], dependencies=HEALTH)
    def ready(engine: EngineDep) -> Response:
        if not engine.ready():
            raise HTTPException(
                status_code=400,
                detail="Attached inference engine is not ready for inference requests.",
            )
        return Response(status_code=200)

    @app.get(
        "/metrics",
        response_class=PlainTextResponse,
        tags=["Utilities"],
        dependencies=METRICS,
    )
    def metrics(engine: EngineDep) -> PlainTextResponse:
        return PlainTextResponse(engine.metrics())

    @app.get(
        "/v1/models", response_model=ModelList, tags=["Models"], dependencies=REPOSITORY
    )
    def list_models(engine: EngineDep) -> ModelList:
        return ModelList(object="list", data=engine.models())

    @app.get(
        "/v1/models/{model_name}",
        response_model=ModelCard,
        tags=["Models"],
        dependencies=REPOSITORY,
    )
    def retrieve_model(model_name: str, engine: EngineDep) -> ModelCard:
        for card in engine.models():
            if card.id == model_name:
                return card
        raise HTTPException(status_code=404, detail=f"Unknown model: {model_name}")

    @app.post(
        "/v1/models/{model_name}/load",
        response_model=ModelCard,
        tags=["Model Management"],
        dependencies=REPOSITORY,
    )
    async def load_model(model_name: str, engine: EngineDep) -> ModelCard:
        card: ModelCard = await _serve(engine.load_model(model_name))
        return card

    @app.post(
        "/v1/models/{model_name}/unload",
        tags=["Model Management"],
        dependencies=REPOSITORY,
    )
    async def unload_model(model_name: str, engine: EngineDep) -> dict[str, str]:
        await _serve(engine.unload_model(model_name))
        return {"status": "success", "model": model_name}

    @app.post(
        "/v1/completions",
        response_model=CompletionResponse,
        tags=["Completions"],
        dependencies=INFERENCE,
    )
    async def create_completion(
        request: CompletionRequest, engine: EngineDep
    ) -> CompletionResponse | StreamingResponse:
        result = await _serve(engine.completion(request))
        if isinstance(result, CompletionResponse):
            return result
        return _stream(result)

    @app.post(
        "/v1/chat/completions",
        response_model=ChatCompletionResponse,
        tags=["Chat"],
        dependencies=INFERENCE,
    )
    async def create_chat_completion(
        request: ChatCompletionRequest, engine: EngineDep
    ) -> ChatCompletionResponse | StreamingResponse:
        result = await _serve(engine.chat(request))
        if isinstance(result, ChatCompletionResponse):
            return result
        return _stream(result)

    @app.post(
        "/v1/embeddings",
        response_model=EmbeddingResponse,
        tags=["Embeddings"],
        dependencies=INFERENCE,
    )
    async def create_embedding(
        request: EmbeddingRequest, engine: EngineDep
    ) -> EmbeddingResponse:
        result: EmbeddingResponse = await _serve(engine.embedding(request))
        return result

    app.add_middleware(RequestSizeLimit, limit=max_input_size)
    return app
