"""Starting stub processes: the zygote (a preloaded parent that forks stubs in
milliseconds) or a fresh interpreter (a model's own environment, or
TRITONX_STUB_ZYGOTE=0). See process.py for what runs over the socket."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tritonx.backends.stub.channel import Channel, ChannelClosed
from tritonx.host_policy import (
    BINDING_ENV,
    HostBinding,
    encode_binding,
    server_cpus,
)
from tritonx.logging_setup import LOGGER_NAME


def _exited(pid: int) -> bool:
    """Gone, or a zombie nobody reaps (an orphan in a container whose first
    process does not wait for children)."""
    try:
        os.kill(pid, 0)
        stat = Path(f"/proc/{pid}/stat").read_text()
    except ProcessLookupError:
        return True
    except OSError:
        return False  # no /proc: alive as far as kill(0) knows
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def reap(proc: Any, timeout_s: float) -> None:
    """Wait for a stub to exit, killing it past ``timeout_s``. Never raises: a
    stub that outlives even SIGKILL for a few seconds is left to the system."""
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5.0)


def spawn_stub(
    python: Path | None, limit: int, binding: HostBinding | None = None
) -> tuple[Any, Channel]:
    """A new stub process and the server's end of its socket: forked by the zygote,
    or a fresh interpreter (``python``: a model's own environment). ``binding``
    (the instance's host policy) binds the process before it runs anything, so
    every thread it starts inherits it; a restart is bound the same way."""
    cpus = sorted(binding.cpus) if binding and binding.cpus is not None else None
    node = binding.numa_node if binding else None
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    # The server's logger is configured, not the root one: the stub forwards
    # what the server would print (the model's INFO lines included).
    level = logging.getLogger(LOGGER_NAME).getEffectiveLevel()
    cmd = [
        sys.executable,
        "-m",
        "tritonx.backends.stub",
        str(child.fileno()),
        str(level),
    ]
    proc: Any = None
    env: dict[str, str] | None = None
    if python is not None:
        from tritonx.backends.stub.environment import python_path

        cmd[0] = str(python)
        env = {**os.environ, "PYTHONPATH": python_path()}
    elif os.environ.get("TRITONX_STUB_ZYGOTE", "1") != "0":
        proc = _Zygote.spawn(child.fileno(), level, limit, cpus, node)
    if proc is None:
        if cpus is not None or node is not None:
            # Applied by the stub itself before it starts a thread: binding in a
            # preexec_fn would run Python (and dlopen, for set_mempolicy) between
            # fork and exec of this multi-threaded server, which can deadlock.
            env = dict(env if env is not None else os.environ)
            env[BINDING_ENV] = encode_binding(cpus, node)

        def preexec() -> None:
            import resource

            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

        proc = subprocess.Popen(
            cmd,
            pass_fds=[child.fileno()],
            preexec_fn=preexec if limit > 0 else None,
            env=env,
        )
    child.close()
    return proc, Channel(parent)


class _ZygoteChild:
    """A stub forked by the zygote, with the slice of ``Popen``'s API used here (its
    exit status comes from the zygote, its parent)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = _Zygote.status(self.pid, 0.0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            self.returncode = _Zygote.status(
                self.pid, 30.0 if timeout is None else timeout
            )
        if self.returncode is None:
            raise subprocess.TimeoutExpired(f"stub {self.pid}", timeout or 0.0)
        return self.returncode

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)


class _Zygote:
    """The server's one preloaded stub parent (``--zygote``), started on first use
    and again if it dies. Thread-safe: one request at a time under ``_lock``."""

    _lock = threading.Lock()
    _channel: Channel | None = None
    _proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def _start(cls) -> Channel:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        cmd = [sys.executable, "-m", "tritonx.backends.stub", "--zygote"]
        # Started by the first stub's spawn, maybe on a thread bound to that
        # instance's host policy; the zygote forks every stub, so it unbinds
        # itself first thing (to the server's CPUs, given here) and binds each
        # child to its own instance's policy. Not in a preexec_fn: Python between
        # fork and exec of a multi-threaded server can deadlock.
        cpus = ",".join(str(cpu) for cpu in sorted(server_cpus()))
        cls._proc = subprocess.Popen(
            [*cmd, str(child.fileno()), cpus], pass_fds=[child.fileno()]
        )
        child.close()
        cls._channel = Channel(parent)
        return cls._channel

    @classmethod
    def _drop(cls) -> None:
        if cls._channel is not None:
            cls._channel.sock.close()
        if cls._proc is not None:
            cls._proc.kill()
            cls._proc.wait()
        cls._channel = cls._proc = None

    @classmethod
    def spawn(
        cls,
        fd: int,
        level: int,
        limit: int,
        cpus: list[int] | None = None,
        numa_node: int | None = None,
    ) -> _ZygoteChild | None:
        """A new stub on socket ``fd``; None if the zygote cannot make one."""
        with cls._lock:
            for _attempt in range(2):
                channel = cls._channel or cls._start()
                try:
                    channel.send(("spawn", level, limit, cpus, numa_node), [fd])
                    msg, _fds = channel.recv(60.0)
                    return _ZygoteChild(int(msg[1]))
                except (ChannelClosed, TimeoutError, OSError):
                    cls._drop()
            return None

    @classmethod
    def status(cls, pid: int, timeout: float) -> int | None:
        """The stub's exit status, waiting up to ``timeout``; None while it runs."""
        with cls._lock:
            channel = cls._channel
            if channel is not None:
                try:
                    channel.send(("status?", pid, timeout))
                    msg, _fds = channel.recv(timeout + 30.0)
                    if msg[1] is not None:
                        return int(msg[1])
                except (ChannelClosed, TimeoutError, OSError):
                    cls._drop()
        # No zygote to ask (it died; its orphans are reaped by the system): watch
        # the process itself until it is gone or the timeout passes.
        deadline = time.monotonic() + timeout
        while not _exited(pid):
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.02)
        return -signal.SIGKILL
