"""``tritonx-server`` / ``python -m tritonx``: Triton's command line on tritonx.

Flags keep ``tritonserver``'s spellings, defaults and value syntax so that existing
launch scripts work unchanged: booleans take a value (``true/false``, ``on/off``,
``1/0``, any case), repeatable flags may be given several times, and errors end the
process with exit code 1 and Triton's wording. Flags of tritonserver that only tune
machinery tritonx does not have (thread counts, CUDA pools, backend directories) are
accepted with a warning; flags whose meaning tritonx cannot honour (caches, tracing,
see UNSUPPORTED_FLAGS) are refused rather than silently ignored.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from tritonx import __version__, cli_frontends, cli_limits, cli_ports
from tritonx.backends.registry import DEFAULT_BACKEND_DIRECTORY
from tritonx.cli_values import (
    GRPC_CHANNEL_FLAGS,
    IGNORED_FLAGS,
    UNSUPPORTED_FLAGS,
    UsageError,
    forward_pattern,
    ignored_dest,
    parse_backend_config,
    parse_bool,
    parse_choice,
    parse_float,
    parse_int,
    parse_metrics_config,
    parse_restricted_features,
)
from tritonx.frontends.grpc import PROTOCOL_GROUPS as GRPC_PROTOCOL_GROUPS
from tritonx.frontends.http_routes import RESTRICTED_CATEGORIES as HTTP_API_GROUPS
from tritonx.logging_setup import LogOptions, configure, write_console_line
from tritonx.metrics_config import MetricsConfig
from tritonx.repository.cloud import cloud_scheme
from tritonx.server_options import (
    DEFAULT_MAX_INFLIGHT_REQUESTS,
    DEFAULT_SWITCH_INTERVAL_S,
    ServerOptions,
)
from tritonx.tracing.config import (
    TraceFlagError,
    add_trace_arguments,
    parse_trace_flags,
)

PROG = "tritonx-server"
EXIT_USAGE = 1  # tritonserver exits 1 on every command-line error


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(_triton_style(message))


def _triton_style(message: str) -> str:
    """Rewrite argparse's messages the way tritonserver words them."""
    prefix = "unrecognized arguments: "
    if message.startswith(prefix):
        flag = message[len(prefix) :].split()[0]
        name = flag.split("=", 1)[0]
        if name in UNSUPPORTED_FLAGS:
            return (
                f"{PROG}: option '{name}' of tritonserver is not supported by tritonx"
            )
        return f"{PROG}: unrecognized option '{flag}'"
    if message.startswith("argument "):
        flags, _, detail = message[len("argument ") :].partition(": ")
        flag = flags.split("/")[0]
        return f'Bad option: "{flag}".\n{detail}'
    return message


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog=PROG,
        usage=f"{PROG} [options]",
        description="Triton-compatible inference server (tritonserver's flags).",
        # tritonserver's getopt_long also takes unique prefixes, but a prefix
        # silently changes meaning when a flag is added; accept exact names only.
        allow_abbrev=False,
    )
    p.add_argument("--version", action="version", version=f"tritonx {__version__}")
    g = p.add_argument_group("Server")
    g.add_argument(
        "--id", default="triton", metavar="<string>", help="Identifier for this server."
    )
    g.add_argument(
        "--exit-timeout-secs",
        type=parse_int,
        default=30,
        metavar="<integer>",
        help="Seconds to wait for in-flight inferences when exiting (default 30).",
    )
    g.add_argument(
        "--max-inflight-requests",
        type=parse_int,
        default=DEFAULT_MAX_INFLIGHT_REQUESTS,
        metavar="<integer>",
        help="tritonx: requests accepted and not yet answered, across all models, "
        "beyond which new ones fail UNAVAILABLE (HTTP 503) at once so that a flood "
        f"cannot grow memory without bound; 0 for no limit (default "
        f"{DEFAULT_MAX_INFLIGHT_REQUESTS}).",
    )

    g = p.add_argument_group("Logging")
    g.add_argument(
        "--log-verbose",
        type=parse_int,
        default=0,
        metavar="<integer>",
        help="Verbose logging level; 0 disables verbose logging.",
    )
    for flag in ("--log-info", "--log-warning", "--log-error"):
        g.add_argument(flag, type=parse_bool, default=True, metavar="<boolean>")
    g.add_argument(
        "--log-format",
        type=parse_choice("--log-format", ("default", "ISO8601")),
        default="default",
        metavar="<string>",
    )
    g.add_argument(
        "--log-file",
        default=None,
        metavar="<string>",
        help="Write the log to this file instead of the console.",
    )

    g = p.add_argument_group("Model Repository")
    for flag in ("--model-repository", "--model-store"):
        g.add_argument(
            flag,
            dest="model_repository",
            action="append",
            default=[],
            metavar="<string>",
        )
    g.add_argument(
        "--exit-on-error", type=parse_bool, default=True, metavar="<boolean>"
    )
    g.add_argument(
        "--allow-client-shm",
        type=parse_bool,
        default=True,
        metavar="<boolean>",
        help="Let clients register system shared memory regions and name them in "
        "inference requests (Triton 2.51 always allows it; newer Triton has this "
        "flag, default false).",
    )
    g.add_argument(
        "--disable-auto-complete-config",
        action="store_true",
        help="Do not let backends complete model configurations.",
    )
    g.add_argument(
        "--strict-readiness", type=parse_bool, default=True, metavar="<boolean>"
    )
    g.add_argument(
        "--model-namespacing",
        type=parse_bool,
        default=False,
        metavar="<boolean>",
        help="Each model repository is a namespace: repositories may hold models "
        "of the same name (a name two namespaces have is refused as ambiguous; "
        "ensembles use the model of their own repository first).",
    )
    g.add_argument(
        "--model-control-mode",
        type=parse_choice("--model-control-mode", ("none", "poll", "explicit")),
        default="none",
        metavar="<string>",
    )
    g.add_argument(
        "--repository-poll-secs",
        type=parse_int,
        default=15,
        metavar="<integer>",
        help="Seconds between repository polls with --model-control-mode=poll.",
    )
    g.add_argument(
        "--load-model",
        action="append",
        default=[],
        metavar="<string>",
        help="Model to load at startup in explicit mode (repeatable; '*': all).",
    )
    g.add_argument(
        "--model-config-name",
        default=None,
        metavar="<string>",
        help="Use <model>/configs/<name>.pbtxt instead of config.pbtxt when present.",
    )
    g.add_argument(
        "--model-load-thread-count", type=parse_int, default=4, metavar="<integer>"
    )
    g.add_argument(
        "--model-load-retry-count", type=parse_int, default=0, metavar="<integer>"
    )
    g.add_argument(
        "--repoagent-directory",
        default="/opt/tritonserver/repoagents",
        metavar="<string>",
        help="Where tritonserver finds repository agent libraries. tritonx's agents "
        "are Python (built-in 'checksum', entry point group tritonx.repoagents); "
        "this path is named in the error for an agent it does not have.",
    )

    cli_frontends.add_flags(p)

    g = p.add_argument_group("Metrics")
    for flag in ("--allow-metrics", "--allow-gpu-metrics", "--allow-cpu-metrics"):
        g.add_argument(flag, type=parse_bool, default=True, metavar="<boolean>")
    g.add_argument(
        "--metrics-address",
        default=None,
        metavar="<string>",
        help="Address of the metrics server (default: --http-address).",
    )
    g.add_argument(
        "--metrics-port",
        type=parse_int,
        default=8002,
        metavar="<integer>",
        help="Prometheus metrics port (default 8002; 0 picks a free port).",
    )
    g.add_argument(
        "--metrics-interval-ms", type=parse_float, default=2000.0, metavar="<float>"
    )
    g.add_argument(
        "--metrics-config",
        action="append",
        default=[],
        metavar="<<string>=<string>>",
        help="Specify a metrics-specific configuration setting, e.g. "
        "summary_latencies=true, summary_quantiles=0.5:0.05,0.99:0.001, "
        "counter_latencies=false. Can be specified multiple times.",
    )

    cli_ports.add_flags(p)

    g = p.add_argument_group("Backend")
    g.add_argument(
        "--backend-config",
        action="append",
        default=[],
        metavar="<backend>,<setting>=<value>",
    )
    g.add_argument(
        "--backend-directory",
        default=DEFAULT_BACKEND_DIRECTORY,
        metavar="<string>",
        help="Where Python-based backends live: <dir>/<backend>/model.py.",
    )

    cli_limits.add_flags(p)

    g = p.add_argument_group("DEPRECATED")
    g.add_argument(
        "--strict-model-config", type=parse_bool, default=None, metavar="<boolean>"
    )

    g = p.add_argument_group(
        "Accepted for compatibility with tritonserver, without effect"
    )
    for flag in IGNORED_FLAGS:
        g.add_argument(flag, dest=ignored_dest(flag), default=None, metavar="<value>")
    add_trace_arguments(p)
    return p


