"""Host policies: tritonserver's ``--host-policy=<name>,<setting>=<value>`` and the
``host_policy`` field of an instance group.

Each instance belongs to one policy: its group's ``host_policy``, else Triton's
default name for its kind ("cpu", "gpu_<device>", "model"). When the command line
defines that policy, its settings bind the instance, as in Triton 2.51:

- ``cpu-cores=<a>-<b>[,<c>-<d>...]``: the CPU affinity of the threads that run the
  instance (its initialize, anything it starts there, its execute worker, and a
  python stub process with every thread in it). Every item is a range; Triton
  refuses a lone ``1`` (write ``1-1``).
- ``numa-node=<n>``: the NUMA memory policy (``set_mempolicy(MPOL_BIND)``) of the
  same threads. Like Triton it does not change CPU affinity.

Settings are only read when an instance of that policy is created: a bad value fails
that model's load with Triton's message, and a policy no instance uses is never
checked. A group that names a policy the command line does not define runs unbound.
Instances with no binding run exactly as before (no wrapper, no system call).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import platform
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tritonx.errors import InternalError, InvalidArgumentError

log = logging.getLogger("tritonx.repository")

# Policy name -> setting -> value, as the command line gave them (later flags win).
HostPolicies = Mapping[str, Mapping[str, str]]

SUPPORTED_SETTINGS = ("numa-node", "cpu-cores")

_INT32_MAX = 2**31 - 1
_MPOL_DEFAULT = 0
_MPOL_BIND = 2
# set_mempolicy(2) has no glibc wrapper (it lives in libnuma, which may be absent);
# it is called through syscall(2) with the architecture's number.
_SYS_SET_MEMPOLICY = {"x86_64": 238, "aarch64": 237, "ppc64le": 261, "s390x": 270}
_NODE_DIR = "/sys/devices/system/node"


@dataclass(frozen=True)
class HostBinding:
    """What a host policy binds an instance's threads to (picklable: a python stub
    process receives it with its instance context)."""

    cpus: frozenset[int] | None = None  # CPU affinity; None: unchanged
    numa_node: int | None = None  # memory bound to this node; None: unchanged


def default_policy_name(kind: str, device_id: int) -> str:
    """Triton's policy name for an instance whose group names none."""
    if kind == "GPU":
        return f"gpu_{device_id}"
    return "model" if kind == "MODEL" else "cpu"


def _stoi(what: str, text: str) -> int:
    """C++ ``std::stoi`` as Triton applies it: leading blanks and a sign, then the
    leading digits; anything after them is ignored ("1x" reads as 1)."""
    body = text.lstrip(" \t\n\v\f\r")
    end = 1 if body[:1] in ("+", "-") else 0
    while end < len(body) and body[end].isascii() and body[end].isdigit():
        end += 1
    digits = body[:end]
    # Out of int range, std::stoi throws an exception Triton does not catch (the
    # server aborts); tritonx reports it as unparseable instead.
    if digits.lstrip("+-") and abs(int(digits)) <= _INT32_MAX:
        return int(digits)
    raise InvalidArgumentError(f"{what}: Can't parse '{text}' to integer")


def _substr(text: str, start: int, end: int) -> str:
    # std::string::substr(start, end - start): a negative length wraps to "the rest".
    return text[start:end] if end >= start else text[start:]


def parse_cpu_cores(value: str) -> frozenset[int]:
    """Triton's reading of ``cpu-cores``: comma-separated ``<lower>-<upper>`` ranges,
    each item found by the next '-' from its start (so "1,2-3" reads as 1-3 and
    2-3, as in Triton)."""
    cpus: set[int] = set()
    pos = 0
    comma = value.find(",")
    while True:
        dash = value.find("-", pos)
        if dash < 0:
            got = value[pos:] if comma < 0 else value[pos:comma]
            raise InvalidArgumentError(
                "host policy setting 'cpu-cores' format is "
                f"'<lower_cpu_core_id>-<upper_cpu_core_id>'. Got {got}"
            )
        what = "Parsing 'cpu-cores' value"
        lower = _stoi(what, value[pos:dash])
        upper_text = value[dash + 1 :] if comma < 0 else _substr(value, dash + 1, comma)
        upper = _stoi(what, upper_text)
        cpus.update(range(lower, upper + 1))
        if comma < 0:
            return frozenset(cpus)
        pos = comma + 1
        comma = value.find(",", pos)


def _max_numa_node() -> int:
    """libnuma's numa_max_node(): the highest node number the system has."""
    try:
        names = os.listdir(_NODE_DIR)
    except OSError:
        return 0
    nodes = [int(n[4:]) for n in names if n.startswith("node") and n[4:].isdigit()]
    return max(nodes, default=0)


_libc: Any = None


def _set_mempolicy(mode: int, node: int | None) -> None:
    """set_mempolicy(2) for the calling thread; raises OSError."""
    global _libc
    number = _SYS_SET_MEMPOLICY.get(platform.machine())
    if number is None:
        raise OSError(errno.ENOSYS, os.strerror(errno.ENOSYS))
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if node is None:
        result = _libc.syscall(number, mode, None, ctypes.c_ulong(0))
    else:
        # One word of node mask, as Triton passes it: node >= 64 cannot be named.
        if not 0 <= node < 64:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        mask = ctypes.c_ulong(1 << node)
        maxnode = ctypes.c_ulong(_max_numa_node() + 2)
        result = _libc.syscall(number, mode, ctypes.byref(mask), maxnode)
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def _set_affinity(cpus: frozenset[int]) -> None:
    try:
        os.sched_setaffinity(0, cpus)  # pid 0: the calling thread only
    except (OSError, ValueError, OverflowError):
        # pthread_setaffinity_np returns its error rather than setting errno, and
        # Triton prints strerror(errno): the message really ends in "Success".
        raise InternalError("Unable to set NUMA thread affinity: Success") from None


