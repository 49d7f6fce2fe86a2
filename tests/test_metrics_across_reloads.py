"""A model's Prometheus series across reloads and unloads, as differential tests
against Triton 2.51.

Triton shares one series among every live object of a model version: a reload's
new version goes on counting from the old one's totals, a version that is
UNLOADING with a request in flight keeps its series until it is finalized, and
once no object of the version is left the series is removed, so a later load
starts again at zero. Statistics (the extension) start afresh with each new
version in both servers; the series do not.

The held model answers a request tagged N only once the test writes release-N
beside its config (ran-N says it started), so nothing here waits on a clock.
"""

from __future__ import annotations

import os
import re
import threading
import urllib.request
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import tritonclient.grpc as grpcclient
from grpcutil import HELD_MODEL, config_text, held_inputs, wait_for, wait_until
from serverutil import RunningServer, differential, run_either
from testmodels import write_model

MODEL = "held"
FAMILIES = (
    "nv_inference_request_success",
    "nv_inference_count",
    "nv_inference_exec_count",
    "nv_inference_pending_request_count",
)


def series(server: RunningServer) -> dict[str, int] | None:
    """The model's value in each family; None when it has no series."""
    with urllib.request.urlopen(server.metrics_url, timeout=10) as response:
        text = response.read().decode()
    found = {}
    for family in FAMILIES:
        match = re.search(
            rf'^{family}\{{model="{MODEL}",version="1"\}} (\S+)$', text, re.M
        )
        if match:
            found[family.removeprefix("nv_inference_")] = int(float(match[1]))
    return found or None


def counted(server: RunningServer, count: int) -> dict[str, int] | None:
    """The series once they show ``count`` inferences (Triton adds a request
    just after its response is on the way)."""
    wait_until(
        lambda: (series(server) or {}).get("count") == count,
        f"{count} inferences in the metrics",
    )
    return series(server)


def infer(client: grpcclient.InferenceServerClient, repo: Path, tag: int) -> None:
    (repo / MODEL / f"release-{tag}").touch()
    client.infer(MODEL, held_inputs(tag))


def state(client: grpcclient.InferenceServerClient) -> str:
    rows = client.get_model_repository_index(as_json=True)["models"]
    return next(r.get("state", "") for r in rows if r["name"] == MODEL)


def serve(stack: ExitStack, kind: str, tmp_path: Path) -> tuple[RunningServer, Path]:
    repo = tmp_path / kind
    write_model(repo, MODEL, config_text(MODEL, max_batch=0), HELD_MODEL)
    server = stack.enter_context(
        run_either(kind, repo, "--model-control-mode=explicit", f"--load-model={MODEL}")
    )
    stack.callback((repo / MODEL / "release-all").touch)
    return server, repo


def test_reload_keeps_counting_and_a_new_load_starts_at_zero(tmp_path: Path) -> None:
    def scenario(kind: str) -> dict[str, Any]:
        with ExitStack() as stack:
            server, repo = serve(stack, kind, tmp_path)
            client = grpcclient.InferenceServerClient(server.grpc_url)
            stack.callback(client.close)
            for tag in (1, 2, 3):
                infer(client, repo, tag)
            seen: dict[str, Any] = {"served": counted(server, 3)}
            # A newer model.py: the version is built again, not kept.
            source = repo / MODEL / "1" / "model.py"
            stat = source.stat()
            os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
            client.load_model(MODEL)
            infer(client, repo, 4)
            seen["after a reload"] = counted(server, 4)
            stats = client.get_inference_statistics(MODEL, as_json=True)
            seen["statistics after a reload"] = int(
                stats["model_stats"][0].get("inference_count", 0)
            )
            client.unload_model(MODEL)
            wait_until(lambda: state(client) == "UNAVAILABLE", "the unload to end")
            # Triton says UNAVAILABLE a moment before it drops the model object
            # (and its series): wait for that, which tritonx has done already.
            wait_until(lambda: series(server) is None, "the series to go")
            client.load_model(MODEL)
            seen["loaded again"] = series(server)
            infer(client, repo, 5)
            seen["then"] = counted(server, 1)
            return seen

    def values(count: int) -> dict[str, int]:
        return {
            "request_success": count,
            "count": count,
            "exec_count": count,
            "pending_request_count": 0,
        }

    assert differential(scenario) == {
        "served": values(3),
        "after a reload": values(4),
        "statistics after a reload": 1,
        "loaded again": values(0),
        "then": values(1),
    }


def test_series_stay_while_a_version_drains(tmp_path: Path) -> None:
    def scenario(kind: str) -> dict[str, Any]:
        with ExitStack() as stack:
            server, repo = serve(stack, kind, tmp_path)
            client = grpcclient.InferenceServerClient(server.grpc_url)
            stack.callback(client.close)
            infer(client, repo, 1)
            seen: dict[str, Any] = {"served": counted(server, 1)}
            # On a connection of its own, as test_unload_in_flight's requests.
            other = grpcclient.InferenceServerClient(server.grpc_url)
            stack.callback(other.close)
            held = threading.Thread(
                target=other.infer, args=(MODEL, held_inputs(2)), daemon=True
            )
            held.start()
            wait_for(repo / MODEL / "ran-2")
            client.unload_model(MODEL)
            seen["state"] = state(client)
            seen["unloading"] = series(server)
            # Loaded again while the old object still runs request 2: both count
            # into one series.
            client.load_model(MODEL)
            infer(client, repo, 3)
            (repo / MODEL / "release-2").touch()
            held.join(60)
            seen["both versions"] = counted(server, 3)
            return seen

    assert differential(scenario) == {
        "served": {
            "request_success": 1,
            "count": 1,
            "exec_count": 1,
            "pending_request_count": 0,
        },
        "state": "UNLOADING",
        "unloading": {
            "request_success": 1,
            "count": 1,
            "exec_count": 1,
            "pending_request_count": 0,
        },
        "both versions": {
            "request_success": 3,
            "count": 3,
            "exec_count": 3,
            "pending_request_count": 0,
        },
    }
