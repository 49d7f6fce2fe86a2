"""The control plane tritonx-perf needs from a KServe V2 / Triton server: model
metadata and config, statistics, and system / CUDA shared memory registration, over the
protocol the load uses (HTTP with http.client, gRPC with grpcio and tritonx's own
protos), so it works against tritonx or Triton alike."""

from __future__ import annotations

import base64
import http.client
import importlib
import json
import ssl
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from tritonx.tools.perf.errors import PerfError

STAT_KEYS = (
    "success",
    "fail",
    "queue",
    "compute_input",
    "compute_infer",
    "compute_output",
)


@dataclass
class StatsSnapshot:
    """One model version's cumulative counters (Triton's statistics extension)."""

    inference_count: int = 0
    execution_count: int = 0
    counts: dict[str, int] | None = None
    ns: dict[str, int] | None = None
    version: str = ""  # the version these counters are of
    # An ensemble's steps or a BLS model's --bls-composing-models, by name.
    composing: dict[str, StatsSnapshot] | None = None

    def minus(self, earlier: StatsSnapshot) -> StatsSnapshot:
        counts = self.counts or {}
        ns = self.ns or {}
        before_c = earlier.counts or {}
        before_ns = earlier.ns or {}
        return StatsSnapshot(
            inference_count=self.inference_count - earlier.inference_count,
            execution_count=self.execution_count - earlier.execution_count,
            counts={k: counts.get(k, 0) - before_c.get(k, 0) for k in STAT_KEYS},
            ns={k: ns.get(k, 0) - before_ns.get(k, 0) for k in STAT_KEYS},
            version=self.version,
            composing=_pairwise(self.composing, earlier.composing, StatsSnapshot.minus),
        )

    def plus(self, other: StatsSnapshot) -> StatsSnapshot:
        return StatsSnapshot(
            inference_count=self.inference_count + other.inference_count,
            execution_count=self.execution_count + other.execution_count,
            counts={
                k: (self.counts or {}).get(k, 0) + (other.counts or {}).get(k, 0)
                for k in STAT_KEYS
            },
            ns={
                k: (self.ns or {}).get(k, 0) + (other.ns or {}).get(k, 0)
                for k in STAT_KEYS
            },
            version=self.version,
            composing=_pairwise(self.composing, other.composing, StatsSnapshot.plus),
        )


def _pairwise(
    mine: dict[str, StatsSnapshot] | None,
    other: dict[str, StatsSnapshot] | None,
    combine: Callable[[StatsSnapshot, StatsSnapshot], StatsSnapshot],
) -> dict[str, StatsSnapshot] | None:
    if mine is None or other is None:
        return mine
    return {k: combine(v, other[k]) if k in other else v for k, v in mine.items()}


@dataclass(frozen=True)
class GrpcSsl:
    """PEM contents for a TLS gRPC channel (None: grpc's default roots, or no
    client certificate)."""

    root_certs: bytes | None = None
    private_key: bytes | None = None
    cert_chain: bytes | None = None


class ServerApi(Protocol):
    def metadata(self, model: str, version: str) -> dict[str, Any]: ...
    def config(self, model: str, version: str) -> dict[str, Any]: ...
    def statistics(self, model: str, version: str) -> StatsSnapshot: ...
    def register_system_shm(self, name: str, key: str, byte_size: int) -> None: ...
    def unregister_system_shm(self, name: str) -> None: ...
    def register_cuda_shm(
        self, name: str, raw_handle: bytes, device_id: int, byte_size: int
    ) -> None: ...
    def unregister_cuda_shm(self, name: str) -> None: ...
    def update_trace_settings(
        self, model: str, settings: dict[str, list[str]]
    ) -> None: ...
    def close(self) -> None: ...


def _snapshot_from_json(stats: dict[str, Any]) -> StatsSnapshot:
    infer = stats.get("inference_stats", {})
    return StatsSnapshot(
        inference_count=int(stats.get("inference_count", 0)),
        execution_count=int(stats.get("execution_count", 0)),
        counts={k: int(infer.get(k, {}).get("count", 0)) for k in STAT_KEYS},
        ns={k: int(infer.get(k, {}).get("ns", 0)) for k in STAT_KEYS},
        version=str(stats.get("version", "")),
    )


def _pick_version(entries: list[dict[str, Any]], version: str) -> dict[str, Any]:
    if version:
        for entry in entries:
            if str(entry.get("version")) == version:
                return entry
    # The highest version served when none was asked for.
    return max(entries, key=lambda e: int(e.get("version") or 0))


