"""DLPack through the binding, both ways: core tensors export ``__dlpack__`` /
``__dlpack_device__`` without a copy (keeping their bytes alive), and
``Tensor.from_dlpack`` takes numpy, torch (and capsules) without a copy, holding the
producer alive until the last user of the core tensor lets go; refusals name the
tensor and say why. GPU producers are in tests/gpu."""

from __future__ import annotations

import gc
import time
import weakref
from typing import Any

import numpy as np
import pytest
from coreutil import ModelFactory, batching, request, rows, spec

from tritonx import _native
from tritonx.errors import InvalidArgumentError

torch = pytest.importorskip("torch")
Tensor = _native.Tensor


def test_numpy_round_trip_without_copies() -> None:
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    t = Tensor.from_dlpack("x", a)
    assert (t.name, t.datatype, t.shape, t.byte_size) == ("x", "FP32", [3, 4], 48)
    assert (t.memory_type, t.device_id, t.__dlpack_device__()) == ("CPU", 0, (1, 0))
    assert np.shares_memory(t.as_numpy(), a)
    back = np.from_dlpack(t)  # numpy 2 asks for a versioned capsule
    assert np.shares_memory(back, a) and back.shape == (3, 4)
    assert bytes(t.raw()) == a.tobytes()
    legacy = torch.utils.dlpack.from_dlpack(t.__dlpack__())  # a legacy capsule
    assert legacy.data_ptr() == a.ctypes.data
    # A read-only array comes through numpy's versioned capsule.
    ro = np.ones(3, np.int64)
    ro.flags.writeable = False
    assert Tensor.from_dlpack("ro", ro).as_numpy().tolist() == [1, 1, 1]


def test_read_only_producers_stay_read_only() -> None:
    ro = np.arange(3, dtype=np.float32)
    ro.flags.writeable = False
    # The array (numpy hands out a versioned capsule flagged read-only) and such a
    # capsule given bare.
    for producer in (ro, ro.__dlpack__(max_version=(1, 0))):
        t = Tensor.from_dlpack("ro", producer)
        view = t.as_numpy()
        assert np.shares_memory(view, ro) and not view.flags.writeable
        with pytest.raises(ValueError, match="read-only"):
            view[0] = 42
        again = np.from_dlpack(t)  # exported on: the flag goes with it
        assert np.shares_memory(again, ro) and not again.flags.writeable
        assert np.from_dlpack(t, copy=True).flags.writeable  # the consumer's own
    assert ro.tolist() == [0, 1, 2]
    # Writable producers still give writable views over their own bytes, and a
    # legacy capsule (which cannot say read-only) is taken as writable.
    w = np.zeros(2, np.float32)
    Tensor.from_dlpack("w", w).as_numpy()[0] = 5
    legacy = Tensor.from_dlpack("l", torch.utils.dlpack.to_dlpack(torch.zeros(2)))
    assert w[0] == 5 and legacy.as_numpy().flags.writeable


def test_private_copies_are_the_callers_own() -> None:
    """as_numpy(copy=True) (what pb_utils gives a model for bytes others read) and
    a DLPack copy=True export: writable, equal, and sharing nothing with the
    producer, read-only or not; repeated copies reuse arena memory."""
    ro = np.arange(4, dtype=np.float32)
    ro.flags.writeable = False
    for producer in (ro, np.arange(4, dtype=np.float32)):
        t = Tensor.from_dlpack("p", producer)
        for copy in (t.as_numpy(copy=True), np.from_dlpack(t, copy=True)):
            assert copy.flags.writeable and not np.shares_memory(copy, producer)
            copy -= 1
            assert producer.tolist() == [0, 1, 2, 3] and copy.tolist() == [-1, 0, 1, 2]
    big = Tensor.from_dlpack("big", np.ones(1 << 18, np.float32))
    first = big.as_numpy(copy=True)
    del first  # its buffer goes back to the arena ...
    reuses = _native.arena_stats()["reuses"]
    assert big.as_numpy(copy=True).sum() == 1 << 18
    assert _native.arena_stats()["reuses"] > reuses  # ... which the next one reuses


