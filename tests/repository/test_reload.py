"""Reloading and unloading while requests are running: none may fail."""

from __future__ import annotations

import asyncio
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from repo_helpers import Repo, infer, make_manager, run

from tritonx.errors import InvalidArgumentError, TritonXError


class Traffic:
    """Threads sending requests back to back until stopped."""

    def __init__(self, manager: object, name: str, threads: int = 3) -> None:
        self.manager = manager
        self.name = name
        self.results: list[float] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._loop, daemon=True) for _ in range(threads)
        ]

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.results.append(infer(self.manager, self.name, 0.0))
            except BaseException as exc:
                self.errors.append(exc)

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)


def test_reload_under_traffic_fails_no_request(repo: Repo) -> None:
    repo.add("m", [1])
    (repo.root / "m" / "1" / "DELAY").write_text("0.01")
    manager = make_manager([repo.root])

    async def scenario() -> None:
        await manager.load("m")
        with Traffic(manager, "m") as traffic:
            await asyncio.sleep(0.2)
            # Version 1's files change (a newer mtime): the same version is built
            # again and swapped in place (an unchanged one would be kept).
            delay = repo.root / "m" / "1" / "DELAY"
            stat = delay.stat()
            os.utime(delay, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
            await manager.load("m")
            await asyncio.sleep(0.2)
            vdir = repo.add_version("m", 2)
            (vdir / "DELAY").write_text("0.01")
            await manager.load("m")  # version 2 replaces version 1
            await asyncio.sleep(0.3)
        assert traffic.errors == []
        assert 1.0 in traffic.results and traffic.results[-1] == 2.0
        assert manager.index() == [
            {"name": "m", "version": "1", "state": "UNAVAILABLE", "reason": "unloaded"},
            {"name": "m", "version": "2", "state": "READY"},
        ]
        # Both loads of version 1 were finalized after their requests drained.
        finalized = [e["version"] for e in repo.events("finalize")]
        assert finalized.count(1) == 2
        await manager.shutdown()

    run(scenario())


def test_unload_lets_running_requests_finish(repo: Repo) -> None:
    repo.add("slow")
    (repo.root / "slow" / "1" / "DELAY").write_text("0.5")
    manager = make_manager([repo.root])

    async def scenario() -> None:
        await manager.load("slow")
        with ThreadPoolExecutor(1) as pool:
            running = pool.submit(infer, manager, "slow", 1.0)
            await asyncio.sleep(0.1)
            await manager.unload("slow")
            assert running.result(timeout=10) == 2.0
        assert manager.index()[0]["reason"] == "unloaded"

    run(scenario())


def test_failed_reload_keeps_serving_the_old_version(repo: Repo) -> None:
    repo.add("m", [1])
    manager = make_manager([repo.root])

    async def scenario() -> None:
        await manager.start()
        await manager.load("m")
        (repo.root / "m" / "1" / "FAIL").write_text("")
        with pytest.raises(InvalidArgumentError, match="version 1 is at UNAVAILABLE"):
            await manager.load("m")
        # Triton keeps the served version READY and shows no failure for it.
        assert manager.index() == [{"name": "m", "version": "1", "state": "READY"}]
        assert manager.server_ready()
        assert infer(manager, "m", 1.0) == 2.0

        # A new version that fails leaves the old one serving, too.
        repo.add_version("m", 2, FAIL="")
        with pytest.raises(InvalidArgumentError, match="version 2 is at UNAVAILABLE"):
            await manager.load("m")
        index = manager.index()
        assert index[0] == {"name": "m", "version": "1", "state": "READY"}
        assert index[1]["version"] == "2" and index[1]["state"] == "UNAVAILABLE"
        assert infer(manager, "m", 1.0) == 2.0
        await manager.shutdown()

    run(scenario())


def test_loading_state_and_parallel_loads(repo: Repo) -> None:
    for name in ("a", "b"):
        repo.add(name)
        (repo.root / name / "1" / "INIT_DELAY").write_text("3.0")
    manager = make_manager([repo.root], load_threads=2)

    async def scenario() -> None:
        await manager.start()
        loads = [asyncio.ensure_future(manager.load(n)) for n in ("a", "b")]
        # Both initialize() calls start before either finishes its 3 s sleep.
        for _ in range(50):
            await asyncio.sleep(0.05)
            if len(repo.events("initialize")) == 2:
                break
        assert len(repo.events("initialize")) == 2
        assert [e.get("state") for e in manager.index()] == ["LOADING", "LOADING"]
        assert "reason" not in manager.index()[0]
        assert not manager.server_ready()
        with pytest.raises(TritonXError, match="has no available versions"):
            manager.get("a")
        await asyncio.gather(*loads)
        assert manager.server_ready()
        await manager.shutdown()

    run(scenario())
