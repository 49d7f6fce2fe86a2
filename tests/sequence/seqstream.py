"""A sequence's own gRPC stream, for tests that interleave sequences (its requests
reach the server in the order sent, and its answers come back in that order), and
a model's request counts as its statistics report them."""

from __future__ import annotations

import queue
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
from grpcutil import wait_until
from serverutil import RunningServer
from tritonclient.utils import InferenceServerException


class SequenceStream:
    """Requests of one correlation id to one model with a single INT32 input of
    shape [1, 1]; `answer()` is the next answer: the error's message, or the listed
    outputs' values."""

    def __init__(
        self,
        server: RunningServer,
        model: str,
        seq: int,
        *,
        input_name: str = "INPUT",
        outputs: tuple[str, ...] = ("OUTPUT", "CONTROLS"),
    ) -> None:
        self.model, self.seq = model, seq
        self.input_name, self.outputs = input_name, outputs
        self.answers: queue.Queue[Any] = queue.Queue()
        self.client = grpcclient.InferenceServerClient(server.grpc_url)
        self.client.start_stream(
            callback=lambda result, error: self.answers.put(error or result)
        )

    def send(self, value: int, timeout_us: int = 0, **flags: bool) -> None:
        tensor = grpcclient.InferInput(self.input_name, [1, 1], "INT32")
        tensor.set_data_from_numpy(np.array([[value]], dtype=np.int32))
        self.client.async_stream_infer(
            self.model,
            [tensor],
            sequence_id=self.seq,
            timeout=timeout_us or None,
            **flags,
        )

    def answer(self) -> str | list[list[Any]]:
        got = self.answers.get(timeout=120)
        if isinstance(got, InferenceServerException):
            return str(got.message())
        return [got.as_numpy(name).ravel().tolist() for name in self.outputs]

    def close(self) -> None:
        self.client.stop_stream()
        self.client.close()


def request_counts(server: RunningServer, model: str) -> dict[str, int]:
    """The model's successful and failed requests and its inference count."""
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        stats = client.get_inference_statistics(model, as_json=True)
    finally:
        client.close()
    entry = stats["model_stats"][0]
    return {
        "success": int(entry["inference_stats"]["success"].get("count", 0)),
        "fail": int(entry["inference_stats"]["fail"].get("count", 0)),
        "inference_count": int(entry.get("inference_count", 0)),
    }


def settled_request_counts(
    server: RunningServer, model: str, success: int
) -> dict[str, int]:
    """``request_counts`` once ``success`` requests have been counted: Triton
    counts a request after answering it."""
    wait_until(
        lambda: request_counts(server, model)["success"] == success,
        f"{success} answered requests to be counted",
    )
    return request_counts(server, model)
