"""Explicit-mode loading, unloading, version states, index and lookups, checked
against what Triton 2.51 answers for the same repository."""

from __future__ import annotations

import pytest
from repo_helpers import Repo, infer, make_manager, run

from tritonx.errors import (
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    UnavailableError,
)


def test_load_selects_versions_by_policy(repo: Repo) -> None:
    repo.add("latest2", [1, 2, 3], "version_policy: { latest: { num_versions: 2 } }")
    repo.add("spec", [1, 2, 3], "version_policy: { specific: { versions: [1, 3, 7] } }")
    repo.add("multi", [1, 2, 3, "01", "abc"])
    manager = make_manager([repo.root])

    async def scenario() -> None:
        await manager.start()
        for name in ("latest2", "spec", "multi"):
            await manager.load(name)
        assert manager.index() == [
            {"name": "latest2", "version": "2", "state": "READY"},
            {"name": "latest2", "version": "3", "state": "READY"},
            {"name": "multi", "version": "3", "state": "READY"},
            {"name": "spec", "version": "1", "state": "READY"},
            {"name": "spec", "version": "3", "state": "READY"},
        ]
        assert infer(manager, "latest2", 1.0) == 4.0  # highest version serves
        assert infer(manager, "latest2", 1.0, "2") == 3.0
        assert manager.metadata("latest2")["versions"] == ["2", "3"]
        assert manager.metadata("latest2", "2")["versions"] == ["2"]
        await manager.shutdown()

    run(scenario())


def test_instances_named_like_triton(repo: Repo) -> None:
    repo.add(
        "inst",
        extra="""
        instance_group [{ count: 2 kind: KIND_CPU }, { count: 1 kind: KIND_CPU
                          name: "grp" }]
        """,
    )
    manager = make_manager([repo.root])

    async def scenario() -> None:
        await manager.load("inst")
        names = sorted(e["instance"] for e in repo.events("initialize"))
        assert names == ["grp_0", "inst_0_0", "inst_0_1"]
        await manager.unload("inst")
        assert len(repo.events("finalize")) == 3

    run(scenario())


def test_failed_version_rolls_back_the_others(repo: Repo) -> None:
    repo.add("partial", [1], "version_policy: { all: {} }")
    repo.add_version("partial", 2, FAIL="")
    manager = make_manager([repo.root], exit_on_error=False)

    async def scenario() -> None:
        await manager.start()
        assert manager.server_ready()
        with pytest.raises(InvalidArgumentError) as caught:
            await manager.load("partial")
        message = caught.value.message
        assert message.startswith(
            "load failed for model 'partial': version 2 is at UNAVAILABLE state: "
            "Internal: "
        )
        assert "init failed on purpose" in message
        assert message.endswith(";\n")
        index = manager.index()
        assert index[0] == {
            "name": "partial",
            "version": "1",
            "state": "UNAVAILABLE",
            "reason": "unloaded",
        }
        assert index[1]["state"] == "UNAVAILABLE"
        assert index[1]["reason"].startswith("Internal: ")
        assert not manager.server_ready()  # a failed version counts (strict)
        with pytest.raises(NotFoundError, match="'partial' has no available"):
            manager.get("partial")
        with pytest.raises(UnavailableError, match="version 1 is not at ready state"):
            manager.get("partial", "1")
        with pytest.raises(InvalidArgumentError, match="model 'partial' is not avail"):
            manager.statistics("partial")
        await manager.shutdown()

    run(scenario())


def test_poll_failures(repo: Repo, repo2: Repo) -> None:
    repo.add("badcfg", config='name: "badcfg" backend: "python" xx')
    repo.add("wrongname", config='name: "other" backend: "python"')
    repo.add("dup")
    repo2.add("dup")
    manager = make_manager([repo.root, repo2.root])

    async def scenario() -> None:
        await manager.start()
        for name in ("badcfg", "wrongname", "dup", "nosuch"):
            with pytest.raises(InternalError) as caught:
                await manager.load(name)
            assert caught.value.message == (
                f"failed to load '{name}', failed to poll from model repository"
            )
        # A poll failure leaves no version state: names only, server still ready.
        assert manager.index() == [
            {"name": "badcfg"},
            {
                "name": "dup",
                "state": "UNAVAILABLE",
                "reason": "model appears in two or more repositories",
            },
            {"name": "wrongname"},
        ]
        assert manager.server_ready()
        with pytest.raises(NotFoundError, match="'badcfg' is not found"):
            manager.get("badcfg")
        await manager.shutdown()

    run(scenario())


def test_model_without_versions(repo: Repo) -> None:
    repo.add("nover", versions=[])
    manager = make_manager([repo.root])

    async def scenario() -> None:
        await manager.start()
        with pytest.raises(InvalidArgumentError) as caught:
            await manager.load("nover")
        assert caught.value.message == (
            "load failed for model 'nover': at least one version must be available "
            "under the version policy of model 'nover'\n"
        )
        assert manager.index() == []  # Triton drops it from the index ...
        assert not manager.server_ready()  # ... and is not ready any more
        await manager.shutdown()

    run(scenario())


