"""Network endpoints for an in-process server, in the shape of Triton's
``tritonfrontend`` package: ``KServeHttp``, ``KServeGrpc`` and ``Metrics``, each made
from a started ``tritonx.api.Server`` and its own ``Options``, then ``start()`` /
``stop()`` or used as a context manager::

    server = tritonx.api.Server(model_repository="model_repository").start()
    with KServeHttp(server, KServeHttp.Options(port=8000)), KServeGrpc(server):
        ...  # tritonclient, perf_analyzer, curl
    server.stop()

They are the same frontends ``tritonx-server`` runs (the C++ HTTP and gRPC servers,
the Prometheus endpoint), configured through the same ``ServerOptions`` fields as
the command line's flags, so requests behave as they do there. Stopping one lets
its calls in flight finish (up to the server's ``exit_timeout``); ``Server.stop()``
stops those still running. See docs/api.md for the differences from Triton's.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from enum import Enum, IntEnum
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar

from tritonx.api._server import Server
from tritonx.cli_values import GRPC_CHANNEL_FLAGS
from tritonx.errors import InvalidArgumentError

if TYPE_CHECKING:
    from tritonx.server_options import ServerOptions

__all__ = [
    "FeatureGroup",
    "KServeGrpc",
    "KServeHttp",
    "Metrics",
    "Protocols",
    "RestrictedFeatures",
]


class Protocols(Enum):
    """The endpoint groups a restriction can cover (Triton's names)."""

    HEALTH = "health"
    METADATA = "metadata"
    INFERENCE = "inference"
    SHM_MEMORY = "shared-memory"
    MODEL_CONFIG = "model-config"
    MODEL_REPOSITORY = "model-repository"
    STATISTICS = "statistics"
    TRACE = "trace"
    LOGGING = "logging"


@dataclass
class FeatureGroup:
    """Requests to ``protocols`` must carry the header ``key`` with ``value`` (for
    gRPC the header is ``triton-grpc-protocol-<key>``, as with the flag)."""

    key: str
    value: str
    protocols: list[Protocols]

    def __post_init__(self) -> None:
        invalid = [p for p in self.protocols if not isinstance(p, Protocols)]
        if invalid:
            raise InvalidArgumentError(
                f"Invalid protocols found: {invalid}. Each item in 'protocols' "
                "should be an instance of Protocols. Valid options are: "
                f"{[str(p) for p in Protocols]}"
            )


class RestrictedFeatures:
    """The restricted groups of one endpoint; a protocol may be in one group only."""

    def __init__(self, groups: list[FeatureGroup] | None = None) -> None:
        self.feature_groups: list[FeatureGroup] = []
        self.protocols_restricted: set[Protocols] = set()
        for group in groups or []:
            self.add_feature_group(group)

    def add_feature_group(self, group: FeatureGroup) -> None:
        for protocol in group.protocols:
            if protocol in self.protocols_restricted:
                raise InvalidArgumentError(
                    "A given protocol can only belong to one group. "
                    f"{protocol} already belongs to a group."
                )
        self.protocols_restricted.update(group.protocols)
        self.feature_groups.append(group)

    def create_feature_group(
        self, key: str, value: str, protocols: list[Protocols]
    ) -> None:
        self.add_feature_group(FeatureGroup(key, value, protocols))

    def triples(self) -> list[tuple[str, str, str]]:
        """(group, header key, value) for each restricted protocol."""
        return [
            (protocol.value, group.key, group.value)
            for group in self.feature_groups
            for protocol in group.protocols
        ]

    def __repr__(self) -> str:
        return json.dumps(
            [
                {
                    "key": group.key,
                    "value": group.value,
                    "protocols": [p.value for p in group.protocols],
                }
                for group in self.feature_groups
            ],
            indent=2,
        )


def _check_port(port: int) -> None:
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        raise InvalidArgumentError(
            f"port must be an integer in [0, 65535], got {port!r}"
        )


def _check_at_least(name: str, value: int, least: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < least:
        raise InvalidArgumentError(
            f"{name} must be an integer >= {least}, got {value!r}"
        )


def _check_pattern(pattern: str) -> str:
    from tritonx.frontends.http_access import compile_forward_pattern

    if pattern:
        try:
            compile_forward_pattern(pattern)
        except ValueError as error:
            raise InvalidArgumentError(f"header_forward_pattern: {error}") from None
    return pattern


class _Endpoint:
    """One endpoint on a started server. Thread safety: start/stop may be called
    from any thread; they run on the server's loop thread, one at a time."""

    _kind: ClassVar[str]
    _options_type: ClassVar[type]

    def __init__(self, server: Server, options: Any = None) -> None:
        if options is None:
            options = self._options_type()
        if not isinstance(options, self._options_type):
            raise InvalidArgumentError(
                "Incorrect type for options. options argument must be of type "
                f"{type(self).__name__}.Options"
            )
        if not isinstance(server, Server):
            raise InvalidArgumentError(
                "server must be a started tritonx.api.Server, "
                f"got {type(server).__name__}"
            )
        self.options: Any = options
        self._server = server
        self._running: Any = None  # the api server's _Running while started
        self._name: str | None = None
        self.port: int | None = None  # the bound port while started

    def _server_options(self, base: ServerOptions) -> ServerOptions:
        raise NotImplementedError

    def start(self) -> None:
        """Bind and serve; UnavailableError when the port is taken."""
        running = self._server._running()
        if self._name is not None and self._running is running:
            raise InvalidArgumentError(f"{type(self).__name__} is already started")
        options = self._server_options(running.core.options)
        self._name, self.port = running.call(
            lambda: running.core.start_endpoint(self._kind, options)
        )
        self._running = running

    def stop(self) -> None:
        """Stop accepting and finish calls in flight; nothing for one not started
        or stopped with its server."""
        name, running = self._name, self._running
        self._name = self._running = self.port = None
        if name is None or running is None or not running.thread.is_alive():
            return
        grace = float(running.core.options.exit_timeout_secs)
        running.call(lambda: running.core.stop_endpoint(name, grace))

    def __enter__(self) -> _Endpoint:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


class KServeHttp(_Endpoint):
    """The KServe v2 HTTP/REST endpoint (the C++ HTTP server)."""

    @dataclass
    class Options:
        address: str = "0.0.0.0"
        port: int = 8000
        reuse_port: bool = False
        thread_count: int = 8
        header_forward_pattern: str = ""
        restricted_features: RestrictedFeatures = field(
            default_factory=RestrictedFeatures
        )

        def __post_init__(self) -> None:
            _check_port(self.port)
            _check_at_least("thread_count", self.thread_count, 1)

    _kind = "http"
    _options_type = Options
    # Triton's earlier spelling: KServeHttp.Server(server, options).
    Server: ClassVar[type[KServeHttp]]

    def _server_options(self, base: ServerOptions) -> ServerOptions:
        o = self.options
        return dataclasses.replace(
            base,
            http_address=o.address,
            http_port=o.port,
            http_reuse_port=o.reuse_port,
            http_thread_count=o.thread_count,
            http_header_forward_pattern=_check_pattern(o.header_forward_pattern),
            http_restricted_apis={
                group: (key, value)
                for group, key, value in o.restricted_features.triples()
            },
        )


class KServeGrpc(_Endpoint):
    """The KServe v2 gRPC endpoint (the C++ gRPC server)."""

    class Grpc_compression_level(IntEnum):  # Triton's name
        NONE = 0
        LOW = 1
        MED = 2
        HIGH = 3
        COUNT = 4

    @dataclass
    class Options:
        address: str = "0.0.0.0"
        port: int = 8001
        reuse_port: bool = False
        use_ssl: bool = False
        server_cert: str = ""  # PEM files
        server_key: str = ""
        root_cert: str = ""
        use_mutual_auth: bool = False
        keepalive_time_ms: int = 7_200_000
        keepalive_timeout_ms: int = 20_000
        keepalive_permit_without_calls: bool = False
        http2_max_pings_without_data: int = 2
        http2_min_recv_ping_interval_without_data_ms: int = 300_000
        http2_max_ping_strikes: int = 2
        max_connection_age_ms: int = 0
        max_connection_age_grace_ms: int = 0
        infer_compression_level: int = 0  # or a Grpc_compression_level
        # Accepted as Triton's; the C++ server sizes its own pools.
        infer_allocation_pool_size: int = 8
        forward_header_pattern: str = ""
        restricted_features: RestrictedFeatures = field(
            default_factory=RestrictedFeatures
        )

        def __post_init__(self) -> None:
            _check_port(self.port)
            for name in _GRPC_CHANNEL_FIELDS:
                value = getattr(self, name)
                if not isinstance(value, bool):
                    _check_at_least(name, value, 0)
            _check_at_least(
                "infer_allocation_pool_size", self.infer_allocation_pool_size, 0
            )
            level = self.infer_compression_level
            if level not in (0, 1, 2, 3):
                raise InvalidArgumentError(
                    f"infer_compression_level must be 0-3 (NONE, LOW, MED, HIGH), got {level!r}"
                )
            self.infer_compression_level = int(level)

    _kind = "grpc"
    _options_type = Options
    Server: ClassVar[type[KServeGrpc]]

    def _server_options(self, base: ServerOptions) -> ServerOptions:
        o = self.options
        return dataclasses.replace(
            base,
            grpc_address=o.address,
            grpc_port=o.port,
            grpc_reuse_port=o.reuse_port,
            grpc_use_ssl=o.use_ssl,
            grpc_use_ssl_mutual=o.use_ssl and o.use_mutual_auth,
            grpc_server_cert=o.server_cert or None,
            grpc_server_key=o.server_key or None,
            grpc_root_cert=o.root_cert or None,
            # A connection age of 0 means "no limit" here, but "close at once"
            # to gRPC core: those two are passed only when set.
            grpc_channel_args={
                channel_arg: int(getattr(o, name))
                for name, channel_arg in _GRPC_CHANNEL_FIELDS.items()
                if getattr(o, name) or name not in _UNLIMITED_WHEN_ZERO
            },
            grpc_infer_response_compression_level=_COMPRESSION_NAMES[
                int(o.infer_compression_level)
            ],
            grpc_header_forward_pattern=_check_pattern(o.forward_header_pattern),
            grpc_restricted_protocols=o.restricted_features.triples(),
        )


# Options field -> the gRPC core channel argument its flag sets.
_GRPC_CHANNEL_FIELDS = {
    name: GRPC_CHANNEL_FLAGS[flag]  # the channel argument, from the flags' table
    for name, flag in {
        "keepalive_time_ms": "--grpc-keepalive-time",
        "keepalive_timeout_ms": "--grpc-keepalive-timeout",
        "keepalive_permit_without_calls": "--grpc-keepalive-permit-without-calls",
        "http2_max_pings_without_data": "--grpc-http2-max-pings-without-data",
        "http2_min_recv_ping_interval_without_data_ms": (
            "--grpc-http2-min-recv-ping-interval-without-data"
        ),
        "http2_max_ping_strikes": "--grpc-http2-max-ping-strikes",
        "max_connection_age_ms": "--grpc-max-connection-age",
        "max_connection_age_grace_ms": "--grpc-max-connection-age-grace",
    }.items()
}
_UNLIMITED_WHEN_ZERO = ("max_connection_age_ms", "max_connection_age_grace_ms")
_COMPRESSION_NAMES = {0: "none", 1: "low", 2: "medium", 3: "high"}


class Metrics(_Endpoint):
    """The Prometheus endpoint (``/metrics``), with CPU and GPU samplers."""

    @dataclass
    class Options:
        address: str = "0.0.0.0"
        port: int = 8002
        # Accepted as Triton's; the endpoint runs on the server's loop.
        thread_count: int = 8

        def __post_init__(self) -> None:
            _check_port(self.port)
            _check_at_least("thread_count", self.thread_count, 0)

    _kind = "metrics"
    _options_type = Options

    def _server_options(self, base: ServerOptions) -> ServerOptions:
        return dataclasses.replace(
            base, metrics_address=self.options.address, metrics_port=self.options.port
        )


KServeHttp.Server = KServeHttp
KServeGrpc.Server = KServeGrpc
