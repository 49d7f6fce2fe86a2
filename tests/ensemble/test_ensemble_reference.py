"""Ensembles, tritonx against the real Triton on the same repository (runs when
TRITONX_REFERENCE_CMD is set): outputs, metadata, config, load errors, statistics
shapes and what unloading a composing model does."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any

import ensemble_repo as er
import numpy as np
import pytest
import tritonclient.http as httpclient
from serverutil import (
    RunningServer,
    needs_reference,
    run_reference,
    run_server,
)
from tritonclient.utils import InferenceServerException

pytestmark = needs_reference


X = np.arange(8, dtype=np.float32).reshape(2, 4)


def settled_index(client: httpclient.InferenceServerClient) -> list[dict[str, Any]]:
    """The repository index once no model is UNLOADING (Triton unloads in the
    background after answering)."""
    deadline = time.monotonic() + 30
    while True:
        rows = client.get_model_repository_index()
        if all(r.get("state") != "UNLOADING" for r in rows):
            return rows
        if time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


def settled_stats(
    client: httpclient.InferenceServerClient, models: tuple[str, ...]
) -> dict[str, Any]:
    """The models' statistics once two reads 0.2 s apart agree: Triton records a
    request's statistics when it releases the request, which can be after the
    client has its answer."""

    def read() -> dict[str, Any]:
        seen = {}
        for model in models:
            entry = client.get_inference_statistics(model)["model_stats"][0]
            inference = entry["inference_stats"]
            seen[f"stats {model}"] = {
                "inference_count": entry["inference_count"],
                "execution_count": entry["execution_count"],
                "batch_sizes": [b["batch_size"] for b in entry["batch_stats"]],
                **{k: inference[k]["count"] for k in ("success", "fail", "queue")},
            }
        return seen

    deadline = time.monotonic() + 10
    latest = read()
    while time.monotonic() < deadline:
        time.sleep(0.2)
        previous, latest = latest, read()
        if latest == previous:
            break
    return latest


def observe(server: RunningServer) -> dict[str, Any]:
    """Everything compared, from one server in explicit mode."""
    client = httpclient.InferenceServerClient(server.http_url)
    seen: dict[str, Any] = {}
    for name in [*er.bad_ensembles(), "pipeline", "fan", "failing", "stream"]:
        try:
            client.load_model(name)
            seen[f"load {name}"] = "OK"
        except InferenceServerException as error:
            seen[f"load {name}"] = (error.status(), error.message())

    def infer(model: str) -> Any:
        inp = httpclient.InferInput("INPUT0", [2, 4], "FP32")
        inp.set_data_from_numpy(X)
        try:
            result = client.infer(model, [inp])
        except InferenceServerException as error:
            return (error.status(), error.message())
        return {
            o["name"]: result.as_numpy(o["name"]).tolist()
            for o in result.get_response()["outputs"]
        }

    for model in ("pipeline", "fan", "failing", "stream"):
        seen[f"infer {model}"] = infer(model)
    for model in ("pipeline", "stream"):
        seen[f"metadata {model}"] = client.get_model_metadata(model)
        seen[f"config {model}"] = client.get_model_config(model)
    seen.update(settled_stats(client, ("pipeline", "failing", "add_one", "fail")))
    client.unload_model("double")
    seen["after unloading double"] = settled_index(client)
    seen["infer pipeline after"] = infer("pipeline")
    client.load_model("double")
    seen["after loading double"] = settled_index(client)
    return seen


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    repo = tmp_path_factory.mktemp("ensembles") / "repo"
    repo.mkdir()
    er.build_basic_repo(repo)
    er.write_bad_ensembles(repo)
    results = {}
    servers: list[tuple[str, AbstractContextManager[RunningServer]]] = [
        ("tritonx", run_server(repo, "--model-control-mode=explicit")),
        ("triton", run_reference([repo], "--model-control-mode=explicit")),
    ]
    for name, context in servers:
        with context as server:
            results[name] = observe(server)
    yield results


def test_same_answers_as_triton(observed: dict[str, dict[str, Any]]) -> None:
    ours, theirs = observed["tritonx"], observed["triton"]
    assert ours.keys() == theirs.keys()
    for key in theirs:
        if key.startswith("config"):
            continue
        assert ours[key] == theirs[key], key


def test_same_config_as_triton(observed: dict[str, dict[str, Any]]) -> None:
    for model in ("pipeline", "stream"):
        ours = observed["tritonx"][f"config {model}"]
        theirs = observed["triton"][f"config {model}"]
        assert ours == theirs, model
