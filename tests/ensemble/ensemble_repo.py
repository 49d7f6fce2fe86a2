"""Model repositories for the ensemble tests: small Python composing models and
ensembles over them, written the same way for tritonx and the reference Triton."""

from __future__ import annotations

import textwrap
from pathlib import Path

# FP32 INPUT0 [4] -> OUTPUT0 = f(INPUT0); the expression is the model's parameter.
UNARY_MODEL = textwrap.dedent(
    """
    import json

    import numpy as np
    import triton_python_backend_utils as pb_utils


    class TritonPythonModel:
        def initialize(self, args):
            params = json.loads(args["model_config"]).get("parameters", {})
            self.add = float(params.get("add", {}).get("string_value", "0"))
            self.mul = float(params.get("mul", {}).get("string_value", "1"))

        def execute(self, requests):
            out = []
            for r in requests:
                x = pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy()
                y = (x * self.mul + self.add).astype(np.float32)
                out.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", y)]))
            return out
    """
)

# INPUT0 + INPUT1 -> OUTPUT0 (the fan-in step).
SUM_MODEL = textwrap.dedent(
    """
    import triton_python_backend_utils as pb_utils


    class TritonPythonModel:
        def execute(self, requests):
            out = []
            for r in requests:
                a = pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy()
                b = pb_utils.get_input_tensor_by_name(r, "INPUT1").as_numpy()
                out.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", a + b)]))
            return out
    """
)

# Always answers with an error.
FAIL_MODEL = textwrap.dedent(
    """
    import triton_python_backend_utils as pb_utils


    class TritonPythonModel:
        def execute(self, requests):
            return [
                pb_utils.InferenceResponse(
                    error=pb_utils.TritonError("step failed on purpose"))
                for _ in requests
            ]
    """
)

# Decoupled: three responses OUTPUT0 = INPUT0 * k (k = 1, 2, 3), then FINAL.
REPEAT_MODEL = textwrap.dedent(
    """
    import triton_python_backend_utils as pb_utils


    class TritonPythonModel:
        def execute(self, requests):
            for r in requests:
                x = pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy()
                sender = r.get_response_sender()
                for k in (1, 2, 3):
                    sender.send(pb_utils.InferenceResponse(
                        [pb_utils.Tensor("OUTPUT0", x * k)]))
                sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
            return None
    """
)


def tensor(name: str, dims: str = "[ 4 ]", dtype: str = "TYPE_FP32") -> str:
    return f'{{ name: "{name}" data_type: {dtype} dims: {dims} }}'


def io_block(inputs: list[str], outputs: list[str]) -> str:
    return f"input [ {', '.join(inputs)} ]\noutput [ {', '.join(outputs)} ]\n"


def write_model(
    repo: Path, name: str, source: str, config_body: str, max_batch_size: int = 8
) -> None:
    model_dir = repo / name
    (model_dir / "1").mkdir(parents=True, exist_ok=True)
    (model_dir / "1" / "model.py").write_text(source)
    (model_dir / "config.pbtxt").write_text(
        f'name: "{name}"\nbackend: "python"\nmax_batch_size: {max_batch_size}\n'
        + config_body
    )


def write_unary(
    repo: Path,
    name: str,
    add: float = 0.0,
    mul: float = 1.0,
    extra: str = "",
    max_batch_size: int = 8,
) -> None:
    body = io_block([tensor("INPUT0")], [tensor("OUTPUT0")])
    body += (
        f'parameters [ {{ key: "add" value: {{ string_value: "{add}" }} }}, '
        f'{{ key: "mul" value: {{ string_value: "{mul}" }} }} ]\n'
        "instance_group [ { kind: KIND_CPU count: 1 } ]\n" + extra
    )
    write_model(repo, name, UNARY_MODEL, body, max_batch_size)


def step(model: str, inputs: dict[str, str], outputs: dict[str, str]) -> str:
    maps = "".join(
        f' input_map {{ key: "{k}" value: "{v}" }}' for k, v in inputs.items()
    )
    maps += "".join(
        f' output_map {{ key: "{k}" value: "{v}" }}' for k, v in outputs.items()
    )
    return f'{{ model_name: "{model}" model_version: -1{maps} }}'


def write_ensemble(
    repo: Path,
    name: str,
    steps: list[str],
    inputs: list[str] | None = None,
    outputs: list[str] | None = None,
    max_batch_size: int = 8,
    extra: str = "",
) -> None:
    model_dir = repo / name
    (model_dir / "1").mkdir(parents=True, exist_ok=True)
    body = io_block(inputs or [tensor("INPUT0")], outputs or [tensor("OUTPUT0")])
    (model_dir / "config.pbtxt").write_text(
        f'name: "{name}"\nplatform: "ensemble"\nmax_batch_size: {max_batch_size}\n'
        + body
        + f"ensemble_scheduling {{ step [ {', '.join(steps)} ] }}\n"
        + extra
    )


