"""Large tensors through tritonclient: end-to-end time and the server's peak memory.

Triton's L0_large_payload sends one FP32 vector of up to 1.9 GB to an identity
model over HTTP and gRPC with default flags and expects it back unchanged. This
script does the same with real ``tritonclient`` (binary data, one request at a
time; ``grpc-stream``: one request per ModelStreamInfer stream) against tritonx
and a reference Triton, one server at a time, on a Python identity model
(``python_nobatch_zero_1_float32``, FP32 ``[-1]``). For each size it prints the
median wall time of ``infer`` + ``as_numpy`` over the repeats and the server's peak
resident memory: the sum of the ``VmHWM`` of the server and its child processes
(Triton's python stub), read after that size's requests (sizes ascend, so it is
the peak for the largest size so far). The client's own cost (tritonclient builds
and parses the bodies in Python) is in the times, the same for both servers.

    flock /work/wt/bench.lock python benchmarks/bench_large_payload.py \\
        --reference-cmd /path/to/triton_reference --sizes 0.25,1
"""

from __future__ import annotations

import argparse
import math
import queue
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from _harness import (
    IDENTITY_MODEL,
    add_server_arguments,
    running,
    servers_to_compare,
    write_python_model,
)

MODEL = "python_nobatch_zero_1_float32"
CONFIG = f"""
name: "{MODEL}"
backend: "python"
max_batch_size: 0
input [ {{ name: "INPUT0", data_type: TYPE_FP32, dims: [ -1 ] }} ]
output [ {{ name: "OUTPUT0", data_type: TYPE_FP32, dims: [ -1 ] }} ]
instance_group [ {{ count: 1, kind: KIND_CPU }} ]
"""
GIB = 1 << 30


def _peak_rss_gib(process: subprocess.Popen[bytes]) -> float:
    """VmHWM of the process and its children, summed."""
    pids = [process.pid]
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    total_kib = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                total_kib += int(line.split()[1])
    return total_kib / (1 << 20)


def _streamed(client: grpcclient.InferenceServerClient, tensor: Any) -> Any:
    """One request through a ModelStreamInfer stream."""
    answers: queue.Queue[tuple[Any, Any]] = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        client.async_stream_infer(MODEL, [tensor])
        result, error = answers.get(timeout=900)
    finally:
        client.stop_stream()
    if error is not None:
        raise RuntimeError(f"grpc-stream: {error}")
    return result


def _infer_seconds(protocol: str, port: int, data: np.ndarray) -> float:
    lib = httpclient if protocol == "http" else grpcclient
    url = f"127.0.0.1:{port}"
    client = (
        httpclient.InferenceServerClient(url, network_timeout=900)
        if protocol == "http"
        else grpcclient.InferenceServerClient(url)
    )
    tensor = lib.InferInput("INPUT0", list(data.shape), "FP32")
    tensor.set_data_from_numpy(data)
    start = time.perf_counter()
    if protocol == "grpc-stream":
        result = _streamed(client, tensor)  # type: ignore[arg-type]
    else:
        result = client.infer(MODEL, [tensor])  # type: ignore[arg-type]
    output = result.as_numpy("OUTPUT0")
    elapsed = time.perf_counter() - start
    client.close()
    if output is None or not np.array_equal(output, data):
        raise RuntimeError(f"{protocol}: the output differs from the input")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_server_arguments(parser)
    parser.add_argument("--sizes", default="0.25,1", help="GiB, ascending")
    parser.add_argument(
        "--protocols", default="http,grpc", help="of http, grpc, grpc-stream"
    )
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    sizes = sorted(float(s) for s in args.sizes.split(","))
    protocols = args.protocols.split(",")
    repo = Path(tempfile.mkdtemp(prefix="bench-large-")) / "repo"
    write_python_model(repo, MODEL, CONFIG, IDENTITY_MODEL)
    # (server, protocol, size) -> (median s, peak GiB)
    rows: dict[tuple[str, str, float], tuple[float, float]] = {}
    servers = servers_to_compare(args)
    for protocol in protocols:
        for name, cmd in servers:
            started: list[subprocess.Popen[bytes]] = []
            with running(name, cmd, repo, {}, 120.0, started=started) as ports:
                port = ports[0] if protocol == "http" else ports[1]
                for size in sizes:
                    data = np.random.default_rng(0).random(
                        math.trunc(size * GIB / 4), dtype=np.float32
                    )
                    times = [
                        _infer_seconds(protocol, port, data)
                        for _ in range(args.repeats)
                    ]
                    del data
                    peak = _peak_rss_gib(started[0])
                    rows[(name, protocol, size)] = (statistics.median(times), peak)
                    print(
                        f"{name} {protocol} {size} GiB: "
                        + ", ".join(f"{t:.2f}" for t in times)
                        + f" s; peak {peak:.2f} GiB",
                        flush=True,
                    )
    print()
    names = [name for name, _ in servers]
    head = "| protocol | GiB | " + " | ".join(
        f"{n} median s | {n} peak GiB" for n in names
    )
    ratio = len(names) == 2
    print(head + (" | time ratio | memory ratio |" if ratio else " |"))
    print("|" + " --- |" * (2 + 2 * len(names) + (2 if ratio else 0)))
    for protocol in protocols:
        for size in sizes:
            cells = []
            for n in names:
                seconds, peak = rows[(n, protocol, size)]
                cells += [f"{seconds:.2f}", f"{peak:.2f}"]
            line = f"| {protocol} | {size:g} | " + " | ".join(cells) + " |"
            if ratio:
                ours, theirs = (
                    rows[(names[0], protocol, size)],
                    rows[(names[1], protocol, size)],
                )
                line += f" {theirs[0] / ours[0]:.2f}x | {ours[1] / theirs[1]:.2f} |"
            print(line)
    if ratio:
        print(
            f"\ntime ratio: {names[1]} time / {names[0]} time (above 1: tritonx "
            f"faster); memory ratio: {names[0]} peak / {names[1]} peak"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