class HttpApi:
    def __init__(
        self,
        url: str,
        headers: dict[str, str],
        timeout: float,
        https: ssl.SSLContext | None = None,
    ) -> None:
        parsed = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
        if parsed.scheme != "http":
            raise PerfError(f"unsupported URL scheme '{parsed.scheme}' (http, https)")
        self._host = parsed.hostname or "localhost"
        self._port = parsed.port or (443 if https else 80)
        self._headers = headers
        self._timeout = timeout
        self._https = https
        self._conn: http.client.HTTPConnection | None = None

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        for attempt in range(2):
            if self._conn is None:
                self._conn = (
                    http.client.HTTPSConnection(
                        self._host,
                        self._port,
                        timeout=self._timeout,
                        context=self._https,
                    )
                    if self._https is not None
                    else http.client.HTTPConnection(
                        self._host, self._port, timeout=self._timeout
                    )
                )
            try:
                self._conn.request(method, path, data, self._headers)
                response = self._conn.getresponse()
                payload = response.read()
            except (ConnectionError, http.client.HTTPException, OSError) as exc:
                self._conn.close()
                self._conn = None
                if attempt == 0 and isinstance(
                    exc, (http.client.RemoteDisconnected, BrokenPipeError)
                ):
                    continue  # a keep-alive connection the server had closed
                raise PerfError(
                    f"failed to reach the server at {self._host}:{self._port}: {exc}"
                ) from None
            try:
                parsed = json.loads(payload) if payload else {}
            except ValueError:
                parsed = {"error": payload.decode(errors="replace")[:200]}
            if response.status != 200:
                message = parsed.get("error") if isinstance(parsed, dict) else None
                raise PerfError(str(message or f"HTTP {response.status}"))
            return parsed
        raise AssertionError("unreachable")

    def _model_path(self, model: str, version: str) -> str:
        path = f"/v2/models/{urllib.parse.quote(model)}"
        return path + (f"/versions/{version}" if version else "")

    def metadata(self, model: str, version: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", self._model_path(model, version))
        return result

    def config(self, model: str, version: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request(
            "GET", self._model_path(model, version) + "/config"
        )
        return result

    def statistics(self, model: str, version: str) -> StatsSnapshot:
        result = self._request("GET", self._model_path(model, version) + "/stats")
        entries = result.get("model_stats") or []
        if not entries:
            return StatsSnapshot(counts={}, ns={})
        return _snapshot_from_json(_pick_version(entries, version))

    def register_system_shm(self, name: str, key: str, byte_size: int) -> None:
        self._request(
            "POST",
            f"/v2/systemsharedmemory/region/{urllib.parse.quote(name)}/register",
            {"key": key, "offset": 0, "byte_size": byte_size},
        )

    def unregister_system_shm(self, name: str) -> None:
        self._request(
            "POST",
            f"/v2/systemsharedmemory/region/{urllib.parse.quote(name)}/unregister",
        )

    def register_cuda_shm(
        self, name: str, raw_handle: bytes, device_id: int, byte_size: int
    ) -> None:
        # raw_handle: the cudaIpcMemHandle in base64, as the HTTP API carries it.
        self._request(
            "POST",
            f"/v2/cudasharedmemory/region/{urllib.parse.quote(name)}/register",
            {
                "raw_handle": {"b64": raw_handle.decode()},
                "device_id": device_id,
                "byte_size": byte_size,
            },
        )

    def unregister_cuda_shm(self, name: str) -> None:
        self._request(
            "POST",
            f"/v2/cudasharedmemory/region/{urllib.parse.quote(name)}/unregister",
        )

    def update_trace_settings(self, model: str, settings: dict[str, list[str]]) -> None:
        # Triton's HTTP trace API takes a list only for trace_level.
        body = {k: v if k == "trace_level" else v[0] for k, v in settings.items()}
        self._request(
            "POST", f"/v2/models/{urllib.parse.quote(model)}/trace/setting", body
        )

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class GrpcApi:
    def __init__(self, url: str, timeout: float, tls: GrpcSsl | None = None) -> None:
        import grpc
        from google.protobuf import json_format

        from tritonx._proto import grpc_service_pb2 as pb

        # Imported by name: the generated stubs module has no type information.
        pb_grpc: Any = importlib.import_module("tritonx._proto.grpc_service_pb2_grpc")

        self._grpc = grpc
        self._json_format = json_format
        self._pb: Any = pb  # generated code: no stubs
        self._url = url
        self._timeout = timeout
        self._channel = (
            grpc.secure_channel(
                url,
                grpc.ssl_channel_credentials(
                    tls.root_certs, tls.private_key, tls.cert_chain
                ),
            )
            if tls is not None
            else grpc.insecure_channel(url)
        )
        self._stub = pb_grpc.GRPCInferenceServiceStub(self._channel)

    def _call(self, method: str, request: Any) -> Any:
        try:
            return getattr(self._stub, method)(request, timeout=self._timeout)
        except self._grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            details = exc.details() if hasattr(exc, "details") else str(exc)
            if code in (
                self._grpc.StatusCode.UNAVAILABLE,
                self._grpc.StatusCode.DEADLINE_EXCEEDED,
            ) and (
                "connect" in (details or "").lower() or code.name == "DEADLINE_EXCEEDED"
            ):
                raise PerfError(
                    f"failed to reach the server at {self._url}: {details}"
                ) from None
            raise PerfError(details or str(code)) from None

    def metadata(self, model: str, version: str) -> dict[str, Any]:
        response = self._call(
            "ModelMetadata", self._pb.ModelMetadataRequest(name=model, version=version)
        )
        return {
            "name": response.name,
            "versions": list(response.versions),
            "platform": response.platform,
            "inputs": [
                {"name": t.name, "datatype": t.datatype, "shape": list(t.shape)}
                for t in response.inputs
            ],
            "outputs": [
                {"name": t.name, "datatype": t.datatype, "shape": list(t.shape)}
                for t in response.outputs
            ],
        }

    def config(self, model: str, version: str) -> dict[str, Any]:
        response = self._call(
            "ModelConfig", self._pb.ModelConfigRequest(name=model, version=version)
        )
        result: dict[str, Any] = self._json_format.MessageToDict(
            response.config, preserving_proto_field_name=True
        )
        return result

    def statistics(self, model: str, version: str) -> StatsSnapshot:
        response = self._call(
            "ModelStatistics",
            self._pb.ModelStatisticsRequest(name=model, version=version),
        )
        entries = list(response.model_stats)
        if not entries:
            return StatsSnapshot(counts={}, ns={})
        chosen = entries[0]
        if version:
            chosen = next((e for e in entries if e.version == version), chosen)
        else:
            chosen = max(entries, key=lambda e: int(e.version or 0))
        infer = chosen.inference_stats
        return StatsSnapshot(
            inference_count=chosen.inference_count,
            execution_count=chosen.execution_count,
            counts={k: getattr(infer, k).count for k in STAT_KEYS},
            ns={k: getattr(infer, k).ns for k in STAT_KEYS},
            version=chosen.version,
        )

    def register_system_shm(self, name: str, key: str, byte_size: int) -> None:
        self._call(
            "SystemSharedMemoryRegister",
            self._pb.SystemSharedMemoryRegisterRequest(
                name=name, key=key, offset=0, byte_size=byte_size
            ),
        )

    def unregister_system_shm(self, name: str) -> None:
        self._call(
            "SystemSharedMemoryUnregister",
            self._pb.SystemSharedMemoryUnregisterRequest(name=name),
        )

    def register_cuda_shm(
        self, name: str, raw_handle: bytes, device_id: int, byte_size: int
    ) -> None:
        self._call(
            "CudaSharedMemoryRegister",
            self._pb.CudaSharedMemoryRegisterRequest(
                name=name,
                raw_handle=base64.b64decode(raw_handle),
                device_id=device_id,
                byte_size=byte_size,
            ),
        )

    def unregister_cuda_shm(self, name: str) -> None:
        self._call(
            "CudaSharedMemoryUnregister",
            self._pb.CudaSharedMemoryUnregisterRequest(name=name),
        )

    def update_trace_settings(self, model: str, settings: dict[str, list[str]]) -> None:
        request = self._pb.TraceSettingRequest(model_name=model)
        for key, values in settings.items():
            request.settings[key].value.extend(values)
        self._call("TraceSetting", request)

    def close(self) -> None:
        self._channel.close()


def connect(
    protocol: str,
    url: str,
    headers: dict[str, str],
    timeout: float,
    *,
    grpc_ssl: GrpcSsl | None = None,
    https: ssl.SSLContext | None = None,
) -> ServerApi:
    if protocol == "http":
        return HttpApi(url, headers, timeout, https)
    return GrpcApi(url, timeout, grpc_ssl)