def build_basic_repo(repo: Path) -> None:
    """The composing models and the working ensembles every test uses.

    pipeline:  INPUT0 -> add_one -> double -> add_one -> OUTPUT0   ((x+1)*2+1)
    fan:       INPUT0 -> add_one -> a, INPUT0 -> double -> b, sum(a, b) -> OUTPUT0
               (plus a and b as outputs A and B)
    stream:    INPUT0 -> repeat (decoupled, 3 responses) -> add_one -> OUTPUT0
    failing:   INPUT0 -> add_one -> fail -> OUTPUT0
    """
    write_unary(repo, "add_one", add=1.0)
    write_unary(repo, "double", mul=2.0)
    write_model(
        repo,
        "sum",
        SUM_MODEL,
        io_block([tensor("INPUT0"), tensor("INPUT1")], [tensor("OUTPUT0")])
        + "instance_group [ { kind: KIND_CPU count: 1 } ]\n",
    )
    write_model(
        repo,
        "fail",
        FAIL_MODEL,
        io_block([tensor("INPUT0")], [tensor("OUTPUT0")])
        + "instance_group [ { kind: KIND_CPU count: 1 } ]\n",
    )
    write_model(
        repo,
        "repeat",
        REPEAT_MODEL,
        io_block([tensor("INPUT0")], [tensor("OUTPUT0")])
        + "instance_group [ { kind: KIND_CPU count: 1 } ]\n"
        + "model_transaction_policy { decoupled: true }\n",
    )
    write_ensemble(
        repo,
        "pipeline",
        [
            step("add_one", {"INPUT0": "INPUT0"}, {"OUTPUT0": "t1"}),
            step("double", {"INPUT0": "t1"}, {"OUTPUT0": "t2"}),
            step("add_one", {"INPUT0": "t2"}, {"OUTPUT0": "OUTPUT0"}),
        ],
    )
    write_ensemble(
        repo,
        "fan",
        [
            step("add_one", {"INPUT0": "INPUT0"}, {"OUTPUT0": "A"}),
            step("double", {"INPUT0": "INPUT0"}, {"OUTPUT0": "B"}),
            step("sum", {"INPUT0": "A", "INPUT1": "B"}, {"OUTPUT0": "OUTPUT0"}),
        ],
        outputs=[tensor("OUTPUT0"), tensor("A"), tensor("B")],
    )
    write_ensemble(
        repo,
        "stream",
        [
            step("repeat", {"INPUT0": "INPUT0"}, {"OUTPUT0": "r"}),
            step("add_one", {"INPUT0": "r"}, {"OUTPUT0": "OUTPUT0"}),
        ],
    )
    write_ensemble(
        repo,
        "failing",
        [
            step("add_one", {"INPUT0": "INPUT0"}, {"OUTPUT0": "t"}),
            step("fail", {"INPUT0": "t"}, {"OUTPUT0": "OUTPUT0"}),
        ],
    )


