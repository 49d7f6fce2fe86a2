"""A redis-server for the Redis response cache's tests (the one
scripts/install-system-deps.sh installs)."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from serverutil import free_port

REDIS_SERVER = shutil.which("redis-server")


@contextmanager
def redis_server(
    *args: str, port: int = 0
) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """A redis-server on loopback (a free port unless given), nothing persisted."""
    assert REDIS_SERVER is not None
    port = port or free_port()
    process = subprocess.Popen(
        [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", *args],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    import redis  # the tests that use Redis skip without the client

    try:
        client = redis.Redis(port=port, password=_password(args))
        deadline = time.monotonic() + 30
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield port, process
    finally:
        process.kill()
        process.wait()


def _password(args: tuple[str, ...]) -> str | None:
    return args[args.index("--requirepass") + 1] if "--requirepass" in args else None


def wait_for_key_count(client: Any, count: int) -> None:
    """Until ``count`` cache entries are in Redis (a minute at most): inserts reach
    it from the cache's worker after the response is sent (written behind)."""
    deadline = time.monotonic() + 60
    while len(client.keys("tritonx:rc1:*")) < count:
        assert time.monotonic() < deadline, client.keys("*")
        time.sleep(0.02)
