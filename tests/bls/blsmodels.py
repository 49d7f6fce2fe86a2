"""A BLS model repository shared by the BLS tests, the differential test against
Triton and benchmarks/bench_bls.py.

``bls_probe`` runs a script of BLS calls given as JSON in its ``CMD`` input and
answers with what each call returned (outputs, errors with code and message,
exceptions raised) as JSON in ``RESULT``: one model covers sync, async, decoupled,
error and timeout cases, and both servers can be compared on its output alone.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

# Step kinds of a probe script (JSON list in CMD):
#   {"call": "exec"|"async_exec", "req": REQ, "decoupled": bool}  -> one result
#   {"start": KEY, "req": REQ, "decoupled": bool}  async_exec, not awaited yet
#   {"await": KEY}                                  -> the result of a started call
#   {"gather": [REQ, ...], "decoupled": bool}       -> asyncio.gather of async_exec
#     (both also take "summary": true)
#   {"touch": NAME}                                 creates <model dir>/../NAME
#   {"wait_for": NAME}                              until <model dir>/../NAME exists
#   {"cancel_after": N, "req": REQ}  decoupled exec; cancel() after N responses
#   {"threads": true}                               -> threading.active_count()
# A call with "summary": true answers each output's shape and exact sum, not values.
# A decoupled call with "aiter": true reads its responses with ``async for``.
# REQ: InferenceRequest keyword arguments; inputs as [name, dtype, values], values
# a list or {"arange": N}.
PROBE_MODEL = r"""
import asyncio
import json
import os
import threading
import time

import numpy as np
import triton_python_backend_utils as pb_utils


def _request(spec):
    spec = dict(spec)
    inputs = [pb_utils.Tensor(name, _values(values, dtype))
              for name, dtype, values in spec.pop("inputs", [])]
    return pb_utils.InferenceRequest(inputs=inputs, **spec)


def _values(values, dtype):
    if isinstance(values, dict):  # {"arange": N}: a big input without a big script
        return np.arange(values["arange"], dtype=dtype)
    return np.array(values, dtype=dtype)


def _response(response, summary=False):
    if response.has_error():
        err = response.error()
        return {"error": err.message(), "code": int(err.code())}
    outputs = {}
    for t in response.output_tensors():
        a = t.as_numpy()
        if summary and a.dtype != object:  # shape and exact sum, not every value
            outputs[t.name()] = [list(a.shape), float(a.sum(dtype=np.float64))]
            continue
        values = [v.decode() if isinstance(v, bytes) else v for v in a.tolist()] \
            if a.dtype == object else a.tolist()
        outputs[t.name()] = [list(a.shape), values]
    return {"outputs": outputs}


def _raised(exc):
    return {"raised": type(exc).__name__, "message": str(exc)}


def _decoupled(responses):
    return {"responses": [_response(r) for r in responses]}


class TritonPythonModel:
    def initialize(self, args):
        self.root = os.path.dirname(args["model_repository"])

    async def execute(self, requests):
        out = []
        for request in requests:
            cmd = pb_utils.get_input_tensor_by_name(request, "CMD").as_numpy()
            steps = json.loads(cmd.reshape(-1)[0])
            results = []
            started = {}
            for step in steps:
                results.append(await self._step(step, started))
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor(
                "RESULT", np.array([json.dumps(results)], dtype=object))]))
        return out

    async def _step(self, step, started):
        try:
            if "threads" in step:
                return threading.active_count()
            if "touch" in step:
                open(os.path.join(self.root, step["touch"]), "w").close()
                return None
            if "wait_for" in step:
                # e.g. "held-<tag>": that call is executing, so the next one queues.
                path = os.path.join(self.root, step["wait_for"])
                deadline = time.monotonic() + 60  # a safety net only
                while not os.path.exists(path) and time.monotonic() < deadline:
                    await asyncio.sleep(0.005)
                return None
            decoupled = step.get("decoupled", False)
            aiter = step.get("aiter", False)
            if "await" in step:
                return await self._finish(await started.pop(step["await"]),
                                          decoupled, aiter)
            if "gather" in step:
                calls = [_request(r).async_exec(decoupled=decoupled)
                         for r in step["gather"]]
                results = await asyncio.gather(*calls)
                summary = step.get("summary", False)
                return [await self._finish(r, decoupled, aiter, summary)
                        for r in results]
            request = _request(step["req"])
            if "start" in step:
                started[step["start"]] = asyncio.ensure_future(
                    request.async_exec(decoupled=decoupled))
                return None
            if "cancel_after" in step:
                iterator = request.exec(decoupled=True)
                seen = []
                for response in iterator:
                    seen.append(_response(response))
                    if len(seen) == step["cancel_after"]:
                        iterator.cancel()
                return {"responses": seen}
            summary = step.get("summary", False)
            if step["call"] == "exec":
                return await self._finish(request.exec(decoupled=decoupled),
                                          decoupled, aiter, summary)
            return await self._finish(await request.async_exec(decoupled=decoupled),
                                      decoupled, aiter, summary)
        except Exception as exc:
            return _raised(exc)

    async def _finish(self, result, decoupled, aiter=False, summary=False):
        if not decoupled:
            return _response(result, summary)
        if aiter:
            return _decoupled([r async for r in result])
        return _decoupled(list(result))
