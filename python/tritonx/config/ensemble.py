"""Ensemble checks with Triton's messages, in its two stages.

``validate_ensemble_graph`` runs with the other repository-poll checks: the steps'
fields and the data flow between ensemble tensors (every input used, every output
written, no tensor written twice or left unused, and, tritonx's own, no cycle).
``validate_ensemble_models`` runs
at load time, once the composing models are loaded and their configs complete: each
step's tensors must match the composing model's inputs and outputs in data type and
shape, the ensemble may not batch more than a composing model, and a step may not
mix responses of different decoupled models. It returns whether the ensemble is
decoupled (some decoupled step feeds its outputs), which Triton writes into the
ensemble's config.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from tritonx.config._pb import ModelConfig, ModelInput, ModelOutput, mc
from tritonx.errors import InvalidArgumentError


def _bad(message: str) -> InvalidArgumentError:
    return InvalidArgumentError(message)


@dataclass(eq=False)
class _GraphTensor:
    name: str
    written: bool = False
    ready: bool = False
    prev: list[_GraphTensor] = field(default_factory=list)
    next: list[_GraphTensor] = field(default_factory=list)


def _build_graph(config: ModelConfig) -> dict[str, _GraphTensor]:
    name = config.name
    tensors: dict[str, _GraphTensor] = {}
    for index, step in enumerate(config.ensemble_scheduling.step):
        where = f" in step {index} of ensemble '{name}'"
        if not step.model_name:
            raise _bad("must specify 'model_name'" + where)
        if not step.input_map:
            raise _bad("must specify 'input_map'" + where)
        if not step.output_map:
            raise _bad("must specify 'output_map'" + where)
        written: list[_GraphTensor] = []
        for tensor_name in step.output_map.values():
            node = tensors.get(tensor_name)
            if node is None:
                node = tensors[tensor_name] = _GraphTensor(tensor_name, written=True)
            elif node.written:
                raise _bad(
                    f"ensemble tensor '{tensor_name}' can appear in an output map "
                    f"only once for ensemble '{name}' step {index}"
                )
            else:
                node.written = True
            written.append(node)
        # A proto map cannot name one model input twice, which Triton also rejects.
        for tensor_name in step.input_map.values():
            node = tensors.setdefault(tensor_name, _GraphTensor(tensor_name))
            for output in written:
                output.prev.append(node)
                node.next.append(output)
    return tensors


def _not_written(config: ModelConfig, output: str, node: _GraphTensor) -> str:
    message = f"output '{output}' for ensemble '{config.name}' is not written"
    # Walk back to the first tensor that never became ready (cycles stop the walk).
    last, seen = node, set()
    prev = node.prev
    while prev:
        nodes, prev = prev, []
        for candidate in nodes:
            if not candidate.ready and candidate.name not in seen:
                seen.add(candidate.name)
                last = candidate
                prev = candidate.prev
                break
    if last is not node:
        message += (
            f": at least one of its depending tensors, '{last.name}', is not connected"
        )
    return message


def validate_ensemble_graph(config: ModelConfig) -> None:
    """Step fields and data flow (Triton's ValidateEnsembleSchedulingConfig, after
    the platform/instance-group/optimization/warmup/step-count checks)."""
    name = config.name
    tensors = _build_graph(config)
    ready: deque[_GraphTensor] = deque()
    for inp in config.input:
        node = tensors.get(inp.name)
        if node is None:
            # Triton's text, including its stray quote.
            raise _bad(f"ensemble input '{inp.name}' for ensemble {name}' is not used")
        node.ready = True
        ready.append(node)
    while ready:
        node = ready.popleft()
        for nxt in node.next:
            if nxt.ready:
                continue
            if all(p.ready for p in nxt.prev):
                nxt.ready = True
                ready.append(nxt)
    outputs: set[str] = set()
    for out in config.output:
        node = tensors.get(out.name)
        if node is None:
            raise _bad(f"ensemble output '{out.name}' for ensemble {name}' is not used")
        if not node.ready:
            raise _bad(_not_written(config, out.name, node))
        outputs.add(out.name)
    # Newest first: the order Triton's hash map happens to list them in, which
    # decides the tensor named when several are unused.
    for tensor_name, node in reversed(tensors.items()):
        if tensor_name in outputs:
            continue
        if not node.ready or not node.next:
            raise _bad(
                f"ensemble tensor '{tensor_name}' is unused in ensemble '{name}'"
            )
    _refuse_cycles(name, tensors)


CYCLE = "is written by a step that depends on it: the ensemble would never finish"


def _refuse_cycles(name: str, tensors: Mapping[str, _GraphTensor]) -> None:
    """tritonx's own check: a cycle through an ensemble input (a step writes a
    tensor it depends on) passes Triton's readiness checks, and then every request
    loops through its steps for good (Triton 2.51 never answers it). A depth-first
    walk without recursion (an ensemble may chain many steps)."""
    on_path, done = set(), set()
    for root in tensors.values():
        if root.name in done:
            continue
        on_path.add(root.name)
        stack = [(root, iter(root.next))]
        while stack:
            node, children = stack[-1]
            for nxt in children:
                if nxt.name in on_path:
                    raise _bad(
                        f"ensemble tensor '{nxt.name}' of ensemble '{name}' {CYCLE}"
                    )
                if nxt.name not in done:
                    on_path.add(nxt.name)
                    stack.append((nxt, iter(nxt.next)))
                    break
            else:
                stack.pop()
                on_path.discard(node.name)
                done.add(node.name)


# -- load stage ----------------------------------------------------------------


@dataclass(eq=False)
class _Node:
    model: str
    data_type: int = 0
    dims: tuple[int, ...] = ()
    full_dims: tuple[int, ...] = ()
    decoupled: bool = False
    label: int = 0
    visited: bool = False
    sibling: _Node | None = None
    prev: list[_Node] = field(default_factory=list)
    next: list[_Node] = field(default_factory=list)


def _node(model: str, batching: bool, data_type: int, dims: Sequence[int]) -> _Node:
    full = ((-1,) if batching else ()) + tuple(dims)
    return _Node(model, data_type, tuple(dims), full)


def _dims_match(a: Sequence[int], b: Sequence[int]) -> bool:
    return len(a) == len(b) and all(
        x == y or -1 in (x, y) for x, y in zip(a, b, strict=True)
    )


def _dims_text(dims: Sequence[int]) -> str:
    return "[" + ",".join(str(d) for d in dims) + "]"


def _consistent(lhs: _Node, rhs: _Node, prefix: str) -> None:
    if lhs.data_type != rhs.data_type:
        raise _bad(
            f"{prefix}inconsistent data type: {mc.DataType.Name(lhs.data_type)} is "
            f"inferred from model {lhs.model} while "
            f"{mc.DataType.Name(rhs.data_type)} is inferred from model {rhs.model}"
        )
    if not _dims_match(lhs.dims, rhs.dims) and not _dims_match(
        lhs.full_dims, rhs.full_dims
    ):
        raise _bad(
            f"{prefix}inconsistent shape: {_dims_text(lhs.full_dims)} is inferred "
            f"from model {lhs.model} while {_dims_text(rhs.full_dims)} is inferred "
            f"from model {rhs.model}"
        )


def _io_dims(io: ModelInput | ModelOutput) -> Sequence[int]:
    return io.reshape.shape if io.HasField("reshape") else io.dims


def _map_step(
    ensemble: str,
    step: mc.ModelEnsembling.Step,
    model: ModelConfig,
    tensors: dict[str, _Node],
) -> None:
    step_id = step.model_name
    batching = model.max_batch_size > 0
    where = f"in ensemble {ensemble}, "
    inputs = {i.name for i in model.input}
    for model_input, tensor in step.input_map.items():
        if model_input not in inputs:
            raise _bad(
                f"{where}ensemble tensor {tensor} is mapping to non-existing input "
                f"{model_input} in model {step_id}"
            )
    for inp in model.input:
        tensor = step.input_map.get(inp.name)
        if tensor is None:
            if inp.optional:
                continue
            raise _bad(
                f"{where}input {inp.name} in model {step_id} is not mapped to any "
                "ensemble tensors"
            )
        node = _node(step_id, batching, inp.data_type, inp.dims)
        if tensor in tensors:
            _consistent(tensors[tensor], node, f"{where}ensemble tensor {tensor}: ")
        else:
            tensors[tensor] = node
    outputs = {o.name for o in model.output}
    for model_output, tensor in step.output_map.items():
        if model_output not in outputs:
            raise _bad(
                f"{where}ensemble tensor {tensor} is mapped from non-existing output "
                f"{model_output} in model {step.model_name}"
            )
    sibling = _Node(step_id)
    for out in model.output:
        for model_output, tensor in step.output_map.items():
            if model_output != out.name:
                continue
            node = _node(step_id, batching, out.data_type, out.dims)
            if tensor in tensors:
                _consistent(tensors[tensor], node, f"{where}ensemble tensor {tensor}: ")
            else:
                tensors[tensor] = node
            tensors[tensor].sibling = sibling
    decoupled = model.model_transaction_policy.decoupled
    for tensor in step.output_map.values():
        node = tensors[tensor]
        node.decoupled = decoupled
        for source in step.input_map.values():
            prev = tensors[source]
            node.prev.append(prev)
            prev.next.append(node)


def validate_ensemble_models(
    config: ModelConfig, composing: Mapping[str, ModelConfig]
) -> bool:
    """Load-stage checks against the composing models' configs (by step model
    name); returns whether the ensemble is decoupled."""
    name = config.name
    batching = config.max_batch_size > 0
    tensors: dict[str, _Node] = {}
    for inp in config.input:
        tensors[inp.name] = _node(name, batching, inp.data_type, _io_dims(inp))
    sink = _Node(name)
    for out in config.output:
        node = tensors.setdefault(
            out.name, _node(name, batching, out.data_type, _io_dims(out))
        )
        sink.prev.append(node)
        node.next.append(sink)
    for step in config.ensemble_scheduling.step:
        model = composing[step.model_name]
        if 0 < model.max_batch_size < config.max_batch_size:
            raise _bad(
                f"ensemble {name} allows maximum batch size {config.max_batch_size}, "
                f"but it contains model {step.model_name} which only allows maximum "
                f"batch size to be {model.max_batch_size}"
            )
        _map_step(name, step, model, tensors)

    # Label each tensor with the decoupled step its values come from (0: none); a
    # step's inputs must all share one label.
    label = 0
    queue: deque[_Node] = deque()
    for inp in config.input:
        node = tensors[inp.name]
        node.visited = True
        queue.append(node)
    while queue:
        current = queue.popleft()
        for nxt in current.next:
            if nxt.visited or not all(p.visited for p in nxt.prev):
                continue
            first = nxt.prev[0].label
            if any(p.label != first for p in nxt.prev):
                raise _bad(
                    f"in ensemble {name}, step of model '{nxt.model}' receives inputs "
                    "originated from different decoupled models"
                )
            if nxt.sibling is not None:
                if nxt.sibling.visited:
                    nxt.label = nxt.sibling.label
                else:
                    if nxt.decoupled:
                        label += 1
                        nxt.label = label
                    else:
                        nxt.label = first
                    nxt.sibling.label = nxt.label
                    nxt.sibling.visited = True
            elif nxt.decoupled:
                label += 1
                nxt.label = label
            else:
                nxt.label = first
            nxt.visited = True
            queue.append(nxt)
    return label != 0


def composing_model_names(config: ModelConfig) -> list[str]:
    """The composing models of an ensemble, in step order, each once."""
    return list(dict.fromkeys(s.model_name for s in config.ensemble_scheduling.step))
