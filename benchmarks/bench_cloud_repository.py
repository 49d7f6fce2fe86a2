"""Cloud repository benchmark: time from launch to ready for a model repository in
S3 and in GCS, on tritonx and a reference Triton, side by side, against the same
repository on local disk.

The repository holds --models Python models, each with a --weights-mib file of
random bytes in its version directory (what a framework model's weights are to the
download; the model itself loads instantly), in a bucket of moto's S3 server and of
gcp-storage-emulator on loopback (tests/objectstores.py). Reported: seconds to
/v2/health/ready, medians over --rounds alternating runs, for the local directory
and each service; the difference is what reading the repository from the bucket
costs, and reference/tritonx ratios of that cost and of the time to ready from the
bucket. Readiness is asked every 20 ms (the harness's 0.2 s default would round
every time up to a 0.2 s step, as large as the costs compared). A server whose own
start-up is slow hides downloads behind it (Triton's run the models' Python stubs'
start-up, about 2 s here), so the cost ratio alone can flatter it.

    python benchmarks/bench_cloud_repository.py --reference-cmd /path/to/triton_reference \\
        --models 4 --weights-mib 128 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from _harness import add_server_arguments, running, servers_to_compare

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from objectstores import gcs_emulator, moto_s3

CONFIG = """
backend: "python"
max_batch_size: 0
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] } ]
instance_group [ { kind: KIND_CPU count: 1 } ]
"""
MODEL_PY = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [
            pb_utils.InferenceResponse(
                [pb_utils.Tensor("OUTPUT0", pb_utils.get_input_tensor_by_name(
                    r, "INPUT0").as_numpy())])
            for r in requests
        ]
"""


def write_repository(root: Path, models: int, weights_mib: int) -> None:
    for index in range(models):
        version = root / f"model_{index}" / "1"
        version.mkdir(parents=True)
        (root / f"model_{index}" / "config.pbtxt").write_text(CONFIG)
        (version / "model.py").write_text(MODEL_PY)
        (version / "weights.bin").write_bytes(os.urandom(weights_mib << 20))


# Seconds between readiness checks.
POLL_S = 0.02


def seconds_to_ready(
    name: str, cmd: list[str], repo: Path | str, timeout: float
) -> float:
    started = time.monotonic()
    with running(name, cmd, repo, {}, timeout, poll_s=POLL_S):
        return time.monotonic() - started


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_server_arguments(p)
    p.add_argument("--models", type=int, default=4)
    p.add_argument("--weights-mib", type=int, default=128)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--start-timeout", type=float, default=600.0)
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    servers = servers_to_compare(args)
    times: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp, moto_s3() as s3, gcs_emulator() as gcs:
        local = Path(tmp) / "repo"
        write_repository(local, args.models, args.weights_mib)
        sources: dict[str, Path | str] = {"local": local}
        for service, bucket in (("s3", s3), ("gcs", gcs)):
            bucket.upload_tree("repo", local)
            os.environ.update(bucket.env)  # what the servers connect with
            sources[service] = bucket.location("repo")
        for round_index in range(args.rounds):
            for name, cmd in servers:
                for source, repo in sources.items():
                    took = seconds_to_ready(name, cmd, repo, args.start_timeout)
                    times.setdefault((name, source), []).append(took)
                    print(
                        f"  round {round_index + 1} {name:9s} {source:5s} "
                        f"{took:6.2f} s to ready",
                        flush=True,
                    )
    _report(times, servers, args)
    return 0


def _report(
    times: dict[tuple[str, str], list[float]],
    servers: list[tuple[str, list[str]]],
    args: argparse.Namespace,
) -> None:
    total = args.models * args.weights_mib
    print(
        f"\n{args.models} models x {args.weights_mib} MiB = {total} MiB per "
        f"repository; seconds to ready, medians of {args.rounds} rounds\n"
    )
    print("| service | server | local dir s | bucket s | bucket cost s | MiB/s |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for service in ("s3", "gcs"):
        cost, ready = {}, {}
        for name, _ in servers:
            local = statistics.median(times[(name, "local")])
            ready[name] = statistics.median(times[(name, service)])
            cost[name] = ready[name] - local
            rate = total / cost[name] if cost[name] > 0 else float("inf")
            print(
                f"| {service} | {name} | {local:.2f} | {ready[name]:.2f} | "
                f"{cost[name]:.2f} | {rate:.0f} |"
            )
        if "reference" in cost and cost["tritonx"] > 0:
            ratio = cost["reference"] / cost["tritonx"]
            print(f"| {service} | reference/tritonx cost | | | {ratio:.2f}x | |")
            ratio = ready["reference"] / ready["tritonx"]
            print(f"| {service} | reference/tritonx ready | | {ratio:.2f}x | | |")


if __name__ == "__main__":
    raise SystemExit(main())
