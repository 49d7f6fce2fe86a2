"""Ensembles in the model manager: load-time validation with Triton's messages,
explicit load/unload with composing models and dependents, startup ordering."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import ensemble_repo as er
import numpy as np
import pytest
import tritonclient.http as httpclient
from grpcutil import wait_until
from serverutil import RunningServer, run_server
from tritonclient.utils import InferenceServerException

# Triton 2.51's answers (checked against it, see test_ensemble_reference.py).
# Graph errors are found while polling the repository: the client gets the poll
# failure, the log the reason.
POLL_ERRORS = {
    "bad_unused_input": "ensemble input 'EXTRA' for ensemble bad_unused_input' is not used",
    "bad_output_not_used": (
        "ensemble output 'OUTPUT0' for ensemble bad_output_not_used' is not used"
    ),
    "bad_output_not_written": (
        "output 'OUTPUT0' for ensemble 'bad_output_not_written' is not written: at "
        "least one of its depending tensors, 'ghost', is not connected"
    ),
    "bad_produced_twice": (
        "ensemble tensor 'OUTPUT0' can appear in an output map only once for "
        "ensemble 'bad_produced_twice' step 1"
    ),
    "bad_cycle": "ensemble tensor 'u' is unused in ensemble 'bad_cycle'",
    "bad_unused_tensor": "ensemble tensor 'dangling' is unused in ensemble 'bad_unused_tensor'",
}
LOAD_ERRORS = {
    "bad_unknown_model": (
        "ensemble bad_unknown_model contains models that are not available or "
        "ambiguous: no_such_model"
    ),
    "bad_dtype": (
        "in ensemble bad_dtype, ensemble tensor INPUT0: inconsistent data type: "
        "TYPE_INT32 is inferred from model bad_dtype while TYPE_FP32 is inferred "
        "from model add_one"
    ),
    "bad_dims": (
        "in ensemble bad_dims, ensemble tensor OUTPUT0: inconsistent shape: [-1,5] "
        "is inferred from model bad_dims while [-1,4] is inferred from model add_one"
    ),
    "bad_batch": (
        "ensemble bad_batch allows maximum batch size 16, but it contains model "
        "add_one which only allows maximum batch size to be 8"
    ),
    "bad_input_name": (
        "in ensemble bad_input_name, ensemble tensor INPUT0 is mapping to "
        "non-existing input NOPE in model add_one"
    ),
    "bad_output_name": (
        "in ensemble bad_output_name, ensemble tensor OUTPUT0 is mapped from "
        "non-existing output NOPE in model add_one"
    ),
    "bad_mixed_decoupled": (
        "in ensemble bad_mixed_decoupled, step of model 'bad_mixed_decoupled' "
        "receives inputs originated from different decoupled models"
    ),
}


def load_error(client: httpclient.InferenceServerClient, name: str) -> tuple[str, str]:
    with pytest.raises(InferenceServerException) as info:
        client.load_model(name)
    return str(info.value.status()), str(info.value.message())


@pytest.fixture(scope="module")
def explicit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    repo = tmp_path_factory.mktemp("ensembles") / "repo"
    repo.mkdir()
    er.build_basic_repo(repo)
    er.write_bad_ensembles(repo)
    with run_server(repo, "--model-control-mode=explicit") as running:
        yield running


def index(client: httpclient.InferenceServerClient) -> dict[str, tuple[str, str]]:
    """Each model's (state, reason), once no unload is still under way (an unload
    is answered when the model stops serving, as Triton's)."""

    def rows() -> dict[str, tuple[str, str]]:
        return {
            row["name"]: (row.get("state", ""), row.get("reason", ""))
            for row in client.get_model_repository_index()
        }

    wait_until(
        lambda: all(state != "UNLOADING" for state, _ in rows().values()),
        "the unloads to finish",
    )
    return rows()


def test_load_time_validation_messages(explicit: RunningServer) -> None:
    client = httpclient.InferenceServerClient(explicit.http_url)
    for name, message in LOAD_ERRORS.items():
        assert load_error(client, name) == (
            "400",
            f"load failed for model '{name}': {message}\n",
        ), name
    for name, message in POLL_ERRORS.items():
        assert load_error(client, name) == (
            "500",
            f"failed to load '{name}', failed to poll from model repository",
        ), name
        assert explicit.wait_for_log(message), (name, explicit.log_text())
    # A failed ensemble has no version state; what it loaded for itself stays.
    rows = index(client)
    assert rows["bad_dtype"] == ("", "")
    assert rows["add_one"] == ("READY", "")


def test_explicit_load_unload_with_dependents(explicit: RunningServer) -> None:
    client = httpclient.InferenceServerClient(explicit.http_url)
    for name in ("pipeline", "add_one", "double"):
        with contextlib.suppress(InferenceServerException):
            client.unload_model(name)
    client.load_model("pipeline")  # loads add_one and double for itself
    assert all(client.is_model_ready(m) for m in ("pipeline", "add_one", "double"))

    # Unloading a composing model takes its ensembles down; loading it brings them back.
    client.unload_model("double")
    assert not client.is_model_ready("pipeline")
    assert index(client)["pipeline"] == ("UNAVAILABLE", "unloaded")
    client.load_model("double")
    assert client.is_model_ready("pipeline")

    # unload_dependents: the composing models loaded only for the ensemble go too,
    # not those loaded on their own (double was, just above).
    client.unload_model("pipeline", unload_dependents=True)
    rows = index(client)
    assert rows["pipeline"] == ("UNAVAILABLE", "unloaded")
    assert rows["add_one"] == ("UNAVAILABLE", "unloaded")
    assert rows["double"] == ("READY", "")
    # Without it, they stay.
    client.load_model("pipeline")
    client.unload_model("pipeline")
    assert client.is_model_ready("double")


def test_none_mode_orders_startup(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    er.build_basic_repo(repo)
    # An ensemble of ensembles sorts before its parts by name.
    er.write_ensemble(
        repo,
        "a_outer",
        [
            er.step("pipeline", {"INPUT0": "INPUT0"}, {"OUTPUT0": "p"}),
            er.step("double", {"INPUT0": "p"}, {"OUTPUT0": "OUTPUT0"}),
        ],
    )
    with run_server(repo) as server:
        client = httpclient.InferenceServerClient(server.http_url)
        assert client.is_server_ready()
        for name in ("a_outer", "pipeline", "fan", "stream", "failing"):
            assert client.is_model_ready(name), name
        # An ensemble step runs an ensemble.
        x = np.arange(4, dtype=np.float32).reshape(1, 4)
        inp = httpclient.InferInput("INPUT0", [1, 4], "FP32")
        inp.set_data_from_numpy(x)
        result = client.infer("a_outer", [inp])
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), ((x + 1) * 2 + 1) * 2)
