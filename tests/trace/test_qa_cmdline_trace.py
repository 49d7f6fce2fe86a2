"""Triton's L0_cmdline_trace QA as a differential test: tracing configured only
by the deprecated ``--trace-*`` flags (level OFF writes no file; MIN and MAX mean
TIMESTAMPS; a repeated ``--trace-level`` adds TENSORS; the rate samples requests
across both protocols; ``--trace-log-frequency`` splits the file), the warning
each deprecated flag prints, a nested ensemble's trace tree, and the startup
errors for batch-span-processor settings that are not numbers, from
``--trace-config`` or from the OTEL_BSP_* variables.

The same steps run against tritonx and Triton 2.51 and what they leave behind
(trace files summarised per trace, warning lines, exit status and messages)
must be equal."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import ensemble_repo as er
import pytest
from serverutil import (
    differential,
    reference_command,
    run_either,
    server_command,
    server_env,
)
from traceutil import build_repo, grpc_infer, http_infer, read_traces, summary


def build_nested_repo(repo: Path) -> Path:
    """build_repo's models plus outer = pipeline(add_one(x)): an ensemble with an
    ensemble among its steps, as the QA's fan model."""
    build_repo(repo)
    er.write_ensemble(
        repo,
        "outer",
        [
            er.step("add_one", {"INPUT0": "INPUT0"}, {"OUTPUT0": "t1"}),
            er.step("pipeline", {"INPUT0": "t1"}, {"OUTPUT0": "OUTPUT0"}),
        ],
    )
    return repo


def deprecations(log: str) -> list[str]:
    return sorted(line for line in log.splitlines() if "has been deprecated" in line)


def trace_scenario(tmp_path: Path, kind: str) -> dict[str, Any]:
    work = tmp_path / kind
    repo = build_nested_repo(work / "repo")
    seen: dict[str, Any] = {}

    off = work / "off.json"
    with run_either(
        kind, repo, f"--trace-file={off}", "--trace-level=OFF", "--trace-rate=1"
    ) as server:
        for i in range(2):
            http_infer(server.http_url, "add_one", f"h{i}")
            grpc_infer(server.grpc_url, "add_one", f"g{i}")
            http_infer(server.http_url, "outer", f"n{i}")
    seen["off_files"] = sorted(p.name for p in work.glob("off.json*"))

    # MIN is TIMESTAMPS; the second --trace-level adds TENSORS.
    every = work / "min.json"
    with run_either(
        kind,
        repo,
        f"--trace-file={every}",
        "--trace-level=MIN",
        "--trace-level=TENSORS",
        "--trace-rate=1",
    ) as server:
        http_infer(server.http_url, "add_one", "h1")
        grpc_infer(server.grpc_url, "add_one", "g1")
        http_infer(server.http_url, "outer", "n1")
    seen["min_warnings"] = deprecations(server.log_text())
    seen["min"] = summary(every)
    depth: dict[str, int] = {}
    traces = read_traces(every)
    for trace in traces.values():
        level, parent = 0, trace["parent_id"]
        while parent:
            level, parent = level + 1, traces[parent]["parent_id"]
        key = f"{trace['model_name']}/{trace['request_id']}/{level}"
        depth[key] = depth.get(key, 0) + 1
    seen["min_depths"] = depth

    # MAX is TIMESTAMPS too; every 3rd request of 10, alternating protocols,
    # two traces a file. All five deprecated flags warn once each.
    sampled = work / "rate.json"
    with run_either(
        kind,
        repo,
        "--http-thread-count=1",
        f"--trace-file={sampled}",
        "--trace-level=MAX",
        "--trace-rate=3",
        "--trace-log-frequency=2",
        "--trace-count=100",
    ) as server:
        for i in range(10):
            if i % 2:
                http_infer(server.http_url, "add_one", f"r{i}")
            else:
                grpc_infer(server.grpc_url, "add_one", f"r{i}")
    seen["rate_warnings"] = deprecations(server.log_text())
    seen["rate_files"] = {
        path.name: sorted(t["request_id"] for t in read_traces(path).values())
        for path in sorted(work.glob("rate.json*"))
    }
    seen["rate_stamps"] = sorted(
        tuple(sorted({name for name, _ in t["stamps"]}))
        for path in sorted(work.glob("rate.json*"))
        for t in read_traces(path).values()
    )
    return seen


