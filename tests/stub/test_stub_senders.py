"""A default-mode (non-decoupled) model whose response senders answer after execute
returned, from the model's own threads, in a stub process: the answers come back
over the stub's response stream, and the inputs those threads read are still the
request's own, although later executes have reused the server's shared region.
Checked against in-process execution and, when given, the real Triton 2.51.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient
from serverutil import reference_command, run_reference, run_server

CONFIG = """
name: "%s"
backend: "python"
max_batch_size: 4
dynamic_batching { }
input [ { name: "X" data_type: TYPE_FP32 dims: [ 256 ] } ]
output [ { name: "Y" data_type: TYPE_FP32 dims: [ 256 ] } ]
"""
PROCESS = 'parameters { key: "EXECUTION_MODE" value: { string_value: "process" } }\n'

# Each request is answered by a thread of its own that reads the input only after
# the execute that started it returned and later executes ran.
MODEL = """
import threading
import time

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.threads = []

    def execute(self, requests):
        for request in requests:
            sender = request.get_response_sender()
            thread = threading.Thread(target=self.answer, args=(request, sender))
            thread.start()
            self.threads.append(thread)
        return None

    def answer(self, request, sender):
        time.sleep(0.1)
        x = pb_utils.get_input_tensor_by_name(request, "X").as_numpy()
        sender.send(
            pb_utils.InferenceResponse([pb_utils.Tensor("Y", x * 2)]),
            flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL,
        )

    def finalize(self):
        for thread in self.threads:
            thread.join()
"""

REQUESTS = 24


def _answers_are_each_requests_own(url: str, model: str) -> None:
    client = httpclient.InferenceServerClient(url, concurrency=REQUESTS)

    def counts() -> tuple[int, int]:
        stats = client.get_inference_statistics(model)["model_stats"][0]
        return stats["inference_stats"]["success"]["count"], stats["inference_count"]

    try:
        before = counts()

        pending = []
        for n in range(REQUESTS):
            x = np.full((1, 256), n, dtype=np.float32)
            tensor = httpclient.InferInput("X", list(x.shape), "FP32")
            tensor.set_data_from_numpy(x)
            pending.append(client.async_infer(model, [tensor]))
        answers = [p.get_result(timeout=60).as_numpy("Y") for p in pending]
        for n, y in enumerate(answers):
            assert y.tolist() == [[2.0 * n] * 256], n
        after = counts()
        assert (after[0] - before[0], after[1] - before[1]) == (REQUESTS, REQUESTS)
    finally:
        client.close()


def _repository(root: Path, models: dict[str, str]) -> Path:
    for name, extra in models.items():
        (root / name / "1").mkdir(parents=True)
        (root / name / "config.pbtxt").write_text(CONFIG % name + extra)
        (root / name / "1" / "model.py").write_text(MODEL)
    return root


def test_senders_answer_after_execute_with_their_own_inputs(tmp_path: Path) -> None:
    repo = _repository(tmp_path / "repo", {"inproc": "", "stub": PROCESS})
    with run_server(repo) as server:
        for model in ("inproc", "stub"):
            _answers_are_each_requests_own(server.http_url, model)
        # a second round on the same stub: its requests still copy their inputs
        _answers_are_each_requests_own(server.http_url, "stub")


@pytest.mark.skipif(reference_command() is None, reason="TRITONX_REFERENCE_CMD unset")
def test_triton_answers_the_same(tmp_path: Path) -> None:
    repo = _repository(tmp_path / "repo", {"stub": ""})
    with run_reference([repo]) as server:
        _answers_are_each_requests_own(server.http_url, "stub")
