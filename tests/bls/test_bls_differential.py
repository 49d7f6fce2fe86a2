"""The same BLS scripts on tritonx and on the real Triton (TRITONX_REFERENCE_CMD):
outputs, error messages and exceptions must match.

Left out, with the reason: error codes (Triton 2.51 reports every BLS error as
INTERNAL; tritonx keeps the code the called model answered with, as newer Triton
does), a decoupled error response (2.51 never ends that iteration) and
``ResponseIterator.cancel()`` (added after 2.51).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from blsmodels import probe, req, write_repo
from serverutil import needs_reference, run_reference, run_server

pytestmark = needs_reference


def f32(*values: float) -> list[Any]:
    return ["IN", "float32", list(values)]


def i32(value: int) -> list[Any]:
    return ["IN", "int32", [value]]


OUT = ["OUT"]
SCRIPTS: dict[str, list[dict[str, Any]]] = {
    "outputs": [
        {"call": "exec", "req": req("add", [f32(1, 2)], requested_output_names=OUT)},
        {"call": "exec", "req": req("add", [f32(4)])},
        {
            "call": "async_exec",
            "req": req("add", [f32(5)], requested_output_names=["OUT2"]),
        },
        {
            "gather": [
                req("add", [f32(i)], requested_output_names=OUT) for i in range(3)
            ]
        },
        {
            "call": "exec",
            "req": req("add", [f32(1)], requested_output_names=OUT, model_version=1),
        },
    ],
    "fields": [
        {
            "call": "exec",
            "req": req(
                "add",
                [f32(3)],
                requested_output_names=["META"],
                request_id="r1",
                correlation_id=7,
                flags=3,
                parameters={"a": 1, "b": "x", "c": True},
            ),
        },
        {
            "call": "exec",
            "req": req(
                "add", [f32(3)], requested_output_names=["META"], correlation_id="abc"
            ),
        },
        {
            "call": "exec",
            "req": req(
                "add",
                [f32(3)],
                requested_output_names=["META"],
                parameters={
                    "timeout": 5,
                    "sequence_id": 3,
                    "priority": 1,
                    "triton_x": 1,
                },
            ),
        },
    ],
    "decoupled": [
        {
            "call": "exec",
            "decoupled": True,
            "req": req("square", [i32(3)], requested_output_names=OUT),
        },
        {
            "call": "exec",
            "decoupled": True,
            "req": req("square", [i32(0)], requested_output_names=OUT),
        },
        {
            "call": "async_exec",
            "decoupled": True,
            "req": req("square", [i32(2)], requested_output_names=OUT),
        },
        {
            "call": "exec",
            "decoupled": True,
            "req": req("add", [f32(1)], requested_output_names=OUT),
        },
        {
            "call": "exec",
            "decoupled": True,
            "req": req("nope", [f32(1)], requested_output_names=OUT),
        },
    ],
    "errors": [
        {"call": "exec", "req": req("nope", [f32(1)], requested_output_names=OUT)},
        {
            "call": "async_exec",
            "req": req("nope", [f32(1)], requested_output_names=OUT),
        },
        {
            "call": "exec",
            "req": req("add", [f32(1)], requested_output_names=OUT, model_version=5),
        },
        {
            "call": "exec",
            "req": req("add", [["X", "float32", [1.0]]], requested_output_names=OUT),
        },
        {
            "call": "exec",
            "req": req("add", [["IN", "int32", [1]]], requested_output_names=OUT),
        },
        {"call": "exec", "req": req("add", [], requested_output_names=OUT)},
        {"call": "exec", "req": req("add", [f32(1)], requested_output_names=["NOPE"])},
        {"call": "exec", "req": req("add", [f32(-1)], requested_output_names=OUT)},
        {"call": "exec", "req": req("add", [f32(-2)], requested_output_names=OUT)},
        {"call": "exec", "req": req("square", [i32(2)], requested_output_names=OUT)},
        {
            "call": "exec",
            "req": req(
                "add", [f32(1)], requested_output_names=OUT, parameters={"f": 1.5}
            ),
        },
        {
            "call": "exec",
            "req": req(
                "add", [f32(1)], requested_output_names=OUT, parameters={"l": [1]}
            ),
        },
    ],
    "timeout": [
        {"start": "first", "req": req("held", [f32(301)], requested_output_names=OUT)},
        {"wait_for": "held-301"},
        {
            "call": "async_exec",
            "req": req("held", [f32(302)], requested_output_names=OUT, timeout=1000),
        },
        {"touch": "open-301"},
        {"await": "first"},
    ],
}


def _without_codes(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_codes(v) for k, v in value.items() if k != "code"}
    if isinstance(value, list):
        return [_without_codes(v) for v in value]
    return value


def _run_all(url: str, repo: Path) -> dict[str, Any]:
    results = {}
    for name, steps in SCRIPTS.items():
        for marker in list(repo.glob("open-*")) + list(repo.glob("held-*")):
            marker.unlink()
        results[name] = _without_codes(probe(url, steps))
    return results


def test_bls_matches_triton(tmp_path: Path) -> None:
    # One repository for both servers: tracebacks in messages name the same files.
    repo = write_repo(tmp_path / "repo", ["bls_probe", "add", "square", "held"])
    with run_server(repo) as server:
        ours = _run_all(server.http_url, repo)
    with run_reference([repo]) as reference:
        theirs = _run_all(reference.http_url, repo)
    for name in SCRIPTS:
        assert ours[name] == theirs[name], json.dumps(
            {"tritonx": ours[name], "triton": theirs[name]}, indent=1
        )
