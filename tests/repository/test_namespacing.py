"""--model-namespacing: repositories as namespaces, through the wire, against the real
Triton 2.51 on the same repositories when TRITONX_REFERENCE_CMD is set.

The repositories follow Triton's own namespacing scenarios: each holds an ensemble
and its composing model, where the composing models (or the ensembles) share a name.
An ensemble runs the composing model of its own repository; a name that two
repositories have is refused as ambiguous; names that are unique still serve.
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from serverutil import RunningServer, differential, run_either
from tritonclient.utils import InferenceServerException

A = np.arange(16, dtype=np.int32)
B = np.full(16, 3, dtype=np.int32)
ADDSUB = {"OUTPUT0": (A + B).tolist(), "OUTPUT1": (A - B).tolist()}
SUBADD = {"OUTPUT0": (A - B).tolist(), "OUTPUT1": (A + B).tolist()}

MODEL_PY = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            a = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            b = pb_utils.get_input_tensor_by_name(request, "INPUT1").as_numpy()
            first, second = ({first}), ({second})
            responses.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("OUTPUT0", first.astype(np.int32)),
                pb_utils.Tensor("OUTPUT1", second.astype(np.int32)),
            ]))
        return responses
"""

IO = """
input [
  {{ name: "INPUT0" data_type: TYPE_INT32 dims: [ 16 ] }},
  {{ name: "INPUT1" data_type: TYPE_INT32 dims: [ 16 ] }}
]
output [
  {{ name: "OUTPUT0" data_type: TYPE_INT32 dims: [ 16 ] }},
  {{ name: "OUTPUT1" data_type: TYPE_INT32 dims: [ 16 ] }}
]
"""


def composing(repo: Path, name: str, subtract_first: bool) -> None:
    model_dir = repo / name
    (model_dir / "1").mkdir(parents=True)
    exprs = {"first": "a - b", "second": "a + b"}
    if not subtract_first:
        exprs = {"first": "a + b", "second": "a - b"}
    (model_dir / "1" / "model.py").write_text(MODEL_PY.format(**exprs))
    (model_dir / "config.pbtxt").write_text(
        f'name: "{name}"\nbackend: "python"\nmax_batch_size: 0\n'
        + IO.format()
        + "instance_group [{ kind: KIND_CPU count: 1 }]\n"
    )


def ensemble(repo: Path, name: str, step_model: str) -> None:
    model_dir = repo / name
    (model_dir / "1").mkdir(parents=True)
    maps = "".join(
        f'      {kind} {{ key: "{t}" value: "{t}" }}\n'
        for kind, t in (
            ("input_map", "INPUT0"),
            ("input_map", "INPUT1"),
            ("output_map", "OUTPUT0"),
            ("output_map", "OUTPUT1"),
        )
    )
    (model_dir / "config.pbtxt").write_text(
        f'name: "{name}"\nplatform: "ensemble"\nmax_batch_size: 0\n'
        + IO.format()
        + "ensemble_scheduling { step [ {\n"
        + f'      model_name: "{step_model}"\n      model_version: -1\n'
        + maps
        + "} ] }\n"
    )


def duplication_repos(root: Path) -> list[Path]:
    """Each repository: an ensemble on "composing_model", which both have."""
    addsub, subadd = root / "addsub_repo", root / "subadd_repo"
    composing(addsub, "composing_model", subtract_first=False)
    ensemble(addsub, "simple_addsub", "composing_model")
    composing(subadd, "composing_model", subtract_first=True)
    ensemble(subadd, "simple_subadd", "composing_model")
    return [addsub, subadd]


def ensemble_duplication_repos(root: Path) -> list[Path]:
    """Each repository: an ensemble "simple_ensemble" on a composing model of its
    own name."""
    addsub, subadd = root / "addsub_repo", root / "subadd_repo"
    composing(addsub, "composing_addsub", subtract_first=False)
    ensemble(addsub, "simple_ensemble", "composing_addsub")
    composing(subadd, "composing_subadd", subtract_first=True)
    ensemble(subadd, "simple_ensemble", "composing_subadd")
    return [addsub, subadd]


