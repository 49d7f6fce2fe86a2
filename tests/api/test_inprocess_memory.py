"""tritonx.api output memory, as Triton's ``tritonserver`` package has it:
``MemoryBuffer``, ``MemoryAllocator`` / ``default_memory_allocators``,
``InferenceRequest.output_memory_type`` and ``output_memory_allocator``, through a
real in-process server and real Python models (add_sub, a BYTES echo, a decoupled
model)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from cloudutil import write_model
from testmodels import ADD_SUB, ADD_SUB_PY, ECHO_MODEL, REPEAT_CONFIG, REPEAT_MODEL

import tritonx.api as api
from tritonx import _native, dtypes

ECHO_BYTES_CONFIG = """
name: "echo_bytes"
backend: "python"
max_batch_size: 0
input [ { name: "INPUT0" data_type: TYPE_STRING dims: [ -1 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_STRING dims: [ -1 ] } ]
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[api.Server]:
    repo = tmp_path_factory.mktemp("api_memory") / "repo"
    write_model(repo, "add_sub", ADD_SUB, ADD_SUB_PY)
    write_model(repo, "echo_bytes", ECHO_BYTES_CONFIG, ECHO_MODEL)
    write_model(repo, "repeat", REPEAT_CONFIG, REPEAT_MODEL)
    server = api.Server(model_repository=str(repo)).start(wait_until_ready=True)
    yield server
    server.stop()


A = np.array([1, 2, 3, 4], dtype=np.float32)
B = np.array([0.5, 0.5, 2, 2], dtype=np.float32)


def _add_sub(server: api.Server, **fields: Any) -> api.InferenceResponse:
    (response,) = server.model("add_sub").infer(
        inputs={"INPUT0": A, "INPUT1": B}, **fields
    )
    return response


class NumpyAllocator(api.MemoryAllocator):
    """Host memory the test owns: a numpy array per output, ``extra`` bytes larger
    than asked; records every call (with the output name: Triton's first beta
    signature)."""

    def __init__(self, extra: int = 0, memory_type: api.MemoryType | None = None):
        self.extra = extra
        self.memory_type = memory_type  # report this type instead of the array's
        self.calls: list[tuple[str, int, api.MemoryType, int]] = []
        self.arrays: dict[str, np.ndarray] = {}  # the latest for each name
        self.made: list[np.ndarray] = []

    def allocate(
        self,
        size: int,
        memory_type: api.MemoryType,
        memory_type_id: int,
        tensor_name: str,
    ) -> api.MemoryBuffer:
        self.calls.append((tensor_name, size, memory_type, memory_type_id))
        array = self.arrays[tensor_name] = np.full(size + self.extra, 0xEE, np.uint8)
        self.made.append(array)
        buffer = api.MemoryBuffer.from_dlpack(array)
        if self.memory_type is not None:
            buffer.memory_type = self.memory_type
        return buffer


# -- allocators --------------------------------------------------------------------


def test_custom_allocator_gets_each_output_and_holds_its_bytes(
    server: api.Server,
) -> None:
    allocator = NumpyAllocator(extra=8)
    response = _add_sub(server, output_memory_allocator=allocator)
    assert sorted(allocator.calls) == [
        ("OUTPUT0", 16, api.MemoryType.CPU, 0),
        ("OUTPUT1", 16, api.MemoryType.CPU, 0),
    ]
    # The bytes are in the test's own arrays, and the outputs are views of them.
    mine0 = allocator.arrays["OUTPUT0"]
    np.testing.assert_array_equal(mine0[:16].view(np.float32), A + B)
    np.testing.assert_array_equal(
        allocator.arrays["OUTPUT1"][:16].view(np.float32), A - B
    )
    assert (mine0[16:] == 0xEE).all()  # nothing written past the output
    out0 = response.outputs["OUTPUT0"]
    assert out0.memory_buffer.owner is mine0
    assert out0.data_ptr == mine0.ctypes.data and out0.size == 24  # the buffer's
    assert out0.memory_type == api.MemoryType.CPU and out0.memory_type_id == 0
    assert out0.shape == (4,) and out0.data_type == api.DataType.FP32
    view = np.from_dlpack(out0)
    np.testing.assert_array_equal(view, A + B)
    mine0[:4] = np.frombuffer(np.float32(-7).tobytes(), np.uint8)
    assert view[0] == -7  # no copy between the user's memory and the output
    assert out0.to_host() is out0 and out0.to_device("cpu") is out0
    # An output in user memory goes back in as an input.
    (again,) = server.model("add_sub").infer(
        inputs={"INPUT0": out0, "INPUT1": response.outputs["OUTPUT1"]}
    )
    np.testing.assert_array_equal(
        np.from_dlpack(again.outputs["OUTPUT0"]), [-7 + 0.5, 2 * 2, 5 + 1, 6 + 2]
    )


def test_three_argument_allocator_and_default_registry(server: api.Server) -> None:
    """Triton's released signature, allocate(size, memory_type, memory_type_id),
    and a replaced default_memory_allocators entry, used by a request naming no
    allocator."""
    sizes: list[tuple[int, api.MemoryType, int]] = []
    owned: list[np.ndarray] = []

    class Plain(api.MemoryAllocator):
        def allocate(self, *args: Any) -> api.MemoryBuffer:
            sizes.append(args)
            owned.append(np.empty(args[0], np.uint8))
            return api.MemoryBuffer.from_dlpack(owned[-1])

    response = _add_sub(server, output_memory_allocator=Plain())
    assert sizes == [(16, api.MemoryType.CPU, 0)] * 2
    assert {o.ctypes.data for o in owned} == {
        t.data_ptr for t in response.outputs.values()
    }

    assert set(api.default_memory_allocators) == {
        api.MemoryType.CPU,
        api.MemoryType.CPU_PINNED,
    }
    # Triton's own test calls the default CPU allocator by keyword.
    buffer = api.default_memory_allocators[api.MemoryType.CPU].allocate(
        memory_type=api.MemoryType.CPU, memory_type_id=0, size=200
    )
    assert buffer.size == 200 and buffer.memory_type == api.MemoryType.CPU
    fp32 = np.from_dlpack(api.Tensor(api.DataType.FP32, [50], buffer))
    assert fp32.ctypes.data == buffer.owner.ctypes.data and fp32.nbytes == 200

    default = api.default_memory_allocators[api.MemoryType.CPU]
    api.default_memory_allocators[api.MemoryType.CPU] = Plain()
    try:
        sizes.clear()
        response = _add_sub(server)
    finally:
        api.default_memory_allocators[api.MemoryType.CPU] = default
    assert len(sizes) == 2
    owners = {id(t.memory_buffer.owner) for t in response.outputs.values()}
    assert owners == {id(o) for o in owned[-2:]}
    np.testing.assert_array_equal(np.from_dlpack(response.outputs["OUTPUT0"]), A + B)


def test_output_memory_type_host_spellings_and_pinned(server: api.Server) -> None:
    for memory_type in (
        "cpu",
        "CPU:0",
        api.MemoryType.CPU,
        (api.MemoryType.CPU, 0),
        (api.DLDeviceType.kDLCPU, 0),
        "cpu_pinned",
        api.MemoryType.CPU_PINNED,
    ):
        response = _add_sub(server, output_memory_type=memory_type)
        out1 = response.outputs["OUTPUT1"]
        np.testing.assert_array_equal(np.from_dlpack(out1), A - B)
        # Pinned requests are served with ordinary host memory, reported as such:
        # the core's own output buffer, handed over without a copy.
        assert out1.memory_type == api.MemoryType.CPU
        buffer = out1.memory_buffer
        assert (buffer.size, buffer.memory_type) == (16, api.MemoryType.CPU)
        assert out1.data_ptr == np.from_dlpack(out1).ctypes.data
    # An allocator is told that pinned memory was asked for; the pinned buffer it
    # returns is what the output reports.
    allocator = NumpyAllocator(memory_type=api.MemoryType.CPU_PINNED)
    response = _add_sub(
        server,
        output_memory_type=api.MemoryType.CPU_PINNED,
        output_memory_allocator=allocator,
    )
    assert {c[2] for c in allocator.calls} == {api.MemoryType.CPU_PINNED}
    out0 = response.outputs["OUTPUT0"]
    assert out0.memory_type == api.MemoryType.CPU_PINNED
    assert out0.__dlpack_device__() == (1, 0)  # kDLCPU, as Triton says pinned memory
    assert out0.to_host() is out0 and out0.to_device(api.MemoryType.CPU) is out0
    np.testing.assert_array_equal(allocator.arrays["OUTPUT0"].view(np.float32), A + B)
    np.testing.assert_array_equal(np.from_dlpack(out0), A + B)


def test_bytes_outputs_through_an_allocator(server: api.Server) -> None:
    allocator = NumpyAllocator(extra=5)
    words = ["abc", "", "Zürich"]
    (response,) = server.model("echo_bytes").infer(
        inputs={"INPUT0": words}, output_memory_allocator=allocator
    )
    wire = dtypes.serialize_bytes(np.array([w.encode() for w in words], object))
    assert allocator.calls == [("OUTPUT0", len(wire), api.MemoryType.CPU, 0)]
    assert allocator.arrays["OUTPUT0"][: len(wire)].tobytes() == wire
    out = response.outputs["OUTPUT0"]
    assert out.data_type == api.DataType.BYTES and out.shape == (3,)
    assert out.data_ptr == allocator.arrays["OUTPUT0"].ctypes.data
    assert out.to_string_array().tolist() == words  # the extra bytes are not read
    with pytest.raises(api.InvalidArgumentError):
        np.from_dlpack(out)
    (again,) = server.model("echo_bytes").infer(inputs={"INPUT0": out})
    assert again.outputs["OUTPUT0"].to_bytes_array().tolist() == [
        w.encode() for w in words
    ]


def test_allocator_with_async_infer_and_decoupled(server: api.Server) -> None:
    allocator = NumpyAllocator()

    async def main() -> list[int]:
        values = []
        async for response in server.model("repeat").async_infer(
            inputs={
                "COUNT": np.array([3], dtype=np.int32),
                "MODE": np.array([0], dtype=np.int32),
            },
            output_memory_allocator=allocator,
        ):
            for tensor in response.outputs.values():
                owners.append(tensor.memory_buffer.owner)
                values.append(int(np.from_dlpack(tensor)[0]))
        return values

    owners: list[np.ndarray] = []
    assert asyncio.run(main()) == [0, 1, 2]
    assert [c[0] for c in allocator.calls] == ["OUT"] * 3
    # Each response's output is in its own buffer from the allocator.
    assert [id(o) for o in owners] == [id(a) for a in allocator.made]
    assert [int(a.view(np.int32)[0]) for a in allocator.made] == [0, 1, 2]


# -- MemoryBuffer -------------------------------------------------------------------


def test_memory_buffer_from_dlpack_numpy() -> None:
    array = np.arange(12, dtype=np.float64).reshape(3, 4)
    buffer = api.MemoryBuffer.from_dlpack(array)
    assert buffer == api.MemoryBuffer(
        array.ctypes.data, api.MemoryType.CPU, 0, 96, array
    )
    assert api.MemoryBuffer.from_dlpack(array[1:]).data_ptr == array.ctypes.data + 32
    with pytest.raises(api.InvalidArgumentError, match="contiguous"):
        api.MemoryBuffer.from_dlpack(array[:, ::2])
    with pytest.raises(api.InvalidArgumentError, match="DLpack"):
        api.MemoryBuffer.from_dlpack(b"not a tensor")
    # A Tensor over a buffer must fit in it.
    with pytest.raises(api.InvalidArgumentError, match="too small"):
        api.Tensor(api.DataType.FP64, [13], buffer)
    tensor = api.Tensor(api.DataType.FP64, [2, 6], buffer)
    assert np.from_dlpack(tensor).ctypes.data == array.ctypes.data
    assert tensor.memory_buffer is buffer and tensor.size == 96
    # Tensors made from arrays have buffers too (BYTES: the serialized form).
    assert api.Tensor.from_dlpack(array).data_ptr == array.ctypes.data
    words = api.Tensor.from_string_array(["ab", "c"])
    assert words.memory_buffer.size == words.size == 4 + 2 + 4 + 1
    assert (
        bytes(
            api.Tensor(api.DataType.BYTES, [2], words.memory_buffer).to_bytes_array()[1]
        )
        == b"c"
    )


def test_memory_buffer_from_dlpack_torch(server: api.Server) -> None:
    torch = pytest.importorskip("torch")
    t = torch.arange(6, dtype=torch.bfloat16).reshape(2, 3)
    buffer = api.MemoryBuffer.from_dlpack(t)
    assert (buffer.data_ptr, buffer.size, buffer.owner) == (t.data_ptr(), 12, t)
    assert buffer.memory_type == api.MemoryType.CPU
    with pytest.raises(api.InvalidArgumentError, match="contiguous"):
        api.MemoryBuffer.from_dlpack(t.t())
    back = torch.from_dlpack(api.Tensor(api.DataType.BF16, [2, 3], buffer))
    assert back.dtype == torch.bfloat16 and back.data_ptr() == t.data_ptr()

    class TorchAllocator(api.MemoryAllocator):
        def __init__(self) -> None:
            self.tensors: list[Any] = []

        def allocate(
            self, size: int, memory_type: api.MemoryType, memory_type_id: int
        ) -> api.MemoryBuffer:
            self.tensors.append(torch.zeros(size, dtype=torch.uint8))
            return api.MemoryBuffer.from_dlpack(self.tensors[-1])

    allocator = TorchAllocator()
    response = _add_sub(server, output_memory_allocator=allocator)
    landed = {tuple(t.view(torch.float32).tolist()) for t in allocator.tensors}
    assert landed == {tuple((A + B).tolist()), tuple((A - B).tolist())}
    out0 = torch.from_dlpack(response.outputs["OUTPUT0"])
    assert out0.data_ptr() in {t.data_ptr() for t in allocator.tensors}
    assert out0.tolist() == (A + B).tolist()


# -- errors ----------------------------------------------------------------------------


class _Raising(api.MemoryAllocator):
    def allocate(self, *args: Any, **kwargs: Any) -> api.MemoryBuffer:
        raise RuntimeError("foo")


class _Returning(api.MemoryAllocator):
    def __init__(self, make: Any) -> None:
        self.make = make
        self.kept: list[Any] = []

    def allocate(
        self, size: int, memory_type: api.MemoryType, memory_type_id: int
    ) -> Any:
        result = self.make(size)
        self.kept.append(result)
        return result


def _too_small(size: int) -> api.MemoryBuffer:
    return api.MemoryBuffer.from_dlpack(np.zeros(size - 1, np.uint8))


def _gpu(size: int) -> api.MemoryBuffer:
    host = np.zeros(size, np.uint8)
    return api.MemoryBuffer(host.ctypes.data, api.MemoryType.GPU, 0, size, host)


@pytest.mark.parametrize(
    ("allocator", "error", "words"),
    [
        (_Raising(), api.InternalError, "RuntimeError: foo"),
        (_Returning(_too_small), api.InternalError, "of 15 bytes"),
        (_Returning(lambda size: np.zeros(size)), api.InternalError, "ndarray"),
        (_Returning(_gpu), api.UnsupportedError, "MemoryType.GPU"),
    ],
    ids=["raises", "too-small", "not-a-buffer", "gpu-memory"],
)
def test_allocator_failures_fail_the_response(
    server: api.Server, allocator: Any, error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=words):
        _add_sub(server, output_memory_allocator=allocator)
    (response,) = server.model("add_sub").infer(
        inputs={"INPUT0": A, "INPUT1": B},
        output_memory_allocator=allocator,
        raise_on_error=False,
    )
    assert isinstance(response.error, error) and response.final
    assert "OUTPUT" in str(response.error) and response.outputs == {}
    # A decoupled stream fails each response and still ends.
    responses = list(
        server.model("repeat").infer(
            inputs={
                "COUNT": np.array([2], dtype=np.int32),
                "MODE": np.array([0], dtype=np.int32),
            },
            output_memory_allocator=allocator,
            raise_on_error=False,
        )
    )
    # Two data responses, each failed; then the model's bare FINAL.
    assert [type(r.error) for r in responses] == [error, error, type(None)]
    assert responses[-1].final and responses[-1].outputs == {}
    # The server is unharmed.
    np.testing.assert_array_equal(
        np.from_dlpack(_add_sub(server).outputs["OUTPUT0"]), A + B
    )


def test_bad_allocator_or_memory_type_refused_before_sending(
    server: api.Server,
) -> None:
    model = server.model("add_sub")
    before = model.statistics()["model_stats"][0]["inference_count"]
    for memory_type in (
        "gpu",
        "GPU:0",
        api.MemoryType.GPU,
        (api.DLDeviceType.kDLCUDA, 0),
    ):
        # As Triton where no GPU allocator is registered: InvalidArgumentError.
        with pytest.raises(
            api.InvalidArgumentError, match=r"Memory type MemoryType\.GPU"
        ):
            _add_sub(server, output_memory_type=memory_type)
    for bad in ("tpu", "cpu:x", "cpu:0:1", (1, 0), 2.0):
        with pytest.raises(api.InvalidArgumentError):
            _add_sub(server, output_memory_type=bad)
    with pytest.raises(api.InvalidArgumentError, match="MemoryAllocator"):
        _add_sub(server, output_memory_allocator=object())
    assert model.statistics()["model_stats"][0]["inference_count"] == before


def test_gpu_memory_with_an_allocator_and_to_device(server: api.Server) -> None:
    # GPU asked for with an allocator: the allocator decides; host memory serves.
    allocator = NumpyAllocator()
    response = _add_sub(
        server, output_memory_type="gpu:1", output_memory_allocator=allocator
    )
    assert {c[2:] for c in allocator.calls} == {(api.MemoryType.GPU, 1)}
    out0 = response.outputs["OUTPUT0"]
    assert out0.memory_type == api.MemoryType.CPU
    with pytest.raises(api.UnsupportedError, match="not supported") as refused:
        out0.to_device("gpu")
    if not _native.cuda_usable():
        assert "no usable GPU" in str(refused.value)
    with pytest.raises(api.UnsupportedError):
        out0.to_device((api.MemoryType.GPU, 0))
    # A tensor over device memory can neither come to the host nor go in.
    device = api.Tensor(api.DataType.FP32, [4], _gpu(16))
    assert device.__dlpack_device__() == (2, 0)
    with pytest.raises(api.UnsupportedError):
        device.to_host()
    with pytest.raises(api.UnsupportedError):
        np.from_dlpack(device)
    with pytest.raises(api.UnsupportedError):
        server.model("add_sub").infer(inputs={"INPUT0": device, "INPUT1": B})
