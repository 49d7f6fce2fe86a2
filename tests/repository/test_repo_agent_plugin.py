"""Repository agents in tritonx alone: a third-party agent found by entry point (it
moves the model, and the agent after it sees the new location), the order of the
actions agents hear, and the checksum agent's cases Triton cannot show (its agent
crashes the server on a directory and reads whole files into memory)."""

from __future__ import annotations

import hashlib
import importlib
import os
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from serverutil import load_over_http, pip_install_target, run_server, server_env
from test_repo_agents import ADD_SUB_PY, A, B, add_model, infer

from tritonx.errors import InvalidArgumentError, UnsupportedError
from tritonx.repository import agents
from tritonx.repository.agents import AgentAction, AgentModel, get_agent
from tritonx.repository.checksum_agent import ChecksumAgent
from tritonx.repository.polling import PollFailure

PLUGIN_SRC = (
    Path(__file__).resolve().parents[1] / "plugins" / "tritonx_example_repoagent"
)


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example agent pip-installed into a private --target directory."""
    target = pip_install_target(PLUGIN_SRC, tmp_path_factory.mktemp("agent"))
    return target


@pytest.fixture
def with_plugin(plugin_site: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.syspath_prepend(str(plugin_site))
    importlib.invalidate_caches()
    agents.clear_cache()
    yield
    agents.clear_cache()
    sys.modules.pop("tritonx_example_repoagent", None)


def staged_model(repo: Path, name: str, log: Path, then: list) -> Path:
    """A model whose version 1 exists only once the "stage" agent ran: the
    repository holds it as ``payload/``."""
    stage = ("stage", [("from", "payload"), ("log", str(log))])
    model = add_model(repo, name, [stage, *then])
    (model / "1").rename(model / "payload")
    return model


def test_entry_point_agent_moves_the_model(plugin_site: Path, tmp_path: Path) -> None:
    log = tmp_path / "actions"
    md5 = hashlib.md5(ADD_SUB_PY.encode()).hexdigest()
    # The checksum agent runs after "stage": it checks the staged copy.
    staged_model(
        tmp_path / "repo", "staged", log, [("checksum", [("MD5:1/model.py", md5)])]
    )
    staged_model(tmp_path / "repo", "refused", log, [("nosuch", [])])
    # The server's own path (the source tree, when tests run from it) stays.
    paths = [str(plugin_site), server_env().get("PYTHONPATH", "")]
    env = {"PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    with run_server(
        tmp_path / "repo", "--model-control-mode=explicit", env=env
    ) as server:
        assert load_over_http(server, "staged") == (200, None)
        assert infer(server, "staged") == (A + B).tolist()
        assert load_over_http(server, "staged") == (200, None)  # a reload
        assert load_over_http(server, "refused")[0] == 500
        unload = f"http://{server.http_url}/v2/repository/models/staged/unload"
        urllib.request.urlopen(urllib.request.Request(unload, data=b"", method="POST"))
        assert server.wait_for_log("successfully unloaded 'staged'")
    # The reload's chain completes before the one it replaces hears UNLOAD; a
    # failed load hears LOAD_FAIL; an unload UNLOAD then UNLOAD_COMPLETE.
    assert log.read_text().split("\n")[:-1] == [
        "staged LOAD",
        "staged LOAD_COMPLETE",
        "staged LOAD",
        "staged LOAD_COMPLETE",
        "staged UNLOAD",
        "staged UNLOAD_COMPLETE",
        "refused LOAD",
        "refused LOAD_FAIL",
        "staged UNLOAD",
        "staged UNLOAD_COMPLETE",
    ]


def test_entry_point_is_listed(with_plugin: None) -> None:
    assert {"checksum", "stage"} <= set(agents.available_agents())


def checksum(location: Path, *params: tuple[str, str]) -> None:
    model = AgentModel("m", location, agents.ModelConfig(), list(params))
    ChecksumAgent().model_action(model, AgentAction.LOAD)


def test_checksum_reads_large_files_in_chunks(tmp_path: Path) -> None:
    data = bytes(range(256)) * (3 * 4096 + 17)  # a little over 3 MiB
    (tmp_path / "weights.bin").write_bytes(data)
    checksum(tmp_path, ("MD5:weights.bin", hashlib.md5(data).hexdigest()))
    with pytest.raises(InvalidArgumentError, match="Mismatched MD5 hash"):
        checksum(tmp_path, ("MD5:weights.bin", hashlib.md5(data[1:]).hexdigest()))


def test_checksum_of_a_directory_fails_the_load(tmp_path: Path) -> None:
    # Triton's agent aborts the whole server here; tritonx fails the one load.
    (tmp_path / "1").mkdir()
    with pytest.raises(InvalidArgumentError) as info:
        checksum(tmp_path, ("MD5:1", "0" * 32))
    assert info.value.message == "failed to open text file for read 1: Is a directory"


def test_checksum_codes(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedError):
        checksum(tmp_path, ("sha1:x", "0"))
    with pytest.raises(InvalidArgumentError, match="failed to parse key: x"):
        checksum(tmp_path, ("x", "0"))


def test_unknown_agent_names_the_directory(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        get_agent("nosuch", str(tmp_path))
    assert info.value.message == (
        f"unable to find 'libtritonrepoagent_nosuch.so' for repo agent 'nosuch', "
        f"searched: {tmp_path}"
    )
    # A Triton C API agent where tritonserver would load it: say why it is not used.
    library = tmp_path / "nosuch" / "libtritonrepoagent_nosuch.so"
    library.parent.mkdir()
    library.write_bytes(b"")
    with pytest.raises(InvalidArgumentError, match="Triton C API library"):
        get_agent("nosuch", str(tmp_path))


def test_location_changes_only_during_load(tmp_path: Path) -> None:
    model = AgentModel("m", tmp_path, agents.ModelConfig(), [])
    model.action = AgentAction.LOAD_COMPLETE
    with pytest.raises(InvalidArgumentError, match="only be updated during"):
        model.set_location(tmp_path / "elsewhere")


def test_agent_failure_is_a_poll_failure(tmp_path: Path) -> None:
    config = agents.ModelConfig(name="m")
    config.model_repository_agents.agents.add(name="nosuch")
    with pytest.raises(PollFailure) as info:
        agents.run_load_agents(config, tmp_path, "/agents")
    assert info.value.detail.endswith("searched: /agents")
    assert agents.run_load_agents(agents.ModelConfig(), tmp_path, "/agents") is None