class ArrayAnswers:
    """Answers every request with the array it was given (zero copy)."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array

    def execute(self, requests: list[Any]) -> list[Any]:
        return [{"OUTPUT0": self.array} for _ in requests]


def test_outputs_over_read_only_arrays_stay_read_only(
    make_model: ModelFactory,
) -> None:
    # What a BLS caller or an ensemble's next step views: the model's own array.
    kept = np.ones((1, 4), np.float32)
    kept.flags.writeable = False
    strided = np.ones((1, 8), np.float32)[:, ::2]  # copied into row-major order: ours
    strided.flags.writeable = False
    own = np.ones((1, 4), np.float32)
    for array, writable, shared in (
        (kept, False, True),
        (strided, True, False),
        (own, True, True),
    ):
        model = make_model(spec(), batching(delay_us=0), [ArrayAnswers(array)])
        out = model.infer(request("r", rows(1, 0.0))).outputs[0]
        view = out.as_numpy()
        assert view.flags.writeable == writable
        assert np.shares_memory(view, array) == shared
        assert np.from_dlpack(out).flags.writeable == writable


def test_torch_cpu_round_trip_and_dtypes() -> None:
    x = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    t = Tensor.from_dlpack("x", x)
    assert t.datatype == "FP32" and t.shape == [2, 3]
    y = torch.from_dlpack(t)
    assert y.data_ptr() == x.data_ptr() and torch.equal(y, x)
    for value, datatype in [
        (torch.ones(2, dtype=torch.bfloat16), "BF16"),
        (torch.tensor([True, False]), "BOOL"),
        (torch.zeros(2, dtype=torch.float16), "FP16"),
        (torch.zeros(2, dtype=torch.int8), "INT8"),
        (torch.zeros(2, dtype=torch.uint8), "UINT8"),
        (torch.zeros(2, dtype=torch.int64), "INT64"),
    ]:
        core = Tensor.from_dlpack("v", value)
        assert core.datatype == datatype
        again = torch.from_dlpack(core)
        assert again.dtype == value.dtype and torch.equal(again, value)
    capsule = torch.utils.dlpack.to_dlpack(x)
    assert Tensor.from_dlpack("c", capsule).as_numpy().tolist() == x.tolist()
    with pytest.raises(InvalidArgumentError, match="can be used once"):
        Tensor.from_dlpack("c", capsule)


def test_refusals_name_the_tensor() -> None:
    with pytest.raises(InvalidArgumentError, match=r"'t'.*not contiguous in C order"):
        Tensor.from_dlpack("t", torch.arange(6.0).reshape(2, 3).t())
    with pytest.raises(InvalidArgumentError, match="'c'"):
        Tensor.from_dlpack("c", np.zeros(2, np.complex64))
    with pytest.raises(InvalidArgumentError, match=r"'g'.*require gradient"):
        Tensor.from_dlpack("g", torch.ones(2, requires_grad=True))
    with pytest.raises(InvalidArgumentError, match="not a DLPack tensor"):
        Tensor.from_dlpack("n", object())
    words = _native.Request("r", [("s", "BYTES", [1], b"\x01\x00\x00\x00a")])
    with pytest.raises(BufferError, match="string tensors"):
        words.inputs[0].__dlpack__()
    with pytest.raises(BufferError, match="cannot be exported"):
        Tensor.from_dlpack("x", np.zeros(2)).__dlpack__(dl_device=(2, 0))


@pytest.mark.skipif(_native.probe_cuda(), reason="a GPU is usable here")
def test_gpu_producers_are_refused_without_cuda() -> None:
    class FakeCuda:
        def __dlpack_device__(self) -> tuple[int, int]:
            return (2, 0)

        def __dlpack__(self, **kwargs: Any) -> Any:
            raise AssertionError("a GPU tensor must not be taken without CUDA")

    with pytest.raises(InvalidArgumentError, match=r"'x' is in GPU memory.*no usable"):
        Tensor.from_dlpack("x", FakeCuda())


def test_imported_tensors_keep_their_producer_alive() -> None:
    a = np.arange(4, dtype=np.int32)
    alive = weakref.ref(a)
    t = Tensor.from_dlpack("x", a)
    del a
    gc.collect()
    assert alive() is not None  # the core tensor holds the producer
    view = t.as_numpy()
    del t
    gc.collect()
    assert alive() is not None  # ... and the view holds the core tensor
    assert view.tolist() == [0, 1, 2, 3]
    del view
    gc.collect()
    assert alive() is None  # nothing else kept it

    x = torch.arange(4.0)
    x_alive = weakref.ref(x)
    t = Tensor.from_dlpack("x", x)
    del x
    gc.collect()
    assert x_alive() is not None
    del t
    gc.collect()
    assert x_alive() is None


def test_exported_capsules_keep_the_core_bytes_alive() -> None:
    a = np.arange(5, dtype=np.float64)
    alive = weakref.ref(a)
    t = Tensor.from_dlpack("x", a)
    del a
    y = torch.from_dlpack(t)  # consumes a capsule that holds the core tensor
    del t
    gc.collect()
    assert alive() is not None and y.tolist() == [0, 1, 2, 3, 4]
    del y  # torch drops its tensors without the GIL: our release is queued
    gc.collect()
    # Under load (xdist) torch's release of the capsule can come a moment after the
    # del, on whichever thread drops its storage last; the queued release is drained
    # until it has come, and only a release that never comes fails the test.
    for _ in range(5000):
        _native.release_pending_refs()
        if alive() is None:
            break
        time.sleep(0.001)
    assert alive() is None
    unused = Tensor.from_dlpack("u", np.zeros(2)).__dlpack__()
    del unused  # an unconsumed capsule frees its tensor too (no leak, no crash)
    copied = Tensor.from_dlpack("c", np.ones(2))
    assert not np.shares_memory(np.from_dlpack(copied, copy=True), copied.as_numpy())


class TorchEcho:
    """A per-request instance answering with torch tensors: one it made (freed by
    the core only once the response is done), one from_dlpack'd core tensor."""

    def __init__(self) -> None:
        self.made: list[Any] = []

    def execute(self, requests: list[Any]) -> list[Any]:
        out = []
        for r in requests:
            x = torch.from_dlpack(r.inputs[0])  # the request's bytes, no copy
            y = x * 2
            self.made.append(weakref.ref(y))
            out.append({"OUTPUT0": y})
        return out


def test_model_outputs_may_be_torch_tensors(make_model: ModelFactory) -> None:
    instance = TorchEcho()
    model = make_model(spec(), batching(delay_us=0), [instance])
    response = model.infer(request("r", rows(2, 1.5)))
    out = response.outputs[0]
    assert out.memory_type == "CPU"
    np.testing.assert_array_equal(out.as_numpy(), rows(2, 1.5) * 2)
    gc.collect()
    assert instance.made[0]() is not None  # the response still reads its bytes
    del response, out
    gc.collect()
    _native.release_pending_refs()
    assert instance.made[0]() is None
