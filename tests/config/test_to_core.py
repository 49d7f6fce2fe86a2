"""Conversion to the core's ModelSpec / SchedulerConfig (needs tritonx._C)."""

from __future__ import annotations

import importlib.util

import pytest

from tritonx.config import (
    load_model_config,
    model_spec_from_config,
    scheduler_config_from_config,
)

from .conftest import MakeModel

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("tritonx._C") is None,
    reason="compiled core (tritonx._C) not built",
)

CONFIG = """
backend: "python"
max_batch_size: 8
input [ { name: "A" data_type: TYPE_FP32 dims: [ 4 ] reshape: { shape: [ 2, 2 ] } },
        { name: "B" data_type: TYPE_STRING dims: [ -1 ] optional: true } ]
output [ { name: "C" data_type: TYPE_BF16 dims: [ 4 ] } ]
dynamic_batching {
  preferred_batch_size: [ 2, 4 ] max_queue_delay_microseconds: 100
  priority_levels: 2 default_priority_level: 1
  default_queue_policy { timeout_action: DELAY default_timeout_microseconds: 50
                         allow_timeout_override: true max_queue_size: 9 }
  priority_queue_policy { key: 2 value: { max_queue_size: 3 } }
}
"""


def test_model_spec(make_model: MakeModel) -> None:
    spec = model_spec_from_config(load_model_config(make_model("m", CONFIG)), 3)
    assert (spec.name, spec.version, spec.max_batch_size) == ("m", 3, 8)
    a, b = spec.inputs
    assert (a.name, a.datatype, list(a.dims), a.optional) == ("A", "FP32", [4], False)
    assert list(a.reshape) == [2, 2]
    assert (b.datatype, list(b.dims), b.optional, b.reshape) == (
        "BYTES",
        [-1],
        True,
        None,
    )
    assert [(o.name, o.datatype) for o in spec.outputs] == [("C", "BF16")]


def test_scheduler_config(make_model: MakeModel) -> None:
    sched = scheduler_config_from_config(load_model_config(make_model("m", CONFIG)))
    assert sched.dynamic_batching
    assert list(sched.preferred_batch_sizes) == [2, 4]
    assert sched.max_queue_delay_us == 100
    assert (sched.priority_levels, sched.default_priority_level) == (2, 1)
    policy = sched.default_queue_policy
    assert (policy.timeout_action, policy.default_timeout_us) == ("DELAY", 50)
    assert (policy.allow_timeout_override, policy.max_queue_size) == (True, 9)
    assert sched.priority_queue_policy[2].max_queue_size == 3
    assert sched.priority_queue_policy[2].timeout_action == "REJECT"


def test_default_scheduler(make_model: MakeModel) -> None:
    text = 'backend: "python"\nmax_batch_size: 8\n'
    sched = scheduler_config_from_config(load_model_config(make_model("d", text)))
    assert not sched.dynamic_batching
    assert list(sched.preferred_batch_sizes) == []
