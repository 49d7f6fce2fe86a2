"""``tritonx-openai``: Triton's OpenAI-compatible frontend command on tritonx.

Takes the flags of Triton's ``openai_frontend/main.py`` with their defaults. It
starts an in-process tritonx server (``tritonx.api``) on the model repository,
optionally with tritonx's KServe HTTP/gRPC endpoints (``--enable-kserve-frontends``),
and serves the OpenAI routes with uvicorn until SIGINT/SIGTERM. Flags of Triton's
command that tritonx cannot honour are refused (exit 1) rather than ignored.
"""

from __future__ import annotations

import argparse
import copy
import logging
import signal
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tritonx.api import ModelControlMode, Options, Server
from tritonx.errors import TritonXError
from tritonx.logging_setup import LogOptions, configure, write_console_line

PROG = "tritonx-openai"
EXIT_ERROR = 1
DEFAULT_MAX_INPUT_SIZE = 1 << 26
EXIT_TIMEOUT_S = 30
UVICORN_LOG_LEVELS = ("debug", "info", "warning", "error", "critical", "trace")

# Tool-call parsers (--tool-call-parser), as Triton's frontend names them.
TOOL_CALL_PARSERS = ("llama3", "mistral")
DEFAULT_MAX_TOOL_CALL_PARSE_BYTES = 128 * 1024  # as toolparsers (not imported here)

logger = logging.getLogger("tritonx.openai")


class UsageError(Exception):
    pass


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"value is not an integer, got {text!r}"
        ) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"value must be greater than 0, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="tritonx with an OpenAI-compatible RESTful API server.",
    )
    server = parser.add_argument_group("Triton Inference Server")
    server.add_argument(
        "--model-repository",
        required=True,
        action="append",
        help="model repository to serve (repeatable)",
    )
    server.add_argument(
        "--tokenizer",
        default=None,
        help="Hugging Face ID or local directory of the tokenizer "
        "whose chat template makes chat prompts",
    )
    server.add_argument(
        "--backend",
        default=None,
        choices=["vllm", "tensorrtllm"],
        help="request format for every model (default: vLLM's for "
        "vLLM-backend models, TensorRT-LLM's for others)",
    )
    server.add_argument(
        "--lora-separator",
        default=None,
        help="serve the LoRA adapters of multi_lora.json as <model><separator><lora>",
    )
    server.add_argument(
        "--tritonserver-log-verbose-level",
        type=int,
        default=0,
        help="tritonx log verbosity (0: off)",
    )
    server.add_argument(
        "--host", default="0.0.0.0", help="address of the frontends (default: 0.0.0.0)"
    )
    server.add_argument(
        "--tool-call-parser",
        default=None,
        help="parser of the tool calls in models' answers: "
        + ", ".join(TOOL_CALL_PARSERS),
    )
    server.add_argument(
        "--max-tool-call-parse-bytes",
        type=int,
        default=DEFAULT_MAX_TOOL_CALL_PARSE_BYTES,
        help="most text of a streamed answer that the tool-call parser reads; "
        "past it the stream ends with finish_reason 'length' and the inference "
        f"is cancelled (default {DEFAULT_MAX_TOOL_CALL_PARSE_BYTES})",
    )
    server.add_argument(
        "--chat-template",
        default=None,
        help="a Jinja chat template file to use instead of the tokenizer's",
    )
    server.add_argument(
        "--default-max-tokens",
        type=int,
        default=16,
        help="max_tokens of requests that do not set it (default 16)",
    )
    server.add_argument(
        "--model-control-mode",
        default="none",
        choices=["none", "explicit"],
        help="'none': load every model; 'explicit': only --load-model",
    )
    server.add_argument(
        "--load-model",
        action="append",
        default=None,
        help="model to load at startup (explicit mode; repeatable)",
    )
    server.add_argument(
        "--backend-directory",
        default=None,
        help="tritonx: where Python-based backends (<dir>/<backend>/model.py) live",
    )
    openai = parser.add_argument_group("OpenAI-Compatible Frontend")
    openai.add_argument(
        "--openai-port", type=int, default=9000, help="OpenAI HTTP port (default: 9000)"
    )
    openai.add_argument(
        "--uvicorn-log-level",
        default="info",
        choices=UVICORN_LOG_LEVELS,
        help="uvicorn's log level",
    )
    openai.add_argument(
        "--openai-restricted-api",
        nargs=3,
        action="append",
        default=None,
        metavar=("APIs", "HEADER", "VALUE"),
        help="restrict API groups (inference, model-repository, metrics, health; "
        "comma-separated) to requests with this header and value (repeatable)",
    )
    openai.add_argument(
        "--http-max-input-size",
        type=_positive_int,
        default=DEFAULT_MAX_INPUT_SIZE,
        help="largest request body in bytes (default 64 MiB)",
    )
    kserve = parser.add_argument_group("KServe Frontend")
    kserve.add_argument(
        "--enable-kserve-frontends",
        action="store_true",
        help="also serve tritonx's KServe v2 HTTP and gRPC endpoints",
    )
    kserve.add_argument(
        "--kserve-http-port",
        type=int,
        default=8000,
        help="KServe HTTP port (default: 8000)",
    )
    kserve.add_argument(
        "--kserve-grpc-port",
        type=int,
        default=8001,
        help="KServe gRPC port (default: 8001)",
    )
    return parser


