"""In-process benchmark of the C++ scheduler through tritonx._native.

A Python instance that returns its inputs (no work) isolates the core's overhead:
validation, queueing, batch formation, the GIL hand-off to the instance and the
response delivery. Scenarios, each for 1 and 2 instances:

* infer, 1 submitter, batch 1: one blocking Model.infer() at a time, i.e. the per-
  request round trip through the scheduler (default scheduler).
* infer, N submitters, dynamic batching (max 32): N threads calling infer().
* asyncio submit, 1 at a time: Model.submit() + await, one in flight.
* asyncio submit, N in flight, dynamic batching (max 32).

Every cell is the median of --repeats runs.

    PYTHONPATH=python python benchmarks/bench_batcher.py
    PYTHONPATH=python python benchmarks/bench_batcher.py --requests 20000 --repeats 5
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from tritonx import _native

WIDTH = 16
MAX_BATCH = 32


class NoOpInstance:
    """Returns each request's input as its output (zero copy); counts executions."""

    gather_inputs = False

    def __init__(self) -> None:
        self.executions = 0
        self.items = 0

    def execute(self, requests: list[_native.Request]) -> list[dict[str, Any]]:
        self.executions += 1
        self.items += len(requests)
        return [{"OUTPUT0": r.inputs[0].as_numpy()} for r in requests]


def make_model(
    instances: int, dynamic: bool
) -> tuple[_native.Model, list[NoOpInstance]]:
    spec = _native.ModelSpec(
        "bench",
        1,
        MAX_BATCH,
        [_native.TensorSpec("INPUT0", "FP32", [WIDTH])],
        [_native.TensorSpec("OUTPUT0", "FP32", [WIDTH])],
    )
    config = (
        _native.SchedulerConfig(dynamic_batching=True, max_queue_delay_us=100)
        if dynamic
        else _native.SchedulerConfig()
    )
    objs = [NoOpInstance() for _ in range(instances)]
    return _native.Model(spec, config, objs), objs


DATA = np.ones((1, WIDTH), dtype=np.float32)


def new_request() -> _native.Request:
    return _native.Request("", [("INPUT0", "FP32", [1, WIDTH], DATA)])


@dataclass
class Run:
    seconds: float
    requests: int
    executions: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def us_per_request(self) -> float:
        return self.seconds / self.requests * 1e6

    @property
    def mean_batch(self) -> float:
        return self.requests / max(self.executions, 1)


def run_infer(model: _native.Model, total: int, submitters: int) -> float:
    per_thread = total // submitters
    start_barrier = threading.Barrier(submitters + 1)

    def worker() -> None:
        start_barrier.wait()
        for _ in range(per_thread):
            model.infer(new_request())

    threads = [threading.Thread(target=worker) for _ in range(submitters)]
    for t in threads:
        t.start()
    start_barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - start


def run_submit(model: _native.Model, total: int, in_flight: int) -> float:
    async def main() -> float:
        loop = asyncio.get_running_loop()

        async def client(count: int) -> None:
            for _ in range(count):
                future: asyncio.Future[_native.Response] = loop.create_future()
                model.submit(new_request(), _native.settle(future), future.get_loop())
                await future

        start = time.perf_counter()
        await asyncio.gather(*(client(total // in_flight) for _ in range(in_flight)))
        return time.perf_counter() - start

    return asyncio.run(main())


@dataclass
class Scenario:
    name: str
    dynamic: bool
    concurrency: int
    runner: Callable[[_native.Model, int, int], float]


def measure(scenario: Scenario, instances: int, total: int, repeats: int) -> Run:
    runs: list[Run] = []
    for _ in range(repeats):
        model, objs = make_model(instances, scenario.dynamic)
        try:
            scenario.runner(
                model, max(total // 20, scenario.concurrency), scenario.concurrency
            )
            before = sum(o.executions for o in objs)
            requests = total - total % scenario.concurrency
            seconds = scenario.runner(model, requests, scenario.concurrency)
            executions = sum(o.executions for o in objs) - before
            runs.append(Run(seconds, requests, executions))
        finally:
            model.stop()
    runs.sort(key=lambda r: r.seconds)
    return runs[len(runs) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10000, help="per run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--submitters", type=int, default=16, help="for the batched rows"
    )
    parser.add_argument("--instances", default="1,2")
    args = parser.parse_args()

    scenarios = [
        Scenario("infer, 1 submitter, batch 1", False, 1, run_infer),
        Scenario(
            f"infer, {args.submitters} submitters, dyn. batch",
            True,
            args.submitters,
            run_infer,
        ),
        Scenario("asyncio submit, 1 in flight", False, 1, run_submit),
        Scenario(
            f"asyncio submit, {args.submitters} in flight, dyn. batch",
            True,
            args.submitters,
            run_submit,
        ),
    ]
    instance_counts = [int(x) for x in args.instances.split(",")]
    rows: list[tuple[str, int, Run]] = []
    for scenario in scenarios:
        for instances in instance_counts:
            rows.append(
                (
                    scenario.name,
                    instances,
                    measure(scenario, instances, args.requests, args.repeats),
                )
            )

    title = " Scheduler Benchmark Result "
    width = 86
    print("\n" + title.center(width, "="))
    print(f"{'Requests per run:':<40}{args.requests:>12}")
    print(f"{'Repeats (median shown):':<40}{args.repeats:>12}")
    print(f"{'Execute:':<40}{'Python no-op (returns inputs)':>30}")
    print(f"{'Max batch size / max queue delay:':<40}{f'{MAX_BATCH} / 100 us':>12}")
    print("-" * width)
    print(f"{'Scenario':<44}{'inst':>5}{'req/s':>12}{'us/req':>10}{'mean batch':>13}")
    print("-" * width)
    for name, instances, run in rows:
        print(
            f"{name:<44}{instances:>5}{run.rps:>12,.0f}{run.us_per_request:>10.1f}"
            f"{run.mean_batch:>13.2f}"
        )
    print("=" * width)


if __name__ == "__main__":
    main()