def parse_args(argv: Sequence[str]) -> tuple[ServerOptions, LogOptions, list[str]]:
    """Parse flags; returns server options, log options and warnings to log.

    Raises ``UsageError`` with the message to print on any command-line error.
    """
    parser = build_parser()
    parser.set_defaults(**cli_ports.environment_defaults(os.environ))
    args = parser.parse_args(list(argv))
    warnings: list[str] = []
    if not args.model_repository:
        storage = cli_ports.storage_repository(os.environ)
        args.model_repository = [storage] if storage else []
    if not args.model_repository and args.exit_on_error:
        # With --exit-on-error=false the server starts without one, as a server
        # that failed to initialise (Server.start decides).
        raise UsageError(
            "error: creating server: Invalid argument - "
            "--model-repository must be specified"
        )
    if args.load_model and args.model_control_mode != "explicit":
        raise UsageError(
            "Error: Use of '--load-model' requires setting "
            "'--model-control-mode=explicit' as well."
        )
    if "*" in args.load_model and len(args.load_model) > 1:
        raise UsageError(
            "error: creating server: Invalid argument - Wildcard model name '*' "
            "must be the ONLY startup model if specified at all."
        )
    if args.model_config_name == "":
        raise UsageError(
            'Bad option: "--model-config-name".\n'
            "Error: empty argument for --model-config-name"
        )
    auto_complete = not args.disable_auto_complete_config
    if args.strict_model_config is not None:
        warnings.append(
            "--strict-model-config is deprecated, use --disable-auto-complete-config"
        )
        if args.strict_model_config:
            auto_complete = False
    for flag in IGNORED_FLAGS:
        if getattr(args, ignored_dest(flag)) is not None:
            warnings.append(f"{flag} has no effect in tritonx and is ignored")
    try:
        rate_limit_resources = cli_limits.parse_rate_limit_resources(
            args.rate_limit_resource
        )
        cuda_pools = cli_limits.parse_cuda_pools(args.cuda_memory_pool_byte_size)
        cache = cli_limits.parse_cache_config(
            getattr(args, "cache_config", []),
            getattr(args, "response_cache_byte_size", None),
        )
        trace, trace_warnings = parse_trace_flags(args.trace_config, vars(args))
        host_policies = cli_limits.parse_host_policies(args.host_policy)
    except (cli_limits.FlagError, TraceFlagError) as error:
        if not error.flag:
            raise UsageError(error.detail) from None
        raise UsageError(f'Bad option: "{error.flag}".\n{error.detail}') from None
    if getattr(args, "response_cache_byte_size", None) is not None:
        warnings.append(
            "'--response-cache-byte-size' has been deprecated! Please use "
            f"'--cache-config=local,size={args.response_cache_byte_size}' instead."
        )
    cli_ports.check_collisions(cli_ports.endpoints(args))
    switch = os.environ.get("TRITONX_SWITCH_INTERVAL", "")
    options = ServerOptions(
        model_repositories=[
            p if cloud_scheme(p) else Path(p) for p in args.model_repository
        ],
        model_control_mode=args.model_control_mode,
        startup_models=list(args.load_model),
        repository_poll_secs=args.repository_poll_secs,
        exit_on_error=args.exit_on_error,
        strict_readiness=args.strict_readiness,
        model_namespacing=args.model_namespacing,
        exit_timeout_secs=args.exit_timeout_secs,
        max_inflight_requests=args.max_inflight_requests,
        allow_client_shm=args.allow_client_shm,
        rate_limit=args.rate_limit,
        rate_limit_resources=rate_limit_resources,
        response_cache_byte_size=cache.local_size if cache else None,
        remote_response_cache=(
            (cache.name, cache.settings) if cache and not cache.local_size else None
        ),
        pinned_memory_pool_byte_size=args.pinned_memory_pool_byte_size,
        cuda_memory_pool_byte_size=cuda_pools,
        auto_complete=auto_complete,
        model_config_name=args.model_config_name,
        model_load_thread_count=args.model_load_thread_count,
        # Attempts after a failed one; tritonserver reads a negative count as a
        # huge unsigned one (retrying for ever), tritonx as none.
        model_load_retry_count=max(0, args.model_load_retry_count),
        repoagent_directory=args.repoagent_directory,
        backend_config=parse_backend_config(args.backend_config),
        backend_directory=args.backend_directory,
        host_policies=host_policies,
        server_id=args.id,
        allow_http=args.allow_http,
        http_address=args.http_address,
        http_port=args.http_port,
        http_max_input_size=args.http_max_input_size,
        http_reuse_port=args.reuse_http_port,
        grpc_reuse_port=args.reuse_grpc_port,
        http_restricted_apis={
            group: (key, value)
            for group, key, value in parse_restricted_features(
                args.http_restricted_api,
                "--http-restricted-api",
                "api",
                HTTP_API_GROUPS,
            )
        },
        http_header_forward_pattern=forward_pattern(
            "--http-header-forward-pattern", args.http_header_forward_pattern
        ),
        http_max_header_size=args.http_max_header_size,
        http_max_header_count=args.http_max_header_count,
        # --http-use-ssl-mutual implies TLS, as the gRPC flags do.
        http_use_ssl=args.http_use_ssl or args.http_use_ssl_mutual,
        http_use_ssl_mutual=args.http_use_ssl_mutual,
        http_server_cert=args.http_server_cert,
        http_server_key=args.http_server_key,
        http_root_cert=args.http_root_cert,
        http_engine=args.http_engine,
        http_thread_count=args.http_thread_count,
        allow_grpc=args.allow_grpc,
        grpc_address=args.grpc_address,
        grpc_port=args.grpc_port,
        grpc_use_ssl=args.grpc_use_ssl,
        grpc_use_ssl_mutual=args.grpc_use_ssl_mutual,
        grpc_server_cert=args.grpc_server_cert,
        grpc_server_key=args.grpc_server_key,
        grpc_root_cert=args.grpc_root_cert,
        grpc_restricted_protocols=parse_restricted_features(
            args.grpc_restricted_protocol,
            "--grpc-restricted-protocol",
            "protocol",
            GRPC_PROTOCOL_GROUPS,
        ),
        # tritonserver matches it case-insensitively; the gRPC server adds "(?i)".
        grpc_header_forward_pattern=args.grpc_header_forward_pattern,
        grpc_infer_response_compression_level=(
            args.grpc_infer_response_compression_level
        ),
        grpc_max_stream_backlog_bytes=args.grpc_max_stream_backlog_bytes,
        grpc_channel_args={
            arg: value
            for flag, arg in GRPC_CHANNEL_FLAGS.items()
            if (value := getattr(args, flag[2:].replace("-", "_"))) is not None
        },
        allow_sagemaker=args.allow_sagemaker,
        sagemaker_port=args.sagemaker_port,
        sagemaker_thread_count=args.sagemaker_thread_count,
        vertex_ai_thread_count=args.vertex_ai_thread_count,
        allow_vertex_ai=args.allow_vertex_ai,
        vertex_ai_port=args.vertex_ai_port,
        vertex_ai_default_model=args.vertex_ai_default_model,
        allow_metrics=args.allow_metrics,
        allow_cpu_metrics=args.allow_cpu_metrics,
        allow_gpu_metrics=args.allow_gpu_metrics,
        metrics_address=args.metrics_address,
        metrics_port=args.metrics_port,
        metrics_interval_ms=args.metrics_interval_ms,
        metrics_config=MetricsConfig.parse(parse_metrics_config(args.metrics_config)),
        # Escape hatch for measuring the effect of the GIL switch interval:
        # TRITONX_SWITCH_INTERVAL=off keeps CPython's default.
        switch_interval_s=(
            None
            if switch == "off"
            else float(switch)
            if switch
            else DEFAULT_SWITCH_INTERVAL_S
        ),
    )
    options.trace = trace
    warnings += trace_warnings
    options.log = LogOptions(
        verbose=args.log_verbose,
        info=args.log_info,
        warning=args.log_warning,
        error=args.log_error,
        format=args.log_format,
        file=Path(args.log_file) if args.log_file else None,
    )
    return options, options.log, warnings


def main(argv: Sequence[str] | None = None) -> int:
    try:
        options, log_options, warnings = parse_args(
            sys.argv[1:] if argv is None else argv
        )
    except UsageError as error:
        print(str(error), file=sys.stderr)
        print(f"Run '{PROG} --help' for the list of options.", file=sys.stderr)
        return EXIT_USAGE
    logger = configure(log_options)
    for warning in warnings:
        if warning.startswith("Warning: "):
            # Triton's own wording: its parser writes these to stderr as plain
            # lines, whatever the log settings (L0_cmdline_trace greps them).
            write_console_line(warning)
        else:
            logger.warning("%s", warning)
    if argv is None:
        # Model code sees the command line Triton's stub has, none: a model that
        # parses it (unittest.main in Triton's own test models) must not meet
        # the server's flags.
        sys.argv[:] = [""]
    from tritonx import server

    try:
        return server.run(options)
    except KeyboardInterrupt:  # a signal before the handlers were installed
        return 1
    finally:
        logging.shutdown()
