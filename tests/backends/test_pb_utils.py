"""pb_utils pieces that need no server: dtypes, BYTES codec, Tensor, ModelConfig."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import triton_python_backend_utils as pb_utils

from tritonx.backends import pb_utils as tritonx_pb_utils


def test_shim_is_the_same_module_surface() -> None:
    assert pb_utils.Tensor is tritonx_pb_utils.Tensor
    for name in tritonx_pb_utils.__all__:
        assert hasattr(pb_utils, name), name


def test_dtype_tables() -> None:
    assert pb_utils.triton_string_to_numpy("TYPE_FP32") is np.float32
    assert pb_utils.triton_string_to_numpy("TYPE_STRING") is np.object_
    assert pb_utils.triton_to_numpy_type(11) is np.float32
    assert pb_utils.triton_to_numpy_type(13) is np.object_
    assert pb_utils.triton_to_numpy_type(14) is None  # BF16 has no numpy type
    assert pb_utils.numpy_to_triton_type(np.float16) == 10
    assert pb_utils.numpy_to_triton_type(np.dtype(np.bool_)) == 1
    assert pb_utils.numpy_to_triton_type(np.object_) == 13
    assert pb_utils.numpy_to_triton_type(np.bytes_) == 13


def test_bytes_round_trip() -> None:
    data = np.array([[b"a", b""], [b"\x00\xff", b"z"]], dtype=object)
    wire = pb_utils.serialize_byte_tensor(data)
    assert (
        wire
        == b"\x01\x00\x00\x00a\x00\x00\x00\x00\x02\x00\x00\x00\x00\xff\x01\x00\x00\x00z"
    )
    back = pb_utils.deserialize_bytes_tensor(wire)
    assert back.dtype == object and back.tolist() == data.reshape(-1).tolist()
    assert pb_utils.serialize_byte_tensor(np.zeros(2, np.float32)) is None


def test_tensor_basics_and_dlpack() -> None:
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    t = pb_utils.Tensor("x", x)
    assert (t.name(), t.triton_dtype(), t.shape(), t.is_cpu()) == (
        "x",
        11,
        [2, 3],
        True,
    )
    assert t.as_numpy() is x
    assert t.__dlpack_device__() == (1, 0)
    back = np.from_dlpack(t)
    assert np.shares_memory(back, x)
    via_capsule = pb_utils.Tensor.from_dlpack("y", t.to_dlpack())
    np.testing.assert_array_equal(via_capsule.as_numpy(), x)
    assert np.shares_memory(via_capsule.as_numpy(), x)
    s = pb_utils.Tensor("s", np.array(["a", "b"], dtype=object))
    assert s.triton_dtype() == 13
    with pytest.raises(TypeError):
        pb_utils.Tensor("c", np.zeros(2, np.complex64))


def test_read_only_producers_stay_read_only() -> None:
    # Whatever the model wraps without a copy keeps the producer's read-only flag:
    # as_numpy() must not let model code write into memory it does not own.
    ro = np.arange(3, dtype=np.float32)
    ro.flags.writeable = False
    for made in (
        pb_utils.Tensor.from_dlpack("a", ro),
        pb_utils.Tensor.from_dlpack("b", ro.__dlpack__(max_version=(1, 0))),
        pb_utils.Tensor("c", ro),
    ):
        view = made.as_numpy()
        assert np.shares_memory(view, ro) and not view.flags.writeable
        passed_on = pb_utils.Tensor.from_dlpack("d", made)
        assert not passed_on.as_numpy().flags.writeable
    assert pb_utils.Tensor.from_dlpack("w", np.zeros(2)).as_numpy().flags.writeable


def test_inputs_others_read_are_the_models_own_copy() -> None:
    # A BLS caller's array (like a client's shared memory region or an ensemble
    # tensor) is read in place by the core, but a model's in-place write must not
    # reach it: as_numpy()/to_dlpack() copy it, as Triton's python backend does.
    from tritonx import _native

    caller = np.arange(3, dtype=np.float32)
    core = _native.Request("r", [("x", "FP32", [3], caller)]).inputs[0]
    assert core.aliased and np.shares_memory(core.as_numpy(), caller)
    given = pb_utils.Tensor._from_core(core)
    view = given.as_numpy()
    view -= 1
    assert view.tolist() == [-1, 0, 1] and given.as_numpy() is view
    again = np.from_dlpack(given)  # through __dlpack__, as to_dlpack() does
    assert not np.shares_memory(again, caller) and again.flags.writeable
    assert caller.tolist() == [0, 1, 2]
    made = pb_utils.Tensor.from_dlpack("m", caller)  # the model's own: no copy
    assert np.shares_memory(made.as_numpy(), caller)


def test_bf16_through_dlpack() -> None:
    # Triton's way to pass a BF16 tensor on (numpy has no bfloat16): the capsule's
    # dtype is bfloat16 and from_dlpack makes a BF16 tensor of it again.
    from tritonx.backends.pb import dlpack_bf16

    bits = (np.arange(6, dtype=np.uint16) + 16256).reshape(2, 3)
    t = pb_utils.Tensor._with_datatype("in", bits, "BF16")
    for source in (t.to_dlpack(), t):
        out = pb_utils.Tensor.from_dlpack("out", source)
        assert out.triton_dtype() == 14 and out.shape() == [2, 3]
        np.testing.assert_array_equal(out.as_numpy(), bits)
        assert out._output_value()[0] == "BF16"
    assert not dlpack_bf16._alive  # consumed capsules let go of their array
    unused = t.to_dlpack()
    del unused
    assert not dlpack_bf16._alive
    torch = pytest.importorskip("torch")
    as_torch = torch.utils.dlpack.from_dlpack(t.to_dlpack())
    assert as_torch.dtype == torch.bfloat16
    assert as_torch[0, 1].item() == 1.0078125  # bits 0x3f81
    back = pb_utils.Tensor.from_dlpack(
        "back", torch.utils.dlpack.to_dlpack(as_torch.t())
    )
    np.testing.assert_array_equal(back.as_numpy(), bits.T)
    assert back.triton_dtype() == 14


def test_dlpack_behaves_as_tritons_python_backend() -> None:
    # The cases of Triton's own python-backend DLPack unit test that need no GPU,
    # with its messages.
    torch = pytest.importorskip("torch")
    from torch.utils.dlpack import to_dlpack

    half = torch.rand([100], dtype=torch.float16) * 100
    t = pb_utils.Tensor.from_dlpack("tensor", half)
    assert t.is_cpu() and t.__dlpack_device__() == half.__dlpack_device__()
    assert np.array_equal(np.from_dlpack(t), half.numpy())
    assert torch.equal(torch.from_dlpack(t), half)
    assert np.shares_memory(t.as_numpy(), half.numpy())  # no copy on the way in
    with pytest.raises(pb_utils.TritonModelException) as err:
        pb_utils.Tensor.from_dlpack("t", to_dlpack(torch.rand([20, 30]).t()))
    assert str(err.value) == (
        "DLPack tensor is not contiguous. Only contiguous DLPack tensors that are "
        "stored in C-Order are supported."
    )
    words = pb_utils.Tensor("s", np.array(["An Example String"], dtype=np.object_))
    with pytest.raises(pb_utils.TritonModelException) as err:
        words.to_dlpack()
    assert str(err.value) == "DLPack does not have support for string tensors."
    flags = pb_utils.Tensor.from_dlpack(
        "b", pb_utils.Tensor("b", np.array([False, True]))
    )
    assert flags.as_numpy().tolist() == [False, True]
    # The constructor takes numpy arrays only, as Triton's: DLPack goes through
    # from_dlpack, and a strided numpy view is copied by the core.
    with pytest.raises(TypeError, match="incompatible constructor arguments"):
        pb_utils.Tensor("c", half)
    strided = torch.arange(6.0).reshape(2, 3).t()
    assert pb_utils.Tensor("d", strided.numpy()).as_numpy().tolist() == (
        strided.tolist()
    )


def test_inference_response_validation() -> None:
    ok = pb_utils.InferenceResponse([pb_utils.Tensor("o", np.zeros(1))])
    assert not ok.has_error() and ok.parameters() == "{}"
    err = pb_utils.InferenceResponse(
        error=pb_utils.TritonError("bad", pb_utils.TritonError.INVALID_ARG)
    )
    assert err.has_error() and err.error().message() == "bad"
    assert err.error().code() == pb_utils.TritonError.INVALID_ARG
    with pytest.raises(TypeError):
        pb_utils.InferenceResponse(error="plain string")  # type: ignore[arg-type]
    params = pb_utils.InferenceResponse([], parameters={"a": 1, "b": "x"})
    assert json.loads(params.parameters()) == {"a": 1, "b": "x"}


def test_helpers_on_config_dicts() -> None:
    config = {
        "input": [{"name": "A", "data_type": "TYPE_FP32"}],
        "output": [{"name": "B", "data_type": "TYPE_INT64"}],
    }
    assert pb_utils.get_input_config_by_name(config, "A")["data_type"] == "TYPE_FP32"
    assert pb_utils.get_output_config_by_name(config, "B")["data_type"] == "TYPE_INT64"
    assert pb_utils.get_input_config_by_name(config, "Z") is None
    assert not pb_utils.using_decoupled_model_transaction_policy(config)
    config["model_transaction_policy"] = {"decoupled": True}
    assert pb_utils.using_decoupled_model_transaction_policy(config)


def test_model_config_for_auto_complete() -> None:
    c = pb_utils.ModelConfig(
        json.dumps({"name": "m", "max_batch_size": 8, "input": []})
    )
    with pytest.raises(ValueError, match="configuration specified max_batch_size 8"):
        c.set_max_batch_size(4)
    c.set_max_batch_size(16)
    c.add_input({"name": "I", "data_type": "TYPE_FP32", "dims": [2]})
    c.add_input({"name": "I", "data_type": "TYPE_FP32", "dims": [2]})  # same: merged
    with pytest.raises(ValueError, match="configuration expects datatype TYPE_FP32"):
        c.add_input({"name": "I", "data_type": "TYPE_INT32", "dims": [2]})
    with pytest.raises(ValueError, match="contains property other than"):
        c.add_output({"name": "O", "data_type": "TYPE_FP32", "dims": [1], "x": 1})
    with pytest.raises(ValueError, match="is missing 'dims' property"):
        c.add_output({"name": "O", "data_type": "TYPE_FP32"})
    c.set_dynamic_batching()
    c.set_model_transaction_policy({"decoupled": False})
    with pytest.raises(ValueError, match="trying to change decoupled property"):
        c.set_model_transaction_policy({"decoupled": True})
    d = c.as_dict()
    assert d["max_batch_size"] == 16 and len(d["input"]) == 1
    assert d["dynamic_batching"] == {} and d["output"] == []


def test_logger_goes_to_python_logging(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="tritonx.model"):
        pb_utils.Logger.log_info("hello info")
        pb_utils.Logger.log_warn("hello warn")
        pb_utils.Logger.log_verbose("hello verbose")
        pb_utils.Logger.log("hello error", pb_utils.LogLevel.ERROR)
    got = [(r.levelno, r.getMessage(), r.filename) for r in caplog.records]
    assert got == [
        (logging.INFO, "hello info", "test_pb_utils.py"),
        (logging.WARNING, "hello warn", "test_pb_utils.py"),
        (logging.DEBUG, "hello verbose", "test_pb_utils.py"),
        (logging.ERROR, "hello error", "test_pb_utils.py"),
    ]


def test_metric_family() -> None:
    family = pb_utils.MetricFamily(
        "test_requests_total", "requests seen", pb_utils.MetricFamily.COUNTER
    )
    metric = family.Metric(labels={"model": "m"})
    metric.increment(2)
    metric.increment(1)
    assert metric.value() == 3
    with pytest.raises(pb_utils.TritonModelException):
        metric.increment(-1)
    hist = pb_utils.MetricFamily(
        "test_latency", "latency", pb_utils.MetricFamily.HISTOGRAM
    )
    h = hist.Metric(labels={}, buckets=[1.0, 5.0])
    for v in (0.5, 2.0, 9.0):
        h.observe(v)
    assert (h.bucket_counts, h.count, h.sum) == ([1, 1, 1], 3, 11.5)
