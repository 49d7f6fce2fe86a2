"""model_warmup before READY, and loads with a config override and files."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest
from repo_helpers import MODEL_PY, Repo, infer, make_manager, model_config, run

from tritonx.errors import InternalError, InvalidArgumentError

WARMUP = """
instance_group [{ count: 2 kind: KIND_CPU }]
model_warmup [{
  name: "zero sample"
  batch_size: 3
  count: 2
  inputs { key: "INPUT0" value: { data_type: TYPE_FP32 dims: [4] zero_data: true } }
}, {
  name: "file sample"
  batch_size: 1
  inputs { key: "INPUT0" value: { data_type: TYPE_FP32 dims: [4]
                                  input_data_file: "input0.bin" } }
}]
"""


def test_warmup_runs_before_ready(repo: Repo) -> None:
    model_dir = repo.add("wu", extra=WARMUP)
    (model_dir / "warmup").mkdir()
    data = np.array([1, 2, 3, 4], dtype=np.float32)
    (model_dir / "warmup" / "input0.bin").write_bytes(data.tobytes())
    manager = make_manager([repo.root])

    async def scenario() -> None:
        await manager.load("wu")
        executed = repo.events("execute")
        inputs = [i["INPUT0"] for e in executed for i in e["inputs"]]
        # Zero sample: 3 requests x 2 iterations x 2 instances; file sample: 1 x 2.
        assert inputs.count([[0.0, 0.0, 0.0, 0.0]]) == 12
        assert inputs.count([[1.0, 2.0, 3.0, 4.0]]) == 2
        assert len(inputs) == 14
        # Warmup requests are ordinary requests, so they count (as in Triton).
        (stats,) = manager.statistics("wu")
        assert stats["inference_count"] == 14
        await manager.shutdown()

    run(scenario())


def test_warmup_failure_fails_the_version(repo: Repo) -> None:
    repo.add("wu", extra=WARMUP.replace('"input0.bin"', '"missing.bin"'))
    repo.add(
        "wuerr",
        extra=WARMUP.split("model_warmup")[0]
        + """
model_warmup [{ name: "zero sample" batch_size: 1 inputs { key: "INPUT0"
                value: { data_type: TYPE_FP32 dims: [4] zero_data: true } } }]
""",
    )
    (repo.root / "wuerr" / "1" / "EXEC_FAIL").write_text("")
    manager = make_manager([repo.root])

    async def scenario() -> None:
        with pytest.raises(InvalidArgumentError) as caught:
            await manager.load("wuerr")
        # Triton's wording: the errors the model answered with, each ended "; ".
        assert (
            "version 1 is at UNAVAILABLE state: Invalid argument: failed to run "
            "warmup sample 'zero sample': An Error Occurred; " in caught.value.message
        )
        with pytest.raises(InvalidArgumentError, match=r"missing\.bin"):
            await manager.load("wu")
        assert [e["state"] for e in manager.index()] == ["UNAVAILABLE"] * 2
        # Instances of the failed loads were finalized.
        assert len(repo.events("finalize")) == len(repo.events("initialize"))
        await manager.shutdown()

    run(scenario())


def _override(max_batch_size: int, log_dir: Path, **extra: object) -> str:
    config = {
        "backend": "python",
        "max_batch_size": max_batch_size,
        "input": [{"name": "INPUT0", "data_type": "TYPE_FP32", "dims": [4]}],
        "output": [{"name": "OUTPUT0", "data_type": "TYPE_FP32", "dims": [4]}],
        "parameters": {"log_dir": {"string_value": str(log_dir)}},
        **extra,
    }
    return json.dumps(config)


def test_config_override(repo: Repo) -> None:
    repo.add("m", [1, 2, 3])
    manager = make_manager([repo.root])

    async def scenario() -> None:
        await manager.load("m")
        assert manager.config("m").max_batch_size == 8
        policy = {"specific": {"versions": [1, 2]}}
        await manager.load("m", _override(2, repo.log_dir, version_policy=policy))
        assert manager.config("m").max_batch_size == 2
        assert [e["version"] for e in manager.index()] == ["1", "2", "3"]
        assert manager.ready_versions("m") == [1, 2]
        for bad in ("{not json", '{"name": "other"}', '{"bogus_field": 1}'):
            with pytest.raises(InternalError) as caught:
                await manager.load("m", bad)
            assert caught.value.message == (
                "failed to load 'm', failed to poll from model repository"
            )
        assert manager.ready_versions("m") == [1, 2]  # unchanged by failures
        # A model that is in no repository needs files, not just a config.
        with pytest.raises(InternalError, match="failed to poll"):
            await manager.load("brandnew", _override(2, repo.log_dir))
        await manager.shutdown()

    run(scenario())


def test_load_with_files_uses_a_temporary_directory(repo: Repo) -> None:
    repo.add("m")
    manager = make_manager([repo.root])
    files = {"1/model.py": MODEL_PY.encode(), "3/model.py": MODEL_PY.encode()}

    async def scenario() -> None:
        with pytest.raises(InternalError, match="failed to poll"):
            await manager.load("brandnew", None, files)  # files need a config
        await manager.load("brandnew", _override(4, repo.log_dir), files)
        (event,) = repo.events("initialize")
        temp_dir = Path(event["args"]["model_repository"])
        assert temp_dir.name == "brandnew"
        assert not temp_dir.is_relative_to(repo.root)
        assert sorted(p.name for p in temp_dir.iterdir()) == ["1", "3"]
        assert infer(manager, "brandnew", 1.0) == 4.0  # version 3, latest policy
        # Not in a repository directory, so not in the index (like Triton).
        assert manager.index() == [{"name": "m"}]

        # Reloading from the repository drops the temporary directory.
        (repo.root / "brandnew").mkdir()
        (repo.root / "brandnew" / "config.pbtxt").write_text(
            model_config("brandnew", repo.log_dir)
        )
        repo.add_version("brandnew", 1)
        await manager.load("brandnew")
        assert infer(manager, "brandnew", 1.0) == 2.0
        # The replaced version retires in the background (the load is answered
        # once the new one serves, as Triton's); its files go with it.
        for _ in range(1200):
            if not temp_dir.exists():
                break
            await asyncio.sleep(0.05)
        assert not temp_dir.exists()
        await manager.shutdown()

    run(scenario())
