"""``--cache-config redis,<setting>=<value>``: the response cache in Redis, with the
settings of Triton's redis cache (host, port, user, password, db, connect_timeout,
socket_timeout, pool_size, wait_timeout, tls_enabled, cert, key, cacert, cacert_dir;
user and password also from TRITONCACHE_REDIS_USERNAME / TRITONCACHE_REDIS_PASSWORD,
the settings winning) and its start-up errors. tritonx adds ``ttl`` (seconds an
entry lives; default: until Redis evicts it, as in Triton).

Entries are plain Redis strings (one GET/SET per key; a batch is one MGET or one
pipeline), so Redis's own eviction policy (``maxmemory-policy allkeys-lru``) bounds
the cache, as with Triton, which has no size for it either. A failing Redis is a
miss (and a dropped insert), logged at most every few seconds; the models answer."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tritonx.errors import InternalError, InvalidArgumentError

logger = logging.getLogger("tritonx.caches.redis")

USERNAME_ENV = "TRITONCACHE_REDIS_USERNAME"
PASSWORD_ENV = "TRITONCACHE_REDIS_PASSWORD"
_MISSING_ADDRESS = (
    "Failed to initialize RedisCache, didn't specify address. Must at a minimum "
    "specify 'host' and 'port' in the configuration - e.g. tritonserver "
    "--cache-config redis,host=redis --cache-config redis,port=6379 "
    "--model-repository=/models ..."
)
_KNOWN = {
    "host", "port", "user", "password", "db", "connect_timeout", "socket_timeout",
    "pool_size", "wait_timeout", "tls_enabled", "cert", "key", "cacert", "cacert_dir",
    "sni", "ttl",
}  # fmt: skip
# Failures are logged once, then summarized at most this often.
_FAILURE_LOG_INTERVAL_S = 10.0


def _number(settings: Mapping[str, str], name: str, default: int) -> int:
    text = settings.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise InvalidArgumentError(
            f"Failed to initialize RedisCache: invalid value '{text}' for '{name}'"
        )
    return value


def _seconds(milliseconds: int) -> float | None:
    """Triton's timeouts: milliseconds, 0 meaning wait for ever."""
    return milliseconds / 1000.0 if milliseconds else None


class RedisStore:
    """A ResponseStore (tritonx.caches) in one Redis server. Thread safe: the
    connection pool hands each worker its own connection."""

    def __init__(self, settings: Mapping[str, str]) -> None:
        if "host" not in settings or "port" not in settings:
            raise InvalidArgumentError(_MISSING_ADDRESS)
        for name in sorted(set(settings) - _KNOWN):
            logger.warning("redis cache: unknown setting '%s' ignored", name)
        port = _number(settings, "port", 0)
        self.workers = max(1, _number(settings, "pool_size", 1))
        ttl = _number(settings, "ttl", 0)
        self._ttl = ttl or None
        connection: dict[str, Any] = {
            "host": settings["host"],
            "port": port,
            "db": _number(settings, "db", 0),
            "username": settings.get("user", os.environ.get(USERNAME_ENV)),
            "password": settings.get("password", os.environ.get(PASSWORD_ENV)),
            "socket_connect_timeout": _seconds(_number(settings, "connect_timeout", 0)),
            "socket_timeout": _seconds(_number(settings, "socket_timeout", 0)),
            # A cache answers from the store or not at all: no retries that would
            # hold a request longer than one attempt.
            "retry": Retry(NoBackoff(), 0),
        }
        connection_class: type[redis.Connection] = redis.Connection
        if settings.get("tls_enabled") == "true":
            connection_class = redis.SSLConnection
            connection.update(
                ssl_certfile=settings.get("cert"),
                ssl_keyfile=settings.get("key"),
                ssl_ca_certs=settings.get("cacert"),
                ssl_ca_path=settings.get("cacert_dir"),
            )
            if settings.get("sni"):
                logger.warning(
                    "redis cache: 'sni' is not supported; the server name sent is "
                    "the host, '%s'",
                    settings["host"],
                )
        _number(settings, "wait_timeout", 1000)  # checked as Triton's, not needed
        self._connection_class = connection_class
        self._connection_options = connection
        # Each cache worker thread owns one connection (pool_size of them in all):
        # no pool to check out from per batch, which costs as much as the round trip
        # on loopback. wait_timeout, the pool's wait in Triton, has nothing to wait
        # for here.
        self._local = threading.local()
        self._connections: list[redis.Connection] = []
        self._connections_lock = threading.Lock()
        probe = self._connection_class(**self._connection_options)
        try:
            probe.send_command("PING")
            probe.read_response()
        except (redis.RedisError, OSError) as error:
            raise InternalError(f"Failed to initialize RedisCache: {error}") from None
        finally:
            probe.disconnect()
        logger.info(
            "response cache: Redis at %s:%d (db %d, %d connections)",
            settings["host"],
            port,
            connection["db"],
            self.workers,
        )
        self._failure_lock = threading.Lock()
        self._failures = 0
        self._failure_logged_at = 0.0

    def get_many(self, keys: list[str]) -> list[bytes | None]:
        connection = self._connection()
        try:
            connection.send_command("MGET", *keys)
            values: list[bytes | None] = connection.read_response()
        except (redis.RedisError, OSError) as error:
            connection.disconnect()  # the next batch connects afresh
            self._failed("lookup", error)
            return [None] * len(keys)
        self._recovered()
        return values

    def put_many(self, entries: list[tuple[str, bytes]]) -> int:
        expiry = ("EX", self._ttl) if self._ttl else ()
        commands = [("SET", key, value, *expiry) for key, value in entries]
        connection = self._connection()
        stored = 0
        failure: BaseException | None = None
        try:
            # One write for the whole batch, then one reply per SET.
            connection.send_packed_command(connection.pack_commands(commands))
            for _ in commands:
                try:
                    connection.read_response()
                    stored += 1
                except redis.ResponseError as error:  # this SET only (e.g. OOM)
                    failure = error
        except (redis.RedisError, OSError) as error:
            connection.disconnect()
            failure = error
        if failure is not None:
            self._failed("insert", failure)
        else:
            self._recovered()
        return stored

    def close(self) -> None:
        with self._connections_lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.disconnect()

    def _connection(self) -> redis.Connection:
        connection: redis.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._connection_class(**self._connection_options)
            self._local.connection = connection
            with self._connections_lock:
                self._connections.append(connection)
        return connection

    def _failed(self, what: str, error: BaseException) -> None:
        now = time.monotonic()
        with self._failure_lock:
            self._failures += 1
            if now - self._failure_logged_at < _FAILURE_LOG_INTERVAL_S:
                return
            count, self._failures = self._failures, 0
            self._failure_logged_at = now
        logger.error(
            "response cache: Redis %s failed (%d failures since the last report; "
            "requests run their models meanwhile): %s",
            what,
            count,
            error,
        )

    def _recovered(self) -> None:
        if self._failure_logged_at == 0.0:
            return
        with self._failure_lock:
            if self._failure_logged_at == 0.0:
                return
            self._failure_logged_at = 0.0
            self._failures = 0
        logger.info("response cache: Redis answers again")