"""

PROBE_CONFIG = """
backend: "python"
max_batch_size: 0
input [ { name: "CMD" data_type: TYPE_STRING dims: [ 1 ] } ]
output [ { name: "RESULT" data_type: TYPE_STRING dims: [ 1 ] } ]
instance_group [ { count: 2 kind: KIND_CPU } ]
"""

# IN -> OUT = IN + 1, OUT2 = IN * 2, META = what the request carried (JSON).
ADD_MODEL = r"""
import json

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "IN").as_numpy()
            if x.size and x.reshape(-1)[0] == -1:
                out.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(
                    "negative one is refused", pb_utils.TritonError.INVALID_ARG)))
                continue
            if x.size and x.reshape(-1)[0] == -2:
                raise pb_utils.TritonModelException("minus two fails the batch")
            meta = {"params": json.loads(r.parameters()),
                    "request_id": r.request_id(),
                    "correlation_id": r.correlation_id(), "flags": r.flags()}
            out.append(pb_utils.InferenceResponse(
                [pb_utils.Tensor("OUT", x + 1), pb_utils.Tensor("OUT2", x * 2),
                 pb_utils.Tensor("META", np.array([json.dumps(meta, sort_keys=True)],
                                                  dtype=object))]))
        return out
"""

ADD_CONFIG = """
backend: "python"
max_batch_size: 0
input [ { name: "IN" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [
  { name: "OUT" data_type: TYPE_FP32 dims: [ -1 ] },
  { name: "OUT2" data_type: TYPE_FP32 dims: [ -1 ] },
  { name: "META" data_type: TYPE_STRING dims: [ 1 ] }
]
"""

# Decoupled: IN = n sends n responses OUT = 0..n-1, then FINAL alone; n < 0 sends an
# error response first. Like Triton's square_int32 example.
SQUARE_MODEL = r"""
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        for r in requests:
            n = int(pb_utils.get_input_tensor_by_name(r, "IN").as_numpy()[0])
            sender = r.get_response_sender()
            if n < 0:
                sender.send(pb_utils.InferenceResponse(error=pb_utils.TritonError(
                    "count must not be negative")))
            for i in range(max(n, 0)):
                if sender.is_cancelled():
                    break
                sender.send(pb_utils.InferenceResponse(
                    [pb_utils.Tensor("OUT", np.array([i], dtype=np.int32))]))
            sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        return None
"""

SQUARE_CONFIG = """
backend: "python"
max_batch_size: 0
input [ { name: "IN" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "OUT" data_type: TYPE_INT32 dims: [ 1 ] } ]
model_transaction_policy { decoupled: true }
"""

# One instance that holds each request (IN = tag) until a file named "open-<tag>"
# exists next to the models, or the request is cancelled; on start it leaves
# "held-<tag>". Tests decide what is in flight, not a clock.
HELD_MODEL = r"""
import os
import time

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.root = os.path.dirname(args["model_repository"])

    def execute(self, requests):
        out = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "IN").as_numpy()
            tag = str(int(x[0]))
            open(os.path.join(self.root, "held-" + tag), "w").close()
            # Let go when the test is over even if it failed before opening: its
            # directory is gone, or (a safety net only) a minute has passed.
            deadline = time.monotonic() + 60
            while not os.path.exists(os.path.join(self.root, "open-" + tag)):
                if r.is_cancelled() or not os.path.isdir(self.root):
                    break
                if time.monotonic() > deadline:
                    break
                time.sleep(0.005)
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", x)]))
        return out
"""

HELD_CONFIG = """
backend: "python"
max_batch_size: 0
input [ { name: "IN" data_type: TYPE_FP32 dims: [ 1 ] } ]
output [ { name: "OUT" data_type: TYPE_FP32 dims: [ 1 ] } ]
instance_group [ { count: 1 kind: KIND_CPU } ]
dynamic_batching {
  default_queue_policy {
    default_timeout_microseconds: 60000000 allow_timeout_override: true
  }
}
"""

# Decoupled: sends OUT = 0, then waits until the request is cancelled and ends with
# FINAL alone (a safety deadline lets go after a minute if a test fails).
TICKER_MODEL = r"""
import time

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        for r in requests:
            sender = r.get_response_sender()
            sender.send(pb_utils.InferenceResponse(
                [pb_utils.Tensor("OUT", np.array([0], dtype=np.int32))]))
            deadline = time.monotonic() + 60
            while not sender.is_cancelled() and time.monotonic() < deadline:
                time.sleep(0.005)
            sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        return None
"""

# Decoupled; answers each request from a thread of its own after execute returned
# (Triton allows BLS there: the instance is initialized): square's n responses
# relayed as they stream in, then OUT = add(n) + 1 from a plain exec, then FINAL.
RELAY_MODEL = r"""
import threading

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        done = threading.Event()
        for r in requests:
            threading.Thread(target=self._answer, args=(r, done)).start()
        done.set()
        return None

    def _answer(self, request, done):
        done.wait()
        sender = request.get_response_sender()
        n = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
        square = pb_utils.InferenceRequest(
            model_name="square", inputs=[pb_utils.Tensor("IN", n)],
            requested_output_names=["OUT"])
        for response in square.exec(decoupled=True):
            out = pb_utils.get_output_tensor_by_name(response, "OUT")
            if out is not None:
                sender.send(pb_utils.InferenceResponse([out]))
        add = pb_utils.InferenceRequest(
            model_name="add", inputs=[pb_utils.Tensor("IN", n.astype(np.float32))],
            requested_output_names=["OUT"]).exec()
        total = pb_utils.get_output_tensor_by_name(add, "OUT").as_numpy()
        sender.send(pb_utils.InferenceResponse(
            [pb_utils.Tensor("OUT", total.astype(np.int32))]),
            flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
"""

# IN = n > 0 calls itself with n - 1 (sync exec from a sync execute) and answers
# OUT = what it got + 1, or the error of the inner call; IN = 0 answers 0.
COUNTDOWN_MODEL = r"""
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            n = pb_utils.get_input_tensor_by_name(r, "IN").as_numpy()
            if n[0] <= 0:
                out.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", n)]))
                continue
            inner = pb_utils.InferenceRequest(
                model_name="countdown", requested_output_names=["OUT"],
                inputs=[pb_utils.Tensor("IN", n - 1)]).exec()
            if inner.has_error():
                out.append(inner)
                continue
            got = pb_utils.get_output_tensor_by_name(inner, "OUT").as_numpy()
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", got + 1)]))
        return out
"""

COUNTDOWN_CONFIG = """
backend: "python"
max_batch_size: 0
input [ { name: "IN" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "OUT" data_type: TYPE_INT32 dims: [ 1 ] } ]
instance_group [ { count: 2 kind: KIND_CPU } ]
"""

# BLS from initialize is refused (Triton: only in execute); execute reports what
# initialize saw.
INIT_BLS_MODEL = r"""
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        try:
            pb_utils.InferenceRequest(
                model_name="add", requested_output_names=["OUT"],
                inputs=[pb_utils.Tensor("IN", np.zeros(1, np.float32))]).exec()
            self.seen = "no error"
        except pb_utils.TritonModelException as exc:
            self.seen = str(exc)

    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor(
            "RESULT", np.array([self.seen.encode()], dtype=object))]) for _ in requests]
