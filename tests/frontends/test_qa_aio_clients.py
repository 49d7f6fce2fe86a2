"""L0_http's python_http_aio_test.py and L0_grpc's python_grpc_aio_test.py as a
differential test: every call of tritonclient's asyncio clients (HTTP and gRPC), on
a server whose models are polled (no explicit load), goes to tritonx and, when
TRITONX_REFERENCE_CMD is given, to Triton 2.51, and what each call returns (reduced
to what does not name the server's version or ports) or the error it raises must be
equal.

The sync clients' calls are covered route by route elsewhere
(test_http_control_differential.py, test_grpc_differential.py); here the point is
that the aio clients reach every route and read every answer, errors included.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import tritonclient.grpc.aio as grpcaio
import tritonclient.http.aio as httpaio
from serverutil import RunningServer, differential, run_either
from testmodels import ECHO_FP32_CONFIG, ECHO_MODEL, write_model
from tritonclient.utils import InferenceServerException

MODELS = ("echo", "other")


def _outcome(value: Any) -> Any:
    """What a call's result is compared by: JSON-able and free of the server's
    version (server metadata is reduced to its name and extensions elsewhere)."""
    if hasattr(value, "ListFields"):  # a protobuf message
        from google.protobuf.json_format import MessageToDict

        value = MessageToDict(value, preserving_proto_field_name=True)
    return value


async def _call(make: Callable[[], Awaitable[Any]]) -> Any:
    try:
        return ("ok", _outcome(await make()))
    except InferenceServerException as error:
        return ("error", error.status(), error.message())


def _calls(client: Any) -> dict[str, Callable[[], Awaitable[Any]]]:
    """Each QA call, by name (the aio clients share the method names)."""
    return {
        "is_server_live": client.is_server_live,
        "is_server_ready": client.is_server_ready,
        "is_model_ready": lambda: client.is_model_ready("echo"),
        "is_unknown_model_ready": lambda: client.is_model_ready("nope"),
        "server_metadata_name": lambda: _name(client.get_server_metadata()),
        "model_metadata": lambda: client.get_model_metadata("echo"),
        "model_config_name": lambda: _config_name(client.get_model_config("echo")),
        "repository_index": client.get_model_repository_index,
        "load_model": lambda: client.load_model("echo"),
        "unload_model": lambda: client.unload_model("echo"),
        "inference_statistics_models": lambda: _stat_models(
            client.get_inference_statistics()
        ),
        "update_trace_settings": client.update_trace_settings,
        "get_trace_settings": client.get_trace_settings,
        "system_shared_memory_status": client.get_system_shared_memory_status,
        "register_system_shared_memory": lambda: client.register_system_shared_memory(
            "", "", 0
        ),
        "unregister_system_shared_memory": client.unregister_system_shared_memory,
        "unregister_cuda_shared_memory": client.unregister_cuda_shared_memory,
        "cuda_shared_memory_status": client.get_cuda_shared_memory_status,
        "register_cuda_shared_memory": lambda: client.register_cuda_shared_memory(
            "", b"", 0, 0
        ),
    }


async def _name(metadata: Awaitable[Any]) -> str:
    got = _outcome(await metadata)
    return str(got["name"])


async def _config_name(config: Awaitable[Any]) -> str:
    got = _outcome(await config)
    return str(got.get("config", got)["name"])


async def _stat_models(stats: Awaitable[Any]) -> list[str]:
    got = _outcome(await stats)
    return sorted(m["name"] for m in got.get("model_stats", []))


async def _observe(server: RunningServer) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for protocol, module, url in (
        ("http", httpaio, server.http_url),
        ("grpc", grpcaio, server.grpc_url),
    ):
        client = module.InferenceServerClient(url)
        try:
            for name, make in _calls(client).items():
                seen[f"{protocol} {name}"] = await _call(make)
        finally:
            await client.close()
    return seen


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("aio_clients")
    for name in MODELS:
        write_model(root, name, ECHO_FP32_CONFIG.replace("echo", name), ECHO_MODEL)
    return root


def test_every_aio_call(repo: Path) -> None:
    def scenario(kind: str) -> dict[str, Any]:
        with run_either(kind, repo) as server:
            seen = asyncio.run(_observe(server))
        # Without a GPU, registering a CUDA region over gRPC differs on purpose in
        # its words (tests/sharedmemory/test_reference_shm.py): the reference, a GPU
        # build, says "invalid args", tritonx "GPUs not supported" as a CPU-only
        # Triton does. Only the outcome and status are compared.
        seen["grpc register_cuda_shared_memory"] = seen[
            "grpc register_cuda_shared_memory"
        ][:2]
        return seen

    seen = differential(scenario)
    for protocol in ("http", "grpc"):
        assert seen[f"{protocol} is_server_live"] == ("ok", True)
        assert seen[f"{protocol} is_model_ready"] == ("ok", True)
        assert seen[f"{protocol} server_metadata_name"] == ("ok", "triton")
        assert seen[f"{protocol} model_config_name"] == ("ok", "echo")
        assert seen[f"{protocol} inference_statistics_models"] == (
            "ok",
            ["echo", "other"],
        )
        assert seen[f"{protocol} register_system_shared_memory"][0] == "error"
        assert seen[f"{protocol} register_cuda_shared_memory"][0] == "error"
        load = seen[f"{protocol} load_model"]
        assert load[0] == "error", protocol
        assert (
            "explicit model load / unload is not allowed if polling is enabled"
            in (load[2])
        ), protocol
