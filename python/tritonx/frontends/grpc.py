"""The gRPC frontend: Triton's ``inference.GRPCInferenceService`` served by C++.

``ModelInfer`` and ``ModelStreamInfer`` never reach this module: the C++ server
(csrc/grpc) parses them, finds the model in the shared ``ModelRegistry`` and
enqueues them on the core directly. Every other RPC (health, metadata, config,
statistics, repository control, shared memory, trace and log settings, and
``grpc.health.v1.Health/Check``) arrives here as ``(method path, request bytes)``
on one of the C++ server's control threads, with the GIL held; the answer is the
serialized response message, or a ``TritonXError`` whose ``grpc_code`` becomes
the call's status.

Handlers run off the event loop. They call the manager's synchronous methods
directly; ``load``/``unload`` are coroutines and are run on the server's loop,
the control thread waiting for their result (a slow load therefore occupies one
control thread, never an inference thread nor the loop).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message

from tritonx import __version__
from tritonx.errors import (
    InternalError,
    InvalidArgumentError,
    UnavailableError,
    UnsupportedError,
)
from tritonx.frontends.base import server_extensions
from tritonx.frontends.log_settings import grpc_update
from tritonx.frontends.shared_memory import SharedMemoryControl, default_registry
from tritonx.repository.reports import INFERENCE_STATS_KEYS
from tritonx.server_options import DEFAULT_MAX_STREAM_BACKLOG_BYTES

logger = logging.getLogger("tritonx.grpc")

_SERVICE = "/inference.GRPCInferenceService/"
_HEALTH_CHECK = "/grpc.health.v1.Health/Check"

# tritonserver's status message (INTERNAL) for a request message that does not parse.
PARSE_FAILURE = "Unable to parse request"

# What tritonserver prepends to the key of --grpc-restricted-protocol: the metadata a
# client must send is "triton-grpc-protocol-<key>: <value>".
RESTRICTED_HEADER_PREFIX = "triton-grpc-protocol-"

# The protocol groups --grpc-restricted-protocol accepts.
PROTOCOL_GROUPS = (
    "health",
    "metadata",
    "inference",
    "shared-memory",
    "model-config",
    "model-repository",
    "statistics",
    "trace",
    "logging",
)


class SettingsStore:
    """Log or trace settings kept in memory; ``update`` validates and merges.

    The server may pass stores shared with the HTTP frontend; any object with the
    same ``get``/``update`` methods works.
    """

    def __init__(
        self,
        defaults: Mapping[str, Any],
        validate: Callable[[str, Any], Any] | None = None,
    ) -> None:
        self._defaults = dict(defaults)
        self._values = dict(defaults)
        self._validate = validate

    def get(self) -> dict[str, Any]:
        return dict(self._values)

    def update(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        staged = dict(self._values)
        for key, value in changes.items():
            if value is None:
                staged[key] = self._defaults.get(key)
                continue
            if self._validate is not None:
                value = self._validate(key, value)
                if value is None:
                    continue
            staged[key] = value
        self._values = staged
        return self.get()


def standalone_trace_settings(manager: Any) -> Any:
    """Trace settings for a frontend made outside a Server: its own tracer, which
    no model samples from."""
    from tritonx import _native
    from tritonx.tracing import TraceConfig, TraceManager, TraceSettingsService

    def exists(name: str) -> bool:
        try:
            manager.config(name, "")
        except Exception:
            return False
        return True

    return TraceSettingsService(TraceManager(TraceConfig(), _native.Tracer()), exists)


def default_log_settings() -> SettingsStore:
    return SettingsStore(
        {
            "log_file": "",
            "log_info": True,
            "log_warning": True,
            "log_error": True,
            "log_verbose_level": 0,
            "log_format": "default",
        },
    )


class GrpcFrontend:
    """Runs the C++ gRPC server and answers its control-plane calls."""

    def __init__(
        self,
        manager: Any,
        registry: Any,
        *,
        host: str = "0.0.0.0",
        port: int = 8001,
        server_id: str = "triton",
        version: str = __version__,
        extensions: Sequence[str] | None = None,
        control_threads: int = 8,
        infer_compression_level: str = "none",
        channel_args: Mapping[str, int] | None = None,
        use_ssl: bool = False,
        use_mutual_auth: bool = False,
        server_cert: str = "",
        server_key: str = "",
        root_cert: str = "",
        restricted_protocols: Sequence[tuple[str, str, str]] = (),
        header_forward_pattern: str = "",
        log_settings: Any = None,
        trace_settings: Any = None,
        shared_memory: Any = None,
        max_stream_backlog_bytes: int = DEFAULT_MAX_STREAM_BACKLOG_BYTES,
    ) -> None:
        """``server_cert``, ``server_key`` and ``root_cert`` are PEM contents (the
        server reads the files named on the command line). ``restricted_protocols``
        holds ``(group, key, value)`` per ``--grpc-restricted-protocol`` group, the
        key as given on the command line (without ``RESTRICTED_HEADER_PREFIX``).
        """
        from tritonx._proto import grpc_service_pb2, health_pb2

        # Generated modules have no type stubs; their classes are looked up by name.
        pb: Any = grpc_service_pb2

        self._pb: Any = pb
        self._health_pb: Any = health_pb2
        self._manager = manager
        self._registry = registry
        self._host = host
        self._port = port
        self._server_id = server_id
        self._version = version
        self._extensions = list(
            server_extensions() if extensions is None else extensions
        )
        self._server_options: dict[str, Any] = {
            "control_threads": control_threads,
            "infer_compression_level": infer_compression_level,
            "channel_args": dict(channel_args or {}),
            "use_ssl": use_ssl,
            "use_mutual_auth": use_mutual_auth,
            "server_cert": server_cert,
            "server_key": server_key,
            "root_cert": root_cert,
            "restricted_protocols": [
                (group, RESTRICTED_HEADER_PREFIX + key, value)
                for group, key, value in restricted_protocols
            ],
            "header_forward_pattern": header_forward_pattern,
            "max_stream_backlog_bytes": max_stream_backlog_bytes,
        }
        if shared_memory is None:
            shared_memory = default_registry()
        self._shm = SharedMemoryControl(shared_memory)
        self._server_options["shared_memory"] = shared_memory
        self.log_settings = log_settings or default_log_settings()
        # The trace extension (tracing.TraceSettingsService), shared with HTTP.
        self.trace_settings = trace_settings or standalone_trace_settings(manager)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Any = None
        self._closing: Any = None  # the server being stopped
        self._stopping = False
        # method path -> (request message class, handler)
        self._methods: dict[str, tuple[type[Message], Callable[[Any], Message]]] = {}
        for rpc, request_type, fn in (
            ("ServerLive", pb.ServerLiveRequest, self._server_live),
            ("ServerReady", pb.ServerReadyRequest, self._server_ready),
            ("ModelReady", pb.ModelReadyRequest, self._model_ready),
            ("ServerMetadata", pb.ServerMetadataRequest, self._server_metadata),
            ("ModelMetadata", pb.ModelMetadataRequest, self._model_metadata),
            ("ModelConfig", pb.ModelConfigRequest, self._model_config),
            ("ModelStatistics", pb.ModelStatisticsRequest, self._model_statistics),
            ("RepositoryIndex", pb.RepositoryIndexRequest, self._repository_index),
            ("RepositoryModelLoad", pb.RepositoryModelLoadRequest, self._load),
            ("RepositoryModelUnload", pb.RepositoryModelUnloadRequest, self._unload),
            (
                "SystemSharedMemoryStatus",
                pb.SystemSharedMemoryStatusRequest,
                self._system_shm_status,
            ),
            (
                "SystemSharedMemoryRegister",
                pb.SystemSharedMemoryRegisterRequest,
                self._system_shm_register,
            ),
            (
                "SystemSharedMemoryUnregister",
                pb.SystemSharedMemoryUnregisterRequest,
                self._system_shm_unregister,
            ),
            (
                "CudaSharedMemoryStatus",
                pb.CudaSharedMemoryStatusRequest,
                self._cuda_shm_status,
            ),
            (
                "CudaSharedMemoryRegister",
                pb.CudaSharedMemoryRegisterRequest,
                self._cuda_shm_register,
            ),
            (
                "CudaSharedMemoryUnregister",
                pb.CudaSharedMemoryUnregisterRequest,
                self._cuda_shm_unregister,
            ),
            ("TraceSetting", pb.TraceSettingRequest, self._trace_setting),
            ("LogSettings", pb.LogSettingsRequest, self._log_settings),
        ):
            self._methods[_SERVICE + rpc] = (request_type, fn)
        self._methods[_HEALTH_CHECK] = (
            self._health_pb.HealthCheckRequest,
            self._health_check,
        )

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> int:
        from tritonx import _native

        server_type = getattr(_native, "GrpcServer", None) or _native._C.GrpcServer
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        self._server = server_type(self._registry, self.handle, **self._server_options)
        try:
            port: int = self._server.start(self._host, self._port)
        except InvalidArgumentError:
            self._server = None  # a bad restricted protocol or forward pattern
            raise
        except Exception as exc:
            self._server = None
            # The server maps bind failures to OSError-like startup errors.
            raise OSError(str(exc)) from exc
        return port

    async def stop(self, grace: float) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping = True
        self._closing = server  # for close_streams while stop waits
        # Stopping blocks until in-flight calls end; a load/unload among them needs
        # this loop to finish, so the wait happens on another thread.
        await asyncio.get_running_loop().run_in_executor(None, server.stop, grace)

    def close_streams(self) -> None:
        """During stop: ends the streams clients keep open once their requests
        in flight are answered (the server calls it when nothing is in flight),
        instead of waiting for them for the rest of the grace period."""
        server = self._server or self._closing
        if server is not None:
            server.close_streams()

    # -- dispatch (control threads) ----------------------------------------------------

    def handle(self, method: str, data: bytes) -> bytes:
        """Answers one control-plane call; exceptions carry the gRPC status."""
        entry = self._methods.get(method)
        if entry is None:
            # UNIMPLEMENTED without details, as grpc++ answers a method no
            # service of Triton's registers.
            raise UnsupportedError("")
        request_type, fn = entry
        request = request_type()
        try:
            request.ParseFromString(data)
        except DecodeError:
            # The C++ server already answers undecodable messages so; kept for
            # callers that reach this handler directly.
            raise InternalError(PARSE_FAILURE) from None
        return fn(request).SerializeToString()

    def _run_on_loop(self, coro: Any) -> Any:
        loop = self._loop
        if loop is None or loop.is_closed():
            coro.close()
            raise UnavailableError("Server is shutting down")
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    # -- health and metadata -----------------------------------------------------------

    def _server_live(self, request: Any) -> Message:
        live = not self._stopping and self._manager.server_live()
        return self._pb.ServerLiveResponse(live=live)

    def _server_ready(self, request: Any) -> Message:
        ready = not self._stopping and bool(self._manager.server_ready())
        return self._pb.ServerReadyResponse(ready=ready)

    def _health_check(self, request: Any) -> Message:
        status_enum = self._health_pb.HealthCheckResponse
        serving = not self._stopping and bool(self._manager.server_ready())
        return status_enum(
            status=status_enum.SERVING if serving else status_enum.NOT_SERVING
        )

    def _model_ready(self, request: Any) -> Message:
        ready = bool(self._manager.model_ready(request.name, request.version))
        return self._pb.ModelReadyResponse(ready=ready)

    def _server_metadata(self, request: Any) -> Message:
        return self._pb.ServerMetadataResponse(
            name=self._server_id, version=self._version, extensions=self._extensions
        )

    def _model_metadata(self, request: Any) -> Message:
        meta = self._manager.metadata(request.name, request.version)
        response = self._pb.ModelMetadataResponse(
            name=meta.get("name", request.name),
            versions=[str(v) for v in meta.get("versions", [])],
            platform=meta.get("platform", ""),
        )
        for field in ("inputs", "outputs"):
            target = getattr(response, field)
            for tensor in meta.get(field, []):
                target.add(
                    name=tensor["name"],
                    datatype=tensor["datatype"],
                    shape=[int(d) for d in tensor.get("shape", [])],
                )
        return response

    def _model_config(self, request: Any) -> Message:
        config = self._manager.config(request.name, request.version)
        response = self._pb.ModelConfigResponse()
        try:
            response.config.CopyFrom(config)
        except TypeError:
            # A ModelConfig class from another descriptor pool: go through bytes.
            response.config.ParseFromString(config.SerializeToString())
        return response

    def _model_statistics(self, request: Any) -> Message:
        rows = self._manager.statistics(request.name, request.version)
        response = self._pb.ModelStatisticsResponse()
        for row in rows:
            stats = response.model_stats.add()
            json_format.ParseDict(_json_safe(row), stats, ignore_unknown_fields=True)
            for field in INFERENCE_STATS_KEYS:
                getattr(stats.inference_stats, field).SetInParent()
        return response

    # -- repository --------------------------------------------------------------------

    def _repository_index(self, request: Any) -> Message:
        if request.repository_name:
            raise UnsupportedError("'repository_name' specification is not supported")
        response = self._pb.RepositoryIndexResponse()
        for row in self._manager.index(request.ready):
            entry = response.models.add(name=row["name"])
            for key in ("version", "state", "reason"):
                value = row.get(key)
                if value not in (None, ""):
                    setattr(entry, key, str(value))
        return response

    def _load(self, request: Any) -> Message:
        if request.repository_name:
            raise UnsupportedError("'repository_name' specification is not supported")
        config: str | None = None
        files: dict[str, bytes] = {}
        # Checked before the server's mode, as Triton's gRPC frontend does (its map
        # order is a hash's; key order here, so several bad keys name one reliably).
        for key in sorted(request.parameters):
            param = request.parameters[key]
            kind = param.WhichOneof("parameter_choice")
            if key == "config" and kind == "string_param":
                config = param.string_param
            elif key.startswith("file:") and kind == "bytes_param":
                files[key[len("file:") :]] = param.bytes_param
            elif key == "config" or key.startswith("file:"):
                expected = "string_param" if key == "config" else "bytes_param"
                raise InvalidArgumentError(
                    f"invalid value type for load parameter '{key}', "
                    f"expected {expected}."
                )
            else:
                raise InvalidArgumentError(f"unrecognized load parameter '{key}'.")
        self._run_on_loop(self._manager.load(request.model_name, config, files or None))
        return self._pb.RepositoryModelLoadResponse()

    def _unload(self, request: Any) -> Message:
        if request.repository_name:
            raise UnsupportedError("'repository_name' specification is not supported")
        dependents = False
        param = request.parameters.get("unload_dependents")
        if param is not None:  # other keys are ignored, as by Triton
            if param.WhichOneof("parameter_choice") != "bool_param":
                raise InvalidArgumentError(
                    "invalid value type for 'unload_dependents' parameter, "
                    "expected bool_param."
                )
            dependents = param.bool_param
        # Answered once the model stops serving; its drain goes on (as Triton).
        self._run_on_loop(self._manager.begin_unload(request.model_name, dependents))
        return self._pb.RepositoryModelUnloadResponse()

    # -- shared memory -----------------------------------------------------------------

    def _system_shm_status(self, request: Any) -> Message:
        response = self._pb.SystemSharedMemoryStatusResponse()
        for row in self._shm.system_status(request.name):
            entry = response.regions[_region_key(row["name"])]
            entry.name = row["name"]
            entry.key = row["key"]
            entry.offset = row["offset"]
            entry.byte_size = row["byte_size"]
        return response

    def _system_shm_register(self, request: Any) -> Message:
        self._shm.system_register(
            request.name, request.key, request.offset, request.byte_size
        )
        return self._pb.SystemSharedMemoryRegisterResponse()

    def _system_shm_unregister(self, request: Any) -> Message:
        self._shm.system_unregister(request.name)
        return self._pb.SystemSharedMemoryUnregisterResponse()

    def _cuda_shm_status(self, request: Any) -> Message:
        response = self._pb.CudaSharedMemoryStatusResponse()
        for row in self._shm.cuda_status(request.name):
            entry = response.regions[_region_key(row["name"])]
            entry.name = row["name"]
            entry.device_id = row["device_id"]
            entry.byte_size = row["byte_size"]
        return response

    def _cuda_shm_register(self, request: Any) -> Message:
        self._shm.cuda_register(
            request.name, request.raw_handle, request.device_id, request.byte_size
        )
        return self._pb.CudaSharedMemoryRegisterResponse()

    def _cuda_shm_unregister(self, request: Any) -> Message:
        self._shm.cuda_unregister(request.name)
        return self._pb.CudaSharedMemoryUnregisterResponse()

    # -- settings ----------------------------------------------------------------------

    def _trace_setting(self, request: Any) -> Message:
        values = {
            key: (list(value.value) if value.value else None)
            for key, value in request.settings.items()
        }
        if values:
            current = self.trace_settings.update(request.model_name, values, grpc=True)
        else:
            current = self.trace_settings.get(request.model_name)
        response = self._pb.TraceSettingResponse()
        for key, value in current.items():
            values_out = value if isinstance(value, list) else [str(value)]
            response.settings[key].value.extend(str(v) for v in values_out)
        return response

    def _log_settings(self, request: Any) -> Message:
        changes: dict[str, tuple[str | None, Any]] = {}
        for key, value in request.settings.items():
            kind = value.WhichOneof("parameter_choice")
            changes[key] = (kind, getattr(value, kind) if kind else None)
        current = grpc_update(self.log_settings, changes)
        response = self._pb.LogSettingsResponse()
        for key, value in current.items():
            entry = response.settings[key]
            if isinstance(value, bool):
                entry.bool_param = value
            elif isinstance(value, int):
                entry.uint32_param = value
            else:
                entry.string_param = str(value)
        return response


def _json_safe(row: Mapping[str, Any]) -> dict[str, Any]:
    """Statistics rows may carry tuples or ints as versions; ParseDict wants JSON."""
    out = dict(row)
    if "version" in out:
        out["version"] = str(out["version"])
    return out


def _region_key(name: str) -> str:
    """A region's key in a status response's map: Triton keys it by the name as a C
    string (cut at a NUL), while the entry's ``name`` keeps every character."""
    return name.split("\0", 1)[0]
