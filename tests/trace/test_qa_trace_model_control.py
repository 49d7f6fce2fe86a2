"""From Triton's L0_trace QA: a model's trace settings follow its lifecycle in
explicit model control (unknown model, loaded, unloaded, loaded again), and a
Python model's ``request.trace().get_context()`` is None in Triton trace mode
and when tracing is off. Differential against Triton 2.51 when
TRITONX_REFERENCE_CMD is set.

Not ported: the custom-backend activities (a C++ identity backend), the
OpenTelemetry collector runs (tests/trace/test_trace_otel.py and
test_trace_reference.py) and the stress clients."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.http as httpclient
from serverutil import differential, run_either
from testmodels import write_model
from traceutil import CONTEXT_CONFIG, CONTEXT_MODEL, build_repo
from tritonclient.utils import InferenceServerException


def call(url: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://{url}{path}", data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_model_settings_follow_load_and_unload(tmp_path: Path) -> None:
    repo = build_repo(tmp_path / "repo")
    out = tmp_path / "trace.json"

    def scenario(kind: str) -> dict[str, Any]:
        args = (
            "--model-control-mode=explicit",
            "--load-model=add_one",
            f"--trace-config=triton,file={out}",
        )
        with run_either(kind, repo, *args) as server:
            url = server.http_url
            steps: dict[str, Any] = {}
            steps["unknown_get"] = call(url, "GET", "/v2/models/nosuch/trace/setting")
            steps["unknown_post"] = call(
                url,
                "POST",
                "/v2/models/nosuch/trace/setting",
                {"log_frequency": "1"},
            )
            steps["loaded_get"] = call(url, "GET", "/v2/models/add_one/trace/setting")
            steps["loaded_post"] = call(
                url,
                "POST",
                "/v2/models/add_one/trace/setting",
                {"log_frequency": "1"},
            )
            steps["unload"] = call(url, "POST", "/v2/repository/models/add_one/unload")
            steps["unloaded_get"] = call(url, "GET", "/v2/models/add_one/trace/setting")
            steps["unloaded_post"] = call(
                url,
                "POST",
                "/v2/models/add_one/trace/setting",
                {"log_frequency": "1"},
            )
            steps["never_loaded_get"] = call(
                url, "GET", "/v2/models/double/trace/setting"
            )
            steps["load"] = call(url, "POST", "/v2/repository/models/add_one/load")
            steps["reloaded_get"] = call(url, "GET", "/v2/models/add_one/trace/setting")
            steps["reloaded_post"] = call(
                url,
                "POST",
                "/v2/models/add_one/trace/setting",
                {"log_frequency": "2"},
            )
            return steps

    seen = differential(scenario)
    assert seen["unknown_get"][0] == 400
    assert seen["unknown_post"] == (
        400,
        {"error": "Request for unknown model : nosuch"},
    )
    assert seen["loaded_post"][0] == 200
    assert seen["loaded_post"][1]["log_frequency"] == "1"
    assert seen["unloaded_get"][0] == 400
    assert seen["unloaded_post"][0] == 400
    assert seen["never_loaded_get"][0] == 400
    assert seen["reloaded_get"][0] == 200
    assert seen["reloaded_post"][1]["log_frequency"] == "2"


def test_python_model_trace_context_is_none(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    write_model(repo, "trace_context", CONTEXT_CONFIG, CONTEXT_MODEL)
    out = tmp_path / "trace.json"

    def ask(url: str) -> Any:
        client = httpclient.InferenceServerClient(url)
        tensor = httpclient.InferInput("INPUT0", [1], "FP32")
        tensor.set_data_from_numpy(np.ones(1, np.float32))
        try:
            return client.infer("trace_context", [tensor]).as_numpy("OUTPUT0").tolist()
        except InferenceServerException as error:
            return error.message()
        finally:
            client.close()

    def scenario(kind: str) -> dict[str, Any]:
        seen = {}
        # Triton trace mode, every request traced: no context for the model.
        traced = (
            f"--trace-config=triton,file={out}",
            "--trace-config=level=TIMESTAMPS",
            "--trace-config=rate=1",
        )
        with run_either(kind, repo, *traced) as server:
            seen["triton_mode"] = ask(server.http_url)
        # OpenTelemetry mode with tracing off.
        off = (
            "--trace-config=mode=opentelemetry",
            "--trace-config=level=OFF",
            "--trace-config=rate=1",
        )
        with run_either(kind, repo, *off) as server:
            seen["opentelemetry_off"] = ask(server.http_url)
        return seen

    seen = differential(scenario)
    assert seen == {"triton_mode": [b"None"], "opentelemetry_off": [b"None"]}