def test_deprecated_flags_sample_and_split(tmp_path: Path) -> None:
    seen = differential(lambda kind: trace_scenario(tmp_path, kind))
    assert seen["off_files"] == []
    assert {key[:2] for key in seen["min"]} == {
        ("add_one", "h1"),
        ("add_one", "g1"),
        ("outer", "n1"),
        ("add_one", "n1"),
        ("pipeline", "n1"),
        ("double", "n1"),
    }
    assert seen["min_depths"] == {
        "add_one/h1/0": 1,
        "add_one/g1/0": 1,
        "outer/n1/0": 1,
        "add_one/n1/1": 1,
        "pipeline/n1/1": 1,
        "add_one/n1/2": 1,
        "double/n1/2": 1,
    }
    tensors = seen["min"][("add_one", "h1", "")]["tensors"]
    assert ("TENSOR_QUEUE_INPUT", "INPUT0", "0,1,2,3", "1,4") in tensors
    assert ("TENSOR_BACKEND_OUTPUT", "OUTPUT0", "1,2,3,4", "1,4") in tensors
    assert seen["rate_files"] == {
        "rate.json.0": ["r2", "r5"],
        "rate.json.1": ["r8"],
    }
    assert len(seen["rate_warnings"]) == 5
    for flag in ("file", "rate", "level", "log-frequency", "count"):
        warned = [w for w in seen["rate_warnings"] if f"'--trace-{flag}'" in w]
        assert len(warned) == 1, (flag, seen["rate_warnings"])
    # MIN and TENSORS: --trace-level warns once per use.
    assert len(seen["min_warnings"]) == 4


BAD_BATCH_SPAN = [
    (["--trace-config=opentelemetry,bsp_max_queue_size=bad_value"], {}),
    (["--trace-config=opentelemetry,bsp_schedule_delay=bad_value"], {}),
    (["--trace-config=opentelemetry,bsp_max_export_batch_size=bad_value"], {}),
    ([], {"OTEL_BSP_MAX_QUEUE_SIZE": "bad_value"}),
    ([], {"OTEL_BSP_SCHEDULE_DELAY": "bad_value"}),
    ([], {"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "bad_value"}),
    # The flag wins over the variable, which is then not read.
    (
        ["--trace-config=opentelemetry,bsp_schedule_delay=10"],
        {"OTEL_BSP_SCHEDULE_DELAY": "bad_value", "OTEL_BSP_MAX_QUEUE_SIZE": "x"},
    ),
]


def refused(kind: str, repo: Path, args: list[str], env: dict[str, str]) -> Any:
    """(exit status, the "Bad option" line and the one after it) of a server
    that must stop before serving; all ports 0 so nothing is ever bound."""
    flags = [
        "--trace-config=mode=opentelemetry",
        *args,
        "--http-port=0",
        "--grpc-port=0",
        "--metrics-port=0",
        "--exit-timeout-secs=1",
    ]
    if kind == "reference":
        cmd = [*(reference_command() or []), f"--model-repository={repo}", *flags]
        full_env = {**os.environ, **env}
    else:
        cmd = server_command([repo], flags)
        full_env = server_env(env)
    for name in list(full_env):
        if name.startswith("OTEL_BSP_"):
            del full_env[name]
    full_env.update(env)
    try:
        result = subprocess.run(
            cmd,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return "started"  # a server that did not refuse: kept running
    lines = result.stderr.splitlines()
    bad = [i for i, line in enumerate(lines) if line.startswith("Bad option")]
    return result.returncode, [line for i in bad for line in lines[i : i + 2]]


@pytest.mark.parametrize(("args", "env"), BAD_BATCH_SPAN)
def test_bad_batch_span_settings_stop_startup(
    tmp_path: Path, args: list[str], env: dict[str, str]
) -> None:
    repo = build_repo(tmp_path / "repo")
    seen = differential(lambda kind: {"result": refused(kind, repo, args, env)})
    if args and env:  # the flag's good value wins; the variable is not read
        assert seen["result"][1] == [
            'Bad option: "OTEL_BSP_MAX_QUEUE_SIZE".',
            "Invalid option value. Got x",
        ]
        return
    source = (
        f'"--trace-config opentelemetry,{args[0].split(",")[1].split("=")[0]}"'
        if args
        else f'"{next(iter(env))}"'
    )
    assert seen["result"] == (
        1,
        [f"Bad option: {source}.", "Invalid option value. Got bad_value"],
    )
