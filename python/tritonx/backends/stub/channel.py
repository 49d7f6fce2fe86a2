"""What the server and a model's stub process share: the control channel and the
shared-memory tensor regions.

Control messages are small pickled tuples over a ``SOCK_SEQPACKET`` Unix socket pair
(one message per datagram, so no framing; file descriptors ride along as
``SCM_RIGHTS``). Tensor bytes never go through the socket or through pickle: each side
owns one growable memfd region that it writes and the other side maps read-only in
effect. A message names tensors as ``(name, datatype, shape, offset, nbytes)`` in the
sender's region. A region that is too small is replaced by a bigger memfd whose file
descriptor travels with the message that first uses it; memfds have no name, so
nothing is left in /dev/shm whatever way either process ends.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import pickle
import socket
from collections.abc import Sequence
from typing import Any

import numpy as np

from tritonx.dtypes import NUMPY_DTYPES, deserialize_bytes, serialize_bytes

# One datagram carries one message; bigger ones (a huge parameter map or traceback)
# go through a one-off memfd instead.
MAX_DATAGRAM = 1 << 18
_ALIGN = 64
# The most descriptors one message carries: the stub's answer to init has up to six.
_FD_ANC = socket.CMSG_SPACE(8 * 4)

TensorDesc = tuple[str, str, tuple[int, ...], int, int]


class ChannelClosed(Exception):
    """The peer process is gone (EOF or a broken socket)."""


class Channel:
    """One end of the control socket.

    Thread-safety: ``send`` may be called from any thread (one datagram per call is
    atomic); ``recv`` has a single reader at a time, which the owner guarantees.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buf = bytearray(MAX_DATAGRAM)
        self._view = memoryview(self._buf)
        self._timeout: float | None = None

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, msg: Any, fds: Sequence[int] = ()) -> None:
        data = pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)
        if len(data) > MAX_DATAGRAM - 1:
            big = Region.create(len(data))
            big.mm[: len(data)] = data
            fds = [*fds, big.fd]
            data = pickle.dumps(
                ("__big__", len(data)), protocol=pickle.HIGHEST_PROTOCOL
            )
            try:
                self._send(data, fds)
            finally:
                big.close()
            return
        self._send(data, fds)

    def _send(self, data: bytes, fds: Sequence[int]) -> None:
        try:
            if fds:
                socket.send_fds(self.sock, [data], list(fds))
            else:
                self.sock.send(data)
        except OSError as exc:
            raise ChannelClosed(str(exc)) from None

    def recv(self, timeout: float | None = None) -> tuple[Any, list[int]]:
        """The next message and the file descriptors it carried (owned by the caller).
        Raises ChannelClosed at EOF and TimeoutError after ``timeout`` seconds."""
        if timeout != self._timeout:  # settimeout costs fcntl calls: only on change
            self.sock.settimeout(timeout)
            self._timeout = timeout
        try:
            n, anc, flags, _addr = self.sock.recvmsg_into([self._buf], _FD_ANC)
        except TimeoutError:
            raise
        except OSError as exc:
            raise ChannelClosed(str(exc)) from None
        if n == 0:
            raise ChannelClosed("end of file")
        if flags & socket.MSG_CTRUNC:  # descriptors were dropped: the peer's bug
            raise ChannelClosed("a message carried more descriptors than allowed")
        fds: list[int] = []
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                usable = len(data) - len(data) % 4
                fds.extend(np.frombuffer(data[:usable], dtype=np.int32).tolist())
        msg = pickle.loads(self._view[:n])
        if isinstance(msg, tuple) and msg and msg[0] == "__big__":
            big = Region.adopt(fds.pop())
            try:
                msg = pickle.loads(big.mm[: msg[1]])
            finally:
                big.close()
        return msg, fds