"""

INIT_BLS_CONFIG = """
backend: "python"
max_batch_size: 0
input [ { name: "CMD" data_type: TYPE_STRING dims: [ 1 ] } ]
output [ { name: "RESULT" data_type: TYPE_STRING dims: [ 1 ] } ]
"""

# A sequence model (direct strategy, implicit state): OUT = the sum of IN over the
# sequence so far; CORR = the correlation id it was given.
SEQ_MODEL = r"""
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "IN").as_numpy()
            state = pb_utils.get_input_tensor_by_name(r, "STATE_IN").as_numpy()
            corr = pb_utils.get_input_tensor_by_name(r, "CORRID").as_numpy()
            total = (state + x).astype(np.int32)
            out.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("OUT", total), pb_utils.Tensor("STATE_OUT", total),
                pb_utils.Tensor("CORR", corr.astype(np.uint64))]))
        return out
"""

SEQ_CONFIG = """
backend: "python"
max_batch_size: 4
input [ { name: "IN" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "OUT" data_type: TYPE_INT32 dims: [ 1 ] },
         { name: "CORR" data_type: TYPE_UINT64 dims: [ 1 ] } ]
sequence_batching {
  max_sequence_idle_microseconds: 5000000
  direct { }
  control_input [
    { name: "CORRID" control [ { kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_UINT64 } ] }
  ]
  state [ { input_name: "STATE_IN" output_name: "STATE_OUT" data_type: TYPE_INT32
            dims: [ 1 ] } ]
}
instance_group [ { count: 1 kind: KIND_CPU } ]
"""

# An ensemble of one step: IN -> add -> OUT.
ENSEMBLE_CONFIG = """
platform: "ensemble"
max_batch_size: 0
input [ { name: "IN" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [ { name: "OUT" data_type: TYPE_FP32 dims: [ -1 ] } ]
ensemble_scheduling { step [ {
  model_name: "add" model_version: -1
  input_map { key: "IN" value: "IN" }
  output_map { key: "OUT" value: "OUT" }
} ] }
"""

# OUT = IN, any rank-2 shape (zero-element ones included).
IDENT_2D_CONFIG = """
backend: "python"
max_batch_size: 0
input [ { name: "IN" data_type: TYPE_FP32 dims: [ -1, -1 ] } ]
output [ { name: "OUT" data_type: TYPE_FP32 dims: [ -1, -1 ] } ]
"""
IDENT_2D_MODEL = """
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor(
            "OUT", pb_utils.get_input_tensor_by_name(r, "IN").as_numpy())])
            for r in requests]