def check_args(args: argparse.Namespace) -> list[str]:
    """Refuses flags tritonx-openai cannot honour; returns warnings."""
    parser = args.tool_call_parser
    if parser is not None and parser not in TOOL_CALL_PARSERS:
        raise UsageError(
            f"tool parser: '{parser}' not found (--tool-call-parser takes "
            f"{', '.join(TOOL_CALL_PARSERS)})"
        )
    if args.max_tool_call_parse_bytes < 1:
        raise UsageError("--max-tool-call-parse-bytes must be a positive integer")
    if args.load_model and args.model_control_mode != "explicit":
        raise UsageError(
            "Use of '--load-model' requires setting '--model-control-mode=explicit' "
            "as well."
        )
    if args.default_max_tokens < 0:
        raise UsageError("--default-max-tokens must not be negative")
    for name in ("openai_port", "kserve_http_port", "kserve_grpc_port"):
        port = getattr(args, name)
        if not 0 <= port <= 65535:
            flag = "--" + name.replace("_", "-")
            raise UsageError(f"{flag} must be a port number (0-65535), got {port}")
    return []


@dataclass
class FrontendOptions(Options):
    """The in-process server's options, plus the KServe endpoints it may serve."""

    kserve: bool = False
    kserve_address: str = "0.0.0.0"
    kserve_http_port: int = 8000
    kserve_grpc_port: int = 8001

    def _server_options(self) -> Any:
        options = super()._server_options()
        if self.kserve:
            options.allow_http = True
            options.http_address = self.kserve_address
            options.http_port = self.kserve_http_port
            options.allow_grpc = True
            options.grpc_address = self.kserve_address
            options.grpc_port = self.kserve_grpc_port
        return options


def load_tokenizer(name: str) -> Any:
    """A transformers tokenizer by Hugging Face ID or local directory."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(name)


def bind(host: str, port: int) -> socket.socket:
    """The OpenAI frontend's listening socket (port 0: any free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    # Listening from here on: a client that comes before uvicorn accepts waits.
    sock.listen(2048)
    return sock


def serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from tritonx.openai.access import RestrictionError, parse_restrictions
        from tritonx.openai.app import create_app
        from tritonx.openai.engine import Engine
    except ImportError as error:
        logger.error(
            "%s needs the 'openai' extra (pip install 'tritonx[openai]'): %s",
            PROG,
            error,
        )
        return EXIT_ERROR
    try:
        args.restrictions = parse_restrictions(args.openai_restricted_api)
    except RestrictionError as error:
        logger.error("Failed to initialize FastAPI frontend: %s", error)
        return EXIT_ERROR
    tokenizer = None
    if args.tokenizer:
        try:
            tokenizer = load_tokenizer(args.tokenizer)
        except Exception as error:
            logger.error("failed to load tokenizer '%s': %s", args.tokenizer, error)
            return EXIT_ERROR
    chat_template = None
    if args.chat_template:
        try:
            chat_template = Path(args.chat_template).read_text()
        except OSError as error:
            logger.error("failed to read chat template: %s", error)
            return EXIT_ERROR
    options = FrontendOptions(
        model_repository=list(args.model_repository),
        model_control_mode=(
            ModelControlMode.EXPLICIT
            if args.model_control_mode == "explicit"
            else ModelControlMode.NONE
        ),
        startup_models=list(args.load_model or []),
        log_verbose=args.tritonserver_log_verbose_level,
        kserve=args.enable_kserve_frontends,
        kserve_address=args.host,
        kserve_http_port=args.kserve_http_port,
        kserve_grpc_port=args.kserve_grpc_port,
    )
    if args.backend_directory:
        options.backend_directory = args.backend_directory
    server = Server(options)
    try:
        server.start(wait_until_ready=True, timeout=None)
    except Exception as error:
        logger.error("failed to start the server: %s", error)
        return EXIT_ERROR
    try:
        return _run_frontend(
            server, args, tokenizer, chat_template, uvicorn, create_app, Engine
        )
    finally:
        logger.info("Shutting down tritonx OpenAI-compatible frontend")
        server.stop()


def _uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's own logging settings, its console handlers replaced by tritonx's
    queued ones (written from a thread, bounded, dropped when the console does not
    take them): its access log writes a line per request on the event loop, and a
    console nobody reads (a full pipe) stopped every route after ~1,000 requests."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    for handler in config["handlers"].values():
        stream = handler.pop("stream")  # "ext://sys.stderr" or "ext://sys.stdout"
        del handler["class"]
        handler["()"] = "tritonx.logging_setup.console_handler"
        handler["stream"] = stream.rsplit(".", 1)[-1]
    return config


def _run_frontend(
    server: Server,
    args: argparse.Namespace,
    tokenizer: Any,
    chat_template: str | None,
    uvicorn: Any,
    create_app: Any,
    engine_class: Any,
) -> int:
    from tritonx.openai.checks import ServerError

    try:
        engine = engine_class(
            server,
            tokenizer=tokenizer,
            backend=args.backend,
            default_max_tokens=args.default_max_tokens,
            chat_template=chat_template,
            lora_separator=args.lora_separator,
            tool_call_parser=args.tool_call_parser,
            max_tool_call_parse_bytes=args.max_tool_call_parse_bytes,
        )
    except (TritonXError, ServerError) as error:
        logger.error("failed to read the models: %s", error)
        return EXIT_ERROR
    app = create_app(
        engine,
        max_input_size=args.http_max_input_size,
        restrictions=args.restrictions,
    )
    try:
        sock = bind(args.host, args.openai_port)
    except OSError as error:
        logger.error(
            "failed to start OpenAI frontend: Socket '%s:%d' %s",
            args.host,
            args.openai_port,
            error.strerror or error,
        )
        return EXIT_ERROR
    if args.tool_call_parser:
        logger.info(
            "Tool-call parser '%s'; streamed tool-call parse limit %d bytes",
            args.tool_call_parser,
            args.max_tool_call_parse_bytes,
        )
    port = sock.getsockname()[1]
    logger.info("Started OpenAI frontend at %s:%d", args.host, port)
    config = uvicorn.Config(
        app=app,
        log_config=_uvicorn_log_config(),
        log_level=args.uvicorn_log_level,
        timeout_keep_alive=5,
        # A signal waits this long for requests in flight (streams included),
        # as tritonx-server's default --exit-timeout-secs; then they are cancelled.
        timeout_graceful_shutdown=EXIT_TIMEOUT_S,
    )
    # uvicorn takes SIGINT/SIGTERM while it serves, and puts back what was there
    # before: a no-op, so that a signal it passes on does not end the process
    # before the models are unloaded.
    previous = {
        sig: signal.signal(sig, lambda *_: None)
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    configure(LogOptions(verbose=args.tritonserver_log_verbose_level))
    try:
        warnings = check_args(args)
    except UsageError as error:
        write_console_line(f"{PROG}: error: {error}")
        return EXIT_ERROR
    for warning in warnings:
        logger.warning("%s", warning)
    try:
        return serve(args)
    finally:
        logging.shutdown()


if __name__ == "__main__":
    sys.exit(main())