def _bind_numa(node: int) -> None:
    try:
        _set_mempolicy(_MPOL_BIND, node)
    except OSError as error:
        raise InternalError(
            f"Unable to set NUMA memory policy: {error.strerror}"
        ) from None


def bind_thread(settings: Mapping[str, str]) -> HostBinding:
    """Read a policy's settings and bind the calling thread to them, in Triton's
    order (cpu-cores read and applied, then numa-node); the first problem raises
    Triton's error. Returns what was bound, for the instance's other threads."""
    cpus: frozenset[int] | None = None
    node: int | None = None
    if "cpu-cores" in settings:
        cpus = parse_cpu_cores(settings["cpu-cores"])
        log.debug("Thread is binding to one of the CPUs: %s", sorted(cpus))
        _set_affinity(cpus)
    if "numa-node" in settings:
        node = _stoi("Parsing 'numa-node' value", settings["numa-node"])
        log.debug("Thread is binding to NUMA node %d", node)
        _bind_numa(node)
    return HostBinding(cpus, node)


def apply_binding(binding: HostBinding) -> None:
    """Bind the calling thread to an already checked binding (a worker thread)."""
    if binding.cpus is not None:
        _set_affinity(binding.cpus)
    if binding.numa_node is not None:
        _bind_numa(binding.numa_node)


# A stub started as a fresh interpreter finds its binding here (encode_binding).
BINDING_ENV = "TRITONX_STUB_HOST_BINDING"


def encode_binding(cpus: Sequence[int] | None, numa_node: int | None) -> str:
    """``"<cpu,cpu,...>;<node>"`` (either part may be empty) for BINDING_ENV."""
    cpu_text = ",".join(str(cpu) for cpu in cpus) if cpus is not None else ""
    return f"{cpu_text};{'' if numa_node is None else numa_node}"


def apply_encoded(text: str) -> None:
    """Bind the calling (single-threaded) process to an encode_binding() value."""
    cpu_text, _, node_text = text.partition(";")
    cpus = [int(cpu) for cpu in cpu_text.split(",")] if cpu_text else None
    apply_in_child(cpus, int(node_text) if node_text else None)


def apply_in_child(cpus: Sequence[int] | None, numa_node: int | None) -> None:
    """Bind a freshly forked, single-threaded stub process (every thread it starts
    inherits it). Raises OSError; no tritonx error types, no logging."""
    if cpus is not None:
        os.sched_setaffinity(0, cpus)
    if numa_node is not None:
        _set_mempolicy(_MPOL_BIND, numa_node)


def server_cpus() -> set[int]:
    """The server's own CPU affinity: its main thread's, which no policy binds
    (instances are created on the loading threads)."""
    return os.sched_getaffinity(os.getpid())  # the main thread's id is the pid


def unbind_child(cpus: set[int]) -> None:
    """In a freshly forked process that serves every instance (the stub zygote),
    started perhaps from a thread bound for one of them: back to the server's
    ``cpus`` and the default memory policy. Raises OSError."""
    os.sched_setaffinity(0, cpus)
    with contextlib.suppress(OSError):  # no set_mempolicy here: nothing was bound
        _set_mempolicy(_MPOL_DEFAULT, None)


@contextlib.contextmanager
def binding_for_creation(
    policies: HostPolicies, policy_name: str
) -> Iterator[HostBinding | None]:
    """While an instance of ``policy_name`` is created: the loading thread bound to
    the policy (so its initialize, the threads and processes it starts inherit it,
    as they do in Triton), then restored. Yields None (and binds nothing) when the
    policy is not defined or has no settings."""
    settings = policies.get(policy_name)
    if not settings:
        yield None
        return
    before = os.sched_getaffinity(0)
    try:
        binding = bind_thread(settings)
        yield binding
    finally:
        # Triton leaves the loading thread's affinity as the policy set it; a pool
        # thread here loads other models next, so it gets its own back.
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, before)
        if "numa-node" in settings:
            with contextlib.suppress(OSError):
                _set_mempolicy(_MPOL_DEFAULT, None)


class BoundInstance:
    """What the core runs for an instance with a host binding: each worker thread
    binds itself before its first execution. Such an instance never runs on a
    caller's thread (inline dispatch), whose affinity is not the policy's."""

    allow_inline = False

    def __init__(self, instance: Any, binding: HostBinding) -> None:
        self.gather_inputs = bool(getattr(instance, "gather_inputs", False))
        self.staged_inputs = bool(getattr(instance, "staged_inputs", False))
        self._instance = instance
        self._binding = binding
        self._bound = threading.local()  # core threads keep their thread state

    def _bind(self) -> None:
        if not getattr(self._bound, "done", False):
            apply_binding(self._binding)
            self._bound.done = True

    def execute(self, requests: list[Any]) -> Any:
        self._bind()
        return self._instance.execute(requests)

    def execute_batch(self, inputs: dict[str, Any], requests: list[Any]) -> Any:
        self._bind()
        return self._instance.execute_batch(inputs, requests)