def http_get(server: RunningServer, path: str) -> tuple[int, Any]:
    url = f"http://{server.http_url}{path}"
    try:
        with urllib.request.urlopen(url, timeout=30) as reply:
            body = reply.read()
            return reply.status, json.loads(body) if body else None
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def infer_with(client_module: Any, url: str, model: str) -> Any:
    """The outputs, or (status, message) of the error, through ``client_module``
    (tritonclient.http or tritonclient.grpc)."""
    client = client_module.InferenceServerClient(url)
    inputs = []
    for name, data in (("INPUT0", A), ("INPUT1", B)):
        tensor = client_module.InferInput(name, [16], "INT32")
        tensor.set_data_from_numpy(data)
        inputs.append(tensor)
    try:
        result = client.infer(model, inputs)
    except InferenceServerException as error:
        return (error.status(), error.message())
    finally:
        client.close()
    return {n: result.as_numpy(n).tolist() for n in ("OUTPUT0", "OUTPUT1")}


def infer_http(server: RunningServer, model: str) -> Any:
    return infer_with(httpclient, server.http_url, model)


def infer_grpc(server: RunningServer, model: str) -> Any:
    return infer_with(grpcclient, server.grpc_url, model)


def index(server: RunningServer) -> list[dict[str, Any]]:
    """The repository index once no model is LOADING or UNLOADING."""
    client = httpclient.InferenceServerClient(server.http_url)
    deadline = time.monotonic() + 30
    while True:
        rows: list[dict[str, Any]] = client.get_model_repository_index()
        settled = all(r.get("state") not in ("LOADING", "UNLOADING") for r in rows)
        if settled or time.monotonic() > deadline:
            return rows


def namespace_labels(server: RunningServer) -> set[tuple[str, str]]:
    """(model, namespace) of the nv_inference_count samples."""
    with urllib.request.urlopen(f"{server.metrics_url}", timeout=30) as reply:
        text = reply.read().decode()
    found = set()
    for line in text.splitlines():
        if line.startswith("nv_inference_count{"):
            labels = dict(
                part.split("=", 1)
                for part in line[line.index("{") + 1 : line.index("}")].split(",")
            )
            found.add(
                (labels["model"].strip('"'), labels.get("namespace", "").strip('"'))
            )
    return found


def observe(server: RunningServer, models: list[str]) -> dict[str, Any]:
    seen: dict[str, Any] = {"index": index(server)}
    for model in models:
        seen[f"http {model}"] = infer_http(server, model)
        seen[f"grpc {model}"] = infer_grpc(server, model)
        for what in ("", "/ready", "/config", "/stats"):
            status, body = http_get(server, f"/v2/models/{model}{what}")
            if what == "/config" and status == 200:
                body = {k: body[k] for k in ("name", "platform", "backend")}
            if what == "/stats" and status == 200:
                body = [s["name"] for s in body["model_stats"]]
            seen[f"GET {model}{what}"] = (status, body)
    return seen


def test_duplicated_composing_model(tmp_path: Path) -> None:
    repos = duplication_repos(tmp_path)
    names = ["simple_addsub", "simple_subadd", "composing_model", "nope"]

    def scenario(kind: str) -> dict[str, Any]:
        with run_either(kind, repos, "--model-namespacing=true") as server:
            seen = observe(server, names)
            seen["labels"] = namespace_labels(server)
        return seen

    seen = differential(scenario)
    assert seen["http simple_addsub"] == ADDSUB
    assert seen["grpc simple_addsub"] == ADDSUB
    assert seen["http simple_subadd"] == SUBADD
    assert seen["grpc simple_subadd"] == SUBADD
    ambiguous = (
        "There are 2 identifiers of model 'composing_model' in global map, model "
        "namespace must be provided to resolve ambiguity."
    )
    assert seen["http composing_model"] == ("400", ambiguous)
    assert seen["grpc composing_model"] == ("StatusCode.INVALID_ARGUMENT", ambiguous)
    assert seen["GET composing_model"] == (400, {"error": ambiguous})
    assert seen["http nope"] == (
        "400",
        "Request for unknown model: 'nope' is not found",
    )
    # Both composing models are loaded and listed; nothing is a duplicate.
    assert [(r["name"], r["state"]) for r in seen["index"]] == [
        ("composing_model", "READY"),
        ("simple_addsub", "READY"),
        ("composing_model", "READY"),
        ("simple_subadd", "READY"),
    ]
    # Metrics name each model's namespace: the path of its repository.
    assert {
        ("composing_model", str(repos[0])),
        ("composing_model", str(repos[1])),
        ("simple_addsub", str(repos[0])),
        ("simple_subadd", str(repos[1])),
    } == seen["labels"]


