"""System shared memory vs tensors on the wire: perf_analyzer on a 1 MiB input.

One Python identity model, FP32 [262144] in and out (1 MiB each way), served by
tritonx and by a reference Triton, one server at a time. perf_analyzer runs with
``--shared-memory none`` (tensors in the request/response bodies) and with
``--shared-memory system`` (it registers POSIX shm regions and the server reads
inputs from / writes outputs into them), over HTTP and gRPC.

    flock /work/wt/bench.lock python benchmarks/bench_shm.py \\
        --perf-analyzer /path/to/perf_analyzer --reference-cmd /path/to/triton_reference
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
from pathlib import Path

from _harness import IDENTITY_MODEL, run_perf_analyzer, running

ELEMENTS = 262144  # FP32: 1 MiB
CONFIG = f"""
name: "identity_1mb"
backend: "python"
max_batch_size: 0
input [ {{ name: "INPUT0", data_type: TYPE_FP32, dims: [ {ELEMENTS} ] }} ]
output [ {{ name: "OUTPUT0", data_type: TYPE_FP32, dims: [ {ELEMENTS} ] }} ]
instance_group [ {{ count: 1, kind: KIND_CPU }} ]
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--perf-analyzer", default=os.environ.get("PERF_ANALYZER"))
    parser.add_argument("--reference-cmd", default="")
    parser.add_argument("--tritonx-cmd", default=f"{sys.executable} -m tritonx")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--measurement-interval", type=int, default=2000)
    args = parser.parse_args()
    if not args.perf_analyzer:
        parser.error("--perf-analyzer (or $PERF_ANALYZER) is required")
    servers = [("tritonx", shlex.split(args.tritonx_cmd))]
    if args.reference_cmd:
        servers.append(("Triton", shlex.split(args.reference_cmd)))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp)
        (repo / "identity_1mb" / "1").mkdir(parents=True)
        (repo / "identity_1mb" / "config.pbtxt").write_text(CONFIG)
        (repo / "identity_1mb" / "1" / "model.py").write_text(IDENTITY_MODEL)
        for name, cmd in servers:
            with running(name, cmd, repo, {}, 120) as (http, grpc):
                for protocol in ("http", "grpc"):
                    url = f"127.0.0.1:{grpc if protocol == 'grpc' else http}"
                    for mode in ("none", "system"):
                        extra = ["--shared-memory", mode]
                        if mode == "system":
                            extra += ["--output-shared-memory-size", str(ELEMENTS * 4)]
                        row = run_perf_analyzer(
                            args.perf_analyzer,
                            "identity_1mb",
                            url,
                            protocol,
                            args.concurrency,
                            args.measurement_interval,
                            extra,
                        )
                        rows.append(
                            (
                                name,
                                protocol,
                                mode,
                                float(row["Inferences/Second"]),
                                float(row["p50 latency"]),
                                float(row["p99 latency"]),
                            )
                        )
    print("| server | proto | shm | inf/s | p50 µs | p99 µs | x no shm |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: |")
    base = {(r[0], r[1]): r[3] for r in rows if r[2] == "none"}
    for name, protocol, mode, rate, p50, p99 in rows:
        ratio = rate / base[(name, protocol)] if base[(name, protocol)] else 0.0
        print(
            f"| {name} | {protocol} | {mode} | {rate:.0f} | {p50:.0f} | {p99:.0f} "
            f"| {ratio:.2f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
