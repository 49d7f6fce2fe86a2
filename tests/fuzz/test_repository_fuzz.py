"""Fuzzing the repository load API (explicit model control) over HTTP.

``POST /v2/repository/models/<name>/load`` with a config override mutated from a
valid one, optional ``file:`` parameters (model code, odd paths) and odd names.
Besides the usual oracle (fuzzutil), after every load the server must still
answer ``add_sub`` correctly: a bad load never disturbs other models.

Triton's answers accepted here besides 4xx: 500 "failed to load '<name>', failed
to poll from model repository" (its INTERNAL for a config or directory it cannot
read), and load failures that quote the model code's own exception (its
``model.py(<line>)`` traceback, or a model.py without ``TritonPythonModel``), as
Triton's Python backend does, even though such a message names Python exception
classes.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fuzzutil import TALLY, Target, exchange, fuzz, http_verdict, leak, request_bytes
from http_strategies import dumps, model_names, mutate_doc
from hypothesis import given
from hypothesis import strategies as st
from overridefiles import FILE_KEYS, MODEL_FILES
from serverutil import RunningServer, run_server

EXAMPLE_REPO = Path(__file__).resolve().parents[2] / "model_repository"
ADD_SUB = json.dumps(
    {
        "inputs": [
            {"name": n, "datatype": "FP32", "shape": [4], "data": [1, 2, 3, 4]}
            for n in ("INPUT0", "INPUT1")
        ]
    }
).encode()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    repo = tmp_path_factory.mktemp("load_repo")
    (repo / "add_sub").symlink_to(EXAMPLE_REPO / "add_sub", target_is_directory=True)
    (repo / "victim" / "1").mkdir(parents=True)
    config = (EXAMPLE_REPO / "identity" / "config.pbtxt").read_text()
    (repo / "victim" / "config.pbtxt").write_text(
        config.replace('name: "identity"', 'name: "victim"')
    )
    (repo / "victim" / "1" / "model.py").write_text(MODEL_FILES["identity"])
    with run_server(
        repo,
        "--model-control-mode=explicit",
        "--load-model=add_sub",
        "--load-model=victim",
    ) as running:
        yield running


@pytest.fixture(scope="module")
def victim_config(target: Target) -> dict[str, object]:
    ex = exchange(
        target.http_port, request_bytes("GET", "/v2/models/victim/config"), expect=1
    )
    assert ex.answers and ex.answers[0].status == 200, ex
    return dict(json.loads(ex.answers[0].body))


def load_verdict(status: int, body: bytes) -> str | None:
    try:
        message = json.loads(body).get("error", "") if status >= 400 else ""
    except (ValueError, AttributeError):
        # Not a JSON error: a request line or head the HTTP layer itself refused
        # (e.g. a raw newline in the model name); judged like any other answer.
        return http_verdict(status, body)
    if message.startswith("load failed for model") and (
        "model.py(" in message or "'TritonPythonModel'" in message
    ):
        return None  # the model code's own fault, as Triton's Python backend says
    if status == 500 and message.endswith("failed to poll from model repository"):
        return None if not leak(message) else f"leak in {message!r}"
    return http_verdict(status, body)


@fuzz(0.1)
@given(data=st.data())
def test_load_with_mutated_overrides(
    target: Target, victim_config: dict[str, object], data: st.DataObject
) -> None:
    name = data.draw(
        st.sampled_from(["victim", "newcomer"]) | model_names, label="name"
    )
    params: dict[str, object] = {}
    if data.draw(st.integers(0, 4)) > 0:
        config = json.loads(json.dumps(victim_config))
        for _ in range(data.draw(st.integers(0, 3), label="config mutations")):
            mutate_doc(config, data)
        params["config"] = dumps(config).decode("utf-8", "surrogatepass")
    for key in data.draw(st.lists(st.sampled_from(FILE_KEYS), max_size=2, unique=True)):
        content = MODEL_FILES[data.draw(st.sampled_from(sorted(MODEL_FILES)))]
        params[key] = base64.b64encode(content.encode()).decode()
    if data.draw(st.integers(0, 5)) == 0:
        params[data.draw(st.text(max_size=6))] = data.draw(st.integers() | st.text())
    path = f"/v2/repository/models/{name.replace('/', '%2F')}/load"
    wire = request_bytes("POST", path.encode(), dumps({"parameters": params}))
    ex = exchange(target.http_port, wire, expect=1, timeout=30)
    problem = None
    categories = [f"{ex.answers[0].status // 100}xx"] if ex.answers else ["no-answer"]
    if not target.alive():
        categories.append("crash")
        problem = f"server died on {wire[:500]!r}\n{target.log_tail()}"
    elif not ex.answers:
        categories.append("hang" if ex.timed_out else "bad-5xx")
        problem = f"no answer to {wire[:500]!r}"
    else:
        verdict = load_verdict(ex.answers[0].status, ex.answers[0].body)
        if verdict is not None:
            categories.append("leak" if "leak" in verdict else "bad-5xx")
            problem = f"{verdict}\nrequest: {wire[:800]!r}"
    TALLY.record("http", categories, problem)
    check = exchange(
        target.http_port,
        request_bytes("POST", "/v2/models/add_sub/infer", ADD_SUB),
        expect=1,
    )
    statuses = [a.status for a in check.answers]
    assert statuses == [200], f"add_sub after loading {wire[:500]!r}: {check}"
