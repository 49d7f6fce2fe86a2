"""Model repositories registered at run time (ModelManager.register_repository /
unregister_repository), the rules of Triton 2.51's RegisterModelRepository: errors
and their codes, mapped directories in the index and in loads, unregistering, with
and without --model-namespacing. Nothing on the wire reaches these calls except
the SageMaker multi-model endpoint (tests/frontends/test_sagemaker.py compares that
with the real Triton), so the manager is driven directly here."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("tritonx._native", reason="core not built")

from repo_helpers import Repo, infer, make_manager, model_config, run

from tritonx.errors import (
    AlreadyExistsError,
    InternalError,
    InvalidArgumentError,
    UnsupportedError,
)

ENSEMBLE = textwrap.dedent(
    """
    name: "{name}"
    platform: "ensemble"
    max_batch_size: 8
    input [{{ name: "INPUT0" data_type: TYPE_FP32 dims: [4] }}]
    output [{{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [4] }}]
    ensemble_scheduling {{ step [{{
      model_name: "{step}" model_version: -1
      input_map {{ key: "INPUT0" value: "INPUT0" }}
      output_map {{ key: "OUTPUT0" value: "OUTPUT0" }}
    }}] }}
    """
)


def _names(manager: Any) -> list[tuple[str, str]]:
    return [(row["name"], row.get("state", "")) for row in manager.index()]


async def _started(repos: list[Path], **options: Any) -> Any:
    manager = make_manager(repos, **options)
    await manager.start()
    return manager


async def _started_in_context(repos: list[Path]) -> Any:
    """A manager on a server context: ensembles find their steps in its registry."""
    from tritonx import _native
    from tritonx.repository import ManagerOptions, ModelManager

    context = _native.ServerContext()
    options = ManagerOptions(repositories=repos, control_mode="explicit")
    manager = ModelManager(options, context.registry, context)
    await manager.start()
    return manager


@pytest.fixture
def extra(tmp_path: Path) -> Repo:
    """A directory to register: model "sub" under a config named otherwise."""
    root = tmp_path / "registered"
    root.mkdir()
    found = Repo(root, tmp_path / "log")
    found.add("sub", versions=(3,), config=model_config("as_written", found.log_dir))
    return found


@pytest.mark.parametrize("mode", ["none", "poll"])
def test_only_in_explicit_mode(mode: str, repo: Repo, extra: Repo) -> None:
    async def body() -> None:
        manager = await _started([repo.root], mode=mode, poll_secs=0)
        try:
            with pytest.raises(UnsupportedError) as raised:
                manager.register_repository(str(extra.root), {"sub": "m"})
            assert raised.value.message == (
                "repository registration is not allowed if model control mode is "
                "not EXPLICIT"
            )
            with pytest.raises(UnsupportedError) as raised:
                manager.unregister_repository(str(repo.root))
            assert raised.value.message == (
                "repository unregistration is not allowed if model control mode is "
                "not EXPLICIT"
            )
        finally:
            await manager.shutdown()

    run(body())


def test_registration_errors(repo: Repo, extra: Repo, tmp_path: Path) -> None:
    async def body() -> None:
        manager = await _started([repo.root])
        try:
            missing = str(tmp_path / "missing")
            with pytest.raises(InvalidArgumentError) as bad:
                manager.register_repository(missing)
            assert bad.value.message == (
                f"failed to register '{missing}', repository not found"
            )
            # Startup repositories count as registered (compared as strings).
            with pytest.raises(AlreadyExistsError) as dup:
                manager.register_repository(str(repo.root))
            assert dup.value.message == (
                f"model repository '{repo.root}' has already been registered"
            )
            with pytest.raises(InvalidArgumentError) as twice:
                manager.register_repository(str(extra.root), {"a": "m", "b": "m"})
            assert twice.value.message == (
                f"failed to register '{extra.root}', there is a conflicting mapping "
                "for 'm'"
            )
            manager.register_repository(str(extra.root), {"sub": "m"})
            with pytest.raises(AlreadyExistsError):
                manager.register_repository(str(extra.root))
            other = tmp_path / "other"
            other.mkdir()
            with pytest.raises(AlreadyExistsError) as mapped:
                manager.register_repository(str(other), {"x": "m"})
            assert mapped.value.message == (
                "failed to register 'm', there is a conflicting mapping for 'm'"
            )
            # The refused registration left nothing behind.
            manager.register_repository(str(other), {"x": "n"})
            assert manager.repository_paths == [
                str(repo.root),
                str(extra.root),
                str(other),
            ]
            with pytest.raises(InvalidArgumentError) as unknown:
                manager.unregister_repository(missing)
            assert unknown.value.message == (
                f"failed to unregister '{missing}', repository not found"
            )
        finally:
            await manager.shutdown()

    run(body())


def test_mapped_directory_loads_under_its_name(repo: Repo, extra: Repo) -> None:
    """The index lists the mapped directory under the mapped name only; the load
    takes the name whatever the config says; the directory name loads nothing."""

    async def body() -> None:
        repo.add("plain")
        extra.add("other")
        manager = await _started([repo.root])
        try:
            manager.register_repository(str(extra.root), {"sub": "mapped"})
            assert _names(manager) == [("mapped", ""), ("other", ""), ("plain", "")]
            await manager.load("mapped")
            assert manager.config("mapped").name == "mapped"
            assert infer(manager, "mapped", 1.0) == 4.0  # version 3: x + 3
            with pytest.raises(InternalError) as failed:
                await manager.load("sub")
            assert failed.value.message == (
                "failed to load 'sub', failed to poll from model repository"
            )
            # Unmapped directories of a registered repository load by their name.
            await manager.load("other")
            assert infer(manager, "other", 1.0) == 2.0
            assert _names(manager) == [
                ("mapped", "READY"),
                ("other", "READY"),
                ("plain", ""),
            ]
        finally:
            await manager.shutdown()

    run(body())


def test_mapping_wins_over_a_directory_of_that_name(repo: Repo, extra: Repo) -> None:
    """Without namespacing a mapped name also found as a directory elsewhere is a
    duplicate in the index, yet its load takes the mapped directory (Triton)."""

    async def body() -> None:
        repo.add("m")  # version 1
        manager = await _started([repo.root])
        try:
            manager.register_repository(str(extra.root), {"sub": "m"})
            await manager.load("m")
            assert infer(manager, "m", 1.0) == 4.0  # the mapped one, version 3
            assert manager.index() == [
                {
                    "name": "m",
                    "state": "UNAVAILABLE",
                    "reason": "model appears in two or more repositories",
                }
            ]
        finally:
            await manager.shutdown()

    run(body())


def test_unregister_keeps_loaded_models(repo: Repo, extra: Repo) -> None:
    async def body() -> None:
        repo.add("plain")
        manager = await _started([repo.root])
        try:
            manager.register_repository(str(extra.root), {"sub": "mapped"})
            await manager.load("mapped")
            manager.unregister_repository(str(extra.root))
            # Serving still, but gone from the index with its repository.
            assert infer(manager, "mapped", 1.0) == 4.0
            assert _names(manager) == [("plain", "")]
            with pytest.raises(InternalError):
                await manager.load("mapped")  # the mapping went with it
            assert infer(manager, "mapped", 1.0) == 4.0  # a failed load keeps it
            await manager.unload("mapped")
            assert not manager.model_ready("mapped")
            # Registered again, the same name maps again; a startup repository can
            # be unregistered like any other.
            manager.register_repository(str(extra.root), {"sub": "mapped"})
            manager.unregister_repository(str(repo.root))
            assert _names(manager) == [("mapped", "UNAVAILABLE")]
        finally:
            await manager.shutdown()

    run(body())


def test_ensemble_of_a_registered_repository(repo: Repo, extra: Repo) -> None:
    """SageMaker's case: the archive's ensemble directory mapped to the archive's
    name, its composing model found by its directory name; unloading it with
    dependents unloads both."""

    async def body() -> None:
        extra.add(
            "ens_dir",
            versions=(1,),
            config=ENSEMBLE.format(name="ens_dir", step="sub_model"),
        )
        extra.add("sub_model")
        manager = await _started_in_context([repo.root])
        try:
            manager.register_repository(str(extra.root), {"ens_dir": "archive"})
            await manager.load("archive")
            assert infer(manager, "archive", 1.0) == 2.0
            assert manager.model_ready("sub_model")
            await manager.unload("archive", unload_dependents=True)
            assert not manager.model_ready("sub_model")
            manager.unregister_repository(str(extra.root))
            assert manager.index() == []
        finally:
            await manager.shutdown()

    run(body())


def test_namespacing_registered_repository_is_a_namespace(
    repo: Repo, extra: Repo
) -> None:
    """With namespacing the registered repository is the namespace of its models;
    a mapped name loads that one model only, while an unmapped name loads in every
    namespace that has it (then ambiguous for clients)."""

    async def body() -> None:
        repo.add("m")
        repo.add("shared")
        extra.add("shared")
        manager = await _started([repo.root], namespacing=True)
        try:
            manager.register_repository(str(extra.root), {"sub": "m"})
            await manager.load("m")
            ids = [
                (model_id.namespace, model_id.name)
                for model_id, _ in manager.ready_models()
            ]
            assert ids == [(str(extra.root), "m")]
            assert infer(manager, "m", 1.0) == 4.0
            await manager.load("shared")
            namespaces = sorted(
                model_id.namespace
                for model_id, _ in manager.ready_models()
                if model_id.name == "shared"
            )
            assert namespaces == sorted([str(repo.root), str(extra.root)])
            with pytest.raises(InvalidArgumentError, match="2 identifiers"):
                manager.get("shared")
            # Both "m" rows: the startup one never loaded, the mapped one READY.
            assert sorted(_names(manager)) == [
                ("m", ""),
                ("m", "READY"),
                ("shared", "READY"),
                ("shared", "READY"),
            ]
            await manager.unload("m")
            manager.unregister_repository(str(extra.root))
            assert sorted(_names(manager)) == [("m", ""), ("shared", "READY")]
        finally:
            await manager.shutdown()

    run(body())