class Region:
    """A memfd mapped read-write. Not thread-safe: one writer at a time (its owner)."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.size = size
        self.mm = mmap.mmap(fd, size) if size else mmap.mmap(-1, 1)

    @classmethod
    def create(cls, size: int, name: str = "tritonx-tensors") -> Region:
        fd = os.memfd_create(name, os.MFD_CLOEXEC)
        size = max(size, 1)
        os.ftruncate(fd, size)
        return cls(fd, size)

    @classmethod
    def adopt(cls, fd: int) -> Region:
        return cls(fd, os.fstat(fd).st_size)

    def close(self) -> None:
        # BufferError: arrays still view it; the mapping goes when they do
        with contextlib.suppress(BufferError):
            self.mm.close()
        with contextlib.suppress(OSError):
            os.close(self.fd)


class Writer:
    """Lays tensors out in the owner's region, growing it (a new memfd) when needed.

    ``begin`` starts a message; ``fds`` after packing says which descriptor the peer
    must adopt (the new region) before reading it. Not thread-safe.
    """

    def __init__(self, size: int, growth: int, region: Region | None = None) -> None:
        self.region = Region.create(size) if region is None else region
        self.growth = max(growth, 1 << 16)
        self._offset = 0
        # The peer has not seen a region this writer made; one it was given, it has.
        self._new_fd: int | None = self.region.fd if region is None else None

    def begin(self) -> None:
        self._offset = 0

    def reserve(self, total: int) -> None:
        """Make sure ``total`` bytes fit from offset 0 (call after ``begin``)."""
        if total > self.region.size:
            size = self.region.size
            while size < total:
                size += max(self.growth, size)
            old = self.region
            self.region = Region.create(size)
            self._new_fd = self.region.fd
            old.close()

    def take_new_fd(self) -> list[int]:
        fd, self._new_fd = self._new_fd, None
        return [] if fd is None else [fd]

    def put(
        self, name: str, datatype: str, shape: Sequence[int], data: Any
    ) -> TensorDesc:
        """Copy ``data`` (anything exposing the buffer protocol) into the region."""
        view = memoryview(data)
        n = view.nbytes
        off = self._offset
        if n:  # (a view with a zero in its shape cannot be cast; nothing to copy)
            self.region.mm[off : off + n] = view.cast("B")
        self._offset = off + (n + _ALIGN - 1) // _ALIGN * _ALIGN
        return (name, datatype, tuple(shape), off, n)


def padded(n: int) -> int:
    return (n + _ALIGN - 1) // _ALIGN * _ALIGN


def array_bytes(value: Any) -> tuple[str, tuple[int, ...], Any]:
    """(wire datatype, shape, buffer) of an output value (an array, (dtype, array),
    or a core tensor: a DLPack tensor's, whose host bytes a GPU one copies once)."""
    from tritonx import _native
    from tritonx.backends.pb.dtypes import wire_datatype_of

    if isinstance(value, _native.Tensor):
        datatype, array = value.datatype, value.as_numpy()
    elif isinstance(value, tuple):
        datatype, array = value
    else:
        array = value if isinstance(value, np.ndarray) else np.asarray(value)
        datatype = wire_datatype_of(array)
    shape = tuple(int(d) for d in array.shape)
    if datatype == "BYTES":
        return datatype, shape, serialize_bytes(array)
    return datatype, shape, np.ascontiguousarray(array)


def view_tensor(mm: mmap.mmap, desc: TensorDesc, copy: bool) -> np.ndarray:
    """The array a descriptor names in ``mm``: a read-only view, or a private copy."""
    _name, datatype, shape, off, n = desc
    if datatype == "BYTES":
        return deserialize_bytes(mm[off : off + n]).reshape(shape)
    dtype = NUMPY_DTYPES[datatype]
    array = np.frombuffer(mm, dtype=dtype, count=n // dtype.itemsize, offset=off)
    array = array.reshape(shape)
    if copy:
        return array.copy()
    array.flags.writeable = False
    return array