# Ensembles that fail to load, each with one mistake (name -> steps, inputs, outputs,
# max_batch_size). The messages are Triton's; the tests compare them.
def bad_ensembles() -> dict[str, dict[str, object]]:
    x = tensor("INPUT0")
    return {
        "bad_unknown_model": {
            "steps": [
                step("no_such_model", {"INPUT0": "INPUT0"}, {"OUTPUT0": "OUTPUT0"})
            ]
        },
        "bad_unused_input": {
            "steps": [step("add_one", {"INPUT0": "INPUT0"}, {"OUTPUT0": "OUTPUT0"})],
            "inputs": [x, tensor("EXTRA")],
        },
        "bad_output_not_used": {
            "steps": [
                step("add_one", {"INPUT0": "INPUT0"}, {"OUTPUT0": "t"}),
                step("double", {"INPUT0": "t"}, {"OUTPUT0": "u"}),
            ],
        },
        "bad_output_not_written": {
            "steps": [
                step("add_one", {"INPUT0": "INPUT0"}, {"OUTPUT0": "x"}),
                step("sum", {"INPUT0": "x", "INPUT1": "ghost"}, {"OUTPUT0": "OUTPUT0"}),
            ],
        },
        "bad_produced_twice": {
            "steps": [
                step("add_one", {"INPUT0": "INPUT0"}, {"OUTPUT0": "OUTPUT0"}),
                step("double", {"INPUT0": "INPUT0"}, {"OUTPUT0": "OUTPUT0"}),
            ],
        },
        "bad_cycle": {
            "steps": [
                step("add_one", {"INPUT0": "u"}, {"OUTPUT0": "t"}),
                step("double", {"INPUT0": "t"}, {"OUTPUT0": "u"}),
                step("add_one", {"INPUT0": "INPUT0"}, {"OUTPUT0": "OUTPUT0"}),
            ],
        },
        "bad_unused_tensor": {
            "steps": [
                step("add_one", {"INPUT0": "INPUT0"}, {"OUTPUT0": "OUTPUT0"}),
                step("double", {"INPUT0": "INPUT0"}, {"OUTPUT0": "dangling"}),
            ],
        },
        "bad_dtype": {
            "steps": [step("add_one", {"INPUT0": "INPUT0"}, {"OUTPUT0": "OUTPUT0"})],
            "inputs": [tensor("INPUT0", dtype="TYPE_INT32")],
        },
        "bad_dims": {
            "steps": [step("add_one", {"INPUT0": "INPUT0"}, {"OUTPUT0": "OUTPUT0"})],
            "outputs": [tensor("OUTPUT0", dims="[ 5 ]")],
        },
        "bad_batch": {
            "steps": [step("add_one", {"INPUT0": "INPUT0"}, {"OUTPUT0": "OUTPUT0"})],
            "max_batch_size": 16,
        },
        "bad_input_name": {
            "steps": [step("add_one", {"NOPE": "INPUT0"}, {"OUTPUT0": "OUTPUT0"})],
        },
        "bad_output_name": {
            "steps": [step("add_one", {"INPUT0": "INPUT0"}, {"NOPE": "OUTPUT0"})],
        },
        "bad_mixed_decoupled": {
            "steps": [
                step("repeat", {"INPUT0": "INPUT0"}, {"OUTPUT0": "r"}),
                step(
                    "sum", {"INPUT0": "r", "INPUT1": "INPUT0"}, {"OUTPUT0": "OUTPUT0"}
                ),
            ],
        },
    }


def write_bad_ensembles(repo: Path) -> list[str]:
    names = []
    for name, spec in bad_ensembles().items():
        write_ensemble(
            repo,
            name,
            spec["steps"],  # type: ignore[arg-type]
            inputs=spec.get("inputs"),  # type: ignore[arg-type]
            outputs=spec.get("outputs"),  # type: ignore[arg-type]
            max_batch_size=int(spec.get("max_batch_size", 8)),  # type: ignore[call-overload]
        )
        names.append(name)
    return names


# A composing model with a dynamic batcher that holds its queue until two requests
# are there (preferred size 2, a long delay): one ensemble request and one direct
# request always execute as one batch.
def write_batched(repo: Path) -> None:
    write_unary(
        repo,
        "batched",
        mul=3.0,
        max_batch_size=2,
        extra="dynamic_batching { preferred_batch_size: [ 2 ] "
        "max_queue_delay_microseconds: 30000000 }\n",
    )
    write_ensemble(
        repo,
        "via_batched",
        [step("batched", {"INPUT0": "INPUT0"}, {"OUTPUT0": "OUTPUT0"})],
        max_batch_size=2,
    )


# OUTPUT0 = INPUT0 + the request parameter "offset" (0 when absent): shows that an
# ensemble's request parameters reach its steps.
PARAM_MODEL = textwrap.dedent(
    """
    import json

    import numpy as np
    import triton_python_backend_utils as pb_utils


    class TritonPythonModel:
        def execute(self, requests):
            out = []
            for r in requests:
                offset = float(json.loads(r.parameters() or "{}").get("offset", 0))
                x = pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy()
                y = (x + offset).astype(np.float32)
                out.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", y)]))
            return out
    """
)


def write_extras(repo: Path, held_model: str) -> None:
    """A parameter-reading step and a step held until cancelled, each behind an
    ensemble (param_pipe, via_held)."""
    write_model(
        repo,
        "param",
        PARAM_MODEL,
        io_block([tensor("INPUT0")], [tensor("OUTPUT0")])
        + "instance_group [ { kind: KIND_CPU count: 1 } ]\n",
    )
    write_ensemble(
        repo,
        "param_pipe",
        [
            step("add_one", {"INPUT0": "INPUT0"}, {"OUTPUT0": "t"}),
            step("param", {"INPUT0": "t"}, {"OUTPUT0": "OUTPUT0"}),
        ],
    )
    one = "[ 1 ]"
    write_model(
        repo,
        "held",
        held_model,
        io_block([tensor("INPUT0", one)], [tensor("OUTPUT0", one)])
        + "instance_group [ { kind: KIND_CPU count: 1 } ]\n",
        max_batch_size=0,
    )
    write_ensemble(
        repo,
        "via_held",
        [step("held", {"INPUT0": "INPUT0"}, {"OUTPUT0": "OUTPUT0"})],
        inputs=[tensor("INPUT0", one)],
        outputs=[tensor("OUTPUT0", one)],
        max_batch_size=0,
    )
