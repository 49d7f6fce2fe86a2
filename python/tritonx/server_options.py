"""``ServerOptions``: one description of how a ``tritonx.server.Server`` is set up.

``tritonx.cli`` fills it from Triton's flags, ``tritonx.api`` from its ``Options``
(every endpoint off), and ``tritonx.api.frontend`` copies it with one endpoint's
fields replaced. It lives apart from ``tritonx.server`` so that parsing the command
line does not import the server itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tritonx.backends.registry import DEFAULT_BACKEND_DIRECTORY
from tritonx.logging_setup import LogOptions
from tritonx.metrics_config import MetricsConfig
from tritonx.tracing import TraceConfig

# Worker threads that run Python backends hand the GIL back and forth with the event
# loop thread for every request. With CPython's default 5 ms switch interval, a thread
# that wants the GIL can wait up to 5 ms while the other one runs pure Python, which
# shows up directly as request latency. 0.2 ms keeps hand-offs short. Measured with
# benchmarks/bench_serving.py and a model whose execute() spins 2 ms in Python: HTTP
# at concurrency 4 went from 481 to 915 infer/s and p99 from 16.3 to 6.3 ms; the
# trivial identity model and the gRPC path (C++) showed no change either way.
DEFAULT_SWITCH_INTERVAL_S = 0.0002

# Enough for thousands of concurrent clients; small enough that a flood of requests
# against models without max_queue_size cannot exhaust memory.
DEFAULT_MAX_INFLIGHT_REQUESTS = 10_000
# --grpc-max-stream-backlog-bytes: what a ModelStreamInfer stream may hold of
# responses its client has not read before it is cancelled (0: no bound, as Triton).
DEFAULT_MAX_STREAM_BACKLOG_BYTES = 1 << 30


@dataclass
class ServerOptions:
    """Everything the server needs; ``tritonx.cli`` maps Triton's flags onto it."""

    # Local directories, or cloud locations ("s3://...") kept as written.
    model_repositories: list[Path | str] = field(default_factory=list)
    model_control_mode: str = "none"  # none | explicit | poll
    startup_models: list[str] = field(default_factory=list)
    repository_poll_secs: int = 15
    exit_on_error: bool = True
    strict_readiness: bool = True
    # --model-namespacing: each repository is a namespace (repository/repository.py).
    model_namespacing: bool = False
    exit_timeout_secs: int = 30
    # Server-wide bound on accepted, unanswered requests (0: none); see the CLI.
    max_inflight_requests: int = DEFAULT_MAX_INFLIGHT_REQUESTS
    # --allow-client-shm: clients may use system shared memory regions.
    allow_client_shm: bool = True
    # --rate-limit ("off" | "execution_count") and --rate-limit-resource entries
    # (name, count, device; device -1: every device).
    rate_limit: str = "off"
    rate_limit_resources: list[tuple[str, int, int]] = field(default_factory=list)
    # --cache-config local,size=N: the response cache's size (None: no cache).
    response_cache_byte_size: int | None = None
    # --cache-config <name>,<setting>=<value> for another cache (tritonx.caches):
    # (name, settings).
    remote_response_cache: tuple[str, dict[str, str]] | None = None
    auto_complete: bool = True
    model_config_name: str | None = None
    model_load_thread_count: int = 4
    model_load_retry_count: int = 0
    # --repoagent-directory: tritonx's agents are Python objects (repository/
    # agents.py); the directory only appears in the error for an unknown agent.
    repoagent_directory: str = "/opt/tritonserver/repoagents"
    # backend name -> {setting: value}; global settings live under "".
    backend_config: dict[str, dict[str, str]] = field(default_factory=dict)
    # --backend-directory: where Python-based backends (<dir>/<name>/model.py) live.
    backend_directory: str = DEFAULT_BACKEND_DIRECTORY
    # --host-policy: policy name -> setting -> value (tritonx.host_policy).
    host_policies: dict[str, dict[str, str]] = field(default_factory=dict)
    server_id: str = "triton"
    allow_http: bool = True
    http_address: str = "0.0.0.0"
    http_port: int = 8000
    http_max_input_size: int = 64 * 1024 * 1024
    http_reuse_port: bool = False
    # --http-restricted-api: API group -> (header, value); --http-header-forward-
    # pattern ("" = none); head limits; HTTPS (tritonx flags, parallel to gRPC's).
    http_restricted_apis: dict[str, tuple[str, str]] = field(default_factory=dict)
    http_header_forward_pattern: str = ""
    http_max_header_size: int = 64 * 1024
    http_max_header_count: int = 1000
    http_use_ssl: bool = False
    http_use_ssl_mutual: bool = False
    http_server_cert: Path | None = None
    http_server_key: Path | None = None
    http_root_cert: Path | None = None
    # --http-engine: "native" (C++ evhttp server), "python" (asyncio frontend) or
    # "auto" (native unless it was not built);
    # --http-thread-count: the native server's event threads.
    http_engine: str = "auto"
    http_thread_count: int = 2
    allow_grpc: bool = True
    grpc_address: str = "0.0.0.0"
    grpc_port: int = 8001
    grpc_use_ssl: bool = False
    grpc_use_ssl_mutual: bool = False
    grpc_server_cert: Path | None = None  # PEM files, read at start
    grpc_server_key: Path | None = None
    grpc_root_cert: Path | None = None
    # --grpc-restricted-protocol: (group, key, value), key without Triton's
    # "triton-grpc-protocol-" prefix; --grpc-header-forward-pattern ("" = none).
    grpc_restricted_protocols: list[tuple[str, str, str]] = field(default_factory=list)
    grpc_header_forward_pattern: str = ""
    grpc_infer_response_compression_level: str = "none"
    # gRPC core channel arguments (keepalive, max connection age), by grpc's name.
    grpc_channel_args: dict[str, int] = field(default_factory=dict)
    grpc_reuse_port: bool = False  # several servers may listen on the gRPC port
    grpc_max_stream_backlog_bytes: int = DEFAULT_MAX_STREAM_BACKLOG_BYTES
    # --allow-sagemaker, --sagemaker-port, --sagemaker-thread-count (event threads
    # of its native server); --sagemaker-safe-port-range is checked by the CLI.
    allow_sagemaker: bool = False
    sagemaker_port: int = 8080
    sagemaker_thread_count: int = 8
    # --allow-vertex-ai, --vertex-ai-port, --vertex-ai-default-model ("": the only
    # model), --vertex-ai-thread-count.
    allow_vertex_ai: bool = False
    vertex_ai_port: int = 8080
    vertex_ai_default_model: str = ""
    vertex_ai_thread_count: int = 8
    allow_metrics: bool = True
    allow_cpu_metrics: bool = True
    allow_gpu_metrics: bool = True
    metrics_address: str | None = None  # None: same as http_address, like Triton
    metrics_port: int = 8002
    metrics_interval_ms: float = 2000.0
    # --metrics-config: latency counters and/or summaries (Triton 2.51's reading).
    metrics_config: MetricsConfig = field(default_factory=MetricsConfig)
    # --pinned-memory-pool-byte-size: None keeps the process's shared pinned pool
    # (256 MiB, Triton's default); 0 turns pinned staging off.
    pinned_memory_pool_byte_size: int | None = None
    # --cuda-memory-pool-byte-size <GPU id>:<bytes>, as given (see docs/gpu.md).
    cuda_memory_pool_byte_size: dict[int, int] = field(default_factory=dict)
    switch_interval_s: float | None = DEFAULT_SWITCH_INTERVAL_S
    # The logging the CLI configured; lets the LogSettings API change it live.
    log: LogOptions | None = None
    # --trace-config and the deprecated --trace-* flags.
    trace: TraceConfig = field(default_factory=TraceConfig)