def test_duplicated_ensemble(tmp_path: Path) -> None:
    repos = ensemble_duplication_repos(tmp_path)
    names = ["composing_addsub", "composing_subadd", "simple_ensemble"]

    def scenario(kind: str) -> dict[str, Any]:
        with run_either(kind, repos, "--model-namespacing=true") as server:
            return observe(server, names)

    seen = differential(scenario)
    assert seen["http composing_addsub"] == ADDSUB
    assert seen["grpc composing_subadd"] == SUBADD
    assert "ambiguity" in seen["http simple_ensemble"][1]
    assert "ambiguity" in seen["grpc simple_ensemble"][1]


def test_explicit_loads_follow_the_namespaces(tmp_path: Path) -> None:
    """Explicit control: loading an ensemble loads its own repository's composing
    model; with that one gone from the repository the other's is used, and loading
    the ensemble again once it is back goes back to it. Unloading a name unloads
    the models of that name in every namespace."""

    def scenario(kind: str) -> dict[str, Any]:
        root = tmp_path / kind
        repos = duplication_repos(root)
        own, aside = repos[0] / "composing_model", root / "composing_model"
        seen: dict[str, Any] = {}
        args = ("--model-namespacing=true", "--model-control-mode=explicit")
        with run_either(kind, repos, *args) as server:
            client = httpclient.InferenceServerClient(server.http_url)
            shutil.move(own, aside)
            for model in ("simple_addsub", "simple_subadd"):
                client.load_model(model)
            for model in ("simple_addsub", "simple_subadd", "composing_model"):
                seen[f"moved {model}"] = infer_http(server, model)
            shutil.move(aside, own)
            client.load_model("simple_addsub")
            for model in ("simple_addsub", "simple_subadd", "composing_model"):
                seen[f"back {model}"] = infer_http(server, model)
            seen["index"] = [(r["name"], r.get("state")) for r in index(server)]
            client.unload_model("composing_model")
            seen["unloaded"] = [(r["name"], r.get("state")) for r in index(server)]
            seen["after unload"] = infer_http(server, "composing_model")
        return seen

    seen = differential(scenario)
    assert seen["moved simple_addsub"] == SUBADD
    assert seen["moved simple_subadd"] == SUBADD
    assert seen["moved composing_model"] == SUBADD
    assert seen["back simple_addsub"] == ADDSUB
    assert seen["back simple_subadd"] == SUBADD
    assert "ambiguity" in seen["back composing_model"][1]


def wait_until(check: Callable[[], bool], what: str) -> None:
    """Polls ``check`` until it holds (a poll round of the server has to run)."""
    deadline = time.monotonic() + 60
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_poll_mode_relinks_ensembles(tmp_path: Path) -> None:
    """Poll mode: when one repository's composing model goes away, both ensembles
    use the other's; when it comes back, its own ensemble uses it again."""

    def scenario(kind: str) -> dict[str, Any]:
        root = tmp_path / kind
        repos = duplication_repos(root)
        own, aside = repos[0] / "composing_model", root / "composing_model"
        seen: dict[str, Any] = {}
        args = (
            "--model-namespacing=true",
            "--model-control-mode=poll",
            "--repository-poll-secs=1",
        )
        with run_either(kind, repos, *args) as server:
            # Triton 2.51 loads every model again in its first poll round after
            # start-up; a directory moved during that round is read half-way.
            time.sleep(3)
            shutil.move(own, aside)
            wait_until(
                lambda: infer_http(server, "simple_addsub") == SUBADD,
                "simple_addsub to use the other repository's model",
            )
            for model in ("simple_addsub", "simple_subadd", "composing_model"):
                seen[f"moved {model}"] = infer_http(server, model)
            shutil.move(aside, own)
            wait_until(
                lambda: infer_http(server, "simple_addsub") == ADDSUB,
                "simple_addsub to use its own repository's model again",
            )
            for model in ("simple_addsub", "simple_subadd", "composing_model"):
                seen[f"back {model}"] = infer_http(server, model)
            seen["index"] = [(r["name"], r.get("state")) for r in index(server)]
        return seen

    seen = differential(scenario)
    assert seen["moved simple_subadd"] == SUBADD
    assert seen["moved composing_model"] == SUBADD
    assert seen["back simple_subadd"] == SUBADD
    assert "ambiguity" in seen["back composing_model"][1]
    assert seen["index"] == [
        ("composing_model", "READY"),
        ("simple_addsub", "READY"),
        ("composing_model", "READY"),
        ("simple_subadd", "READY"),
    ]
