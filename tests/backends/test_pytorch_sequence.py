"""TorchScript models and exported programs under the sequence batcher: control tensors and implicit
state reach forward's arguments by their ``<name>__<index>``, the next state is
computed on every run and carried per sequence, and Triton's load checks (its
libtorch backend, r24.10) refuse the namings it refuses. Through a real server and
tritonclient; Triton 2.51's reference has no libtorch backend, so the messages
are Triton's source's."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import torchmodels as tm  # noqa: E402
import tritonclient.grpc as grpcclient  # noqa: E402
import tritonclient.http as httpclient  # noqa: E402
from serverutil import RunningServer, run_server  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402

Tensor = torch.Tensor


class Accumulate(torch.nn.Module):
    """OUTPUT__0 = INPUT__0 + the state (dropped at a start, kept when ready);
    OUTPUT__1 = the correlation ID; the next state = OUTPUT__0."""

    def forward(
        self, x: Tensor, state: Tensor, start: Tensor, ready: Tensor, corrid: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        total = x + state * (1 - start) * ready
        return total, corrid, total


class TwoInputs(torch.nn.Module):
    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return x + y


class ThreeInputs(torch.nn.Module):
    def forward(self, x: Tensor, y: Tensor, z: Tensor) -> Tensor:
        return x + y + z


def _control(name: str, kind: str, spec: str) -> str:
    return f'{{ name: "{name}" control [ {{ kind: {kind} {spec} }} ] }}'


START = _control("START__2", "CONTROL_SEQUENCE_START", "int32_false_true: [ 0, 1 ]")
READY = _control("READY__3", "CONTROL_SEQUENCE_READY", "int32_false_true: [ 0, 1 ]")
CORRID = _control("CORRID__4", "CONTROL_SEQUENCE_CORRID", "data_type: TYPE_INT64")
STATE = (
    'state [ { input_name: "STATE__1" output_name: "STATE__2" '
    "data_type: TYPE_INT32 dims: [ 1 ] } ]"
)


def _config(
    batch: int,
    controls: list[str],
    state: str = STATE,
    inputs: tuple[str, ...] = ("INPUT__0",),
    outputs: tuple[tuple[str, str], ...] = (
        ("OUTPUT__0", "TYPE_INT32"),
        ("OUTPUT__1", "TYPE_INT64"),
    ),
) -> str:
    ins = ", ".join(
        f'{{ name: "{n}" data_type: TYPE_INT32 dims: [ 1 ] }}' for n in inputs
    )
    outs = ", ".join(
        f'{{ name: "{n}" data_type: {t} dims: [ 1 ] }}' for n, t in outputs
    )
    return (
        f'backend: "pytorch"\nmax_batch_size: {batch}\n'
        f"input [ {ins} ]\noutput [ {outs} ]\n"
        f"sequence_batching {{ control_input [ {', '.join(controls)} ] {state} }}\n"
    )


LOAD_ERRORS = {
    "control_unindexed": "input 'START' does not follow <name>__<index> naming "
    "convention.",
    "inputs_not_indexed": "PyTorch model 'inputs_not_indexed' is using sequence "
    "batching with state but not all inputs and outputs follow the <name>__<index> "
    "naming convention. ",
    "state_output_unindexed": "PyTorch model 'state_output_unindexed' is using "
    "sequence batching with state but state 'NEXT' does not follow the "
    "<name>__<index> naming convention. ",
    "state_not_counted": "unable to load model 'state_not_counted', configuration "
    "expects 3 inputs, model provides 2",
    "control_index_too_large": "unable to load model 'control_index_too_large': "
    "input 'START__5' has index 5, but the model takes 2 inputs",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    repo = tmp_path_factory.mktemp("torch_sequence") / "repo"
    repo.mkdir()
    controls = [START, READY, CORRID]
    # Two sequences at once need two slots: without batching, one per instance
    # (with one, the second sequence would wait for the first to end or idle out).
    two = "instance_group [ { kind: KIND_CPU count: 2 } ]\n"
    tm.script(repo, "accumulate", Accumulate(), two + _config(0, controls))
    tm.script(repo, "accumulate_batched", Accumulate(), _config(4, controls))

    # The same module as a torch.export program (model.pt2): its arguments are
    # placed by the same <name>__<index> rule.
    def example(batch: int, shape: tuple[int, ...]) -> tuple[Tensor, ...]:
        ints = [torch.ones(batch, *shape, dtype=torch.int32) for _ in range(4)]
        return (*ints, torch.ones(batch, *shape, dtype=torch.int64))

    one = example(1, ())
    tm.export(
        repo, "accumulate_pt2", Accumulate(), one, two + _config(0, controls), False
    )
    pair = example(2, (1,))
    tm.export(repo, "accumulate_pt2_batched", Accumulate(), pair, _config(4, controls))
    plain_start = _control(
        "START", "CONTROL_SEQUENCE_START", "int32_false_true: [ 0, 1 ]"
    )
    tm.script(repo, "control_unindexed", TwoInputs(), _config(0, [plain_start], ""))
    tm.script(
        repo,
        "inputs_not_indexed",
        ThreeInputs(),
        _config(0, [START], inputs=("INPUT",), outputs=(("OUTPUT__0", "TYPE_INT32"),)),
    )
    next_state = STATE.replace('"STATE__2"', '"NEXT"')
    tm.script(
        repo,
        "state_output_unindexed",
        ThreeInputs(),
        _config(0, [START], next_state, outputs=(("OUTPUT__0", "TYPE_INT32"),)),
    )
    far_start = plain_start.replace('"START"', '"START__5"')
    tm.script(repo, "control_index_too_large", TwoInputs(), _config(0, [far_start], ""))
    tm.script(
        repo,
        "state_not_counted",
        TwoInputs(),
        _config(0, [START], outputs=(("OUTPUT__0", "TYPE_INT32"),)),
    )
    with run_server(repo, "--model-control-mode=explicit") as running:
        yield running


@pytest.mark.parametrize("name", sorted(LOAD_ERRORS))
def test_load_errors(server: RunningServer, name: str) -> None:
    client = httpclient.InferenceServerClient(server.http_url)
    with pytest.raises(InferenceServerException) as info:
        client.load_model(name)
    message = str(info.value.message())
    assert message.startswith(f"load failed for model '{name}': "), message
    assert LOAD_ERRORS[name] in message
    assert not client.is_model_ready(name)


def _step(
    client: grpcclient.InferenceServerClient,
    model: str,
    sequence: int,
    value: int,
    start: bool = False,
    end: bool = False,
) -> tuple[int, int, list[str]]:
    batched = model.endswith("batched")
    shape = [1, 1] if batched else [1]
    x = grpcclient.InferInput("INPUT__0", shape, "INT32")
    x.set_data_from_numpy(np.full(shape, value, np.int32))
    result = client.infer(
        model, [x], sequence_id=sequence, sequence_start=start, sequence_end=end
    )
    names = [o.name for o in result.get_response().outputs]
    total = result.as_numpy("OUTPUT__0")
    corrid = result.as_numpy("OUTPUT__1")
    assert total is not None and corrid is not None
    return int(total.reshape(-1)[0]), int(corrid.reshape(-1)[0]), names


@pytest.mark.parametrize(
    "model",
    ["accumulate", "accumulate_batched", "accumulate_pt2", "accumulate_pt2_batched"],
)
def test_state_carries_per_sequence(server: RunningServer, model: str) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    client.load_model(model)
    try:
        # Two sequences interleaved: each keeps its own state.
        seen = [
            _step(client, model, 7, 1000, start=True),
            _step(client, model, 8, 50, start=True),
            _step(client, model, 7, 1),
            _step(client, model, 8, 5),
            _step(client, model, 7, 2, end=True),
            _step(client, model, 8, 0, end=True),
            # A new sequence with an old ID starts from its start value again.
            _step(client, model, 7, 9, start=True, end=True),
        ]
    finally:
        client.unload_model(model)
    both = ["OUTPUT__0", "OUTPUT__1"]
    assert seen == [
        (1000, 7, both),
        (50, 8, both),
        (1001, 7, both),
        (55, 8, both),
        (1003, 7, both),
        (55, 8, both),
        (9, 7, both),
    ]


def test_state_is_kept_when_no_request_asks_for_an_output(
    server: RunningServer,
) -> None:
    """Only OUTPUT__1 requested: the next state (which is OUTPUT__0) still carries."""
    client = grpcclient.InferenceServerClient(server.grpc_url)
    client.load_model("accumulate")
    try:
        x = grpcclient.InferInput("INPUT__0", [1], "INT32")
        only_corrid = [grpcclient.InferRequestedOutput("OUTPUT__1")]
        for value, start in ((10, True), (20, False)):
            x.set_data_from_numpy(np.array([value], np.int32))
            result = client.infer(
                "accumulate",
                [x],
                outputs=only_corrid,
                sequence_id=3,
                sequence_start=start,
            )
            assert [o.name for o in result.get_response().outputs] == ["OUTPUT__1"]
        total, _, _ = _step(client, "accumulate", 3, 5, end=True)
    finally:
        client.unload_model("accumulate")
    assert total == 35
