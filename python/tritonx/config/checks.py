"""Load-time checks that are tritonx's own (unsupported features) and of warmup
samples."""

from __future__ import annotations

from tritonx.config._pb import ModelConfig, mc
from tritonx.errors import InvalidArgumentError


def check_supported(config: ModelConfig) -> None:
    """Refuse what tritonx parses and echoes but cannot serve yet.

    Triton loads these; tritonx fails the load with UNSUPPORTED and says why, so a
    model never runs with semantics that silently differ from Triton's.
    """
    name = config.name
    # Triton accepts duplicate tensor names but then cannot route them; reject.
    for kind, tensors in (("input", config.input), ("output", config.output)):
        seen: set[str] = set()
        for tensor in tensors:
            if tensor.name in seen:
                raise InvalidArgumentError(
                    f"model {kind} '{tensor.name}' is specified more than once "
                    f"for {name}"
                )
            seen.add(tensor.name)


def validate_warmup_sample(sample: mc.ModelWarmup) -> None:
    """The checks Triton makes of a warmup sample before making its data (its
    texts), run per sample when an instance warms up (repository/warmup.py).

    Triton looks at every input's dims before any input's data source. Checks
    that need a request (unknown input names, data type, batch size) are left to
    the core's request validation, as in Triton.
    """
    for input_name, spec in sample.inputs.items():
        if any(dim == -1 for dim in spec.dims):
            raise InvalidArgumentError(
                "warmup setting expects all variable-size dimensions are "
                f"specified for input '{input_name}'"
            )
    for input_name, spec in sample.inputs.items():
        if spec.WhichOneof("input_data_type") is None:
            raise InvalidArgumentError(
                "[request id: <id_unknown>] warmup setting expects input "
                f"'{input_name}' to have input_data_type set"
            )
