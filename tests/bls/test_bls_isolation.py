"""Two servers in one process: a BLS call reaches the models of its own server only
(each model finds its server through the context it was loaded with)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from blsmodels import ADD_CONFIG, ADD_MODEL, probe, req, write_repo


def _server_options(repo: Path) -> Any:
    from tritonx.server_options import ServerOptions

    return ServerOptions(
        model_repositories=[repo],
        http_address="127.0.0.1",
        grpc_address="127.0.0.1",
        http_port=0,
        grpc_port=0,
        allow_metrics=False,
    )


def _add_variant(repo: Path, name: str, body: str) -> None:
    version = repo / name / "1"
    version.mkdir(parents=True)
    (repo / name / "config.pbtxt").write_text(f'name: "{name}"\n{ADD_CONFIG}')
    (version / "model.py").write_text(body)


def test_each_server_sees_only_its_own_models(tmp_path: Path) -> None:
    pytest.importorskip("tritonx._native")
    from tritonx import loops
    from tritonx.server import Server

    repo_a = write_repo(tmp_path / "a", ["bls_probe", "add"])
    _add_variant(repo_a, "only_a", ADD_MODEL)
    repo_b = write_repo(tmp_path / "b", ["bls_probe"])
    _add_variant(repo_b, "add", ADD_MODEL.replace("x + 1", "x + 100"))

    steps = [
        {
            "call": "exec",
            "req": req(
                "add", [["IN", "float32", [1.0]]], requested_output_names=["OUT"]
            ),
        },
        {
            "call": "async_exec",
            "req": req(
                "only_a", [["IN", "float32", [1.0]]], requested_output_names=["OUT"]
            ),
        },
    ]

    async def scenario() -> list[Any]:
        servers = [Server(_server_options(repo_a)), Server(_server_options(repo_b))]
        try:
            for server in servers:
                await server.start()
            return [
                await asyncio.to_thread(
                    probe, f"127.0.0.1:{s.ports['grpc']}", steps, "grpc"
                )
                for s in servers
            ]
        finally:
            for server in servers:
                await server.stop()

    (a_add, a_only), (b_add, b_only) = loops.run(scenario())
    assert a_add["outputs"]["OUT"][1] == [2.0]
    assert b_add["outputs"]["OUT"][1] == [101.0]
    assert a_only["outputs"]["OUT"][1] == [2.0]
    assert b_only["error"] == (
        "Model only_a - Error when running inference: Failed for execute the "
        "inference request. Model 'only_a' is not ready."
    )


def test_bls_from_a_stub_process(tmp_path: Path) -> None:
    """EXECUTION_MODE=process: the stub forwards each call to its server, which runs
    it for that instance (same results, same self-call refusal)."""
    from serverutil import run_server

    repo = write_repo(tmp_path / "repo", ["bls_probe", "add", "countdown"])
    count = ["IN", "int32", [2]]
    with run_server(repo, "--backend-config=python,execution-mode=process") as server:
        add, nope, deep = probe(
            server.http_url,
            [
                {
                    "call": "async_exec",
                    "req": req(
                        "add",
                        [["IN", "float32", [2.0]]],
                        requested_output_names=["OUT"],
                    ),
                },
                {
                    "call": "exec",
                    "req": req("nope", [], requested_output_names=["OUT"]),
                },
                {
                    "call": "exec",
                    "req": req("countdown", [count], requested_output_names=["OUT"]),
                },
            ],
        )
    assert add["outputs"]["OUT"][1] == [3.0]
    assert nope["error"].endswith("Model 'nope' is not ready.")
    assert "would never run" in deep["error"]