def test_unload_and_lookup_messages(repo: Repo) -> None:
    repo.add("m", [1, 2, 3], "version_policy: { latest: { num_versions: 2 } }")
    repo.add("never")
    manager = make_manager([repo.root])

    async def scenario() -> None:
        await manager.start()
        await manager.load("m")
        with pytest.raises(NotFoundError, match="'m' version 1 is not found"):
            manager.metadata("m", "1")
        with pytest.raises(InvalidArgumentError) as caught:
            manager.statistics("m", "1")
        assert caught.value.message == (
            "requested model version is not available for model 'm'"
        )
        with pytest.raises(NotFoundError) as not_found:
            manager.config("never")
        assert not_found.value.message == (
            "Request for unknown model: 'never' is not found"
        )
        assert manager.model_ready("m") and manager.model_ready("m", "3")
        assert not manager.model_ready("m", "1")
        assert not manager.model_ready("nosuch")

        await manager.unload("m")
        await manager.unload("nosuch")  # unknown names are fine, as in Triton
        assert manager.index() == [
            {"name": "m", "version": "2", "state": "UNAVAILABLE", "reason": "unloaded"},
            {"name": "m", "version": "3", "state": "UNAVAILABLE", "reason": "unloaded"},
            {"name": "never"},
        ]
        assert manager.server_ready()  # unloaded on purpose is not a failure
        with pytest.raises(NotFoundError, match="'m' has no available versions"):
            manager.metadata("m")
        with pytest.raises(NotFoundError, match="'m' has no available versions"):
            manager.registry.find("m")
        assert manager.model_load_durations == {}
        await manager.shutdown()

    run(scenario())


def test_none_mode_loads_everything_and_refuses_control(repo: Repo) -> None:
    repo.add("a", [1, 2])
    repo.add("b")
    repo.add("bad")
    repo.add_version("bad", 1, FAIL="")
    strict = make_manager([repo.root], mode="none", exit_on_error=False)
    relaxed = make_manager(
        [repo.root], mode="none", exit_on_error=False, strict_readiness=False
    )
    failing = make_manager([repo.root], mode="none")

    async def scenario() -> None:
        await strict.start()
        states = [(e["name"], e.get("version"), e["state"]) for e in strict.index()]
        assert states == [
            ("a", "2", "READY"),
            ("b", "1", "READY"),
            ("bad", "1", "UNAVAILABLE"),
        ]
        assert not strict.server_ready()
        assert sorted(strict.model_load_durations) == [("a", 2), ("b", 1)]
        for call in (strict.load("a"), strict.unload("a")):
            with pytest.raises(UnavailableError) as caught:
                await call
            assert caught.value.message == (
                "explicit model load / unload is not allowed if polling is enabled"
            )
        await strict.shutdown()
        await relaxed.start()
        assert relaxed.server_ready()
        await relaxed.shutdown()
        with pytest.raises(InternalError, match="failed to load all models"):
            await failing.start()
        await failing.shutdown()  # the server's stop after a failed start: no-op

    run(scenario())


def test_startup_models_in_explicit_mode(repo: Repo) -> None:
    repo.add("a")
    repo.add("b")
    manager = make_manager([repo.root], startup_models=["b"])
    wildcard = make_manager([repo.root], startup_models=["*"])
    wrong = make_manager([repo.root], startup_models=["*", "a"])

    async def scenario() -> None:
        await manager.start()
        assert manager.index() == [
            {"name": "a"},
            {"name": "b", "version": "1", "state": "READY"},
        ]
        await manager.shutdown()
        await wildcard.start()
        assert [e["state"] for e in wildcard.index()] == ["READY", "READY"]
        await wildcard.shutdown()
        with pytest.raises(InvalidArgumentError, match="Wildcard model name"):
            await wrong.start()

    run(scenario())


def test_statistics_shape(repo: Repo) -> None:
    repo.add("m")
    manager = make_manager([repo.root])

    async def scenario() -> None:
        await manager.load("m")
        infer(manager, "m")
        (entry,) = manager.statistics("m")
        assert list(entry) == [
            "name",
            "version",
            "last_inference",
            "inference_count",
            "execution_count",
            "inference_stats",
            "response_stats",
            "batch_stats",
            "memory_usage",
        ]
        assert entry["version"] == "1"
        assert entry["inference_count"] == 1 and entry["execution_count"] == 1
        assert list(entry["inference_stats"]) == [
            "success",
            "fail",
            "queue",
            "compute_input",
            "compute_infer",
            "compute_output",
            "cache_hit",
            "cache_miss",
        ]
        assert entry["inference_stats"]["success"]["count"] == 1
        assert entry["batch_stats"][0]["batch_size"] == 1
        assert set(entry["batch_stats"][0]) == {
            "batch_size",
            "compute_input",
            "compute_infer",
            "compute_output",
        }
        assert [s["name"] for s in manager.statistics()] == ["m"]
        assert manager.model_load_durations[("m", 1)] > 0
        await manager.shutdown()

    run(scenario())


def test_unknown_backend(repo: Repo) -> None:
    repo.add("nobe", config='backend: "nosuchbe"\nmax_batch_size: 0\n')
    manager = make_manager([repo.root])

    async def scenario() -> None:
        with pytest.raises(InvalidArgumentError) as caught:
            await manager.load("nobe")
        reason = (
            "Invalid argument: unable to find backend library for backend "
            "'nosuchbe', try specifying runtime on the model configuration."
        )
        assert caught.value.message == (
            f"load failed for model 'nobe': version 1 is at UNAVAILABLE state: "
            f"{reason};\n"
        )
        assert manager.index() == [
            {"name": "nobe", "version": "1", "state": "UNAVAILABLE", "reason": reason}
        ]

    run(scenario())