"""

MODELS: dict[str, tuple[str, str]] = {
    "bls_probe": (PROBE_CONFIG, PROBE_MODEL),
    "add": (ADD_CONFIG, ADD_MODEL),
    "square": (SQUARE_CONFIG, SQUARE_MODEL),
    "held": (HELD_CONFIG, HELD_MODEL),
    "ticker": (SQUARE_CONFIG, TICKER_MODEL),
    "relay": (SQUARE_CONFIG, RELAY_MODEL),
    "countdown": (COUNTDOWN_CONFIG, COUNTDOWN_MODEL),
    "init_bls": (INIT_BLS_CONFIG, INIT_BLS_MODEL),
    "seq": (SEQ_CONFIG, SEQ_MODEL),
    "ens_add": (ENSEMBLE_CONFIG, ""),
    "ident2d": (IDENT_2D_CONFIG, IDENT_2D_MODEL),
}


def write_repo(root: Path, names: Iterable[str] = MODELS) -> Path:
    """Write the named models (default: all) into ``root``; returns ``root``."""
    for name in names:
        config, model = MODELS[name]
        version = root / name / "1"
        version.mkdir(parents=True, exist_ok=True)
        (root / name / "config.pbtxt").write_text(
            f'name: "{name}"\n' + textwrap.dedent(config)
        )
        if model:  # an ensemble has no model file
            (version / "model.py").write_text(textwrap.dedent(model).lstrip())
    return root


def req(model: str, inputs: Sequence[Any] = (), **kwargs: Any) -> dict[str, Any]:
    """A REQ for a probe script: InferenceRequest(model_name=model, ...)."""
    kwargs.setdefault("requested_output_names", [])
    return {"model_name": model, "inputs": list(inputs), **kwargs}


def probe(url: str, steps: Sequence[dict[str, Any]], protocol: str = "http") -> Any:
    """Run a probe script on the server at ``url``; returns the results list."""
    import numpy as np

    cmd = np.array([json.dumps(list(steps)).encode()], dtype=object)
    if protocol == "http":
        import tritonclient.http as client
    else:
        import tritonclient.grpc as client  # type: ignore[no-redef]
    c = client.InferenceServerClient(url)
    try:
        tensor = client.InferInput("CMD", [1], "BYTES")
        tensor.set_data_from_numpy(cmd)
        result = c.infer("bls_probe", [tensor])
        return json.loads(result.as_numpy("RESULT")[0])
    finally:
        c.close()
