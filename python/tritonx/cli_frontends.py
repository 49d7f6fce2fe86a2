"""tritonserver's flags of its HTTP and GRPC endpoints (``--allow-http``,
``--http-*``, ``--reuse-http-port``, ``--allow-grpc``, ``--grpc-*``,
``--reuse-grpc-port``) with tritonx's additions (``--http-engine``,
``--http-thread-count``, the head limits and HTTPS); ``cli.parse_args`` maps them onto
``ServerOptions``. Split out of ``cli.py`` to keep it short."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from tritonx.cli_values import (
    GRPC_CHANNEL_FLAGS,
    parse_bool,
    parse_choice,
    parse_count,
    parse_int,
)
from tritonx.frontends.http_protocol import (
    DEFAULT_MAX_HEADER_COUNT,
    DEFAULT_MAX_HEADER_SIZE,
)
from tritonx.frontends.http_routes import RESTRICTED_CATEGORIES as HTTP_API_GROUPS
from tritonx.server_options import DEFAULT_MAX_STREAM_BACKLOG_BYTES


def add_flags(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("HTTP")
    g.add_argument("--allow-http", type=parse_bool, default=True, metavar="<boolean>")
    g.add_argument(
        "--http-address",
        default="0.0.0.0",
        metavar="<string>",
        help="Address the HTTP server binds to (default 0.0.0.0).",
    )
    g.add_argument(
        "--http-port",
        type=parse_int,
        default=8000,
        metavar="<integer>",
        help="HTTP port (default 8000; 0 picks a free port).",
    )
    g.add_argument(
        "--reuse-http-port", type=parse_bool, default=False, metavar="<boolean>"
    )
    g.add_argument(
        "--http-engine",
        type=parse_choice("--http-engine", ("auto", "python", "native")),
        default="auto",
        metavar="<string>",
        help="tritonx: 'native' (C++ libevent server: inference and generate parsed "
        "and answered in C++), 'python' (asyncio frontend), or 'auto' (default: "
        "native, or python when the native server was not built).",
    )
    g.add_argument(
        "--http-thread-count",
        type=parse_int,
        default=min(8, os.cpu_count() or 1),
        metavar="<integer>",
        help="Event threads of the native HTTP server (default: CPUs, at most 8).",
    )
    g.add_argument(
        "--http-max-input-size",
        type=parse_int,
        default=64 * 1024 * 1024,
        metavar="<integer>",
    )
    g.add_argument(
        "--http-restricted-api",
        action="append",
        default=[],
        metavar="<string>:<string>=<string>",
        help="<api>,...:<key>=<value>: requests to these API groups must carry the "
        "header '<key>: <value>', else 403 (repeatable). Groups: "
        + ", ".join(HTTP_API_GROUPS)
        + ".",
    )
    g.add_argument(
        "--http-header-forward-pattern",
        default="",
        metavar="<string>",
        help="Regex (case-insensitive unless it starts with (?-i)): matching request "
        "headers become string parameters of inference requests.",
    )
    g.add_argument(
        "--http-max-header-size",
        type=parse_int,
        default=DEFAULT_MAX_HEADER_SIZE,
        metavar="<integer>",
        help="tritonx: bytes a request line and headers may take (default "
        f"{DEFAULT_MAX_HEADER_SIZE}); larger heads get 431. A single URL or header "
        "of 8 KiB or more closes the connection, as in tritonserver.",
    )
    g.add_argument(
        "--http-max-header-count",
        type=parse_int,
        default=DEFAULT_MAX_HEADER_COUNT,
        metavar="<integer>",
        help="tritonx: header fields a request may have (default "
        f"{DEFAULT_MAX_HEADER_COUNT}); more get 431.",
    )
    g.add_argument(
        "--http-use-ssl",
        type=parse_bool,
        default=False,
        metavar="<boolean>",
        help="tritonx: serve HTTPS (TLS) with --http-server-cert/--http-server-key.",
    )
    g.add_argument(
        "--http-use-ssl-mutual",
        type=parse_bool,
        default=False,
        metavar="<boolean>",
        help="tritonx: HTTPS that also requires a client certificate signed by "
        "--http-root-cert (implies --http-use-ssl).",
    )
    for flag, what in (
        ("--http-server-cert", "server certificate (chain)"),
        ("--http-server-key", "server private key"),
        ("--http-root-cert", "CA certificate that client certificates must chain to"),
    ):
        g.add_argument(
            flag,
            type=Path,
            default=None,
            metavar="<string>",
            help=f"tritonx: PEM file with the HTTPS {what}.",
        )

    g = parser.add_argument_group("GRPC")
    g.add_argument("--allow-grpc", type=parse_bool, default=True, metavar="<boolean>")
    g.add_argument(
        "--grpc-address",
        default="0.0.0.0",
        metavar="<string>",
        help="Address the gRPC server binds to (default 0.0.0.0).",
    )
    g.add_argument(
        "--grpc-port",
        type=parse_int,
        default=8001,
        metavar="<integer>",
        help="gRPC port (default 8001; 0 picks a free port).",
    )
    g.add_argument(
        "--grpc-use-ssl", type=parse_bool, default=False, metavar="<boolean>"
    )
    g.add_argument(
        "--grpc-use-ssl-mutual", type=parse_bool, default=False, metavar="<boolean>"
    )
    for flag in ("--grpc-server-cert", "--grpc-server-key", "--grpc-root-cert"):
        g.add_argument(flag, type=Path, default=None, metavar="<string>")
    g.add_argument(
        "--grpc-infer-response-compression-level",
        type=parse_choice(
            "--grpc-infer-response-compression-level", ("none", "low", "medium", "high")
        ),
        default="none",
        metavar="<string>",
    )
    for flag in GRPC_CHANNEL_FLAGS:
        g.add_argument(flag, type=parse_int, default=None, metavar="<integer>")
    g.add_argument(
        "--reuse-grpc-port", type=parse_bool, default=False, metavar="<boolean>"
    )
    g.add_argument(
        "--grpc-restricted-protocol",
        action="append",
        default=[],
        metavar="<string>",
        help="<protocol>,...:<key>=<value>: calls of these protocol groups must "
        "carry the metadata 'triton-grpc-protocol-<key>: <value>' (repeatable).",
    )
    g.add_argument(
        "--grpc-max-stream-backlog-bytes",
        type=parse_count,
        default=DEFAULT_MAX_STREAM_BACKLOG_BYTES,
        metavar="<integer>",
        help="tritonx: a ModelStreamInfer stream whose unread responses would pass "
        f"this many bytes is cancelled (default {DEFAULT_MAX_STREAM_BACKLOG_BYTES}; "
        "0: no bound, as Triton).",
    )
    g.add_argument(
        "--grpc-header-forward-pattern",
        default="",
        metavar="<string>",
        help="Regex (case-insensitive unless it starts with (?-i)): matching "
        "metadata becomes string parameters of inference requests.",
    )
